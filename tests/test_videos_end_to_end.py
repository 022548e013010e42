"""The generic adapter end to end from the command line: the MELD sample's videos as a user's
own clips, once as a labelled CSV list (what `scan --out FILE.csv` wrote) and once as an
unlabelled folder with a transcript sidecar, each extracted into an ordinary store (random
weights, audio and text keys to stay fast); heads pretrained on the unlabelled store are
evaluated and used for prediction on the labelled one (the paper's protocol: pretraining on
unlabelled clips, evaluating on labelled ones in the same feature space). A list whose every
clip fails gives no store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.datasets import dataset_source

runner = CliRunner()
FAST = ["--modalities", "audio,text", "--weights", "random", "--device", "cpu", "--workers",
        "1", "--faces", "none"]


def _ok(*args: str) -> str:
    """Run the command line; it must succeed. Returns what it printed."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _unlabelled_folder(listed: list[dict[str, str]], meld: Path, folder: Path) -> Path:
    """Four of the listed clips linked into a folder of the user's own naming, and the
    transcript sidecar of their ids (the folder form's ids: the path without suffix)."""
    sidecar = folder.parent / "transcripts.csv"
    with sidecar.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "transcript"])
        for k, row in enumerate(listed[:4]):
            (folder / f"session{k % 2}").mkdir(parents=True, exist_ok=True)
            (folder / f"session{k % 2}" / f"take{k}.mp4").symlink_to(meld / row["path"])
            writer.writerow([f"session{k % 2}/take{k}", row["transcript"]])
    return sidecar


@pytest.mark.slow  # about a minute on two cores: two extractions, pretraining, evaluation
def test_a_list_and_a_folder_of_videos_through_extract_pretrain_eval_and_predict(
        meld_sample: Path, tmp_path: Path) -> None:
    listing = tmp_path / "clips.csv"
    _ok("scan", "--dataset", "meld", "--root", str(meld_sample), "--out", str(listing))
    with listing.open(newline="", encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    labelled, unlabelled, run = tmp_path / "labelled", tmp_path / "unlabelled", tmp_path / "run"

    _ok("extract", "--dataset", "videos", "--list", str(listing), "--root", str(meld_sample),
        "--out", str(labelled), *FAST)
    meta = json.loads((labelled / "store.json").read_text())
    names = sorted({r["label"] for r in listed})
    assert meta["identity"]["dataset"]["name"] == "videos"
    assert meta["identity"]["dataset"]["labels"] == names
    assert meta["identity"]["dataset"]["manifest_sha256"] == dataset_source(
        "videos", meld_sample, list_file=listing, faces="none")[1].sha256
    assert meta["identity"]["dataset"]["faces"]["crop"] is False
    index = {r["sample_id"]: r for r in pq.read_table(labelled / "index.parquet").to_pylist()}
    for row in listed:
        if row["sample_id"] in index:
            assert names[index[row["sample_id"]]["label"]] == row["label"]
    assert {r["split"] for r in index.values()} == {"train", "val", "test"}
    _ok("store", "verify", str(labelled))

    sidecar = _unlabelled_folder(listed, meld_sample, tmp_path / "own")
    _ok("extract", "--dataset", "videos", "--root", str(tmp_path / "own"), "--transcripts",
        str(sidecar), "--out", str(unlabelled), *FAST)
    rows = pq.read_table(unlabelled / "index.parquet").to_pylist()
    assert sorted(r["sample_id"] for r in rows) == [f"session{k % 2}/take{k}" for k in
                                                    (0, 2, 1, 3)]
    assert {r["label"] for r in rows} == {-1} and all(r["transcript"] for r in rows)

    _ok("pretrain", "--store", str(unlabelled), "--out", str(run), "--objective", "conclugen",
        "--modalities", "audio,text", "--preset", "cpu", "--epochs", "2", "--device", "cpu")
    _ok("eval", "--store", str(labelled), "--run", str(run), "--protocol", "linear", "--preset",
        "cpu", "--set", "epochs=2", "--device", "cpu")
    metrics = json.loads((run / "eval" / "linear" / "metrics.json").read_text())
    assert metrics["counts"]["test"] == sum(r["split"] == "test" for r in index.values())

    clip = listed[0]
    predicted = _ok("predict", str(meld_sample / clip["path"]), "--run", str(run), "--store",
                    str(labelled), "--transcript", clip["transcript"], "--device", "cpu")
    assert "predicted:" in predicted
    for name in names:
        assert name in predicted


@pytest.mark.slow  # a Dask worker starts and decodes two files
def test_a_list_whose_every_clip_fails_gives_no_store(tmp_path: Path) -> None:
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"not a video at all" * 100)
    listing = tmp_path / "list.csv"
    listing.write_text("path,transcript\na.mp4,hello\nb.mp4,there\n", encoding="utf-8")
    out = tmp_path / "store"
    result = runner.invoke(app, ["extract", "--dataset", "videos", "--list", str(listing),
                                 "--out", str(out), *FAST])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "0 clips extracted, the store is not complete: corrupt_media 2" in said
    assert "store complete" not in said and not (out / "store.json").exists()
