"""Bad media files in an extraction: each clip fails with its own reason and a message naming
the file, or is kept; none is lost, none is written twice, the store verifies.

The MELD sample is copied and five of the first six clips are spoiled in place (cut short,
overwritten with random bytes, emptied, stripped of their audio stream, given a transcript of
30,000 words); the sixth stays as it was. One extraction of those six clips (audio and text,
the fast backbones) runs through the store. A file without a video stream only fails where
video is asked for, so that case goes through the per-clip extraction with stand-in encoders.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq

from pipeline.datasets import scan
from pipeline.extract_config import load_extract_config
from pipeline.failures import Reason, Stage
from pipeline.run import ClusterOptions, run_extract
from pipeline.store import open_store
from pipeline.store.ops import verify_store

LIMIT = 6
LONG_WORDS = 30_000


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _only(path: Path, kind: str) -> None:
    """Keep the one stream of ``kind`` (packets copied, nothing re-encoded)."""
    source = path.with_name(path.stem + ".source" + path.suffix)
    path.rename(source)
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4") as dst:
        stream = next(s for s in src.streams if s.type == kind)
        copy = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                dst.mux(packet)
    source.unlink()


def _long_transcript(root: Path, sample_id: str) -> str:
    """Give ``sample_id``'s CSV row a transcript of LONG_WORDS words; returns it."""
    split, clip = sample_id.split("/")
    name = {"train": "train_sent_emo.csv", "val": "dev_sent_emo.csv",
            "test": "test_sent_emo.csv"}[split]
    with (root / name).open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    text = " ".join(["so"] * LONG_WORDS)
    column = rows[0].index("Utterance")
    for row in rows[1:]:
        if f"dia{row[5]}_utt{row[6]}" == clip:
            row[column] = text
    with (root / name).open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return text


SPOIL: dict[str, tuple[Callable[[Path], None], Reason | None]] = {
    "truncated file (first half)": (_cut, Reason.CORRUPT_MEDIA),
    "random bytes": (_random_bytes, Reason.CORRUPT_MEDIA),
    "zero-byte file": (_empty, Reason.CORRUPT_MEDIA),
    "no audio stream": (lambda p: _only(p, "video"), Reason.NO_AUDIO_STREAM),
}


def test_bad_media_in_one_extraction(meld_sample: Path, meld_clips: list[str], scheduler: str,
                                     tmp_path: Path, account: Callable,
                                     fault_log: Callable) -> None:
    root = tmp_path / "raw"
    shutil.copytree(meld_sample, root)
    clips = meld_clips[:LIMIT]
    media = {r["sample_id"]: r["media_path"] for r in scan("meld", root).samples.to_pylist()}
    spoiled = dict(zip(SPOIL, clips, strict=False))
    for fault, sid in spoiled.items():
        SPOIL[fault][0](Path(media[sid]))
    long_id, clean_id = clips[len(SPOIL)], clips[len(SPOIL) + 1]
    text = _long_transcript(root, long_id)

    out = tmp_path / "store"
    cfg = load_extract_config(weights={"audio": "random", "text": "random"},
                              modalities=["audio", "text"])
    run_extract("meld", root, str(out), cfg=cfg, limit=LIMIT, shard_size=3, device="cpu",
                cluster=ClusterOptions(scheduler=scheduler))
    assert verify_store(out).ok
    failures = {r["sample_id"]: r for r in pq.read_table(out / "failures.parquet").to_pylist()}
    store = open_store(out)
    kept = store.index.column("sample_id").to_pylist()
    assert sorted(kept) == sorted([long_id, clean_id])
    for fault, sid in spoiled.items():
        reason = SPOIL[fault][1]
        row = failures[sid]
        assert (row["stage"], row["reason"]) == (Stage.DECODE, reason), row
        assert row["message"].startswith(media[sid] + ": "), row["message"]
        lost, duplicates = account(out, {sid})
        assert (lost, duplicates) == (0, 0)
        fault_log(f"bad media: {fault}", lost=lost, duplicates=duplicates,
                  outcome=f"{reason} naming the file", run_id="bad media")

    index = store.index.to_pylist()
    long_row = next(r for r in index if r["sample_id"] == long_id)
    assert long_row["transcript"] == text  # recorded whole; the encoder reads its first tokens
    assert np.isfinite(store.read("text").astype(np.float32)).all()
    lost, duplicates = account(out, set(clips))
    assert (lost, duplicates) == (0, 0)
    fault_log(f"bad media: a transcript of {LONG_WORDS:,} words", lost=lost,
              duplicates=duplicates, run_id="bad media",
              outcome="kept (text encoded from its first tokens), transcript recorded whole")


class _Mean:
    """A stand-in encoder (dim 1): the decoding is under test, not the backbone."""

    dim = 1

    def encode_batch(self, xs: list[np.ndarray]) -> np.ndarray:
        return np.array([[float(np.mean(x))] for x in xs], np.float32)


def test_no_video_stream_where_video_is_asked_for(meld_sample: Path,
                                                  tmp_path: Path, fault_log: Callable) -> None:
    from pipeline.extract import extract_clips
    from pipeline.models import Models
    from pipeline.manifest import FacePolicy

    rows: list[dict[str, Any]] = scan("meld", meld_sample).samples.slice(0, 2).to_pylist()
    audio_only = tmp_path / "audio_only.mp4"
    shutil.copy(rows[0]["media_path"], audio_only)
    _only(audio_only, "audio")
    rows[0] = {**rows[0], "media_path": str(audio_only)}
    keys = ["frames_2d", "audio"]
    cfg = load_extract_config(modalities=keys, weights={k: "random" for k in keys})
    kept, feats, failures = extract_clips(rows, cfg, Models({k: _Mean() for k in keys}, None),
                                          FacePolicy(crop=False))
    assert [r["sample_id"] for r in kept] == [rows[1]["sample_id"]]
    assert all(len(v) == 1 for v in feats.values())
    (failure,) = failures
    assert (failure.sample_id, failure.stage, failure.reason) == (
        rows[0]["sample_id"], Stage.DECODE, Reason.NO_VIDEO_STREAM)
    assert failure.message.startswith(f"{audio_only}: no video"), failure.message
    seen = [r["sample_id"] for r in kept] + [f.sample_id for f in failures]
    lost = len({r["sample_id"] for r in rows} - set(seen))
    duplicates = len(seen) - len(set(seen))
    assert (lost, duplicates) == (0, 0)
    fault_log("bad media: no video stream (video asked for)", lost=lost, duplicates=duplicates,
              outcome=f"{Reason.NO_VIDEO_STREAM} naming the file; the other clip kept")

