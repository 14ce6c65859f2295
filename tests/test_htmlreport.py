"""report.html: self-contained, escaped, and really rendered by a headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from autofix.reports.html import render_html, write_html
from autofix.reports.reporting import AttemptReport, Report

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "diagnose"
XSS = "<script>alert(1)</script>"


def _recorded(name: str, tmp_path: Path) -> tuple[Report, Path]:
    """A real run directory copied to tmp (report.json and, for digits_run, the Tune files)."""
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    return Report.model_validate_json((run / "report.json").read_text()), run


def _attempt(id: str, parent: str | None, series: list, **kw) -> AttemptReport:
    base = dict(id=id, parent=parent, trial_id=f"t{id}", config={"optimizer": {"name": "adam", "lr": 1.0}},
                patch=[], policy=None, start="cold", findings=[], decision=None, outcome="sick", reason="",
                error=None, improvement=None, series=series, last_metrics={})
    return AttemptReport(**{**base, **kw})


def _hostile_report() -> Report:
    """Every user-supplied string carries markup; a warm restart; a NaN in the series."""
    finding = {"symptom": "diverging_loss", "iteration": 3, "metric": "val_loss", "reason": f"rose {XSS}",
               "evidence": {"first": 2.3, "last": 7.9}}
    decision = {"policy": f"my-policy{XSS}", "finding": finding, "action": "scale", "start": "warm",
                "patch": [], "child": "a1", "reason": f"because {XSS}", "skipped": [f"skip {XSS}"]}
    a0 = _attempt("a0", None, [(0, 2.3), (1, 1.9), (2, 1.7), (3, 7.9), (4, "NaN")], findings=[finding],
                  decision=decision, error=f"\x1b[36mValueError: {XSS}\x1b[39m")
    a1 = _attempt("a1", "a0", [(0, 2.3), (1, 1.9), (2, 1.2), (3, 0.6), (4, 0.3)], start="warm",
                  policy=f"my-policy{XSS}", outcome="healthy", improvement=0.87, reason=f"fell {XSS}",
                  config={"optimizer": {"name": XSS, "lr": 0.1}},
                  patch=[{"path": "optimizer.lr", "from": 1.0, "to": XSS}])
    return Report(status="fixed", winner="a1", name=f"spec{XSS}", metric="val_loss", mode="min", min_drop=0.3,
                  output="x", duration_s=1.0, ended_because=f"won {XSS}", attempts=[a0, a1])


def test_user_strings_are_escaped():
    page = render_html(_hostile_report())
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>autofix report: spec&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    for text in ("because &lt;script&gt;", "my-policy&lt;script&gt;", "name: &lt;script&gt;alert", "rose &lt;script"):
        assert text in page, text
    assert "\x1b" not in page  # terminal colour codes stripped from the trial's error


def test_self_contained_with_sections_and_fallback(tmp_path):
    path = write_html(_hostile_report(), tmp_path / "report.html")
    page = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|@import|url\(""", page)
    for section in ("chart", "lineage", "winner"):
        assert f'<section id="{section}">' in page
    assert page.count('src="data:image/png;base64,') == 2  # the attempts chart and the winner's curves
    assert "per-epoch metrics not found" in page  # no tune/ folder: the watched metric only


@pytest.mark.parametrize("steps, charted", [
    pytest.param([[10.0, 2.0, 2.5, None], [20.0, 1.5, 1.9, None], [30.0, 1.1, 1.3, 25.0]], True, id="with-steps"),
    pytest.param([[10.0, 2.0, 2.5, None]], False, id="one-point-no-chart"),
    pytest.param([], False, id="no-step-reports"),
])
def test_the_chart_in_steps_shows_when_reports_came_between_epochs(steps, charted):
    report = _hostile_report()
    images = render_html(report).count('src="data:image/png;base64,')
    report.attempts[0].steps = steps
    page = render_html(report)
    assert ('<section id="steps">' in page) is charted
    assert page.count('src="data:image/png;base64,') == images + charted


def test_recorded_run_page(tmp_path):
    report, run = _recorded("digits_run", tmp_path)
    page = write_html(report, run / "report.html").read_text()
    assert "per-epoch metrics not found" not in page  # read from tune/a2-*/result.json
    assert "optimizer.lr" in page and "exploding-gradients-high-lr" in page and "dying-relu-high-lr" in page
    assert "training:\n  model:" in page and "lr: 0.01" in page  # the final config, ready to paste
    assert "grad_norm=2200" in page  # evidence numbers


NO_BROWSER = ("chromium is not on PATH: the report.html check renders the page in a real browser. "
              "Install it with `sudo apt-get install -y chromium` (Debian/Ubuntu; `make test` does it "
              "where it may) and rerun.")


def _chromium() -> str:
    """The browser, or a skip saying how to get one (a failure where AUTOFIX_REQUIRE_BROWSER=1:
    CI must always check the real page)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("AUTOFIX_REQUIRE_BROWSER") == "1":
        pytest.fail(NO_BROWSER)
    pytest.skip(NO_BROWSER)


@pytest.mark.parametrize("required, outcome", [("1", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_browser_skips_with_how_to_get_one_and_fails_where_required(monkeypatch, required, outcome):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("AUTOFIX_REQUIRE_BROWSER", required)
    with pytest.raises(outcome, match="apt-get install -y chromium"):
        _chromium()


def _browse(html: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1200,2000"]
    return subprocess.run([_chromium(), *flags, *args, html.resolve().as_uri()], capture_output=True, text=True,
                          timeout=180, check=False)


@pytest.mark.parametrize("name", ["digits_run", "overfitting_run"])
def test_renders_in_headless_chromium(name, tmp_path):
    from matplotlib.image import imread

    report, run = _recorded(name, tmp_path)
    html = write_html(report, run / "report.html")
    png = tmp_path / f"{name}.png"
    shot = _browse(html, tmp_path, f"--screenshot={png}")
    assert png.is_file(), f"chromium wrote no screenshot: {shot.stderr[-2000:]}"
    pixels = imread(str(png))[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    non_white = (pixels.min(axis=2) < 0.9).mean()
    colours = len({tuple(p) for p in (pixels[::7, ::7] * 255).astype(int).reshape(-1, 3).tolist()})
    assert non_white > 0.05 and colours > 50, f"blank-looking page: {non_white:.1%} ink, {colours} colours"
    dom = _browse(html, tmp_path, "--dump-dom").stdout
    assert f"<title>autofix report: {report.name}</title>" in dom
    for section in ("chart", "lineage", "winner"):
        assert f'id="{section}"' in dom
    for attempt in report.attempts:
        assert f'id="attempt-{attempt.id}"' in dom
    assert dom.count("data:image/png;base64,") >= 1
