"""Lint rules no linter checks here: a ``type: ignore`` names its error code and says why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<code>\[[a-z0-9_,\- ]+\])?(?P<rest>.*)$")


def ignores(text: str) -> list[tuple[int, str]]:
    """``(line number, problem)`` for each ``type: ignore`` without a code or a reason after it."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        match = IGNORE.search(line)
        if match is None:
            continue
        if not match.group("code"):
            found.append((n, "no error code"))
        elif not re.match(r"\s*#\s*\S", match.group("rest")):
            found.append((n, "no reason after it (`# type: ignore[code]  # why`)"))
    return found


@pytest.mark.parametrize(
    ("line", "problems"),
    [
        ("x = f()  # type: ignore[arg-type]  # torch's stub is too narrow", 0),
        ("x = f()  # type: ignore[arg-type]", 1),
        ("x = f()  # type: ignore", 1),
        ("x = f()  # type: ignore  # because", 1),
        ("x = f()", 0),
    ],
)
def test_ignores_are_recognised(line: str, problems: int) -> None:
    assert len(ignores(line)) == problems


def test_every_type_ignore_in_autofix_has_a_code_and_a_reason() -> None:
    bad = [f"{path.relative_to(ROOT)}:{n}: {why}"
           for path in sorted((ROOT / "autofix").rglob("*.py")) for n, why in ignores(path.read_text())]
    assert bad == []
