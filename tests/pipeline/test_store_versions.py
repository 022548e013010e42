"""Stores of earlier formats keep working: they open, verify, train and evaluate as they are,
and `store upgrade` rewrites only their store.json, keeping their store_id and feature space;
unknown and newer formats are refused with a clear message. The format-1 fixture was extracted
(random weights, 11 MELD sample clips) by the release before the typed manifest; the format-2
fixture (random weights, 6 MELD sample clips, 2 views, label texts) by the last release of
format 2."""

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

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE = FIXTURES / "store-v1"
#: store_id and feature-space id of each fixture as the release that wrote it computed them.
RECORDED = {
    "store-v1": ("32369f2c6deebdad75fb8529596f4b23528da3771a9e86ae18808caf2f321565",
                 "c5d500b40449d21c50ac4b67df26a9cf903b0187be30a9d194314a5ca1f65179"),
    "store-v2": ("d0958b82ff786d29ef7225bc40911a742e0636669429348e094e734663debc8a",
                 "7eb7591c1a9208300307b21e0939cb9aeb230e2f762adb275bedc252e3236c0c")}


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    dest = tmp_path / "store-v1"
    shutil.copytree(FIXTURE, dest)
    return dest


@pytest.fixture(params=["store-v1", "store-v2"])
def old(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    dest = tmp_path / request.param
    shutil.copytree(FIXTURES / request.param, dest)
    return dest


def test_old_stores_load_upgrade_and_keep_their_ids(old: Path) -> None:
    from pipeline.store.manifest import feature_space_id

    store_id, space_id = RECORDED[old.name]
    fmt = json.loads((old / "store.json").read_text())["format"]
    before = open_store(old)
    assert (before.store_id, feature_space_id(before.manifest.feature_space)) == (store_id,
                                                                                   space_id)
    assert before.manifest.format == fmt and verify_store(old).ok
    result = upgrade_store(old)
    assert (result.from_format, result.to_format) == (fmt, "conclugen-store/3")
    raw = json.loads((old / "store.json").read_text())
    assert raw["format"] == "conclugen-store/3" and "config" not in raw
    assert "face_policy" not in raw["identity"]["extraction"]
    after = open_store(old)
    assert (after.store_id, feature_space_id(after.manifest.feature_space)) == (store_id,
                                                                                 space_id)
    assert after.manifest.extract_config() == before.manifest.extract_config()
    assert after.manifest.legacy is not None and after.manifest.legacy["format"] == (
        "conclugen-store/1" if old.name == "store-v1" else fmt)
    report = verify_store(old)
    assert report.ok and not report.notes, (report.problems, report.notes)


def test_a_version_2_store_reads_its_settings_once(tmp_path: Path) -> None:
    dest = tmp_path / "store-v2"
    shutil.copytree(FIXTURES / "store-v2", dest)
    raw = json.loads((dest / "store.json").read_text())
    manifest = open_store(dest).manifest
    old = raw["identity"]["extraction"]
    assert manifest.identity.extraction is not None
    assert manifest.identity.extraction.seed == old["augment_seed"]
    assert manifest.dataset.faces is not None
    assert manifest.dataset.faces.crop == old["face_policy"]["crop"]
    cfg = manifest.extract_config()
    assert cfg.choices.views == 2 == manifest.views and cfg.run.prefetch is True
    assert cfg.features.augment.jitter_p == old["augment"]["jitter_p"]
    assert manifest.label_texts is not None and manifest.label_texts.rows > 0


def test_a_wrong_field_of_a_version_2_store_is_named(tmp_path: Path) -> None:
    dest = tmp_path / "store-v2"
    shutil.copytree(FIXTURES / "store-v2", dest)
    raw = json.loads((dest / "store.json").read_text())
    bad = json.loads(json.dumps(raw))
    del bad["identity"]["extraction"]["sample_rate"]
    (dest / "store.json").write_text(json.dumps(bad))
    with pytest.raises(StoreError, match=r"identity\.extraction\.sample_rate is missing"):
        open_store(dest)
    bad = json.loads(json.dumps(raw))
    bad["identity"]["extraction"]["fps_3d"] = "fast"
    (dest / "store.json").write_text(json.dumps(bad))
    with pytest.raises(StoreError, match="identity: extraction: fps_3d"):
        open_store(dest)
    bad = json.loads(json.dumps(raw))
    bad["config"]["views"] = 3
    (dest / "store.json").write_text(json.dumps(bad))
    with pytest.raises(StoreError, match=r"choices\.views is 3, but identity records 2"):
        open_store(dest)


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
    assert (cfg.features.detect_fps, cfg.features.fps_3d) == (1.0, 16.0)
    assert cfg.choices.weights["frames_2d"] == "random"
    assert store.read("audio").shape == (11, 1, 1024)
    assert store.manifest.feature_space["frames_2d"]["sampling"] == {"fps_2d": 1.0}
    # settings added later read as what the first release did: no face-ratio threshold
    extraction = store.manifest.identity.extraction
    assert extraction.faces.min_face_ratio == 0.0 == cfg.features.faces.min_face_ratio
    report = verify_store(v1)
    assert report.ok, report.problems
    assert any("store upgrade" in n for n in report.notes)


def test_upgrade_rewrites_only_store_json_and_keeps_the_id(v1: Path) -> None:
    before = _digests(v1)
    features = open_store(v1).read("text")
    old = open_store(v1)
    result = upgrade_store(v1)
    assert result.changed and result.from_format == "conclugen-store/1"
    assert json.loads((v1 / "store.json").read_text())["format"] == "conclugen-store/3"
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
    assert "conclugen-store/1 -> conclugen-store/3" in result.output
    again = CliRunner().invoke(app, ["store", "upgrade", str(v1)])
    assert again.exit_code == 0 and "nothing to do" in again.output


@pytest.mark.parametrize(("fmt", "message"), [
    ("conclugen-store/4", "written by a newer release"),
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


def test_one_function_publishes_store_json() -> None:
    """Extraction, merge, upgrade and label texts all publish through
    ``pipeline.store.manifest.publish_manifest``: no other code writes store.json."""
    root = Path(__file__).resolve().parents[2]
    writers = []
    for path in sorted((root / "pipeline").rglob("*.py")) + [root / "cli.py"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "write_atomic(" in line and ("store.json" in line or "STORE_JSON" in line):
                writers.append(f"{path.relative_to(root)}:{n}")
    assert writers == ["pipeline/store/manifest.py:" + str(_publish_line(root))], writers


def _publish_line(root: Path) -> int:
    lines = (root / "pipeline/store/manifest.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def publish_manifest"))
    return next(i for i, line in enumerate(lines[start:], start + 1) if "write_atomic(" in line)

