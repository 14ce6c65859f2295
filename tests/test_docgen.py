"""The generated references in docs/reference/ match the code they are generated from."""

from __future__ import annotations

from pathlib import Path

import pytest

from autofix import docgen
from autofix.actions import ACTIONS
from autofix.rules.policy import Policy
from autofix.spec.schema import Spec
from autofix.spec.training import TrainingSpec
from autofix.symptoms import SYMPTOMS

ROOT = Path(__file__).resolve().parent.parent
PAGES = docgen.render()


@pytest.mark.parametrize("rel", sorted(PAGES), ids=str)
def test_generated_page_is_up_to_date(rel: Path) -> None:
    path = ROOT / rel
    assert path.exists() and path.read_text() == PAGES[rel], (
        f"{rel} is stale: refresh it with `{docgen.COMMAND}` and commit it")


@pytest.mark.parametrize(
    ("rel", "names"),
    [
        ("spec.md", [f"| `{n}` |" for n in [*Spec.model_fields, *TrainingSpec.model_fields]]),
        ("policies.md", [f"### {n}\n" for n in [*SYMPTOMS, *ACTIONS]] + [f"| `{n}` |" for n in Policy.model_fields]),
    ],
)
def test_every_name_is_documented(rel: str, names: list[str]) -> None:
    text = PAGES[docgen.REFERENCE / rel]
    assert [n for n in names if n not in text] == []


def test_check_names_a_stale_page_and_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docgen.main(["--root", str(tmp_path)]) == 0
    assert docgen.main(["--root", str(tmp_path), "--check"]) == 0
    page = tmp_path / docgen.REFERENCE / "spec.md"
    page.write_text(page.read_text().replace("| `epochs` |", "| `epoch` |"))
    assert docgen.main(["--root", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/reference/spec.md: stale" in err and docgen.COMMAND in err


def test_a_field_default_and_bound_are_rendered() -> None:
    text = PAGES[docgen.REFERENCE / "spec.md"]
    assert "| `max_attempts` | int | `6` | >= 1, <= 1000 |" in text
