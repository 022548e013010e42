"""Hostile and damaged inputs that once stopped a run or lost a clip for the wrong reason: a
frame whose header claims a huge size, a float PCM track with NaN samples, features beyond
float16's range, a clip without sound in a face-cropped dataset. Each now fails (or keeps)
its own clip with a reason, and never the run.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipeline import frames_folder, media
from pipeline.datasets import scan
from pipeline.extract import extract_clips
from pipeline.extract_config import load_extract_config
from pipeline.failures import ClipError, Reason, Stage
from pipeline.manifest import FacePolicy
from pipeline.models import Models
from pipeline.store import Location, StoreError, write_shard


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small real PNG whose header (IHDR) is rewritten to claim ``width`` x ``height``."""
    Image.new("RGB", (4, 4), (120, 60, 30)).save(path)
    data = bytearray(path.read_bytes())
    # Signature (8 bytes), then the IHDR chunk: length (4), type (4), width, height, ...
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (9000, 9000)])
def test_a_frame_claiming_a_huge_size_fails_its_clip(tmp_path: Path, width: int, height: int,
                                                     fault_log: Callable) -> None:
    """20000 x 20000 is past Pillow's own bomb limit (it raised DecompressionBombError, which
    nothing caught); 9000 x 9000 is below Pillow's limit but above the project's."""
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (10 * i, 0, 0)).save(folder / f"{i:05d}.png")
    _png_claiming(folder / "00001.png", width, height)
    with pytest.raises(ClipError) as err:
        list(media.iter_frames(folder, fps=25.0))
    assert (err.value.stage, err.value.reason) == (Stage.DECODE, Reason.CORRUPT_MEDIA)
    assert str(folder / "00001.png") in err.value.message
    assert f"{width}x{height}" in err.value.message or "decompression bomb" in (
        err.value.message.lower())
    fault_log(f"a frame claiming {width}x{height} pixels (frames folder)",
              outcome="corrupt_media naming the frame; the run goes on")


def test_a_video_stream_claiming_a_huge_size_fails_its_clip(tmp_path: Path) -> None:
    with pytest.raises(ClipError) as err:
        frames_folder.check_frame_size(tmp_path / "a.mp4", 20000, 20000)
    assert err.value.reason == Reason.CORRUPT_MEDIA and "20000x20000" in err.value.message
    frames_folder.check_frame_size(tmp_path / "a.mp4", 7680, 4320)  # 8K is fine


def _float_wav(path: Path, wave: np.ndarray, rate: int = 16000) -> Path:
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=rate, layout="mono")
        for start in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format="flt",
                                               layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_a_few_non_finite_pcm_samples_are_kept_as_silence(tmp_path: Path,
                                                          fault_log: Callable) -> None:
    rate = 16000
    wave = (0.2 * np.sin(np.arange(3 * rate) / rate * 2 * np.pi * 220)).astype(np.float32)
    broken = [1000, 1001, 5000, 9000, 12000, 20000, 20001, 20002, 30000, 40000, 47000]
    wave[broken] = np.nan
    wave[broken[:3]] = np.inf
    path = _float_wav(tmp_path / "nan.wav", wave)
    report = media.DecodeReport()
    samples = media.read_audio(path, sample_rate=rate, report=report)
    assert np.isfinite(samples).all() and len(samples) == len(wave)
    assert (samples[broken] == 0).all()
    clean = np.setdiff1d(np.arange(len(wave)), broken)
    np.testing.assert_allclose(samples[clean], wave[clean], atol=1e-6)
    assert report.errors >= 1 and "NaN or Inf" in report.first_error
    assert 0.99 < report.coverage < 1.0
    fault_log(f"{len(broken)} non-finite PCM samples in a float WAV",
              outcome=f"kept as silence; decode_errors {report.errors}, "
                      f"coverage {report.coverage:.4f}")


class _Constant:
    """A stand-in encoder (dim 2) whose vectors are the given values, one per input in turn."""

    dim = 2

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def encode_batch(self, xs: list[Any]) -> np.ndarray:
        return np.array([[self.values.pop(0)] * 2 for _ in xs], np.float32)


def _meld_rows(meld_sample: Path, n: int) -> list[dict[str, Any]]:
    return scan("meld", meld_sample).samples.slice(0, n).to_pylist()


def test_features_beyond_float16_fail_their_clip(meld_sample: Path, fault_log: Callable) -> None:
    rows = _meld_rows(meld_sample, 3)
    cfg = load_extract_config(modalities=["text"], weights={"text": "random"}, batch_clips=8,
                              prefetch=False)
    encoder = _Constant([1.0, 70000.0, -2.0])
    kept, feats, failures = extract_clips(rows, cfg, Models({"text": encoder}, None),
                                          FacePolicy(crop=False))
    assert [r["sample_id"] for r in kept] == [rows[0]["sample_id"], rows[2]["sample_id"]]
    (failure,) = failures
    assert (failure.sample_id, failure.reason) == (rows[1]["sample_id"], Reason.BACKBONE_ERROR)
    assert "float16" in failure.message and "70000" in failure.message
    assert np.isfinite(feats["text"].astype(np.float16)).all()
    # float32 stores hold it
    wide = load_extract_config(modalities=["text"], weights={"text": "random"}, dtype="float32",
                               batch_clips=8, prefetch=False)
    kept, _, failures = extract_clips(rows, wide, Models({"text": _Constant([1.0, 7e4, 2.0])},
                                                         None), FacePolicy(crop=False))
    assert len(kept) == 3 and not failures
    fault_log("features beyond float16's range (70000)",
              outcome="backbone_error for that clip; the others stored")


def test_the_writer_checks_finiteness_after_the_cast(tmp_path: Path) -> None:
    index = pa.table({"sample_id": ["a"]})
    failures = pa.table({"sample_id": pa.array([], pa.string())})
    features = {"text": np.full((1, 1, 2), 1e5, np.float32)}
    with pytest.raises(StoreError, match="NaN or Inf as float16"):
        write_shard(Location.parse(str(tmp_path / "s")), 0, store_id="x" * 64,
                    sample_ids=["a"], features=features, index=index, failures=failures)


def _video_only(source: str, path: Path) -> Path:
    with av.open(source) as src, av.open(str(path), "w", format="mp4") as dst:
        stream = src.streams.video[0]
        copy = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                dst.mux(packet)
    return path


class _NoDetection:
    def detect(self, frames: list[np.ndarray]) -> list[Any]:
        raise AssertionError("faces were detected for a clip that has no sound")


def test_a_clip_without_sound_is_no_audio_stream_not_no_face(meld_sample: Path, tmp_path: Path,
                                                              fault_log: Callable) -> None:
    (row,) = _meld_rows(meld_sample, 1)
    silent = _video_only(row["media_path"], tmp_path / "silent.mp4")
    row = {**row, "media_path": str(silent)}
    keys = ["frames_2d", "audio"]
    cfg = load_extract_config(modalities=keys, weights={k: "random" for k in keys})
    models = Models({k: _Constant([]) for k in keys}, _NoDetection())  # type: ignore[arg-type]
    kept, _, failures = extract_clips([row], cfg, models, FacePolicy(crop=True))
    assert not kept
    (failure,) = failures
    assert (failure.stage, failure.reason) == (Stage.DECODE, Reason.NO_AUDIO_STREAM)
    assert failure.message == f"{silent}: no audio stream"
    fault_log("no audio stream in a face-cropped dataset",
              outcome="no_audio_stream before face detection (was no_face)")


def test_predict_on_a_folder_with_a_huge_frame_is_one_message(tmp_path: Path) -> None:
    """``media.probe`` of a folder whose first frame claims a huge size: a ClipError, which
    prediction turns into its one-line message."""
    folder = tmp_path / "clip"
    folder.mkdir()
    _png_claiming(folder / "00000.png", 20000, 20000)
    shutil.copy(folder / "00000.png", folder / "00001.png")
    with pytest.raises(ClipError, match="corrupt_media|cannot decode|over the limit"):
        media.probe(folder)
