"""Continuous targets in a store: named in store.json, one list of floats per clip in the
index, read back by the heads; stores without them keep their store_id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from heads.data import DataError
from heads.evaluation.targets import read_targets, target_names
from pipeline.store import open_store, store_id_of, write_arrays
from pipeline.store.manifest import sha256_json, to_json
from pipeline.store.ops import verify_store


def _store(path: Path, targets: np.ndarray | None, names: tuple[str, ...] = ()):
    rng = np.random.default_rng(0)
    return write_arrays(path, dataset="afewva", sample_ids=["a", "b", "c"],
                        splits=["train", "val", "test"],
                        features={"frames_2d": rng.normal(size=(3, 1, 4)).astype(np.float16)},
                        labels=np.full(3, -1), label_names=[], targets=targets,
                        target_names=names)


def test_targets_are_named_in_store_json_and_read_by_row(tmp_path: Path) -> None:
    values = np.array([[0.5, -0.25], [np.nan, np.nan], [-1.0, 1.0]], dtype=np.float32)
    fs = _store(tmp_path / "s", values, ("valence", "arousal"))
    assert target_names(fs) == ("valence", "arousal")
    assert fs.manifest.dataset.targets == ("valence", "arousal")
    got = read_targets(fs, np.array([2, 0, 1]))
    np.testing.assert_array_equal(got[:2], values[[2, 0]])
    assert np.isnan(got[2]).all()
    assert verify_store(fs.url).problems == []
    reopened = open_store(fs.url)
    assert reopened.index.column("targets").to_pylist()[0] == [0.5, -0.25]


def test_a_store_without_targets_keeps_the_identity_hash_of_earlier_releases(
        tmp_path: Path) -> None:
    fs = _store(tmp_path / "s", None)
    assert target_names(fs) == ()
    data = to_json(fs.manifest.identity)
    assert data["dataset"]["targets"] == [] and data["dataset"]["transcripts"] is None
    del data["dataset"]["targets"], data["dataset"]["transcripts"]  # what earlier releases hashed
    assert fs.store_id == sha256_json(data) == store_id_of(fs.manifest.identity)
    with pytest.raises(DataError, match="no continuous targets"):
        read_targets(fs, np.arange(3))


def test_targets_enter_the_content_hash_and_must_fit_their_names(tmp_path: Path) -> None:
    a = _store(tmp_path / "a", np.zeros((3, 1), np.float32), ("valence",))
    b = _store(tmp_path / "b", np.ones((3, 1), np.float32), ("valence",))
    assert a.store_id != b.store_id
    with pytest.raises(ValueError, match=r"\[3, 2\]"):
        _store(tmp_path / "c", np.zeros((3, 1), np.float32), ("valence", "arousal"))
