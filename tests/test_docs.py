"""The README and docs/ link only to files of this repository, and to headings that exist.

A relative link ``[text](path#anchor)`` must resolve inside the repository to an existing file;
an anchor into a Markdown page must name one of its headings (GitHub's slugs). Links to other
sites (``http(s)://``, ``mailto:``) are not followed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")])
PAGES = [p for p in PAGES if p.exists()]
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (a link inside a code sample is no link)."""
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            lines.append(line)
    return "\n".join(lines)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            slug = _slug(match.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_of_the_repository(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading '{anchor}' in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_names_notes_outside_the_repository(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"shared[/]notes|notes_internal|\.\./\.\./", text), page


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Title\n[ok](#title) [bad](missing.md) [bad anchor](#nope)\n```\n[code](x.md)\n```\n")
    links = _links(page)
    assert links == ["#title", "missing.md", "#nope"]
    assert _anchors(page) == {"title"}


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Testing policies (like `promtool test rules`)", "testing-policies-like-promtool-test-rules"),
        ("Ray Tune 2.60 facts, measured for autofix", "ray-tune-260-facts-measured-for-autofix"),
        ('Do no harm, measured (`make bench`, block "do-no-harm")', "do-no-harm-measured-make-bench-block-do-no-harm"),
    ],
)
def test_slugs_follow_github(heading: str, slug: str) -> None:
    assert _slug(heading) == slug


def test_readme_is_a_front_door() -> None:
    """Issue 16: the README is at most 250 lines and keeps both set-up commands."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "`make run`" in text and "`make test`" in text


def _block(text: str, first_line: str) -> str:
    """The fenced YAML block of the README that starts with ``first_line``."""
    match = re.search(r"```yaml\n(" + re.escape(first_line) + r"\n.*?)```", text, re.S)
    assert match, f"README.md: no yaml block starting {first_line!r}"
    return match.group(1)


def test_the_tour_policy_and_its_test_work_as_shown(tmp_path: Path) -> None:
    """The README's policy passes its own test file, and the test fails once the policy changes."""
    from autofix.rules.policytest import run_policy_tests

    readme = (ROOT / "README.md").read_text()
    policy = _block(readme, "# my_policies.yaml")
    (tmp_path / "my_policies.yaml").write_text(policy)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "my_policies.test.yaml").write_text(_block(readme, "# tests/my_policies.test.yaml"))
    assert run_policy_tests([tmp_path / "tests"])[:2] == (2, 0)
    (tmp_path / "my_policies.yaml").write_text(policy.replace("factor: 0.1", "factor: 0.5"))
    count, failed, failures = run_policy_tests([tmp_path / "tests"])
    assert (count, failed) == (2, 1) and "optimizer.lr" in " ".join(failures)
