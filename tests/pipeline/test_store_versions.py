"""Stores written by the first release (format 1) keep working: they open, verify, train and
evaluate as they are, and `store upgrade` rewrites only their store.json; unknown and newer
formats are refused with a clear message. The fixture store was extracted (random weights,
11 MELD sample clips) by the release before the typed manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.store import StoreError, open_store
from pipeline.store.ops import upgrade_store, verify_store

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store-v1"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    dest = tmp_path / "store-v1"
    shutil.copytree(FIXTURE, dest)
    return dest


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "store.json"}


def test_a_version_1_store_opens_and_verifies_as_it_is(v1: Path) -> None:
    raw = json.loads((v1 / "store.json").read_text())
    assert raw["format"] == "conclugen-store/1"
    store = open_store(v1)
    assert store.store_id == raw["store_id"]
    assert store.keys == ("audio", "frames_2d", "frames_3d", "text")
    assert store.manifest.dataset.name == "meld" and len(store.label_names) == 7
    cfg = store.manifest.extract_config()
    assert (cfg.detect_fps, cfg.fps_3d, cfg.weights["frames_2d"]) == (1.0, 16.0, "random")
    assert store.read("audio").shape == (11, 1, 1024)
    assert store.manifest.feature_space["frames_2d"]["sampling"] == {"fps_2d": 1.0}
    # settings added later read as what the first release did: no face-ratio threshold
    assert store.manifest.identity.extraction.faces.min_face_ratio == 0.0 == cfg.faces.min_face_ratio
    report = verify_store(v1)
    assert report.ok, report.problems
    assert any("store upgrade" in n for n in report.notes)


def test_upgrade_rewrites_only_store_json_and_keeps_the_id(v1: Path) -> None:
    before = _digests(v1)
    features = open_store(v1).read("text")
    old = open_store(v1)
    result = upgrade_store(v1)
    assert result.changed and result.from_format == "conclugen-store/1"
    assert json.loads((v1 / "store.json").read_text())["format"] == "conclugen-store/2"
    assert _digests(v1) == before, "the shards, index and failures are untouched"
    new = open_store(v1)
    assert new.store_id == old.store_id
    assert new.manifest.feature_space == old.manifest.feature_space
    np.testing.assert_array_equal(new.read("text"), features)
    assert verify_store(v1).ok
    assert not upgrade_store(v1).changed


def test_store_upgrade_command(v1: Path) -> None:
    result = CliRunner().invoke(app, ["store", "upgrade", str(v1)])
    assert result.exit_code == 0, result.output
    assert "conclugen-store/1 -> conclugen-store/2" in result.output
    again = CliRunner().invoke(app, ["store", "upgrade", str(v1)])
    assert again.exit_code == 0 and "nothing to do" in again.output


@pytest.mark.parametrize(("fmt", "message"), [
    ("conclugen-store/3", "written by a newer release"),
    ("somebody-else/1", "unknown store format"),
    ("conclugen-store/x", "unknown store format")])
def test_unknown_and_newer_formats_are_refused(v1: Path, fmt: str, message: str) -> None:
    raw = json.loads((v1 / "store.json").read_text())
    (v1 / "store.json").write_text(json.dumps({**raw, "format": fmt}))
    with pytest.raises(StoreError, match=message):
        open_store(v1)
    with pytest.raises(StoreError, match=message):
        upgrade_store(v1)


def test_a_field_that_breaks_the_contract_is_named(v1: Path) -> None:
    upgrade_store(v1)
    raw = json.loads((v1 / "store.json").read_text())
    raw["identity"]["views"] = "two"
    (v1 / "store.json").write_text(json.dumps(raw))
    with pytest.raises(StoreError, match="identity: views: expected int"):
        open_store(v1)


def test_a_version_1_store_trains_and_evaluates(v1: Path, tmp_path: Path) -> None:
    from heads.evaluation.run import run_eval
    from heads.pretrain.train import run_pretrain

    run = run_pretrain(str(v1), "multi_cont", tmp_path / "run", preset="cpu", epochs=2,
                       device="cpu", progress=False,
                       overrides={"data": {"batch_size": 4}, "output": {"tensorboard": False}})
    metrics = run_eval(str(v1), run=run, protocol="linear", preset="cpu",
                       overrides={"epochs": 2, "batch_size": 4}, device="cpu", progress=False)
    assert metrics["counts"] == {"train": 7, "val": 2, "test": 2}
    assert metrics["store_id"] == open_store(v1).store_id
