"""Extraction's overlap of CPU and backbone work: the next batch is decoded, detected and
cropped on a second thread while the backbones encode (``prefetch``), and face detection
shares MTCNN calls across the clips of a batch. Neither may change a feature, a row or a
failure; the prefetch holds at most one batch ahead and passes a worker's own errors on.

The detector is a stand-in that fingerprints each frame (the real MTCNN runs in the
end-to-end tests, with prefetching on by default), so a frame given to the wrong clip shows.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pipeline.detect
import pipeline.extract as extract_mod
from pipeline.datasets import scan
from pipeline.extract import Timer, detect_clips, extract_clips, prepare_batch
from pipeline.extract_config import ClipInputs, load_extract_config
from pipeline.models import Models
from pipeline.failures import Reason
from pipeline.manifest import FacePolicy

KEYS = ("frames_2d", "frames_3d", "audio", "text")


class Summary:
    """A stand-in encoder: [mean, std, size / 1000] of each input (text: its length), dim 3
    (thousands: a stored vector must fit float16)."""

    dim = 3

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on

    def encode_batch(self, xs: list[Any]) -> np.ndarray:
        out = []
        for x in xs:
            if isinstance(x, str):
                if self.fail_on is not None and self.fail_on in x:
                    raise RuntimeError("backbone exploded")
                out.append([len(x), 0, 0])
            else:
                a = np.asarray(x, np.float32)
                out.append([a.mean(), a.std(), a.size / 1000])
        return np.asarray(out, np.float32)


class FrameDetector:
    """A stand-in detector whose one "box" per frame is a fingerprint of that frame (so a
    frame routed to the wrong clip or time shows), counting the frames of each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def detect(self, frames: list[np.ndarray]) -> list[np.ndarray | None]:
        self.calls.append(len(frames))
        return [np.array([[f.mean(), f.std(), f.shape[0], f.shape[1], 1.0]], np.float32)
                for f in frames]


@pytest.fixture(scope="module")
def rows(meld_sample: Path) -> list[dict[str, Any]]:
    table = scan("meld", meld_sample).samples.to_pylist()
    picked = [dict(r) for r in table[:5]]
    picked[1]["media_path"] = str(meld_sample / "missing.mp4")   # a decode failure
    picked[3]["transcript"] = "EXPLODE " + (picked[4]["transcript"] or "")  # a backbone one
    return picked


def _cfg(**overrides: Any) -> Any:
    return load_extract_config(weights={k: "random" for k in KEYS}, batch_clips=2, **overrides)


def _models(detector: Any) -> Models:
    return Models({k: Summary("EXPLODE" if k == "text" else None) for k in KEYS}, detector)


def test_prefetch_and_shared_detection_change_nothing(rows: list[dict[str, Any]]) -> None:
    results = {}
    for prefetch in (False, True):
        timer = Timer()
        results[prefetch] = extract_clips(rows, _cfg(prefetch=prefetch),
                                          _models(FrameDetector()), FacePolicy(), timer)
        assert ("prefetch_wait" in timer.seconds) is prefetch
    (kept_a, feats_a, fail_a), (kept_b, feats_b, fail_b) = results[False], results[True]
    assert [r["sample_id"] for r in kept_a] == [r["sample_id"] for r in kept_b]
    assert len(kept_a) >= 2 and kept_a == kept_b
    assert [(f.sample_id, f.reason) for f in fail_a] == [(f.sample_id, f.reason) for f in fail_b]
    reasons = {f.sample_id: f.reason for f in fail_b}
    assert reasons[rows[1]["sample_id"]] == Reason.MISSING_FILE
    assert reasons[rows[3]["sample_id"]] == Reason.BACKBONE_ERROR
    for key in KEYS:
        np.testing.assert_array_equal(feats_a[key], feats_b[key])


def test_faces_are_detected_across_the_clips_of_a_batch(rows: list[dict[str, Any]]) -> None:
    cfg = _cfg()
    together = FrameDetector()
    shared = detect_clips(rows, cfg, together, Timer())  # type: ignore[arg-type]
    alone = [detect_clips([row], cfg, FrameDetector(), Timer())[0]  # type: ignore[arg-type]
             for row in rows]
    frames = sum(len(d.times) for d in alone if d is not None)
    assert frames >= 10 and sum(together.calls) == frames
    assert len(together.calls) == 1  # clips of 3-4 s at 1 fps: one call, not one per clip
    for got, want in zip(shared, alone, strict=True):
        assert got is not None and want is not None
        assert (got.error is None) == (want.error is None)
        if got.error is not None:
            assert got.error.reason == Reason.MISSING_FILE and not got.times
            continue
        assert got.times == want.times and got.frame_size == want.frame_size
        for a, b in zip(got.detections, want.detections, strict=True):
            np.testing.assert_array_equal(a, b)


def test_detection_calls_stay_bounded(rows: list[dict[str, Any]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.detect, "DETECT_BATCH", 4)
    counting = FrameDetector()
    detect_clips(rows, _cfg(), counting, Timer())  # type: ignore[arg-type]
    assert max(counting.calls) <= 4 and len(counting.calls) >= 3


def test_prefetch_overlaps_and_holds_one_batch_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch k+1 is prepared while batch k encodes, and never batch k+2."""
    events: list[str] = []
    lock = threading.Lock()

    def fake_prepare(batch: Any, *args: Any) -> Any:
        with lock:
            events.append(f"prepare {batch[0]['k']}")
        time.sleep(0.05)
        return [(row, ClipInputs(row["sample_id"], None, None, None, "x", 1.0, None))
                for row in batch], []

    def fake_encode(models: Any, cfg: Any, clips: list[Any], timer: Any) -> Any:
        time.sleep(0.1)
        return {"text": np.zeros((len(clips), 1, 3), np.float32)}, [None] * len(clips)

    monkeypatch.setattr(extract_mod, "prepare_batch", fake_prepare)
    monkeypatch.setattr(extract_mod, "_encode_batch", fake_encode)
    original_view = extract_mod._prepared_batches

    def watched(*args: Any) -> Any:
        for k, item in enumerate(original_view(*args)):
            with lock:
                events.append(f"encode {k}")
            yield item

    monkeypatch.setattr(extract_mod, "_prepared_batches", watched)
    rows = [{"k": k, "sample_id": str(k), "split": "train", "transcript": "x"} for k in range(5)]
    cfg = load_extract_config(modalities=["text"], weights={"text": "random"}, batch_clips=1)
    kept, _, _ = extract_clips(rows, cfg, Models({"text": Summary()}, None),
                               FacePolicy(crop=False))
    assert [r["k"] for r in kept] == list(range(5))
    # Before batch k is encoded, batch k+1 may be prepared, batch k+2 may not.
    for k in range(5):
        at = events.index(f"encode {k}")
        assert f"prepare {k}" in events[:at]
        assert f"prepare {k + 2}" not in events[:at]
    overlapped = [k for k in range(4) if events.index(f"prepare {k + 1}")
                  < events.index(f"encode {k + 1}") and events.index(f"prepare {k + 1}")
                  > events.index(f"encode {k}")]
    assert len(overlapped) >= 3  # prepared during the previous batch's encoding


def test_an_error_in_the_prefetch_thread_reaches_the_caller(
        rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = prepare_batch

    def failing(batch: Any, *args: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 2:
            raise MemoryError("decoder ran out of memory")
        return real(batch, *args)

    monkeypatch.setattr(extract_mod, "prepare_batch", failing)
    with pytest.raises(MemoryError, match="decoder ran out of memory"):
        extract_clips(rows, _cfg(), _models(FrameDetector()), FacePolicy())
    assert len(calls) == 2  # nothing prepared past the failure
