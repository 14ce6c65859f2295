"""Issue C's acceptance through real Ray Tune runs: broken examples healed by the actions that
answer their symptom (reweighting, activation swap / re-initialisation), ending `fixed`."""

from __future__ import annotations

import pytest
import yaml

import autofix

from conftest import EXAMPLES

pytestmark = pytest.mark.ray
SYMPTOMS_DIR = EXAMPLES / "symptoms"


def _run(name, tmp_path):
    spec = yaml.safe_load((SYMPTOMS_DIR / f"{name}.yaml").read_text())
    spec["python_path"] = [str(SYMPTOMS_DIR)]
    return autofix.run(spec, tmp_path / "out")


def test_class_collapse_is_healed_by_reweighting(ray_session, tmp_path):
    report = _run("class_collapse", tmp_path)
    assert report.status == "fixed", report.summary()
    winner, first = report.attempt(report.winner), report.attempts[0]
    net = report.net_patch(winner.id)
    assert {"loss.class_weights", "data.sampler"} & set(net), net
    gain = winner.last_metrics["val_macro_f1"] - first.last_metrics["val_macro_f1"]
    assert gain >= 0.2, (first.last_metrics["val_macro_f1"], winner.last_metrics["val_macro_f1"])


@pytest.mark.parametrize("name", ["dying_relu", "vanishing_gradients"])
def test_dead_or_vanishing_networks_are_healed_by_architecture_or_init(ray_session, tmp_path, name):
    report = _run(name, tmp_path)
    assert report.status == "fixed", report.summary()
    net = report.net_patch(report.winner)
    assert {"architecture.activation", "architecture.batch_norm", "init"} & set(net), net
    assert "optimizer.lr" not in net  # the cure was structural, not a learning-rate change
    series = [v for _, v in report.attempt(report.winner).series]
    assert series[-1] <= 0.7 * series[0]
