"""Nothing non-finite scored: a NaN in a store (damage or tampering with its checksum updated)
is refused when read, naming shard, key and row, by every command; a diverging classifier
stops with one message instead of choosing an epoch on a NaN or a traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.store import StoreError, open_store, write_arrays

runner = CliRunner()


@pytest.fixture
def clean(toy_store: Path) -> Path:
    return toy_store


def _with_nan(clean: Path, out: Path, row: int) -> Path:
    """A copy whose ``audio`` feature of index row ``row`` is NaN, checksums updated."""
    shutil.copytree(clean, out)
    shard, at = divmod(row, 16)
    path = out / "shards" / f"shard-{shard:05d}.h5"
    with h5py.File(path, "a") as h5:
        h5["audio"][at, 0, 3] = np.nan
    data = json.loads((out / "store.json").read_text())
    for entry in data["shards"]:
        entry["sha256"] = hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest()
    (out / "store.json").write_text(json.dumps(data))
    return out


@pytest.mark.parametrize(("split", "row"), [("train", 5), ("val", 35), ("test", 44)])
def test_a_nan_in_any_split_is_refused_by_every_reader(small_trainer: list[str], clean: Path,
        tmp_path: Path, split: str, row: int, fault_log: Callable) -> None:
    store = _with_nan(clean, tmp_path / "store", row)
    shard_row = row % 16
    evaluated = runner.invoke(app, ["eval", "--store", str(store), "--protocol", "supervised",
                                    "--out", str(tmp_path / "eval"), "--preset", "cpu",
                                    "--device", "cpu"])
    pretrained = runner.invoke(app, ["pretrain", "--store", str(store), "--out",
                                     str(tmp_path / "run"), "--objective", "multi_cont",
                                     "--modalities", "audio,text", "--epochs", "1", *small_trainer])
    for name, result in (("eval", evaluated), ("pretrain", pretrained)):
        text = " ".join(result.output.split())
        if name == "pretrain" and split == "test":
            assert result.exit_code == 0, text  # pretraining never reads the test split
            continue
        assert result.exit_code == 2, (name, text)
        assert f"dataset 'audio' row {shard_row}: NaN or Inf values" in text, (name, text)
        assert "Traceback" not in result.output
    with pytest.raises(StoreError, match="NaN or Inf"):
        open_store(store).split(split).features("audio")
    assert not (tmp_path / "eval" / "metrics.json").exists()
    fault_log(f"NaN in a {split} row (checksum updated)",
              outcome="eval exit 2 naming shard, key and row" + (
                  "; pretrain too" if split != "test" else ""))


def test_a_diverging_classifier_is_one_message(clean: Path, tmp_path: Path,
                                               fault_log: Callable) -> None:
    result = runner.invoke(app, ["eval", "--store", str(clean), "--protocol", "supervised",
                                 "--out", str(tmp_path / "eval"), "--preset", "cpu",
                                 "--device", "cpu", "--set", "optim.lr=1e30"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert "the training diverged" in text and "Traceback" not in result.output
    assert not (tmp_path / "eval" / "metrics.json").exists()
    fault_log("a diverging probe (--set optim.lr=1e30)",
              outcome="exit 2: non-finite loss named; no metrics written")
