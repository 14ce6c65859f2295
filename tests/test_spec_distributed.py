"""``ray.distributed``: validated like the rest of the spec, and only for managed training."""

from __future__ import annotations

import os

import pytest
import yaml

from autofix.errors import InputError
from autofix.spec.schema import load_spec
from autofix.tune.runner import trainable_of

from conftest import EXAMPLES, FIXTURES


def _load(tmp_path, **ray):
    spec = yaml.safe_load((EXAMPLES / "distributed_digits.yaml").read_text())
    spec["ray"] = {**spec["ray"], **ray}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_spec(path), path


def test_the_example_is_a_two_worker_gloo_run(tmp_path):
    spec, _ = _load(tmp_path)
    assert spec.ray.distributed.model_dump() == {"workers": 2, "backend": "gloo", "use_gpu": False}
    assert load_spec(EXAMPLES / "digits_lr_too_high.yaml").ray.distributed is None


@pytest.mark.parametrize("distributed, field, fragment", [
    ({"workers": 0}, "ray.distributed.workers", "greater than or equal to 1"),
    ({"workers": 2, "backend": "mpi"}, "ray.distributed.backend", "'gloo' or 'nccl'"),
    ({"workers": 2, "gpus": 1}, "ray.distributed.gpus", "unknown key; expected one of: backend, use_gpu, workers"),
    ({"backend": "gloo"}, "ray.distributed.workers", "required"),
    ({"workers": 2, "backend": "nccl"}, "ray.distributed", "use_gpu: true"),
])
def test_bad_distributed_options_name_the_field(tmp_path, distributed, field, fragment):
    with pytest.raises(InputError) as err:
        _load(tmp_path, distributed=distributed)
    problems = err.value.problems
    assert any(p.field == field and fragment in p.message and p.line for p in problems), [str(p) for p in problems]


def test_a_custom_trainable_cannot_be_distributed(tmp_path):
    spec = {"trainable": "failing_trainable:train_fn", "python_path": [str(FIXTURES)], "metric": "loss",
            "ray": {"distributed": {"workers": 2}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError) as err:
        load_spec(path)
    [problem] = err.value.problems
    assert problem.field == "ray" and problem.line == 4
    assert "ray.distributed" in problem.message and "'training'" in problem.message


def test_the_trial_takes_no_cpu_and_the_workers_take_theirs(tmp_path):
    spec, _ = _load(tmp_path)
    trainable = trainable_of(spec)
    # CPU 0 is dropped: 2 workers x 1 CPU then fit a 2-CPU Ray (2.01 CPUs would wait forever).
    assert trainable._resources.bundles == [{"memory": 1.0}]


def test_embedded_ray_for_train_has_a_loopback_dashboard(tmp_path, monkeypatch):
    """Train's placement-group cleaner needs the State API (docs/ray-tune.md)."""
    import sys
    import types

    from autofix.tune.runner import ray_session

    calls: list[dict] = []
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: calls.append(kw),
                                 shutdown=lambda: None)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://elsewhere:8265")
    spec, _ = _load(tmp_path)
    with ray_session(spec, None, verbose=False):
        # Set before Ray starts, so Train's cleaner inherits it instead of auto-detecting.
        assert os.environ["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{calls[0]['dashboard_port']}"
    assert calls[0]["include_dashboard"] is True and calls[0]["dashboard_host"] == "127.0.0.1"
    assert calls[0]["_node_ip_address"] == "127.0.0.1"
    assert os.environ["RAY_API_SERVER_ADDRESS"] == "http://elsewhere:8265"  # restored


def test_the_spike_guard_runs_under_ray_distributed(tmp_path):
    """Every rank judges the mean loss over the ranks (autofix.harness.distributed): they agree."""
    spec = yaml.safe_load((EXAMPLES / "distributed_digits.yaml").read_text())
    spec["training"]["spike_guard"] = {"enabled": True}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    loaded = load_spec(path)
    assert loaded.training.spike_guard.enabled and loaded.ray.distributed is not None
