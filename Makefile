# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint docs test-cluster bench bench-quick install browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision first, pinned to the pair this machine serves from local files.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/autofix run examples/digits_lr_too_high.yaml --output runs/digits_lr_too_high --overwrite

# Debian's chromium for the report.html browser test, where the machine allows installing it.
browser:
	@sh scripts/install-browser.sh

# ruff and mypy ([tool.ruff], [tool.mypy] in pyproject.toml) and the generated references.
lint: $(STAMP)
	$(BIN)/ruff check autofix tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m autofix.docgen --check

# Regenerate docs/reference/ (spec and policy references) from the code.
docs: $(STAMP)
	$(BIN)/python -m autofix.docgen

test: $(STAMP) browser lint
	$(BIN)/autofix policies check autofix/policies/
	$(BIN)/autofix policies test autofix/policies/
	$(BIN)/python -m pytest

# Tests that start their own multi-node Ray clusters on loopback (not collected by `test`).
test-cluster: $(STAMP)
	$(BIN)/python -m pytest tests/cluster

# Speed and overhead targets are measured here, never by timed unit tests.
bench: $(STAMP)
	$(BIN)/python benchmarks/engine_throughput.py
	$(BIN)/python benchmarks/fuzz.py --cases 1000 --seed 0
	$(BIN)/python benchmarks/probe_overhead.py
	$(BIN)/python benchmarks/warm_vs_cold.py --seeds 3
	$(BIN)/python benchmarks/long_runs.py
	$(BIN)/python benchmarks/spike_guard_do_no_harm.py --seeds 5 --jobs 2
	$(BIN)/python benchmarks/step_report_cost.py
	$(BIN)/python benchmarks/bench.py

# The sick zoo on a subset covering every method and block kind (a few minutes).
bench-quick: $(STAMP)
	$(BIN)/python benchmarks/bench.py --quick --out benchmarks/results/quick

clean:
	rm -rf runs out .pytest_cache .ruff_cache .mypy_cache
