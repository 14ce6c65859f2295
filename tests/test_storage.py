"""``ray.storage_path``: Tune's experiment in storage all nodes share, ``OUTPUT/tune`` linking to it."""

from __future__ import annotations

import json

import pytest

import autofix
from autofix.reports.diagnose import diagnose
from autofix.spec.schema import load_spec
from autofix.tune.resume import resume
from autofix.tune.runner import _storage

from conftest import FIXTURES


def _spec(tmp_path, storage: str | None) -> dict:
    ray = {"storage_path": storage} if storage is not None else {}
    return {"name": "stored", "trainable": "cluster_trainable:node_fn", "python_path": [str(FIXTURES)],
            "config": {"lr": 0.5, "epochs": 4, "sleep_s": 0.05, "log": str(tmp_path / "log.jsonl")},
            "knobs": {"optimizer.lr": "lr"}, "metric": "loss", "ledger": False, "ray": ray}


def test_default_storage_is_the_output_directory(tmp_path):
    assert _storage(load_spec(_spec(tmp_path, None)), tmp_path / "out") == (str(tmp_path / "out"), "tune")


def test_a_relative_storage_path_is_from_the_spec_folder_and_linked(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "spec.yaml").write_text(json.dumps(_spec(tmp_path, "../store")))
    out = tmp_path / "out"
    out.mkdir()
    storage, name = _storage(load_spec(folder / "spec.yaml"), out)
    assert storage == str((tmp_path / "store").resolve()) and name.startswith("out-")
    assert (out / "tune").is_symlink() and (out / "tune").resolve() == (tmp_path / "store" / name).resolve()
    other = tmp_path / "elsewhere" / "out"
    other.mkdir(parents=True)
    assert _storage(load_spec(folder / "spec.yaml"), other)[1] != name  # one folder per run


def test_a_uri_is_left_to_tune(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert _storage(load_spec(_spec(tmp_path, "s3://bucket/runs")), out)[0] == "s3://bucket/runs"
    assert not (out / "tune").exists()


def test_an_empty_storage_path_is_bad_input(tmp_path):
    with pytest.raises(autofix.InputError, match="storage_path"):
        load_spec(_spec(tmp_path, ""))


@pytest.mark.ray
def test_a_run_in_shared_storage_is_diagnosed_and_resumed_through_the_link(ray_session, tmp_path):
    out, shared = tmp_path / "out", tmp_path / "shared"
    report = autofix.run(_spec(tmp_path, str(shared)), out)
    assert report.status == "healthy"
    (experiment,) = shared.iterdir()
    assert (experiment / "tuner.pkl").is_file() and list(experiment.glob("a0-*/checkpoint_*"))
    assert [t.name.split("-")[0] for t in diagnose(str(out / "tune"), metric="loss").trials] == ["a0"]
    # Tune restores the experiment through OUTPUT/tune (report.json removed: as if the driver died).
    (out / "report.json").unlink()
    again = resume(out)
    assert again.status == "healthy" and [a.id for a in again.attempts] == ["a0"]
