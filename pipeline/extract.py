"""Extraction of clips: decode, crop faces, augment, encode. Pure functions of clips and models.

:func:`prepare_clip` turns one sample-table row into the backbones' inputs (or raises a typed
:class:`~pipeline.failures.ClipError`); :func:`extract_clips` runs a list of rows through the
loaded :class:`Models` in batches and returns features, index rows and failures. Dask and the
shard writer (:mod:`pipeline.run`) only map these functions over shards.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import faces as faces_mod
from pipeline import media
from pipeline.augment import augment_clip
from pipeline.config import ConfigError
from pipeline.extract_config import MODALITIES, ExtractConfig
from pipeline.failures import ClipError, Failure, Reason, Stage
from pipeline.manifest import FacePolicy

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ClipInputs:
    """One clip, decoded and cropped: what the backbones consume."""

    sample_id: str
    frames_2d: np.ndarray | None     # uint8 [T2, S, S, 3] at fps_2d
    frames_3d: np.ndarray | None     # uint8 [T3, S, S, 3] at fps_3d
    audio: np.ndarray | None         # float32 [n] at sample_rate
    text: str | None
    duration_s: float
    face_ratio: float | None         # None: dataset not cropped


@dataclass
class Models:
    """What a worker loads once: the encoders of the extracted modalities and the detector."""

    encoders: dict[str, Any]
    detector: faces_mod.FaceDetector | None


class Timer:
    """Seconds spent per stage, summed (decode, faces, backbone:<key>, write)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


def _interval(row: dict[str, Any]) -> tuple[float | None, float | None]:
    return row.get("start_s"), row.get("end_s")


DETECT_BATCH = 32
"""Frames per MTCNN call while tracking: detection streams, so memory does not grow."""


def _track_face(row: dict[str, Any], cfg: ExtractConfig, detector: faces_mod.FaceDetector,
                policy: FacePolicy, frame_size: tuple[int, int],
                timer: Timer) -> tuple[faces_mod.FaceTrack | None, float]:
    """Detect faces at ``detect_fps`` (streamed, in batches) and follow one through the clip.

    Returns:
        The track (None: no face and the ``full_frame`` policy) and the clip's face ratio.
    """
    start, end = _interval(row)
    times: list[float] = []
    detections: list[np.ndarray | None] = []
    frames = media.iter_frames(row["media_path"], fps=cfg.detect_fps, start_s=start, end_s=end)
    while True:
        with timer("decode"):
            batch = list(itertools.islice(frames, DETECT_BATCH))
        if not batch:
            break
        with timer("faces"):
            detections.extend(detector.detect([f for _, f in batch]))
        times.extend(t for t, _ in batch)
    with timer("faces"):
        track = faces_mod.track(times, detections, cfg.faces, frame_size)
    if track is not None:
        return track, track.face_ratio
    if policy.no_face == "fail":
        raise ClipError(Stage.FACES, Reason.NO_FACE, f"no face with p >= {cfg.faces.min_prob} "
                        f"in {len(times)} frames sampled at {cfg.detect_fps:g} fps")
    return None, 0.0


def _crops(row: dict[str, Any], fps: float, box_at: Any, size: int, timer: Timer) -> np.ndarray:
    """Frames at ``fps`` cropped as they are decoded: [T, size, size, 3] uint8."""
    start, end = _interval(row)
    crops: list[np.ndarray] = []
    frames = media.iter_frames(row["media_path"], fps=fps, start_s=start, end_s=end)
    while True:
        with timer("decode"):
            pair = next(frames, None)
        if pair is None:
            return np.stack(crops)
        with timer("faces"):
            crops.append(faces_mod.crop(pair[1], box_at(pair[0]), size))


def prepare_clip(row: dict[str, Any], cfg: ExtractConfig, detector: faces_mod.FaceDetector | None,
                 policy: FacePolicy, timer: Timer | None = None) -> ClipInputs:
    """Decode one clip and crop its face track: the backbones' inputs for view 0.

    Streaming passes over the video, each holding one decoded frame at a time: face detection
    at ``detect_fps``, then the 16-fps frames cropped with the track's box at their own
    timestamps (interpolated between detections); the 1-fps frames are every 16th of those (a
    pass of their own when the rates are not multiples). A long clip costs time, not memory
    beyond its crops.

    Args:
        row: a sample-table row (``sample_id``, ``media_path``, ``start_s``, ``end_s``,
            ``transcript``, ...).
        cfg: the extraction config.
        detector: the face detector (None when the dataset is not cropped).
        policy: the dataset's face policy (crop or not; what a clip without faces becomes).

    Raises:
        ClipError: decoding failed, no face (policy ``fail``), empty transcript (policy
            ``fail``; with ``keep`` the empty transcript is what the text backbone encodes).
    """
    timer = timer or Timer()
    text = row.get("transcript")
    if "text" in cfg.modalities and not (text or "").strip():
        if cfg.empty_text == "fail":
            raise ClipError(Stage.BACKBONE, Reason.EMPTY_TRANSCRIPT, "the clip has no transcript")
        if cfg.empty_text == "keep":
            text = ""  # the text backbone sees the empty transcript ([CLS] [SEP] only)
    start, end = _interval(row)
    with timer("decode"):
        info = media.probe(row["media_path"])
    if cfg.needs_video and not info.has_video:
        raise ClipError(Stage.DECODE, Reason.NO_VIDEO_STREAM, f"{row['media_path']}: no video")
    duration = (end - start) if start is not None and end is not None else info.duration_s
    frames_2d = frames_3d = audio = None
    face_ratio: float | None = None
    if cfg.needs_video:
        frame_size = (info.width, info.height)
        track = None
        if policy.crop:
            assert detector is not None
            track, face_ratio = _track_face(row, cfg, detector, policy, frame_size, timer)
        centre = faces_mod.centre_box(frame_size)
        box_at = track.box_at if track is not None else (lambda _t: centre)
        if "frames_3d" in cfg.modalities:
            frames_3d = _crops(row, cfg.fps_3d, box_at, cfg.faces.size, timer)
        step = cfg.fps_3d / cfg.fps_2d
        if "frames_2d" in cfg.modalities and frames_3d is not None and step.is_integer():
            # The 1-fps instants are every 16th 16-fps instant: the same frames, one pass less.
            frames_2d = np.ascontiguousarray(frames_3d[::int(step)])
        elif "frames_2d" in cfg.modalities:
            frames_2d = _crops(row, cfg.fps_2d, box_at, cfg.faces.size, timer)
    if "audio" in cfg.modalities:
        with timer("decode"):
            audio = media.read_audio(row["media_path"], sample_rate=cfg.sample_rate,
                                     start_s=start, end_s=end)
    return ClipInputs(str(row["sample_id"]), frames_2d, frames_3d, audio,
                      text if "text" in cfg.modalities else None, float(duration), face_ratio)


def _encode(models: Models, cfg: ExtractConfig, clips: Sequence[ClipInputs],
            timer: Timer) -> dict[str, np.ndarray]:
    """Features of every modality for clips (all views already expanded): key -> [n, dim]."""
    out = {}
    for key in cfg.modalities:
        inputs = [getattr(c, key) for c in clips]
        if key == "text" and cfg.empty_text == "skip_text":
            inputs = [t if (t or "").strip() else None for t in inputs]
        with timer(f"backbone:{key}"):
            out[key] = _encode_key(models.encoders[key], key, inputs)
    return out


def _encode_key(encoder: Any, key: str, inputs: list[Any]) -> np.ndarray:
    present = [i for i, x in enumerate(inputs) if x is not None]
    result = np.zeros((len(inputs), encoder.dim), dtype=np.float32)
    if present:
        result[present] = encoder.encode_batch([inputs[i] for i in present])
    return result


def extract_clips(rows: Sequence[dict[str, Any]], cfg: ExtractConfig, models: Models,
                  policy: FacePolicy, timer: Timer | None = None,
                  ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], list[Failure]]:
    """Extract a list of sample-table rows.

    Returns:
        ``(kept_rows, features, failures)``: the rows that succeeded, with ``duration_s``,
        ``face_ratio`` and ``empty_transcript`` (the row has no transcript: with ``empty_text:
        keep`` its text features encode the empty string) added, in input order; per modality
        key an array [kept, views, dim] (float32); one failure per row that did not.
    """
    timer = timer or Timer()
    kept: list[dict[str, Any]] = []
    feats: dict[str, list[np.ndarray]] = {k: [] for k in cfg.modalities}
    failures: list[Failure] = []
    for start in range(0, len(rows), cfg.batch_clips):
        batch: list[tuple[dict[str, Any], ClipInputs]] = []
        for row in rows[start:start + cfg.batch_clips]:
            try:
                batch.append((row, prepare_clip(row, cfg, models.detector, policy, timer)))
            except ClipError as err:
                failures.append(err.to_failure(str(row["sample_id"]), str(row["split"])))
        if not batch:
            continue
        encoded, errors = _encode_batch(models, cfg, [c for _, c in batch], timer)
        for (row, clip), error in zip(batch, errors, strict=True):
            if error is not None:
                failures.append(error.to_failure(str(row["sample_id"]), str(row["split"])))
                continue
            kept.append({**row, "duration_s": clip.duration_s, "face_ratio": clip.face_ratio,
                         "empty_transcript": not (row.get("transcript") or "").strip()})
        for key in cfg.modalities:
            ok = [i for i, e in enumerate(errors) if e is None]
            feats[key].extend(encoded[key][i] for i in ok)
    dims = {k: models.encoders[k].dim for k in cfg.modalities}
    return kept, {k: (np.stack(v) if v else np.zeros((0, cfg.views, dims[k]), np.float32))
                  for k, v in feats.items()}, failures


def _encode_batch(models: Models, cfg: ExtractConfig, clips: list[ClipInputs], timer: Timer,
                  ) -> tuple[dict[str, np.ndarray], list[ClipError | None]]:
    """Encode clips x views; returns key -> [n, views, dim] and a per-clip error (or None).

    The batch is encoded in one call per backbone; if that fails, the clips are encoded one at
    a time so that a single bad clip becomes a ``backbone_error`` instead of sinking the batch.
    """
    expanded = [augment_clip(c, v, seed=cfg.seed, sample_rate=cfg.sample_rate, spec=cfg.augment)
                for c in clips for v in range(cfg.views)]
    try:
        flat = _encode(models, cfg, expanded, timer)
        return ({k: v.reshape(len(clips), cfg.views, -1) for k, v in flat.items()},
                [None] * len(clips))
    except ClipError:
        pass
    except (RuntimeError, ValueError) as err:
        log.warning("batch of %d clips failed in a backbone (%s); retrying one by one",
                    len(clips), err)
    out: dict[str, list[np.ndarray]] = {k: [] for k in cfg.modalities}
    errors: list[ClipError | None] = []
    for i in range(len(clips)):
        try:
            one = _encode(models, cfg, expanded[i * cfg.views:(i + 1) * cfg.views], timer)
        except ClipError as err:
            errors.append(err)
            one = {k: np.zeros((cfg.views, models.encoders[k].dim), np.float32)
                   for k in cfg.modalities}
        except (RuntimeError, ValueError) as err:
            errors.append(ClipError(Stage.BACKBONE, Reason.BACKBONE_ERROR, str(err)[:500]))
            one = {k: np.zeros((cfg.views, models.encoders[k].dim), np.float32)
                   for k in cfg.modalities}
        else:
            errors.append(None)
        for k in cfg.modalities:
            out[k].append(one[k])
    return {k: np.stack(v) for k, v in out.items()}, errors


DEFAULT_CONFIG = "extract.yaml"


def load_extract_config(path: str | None = None, **overrides: Any) -> ExtractConfig:
    """The extraction config: ``manifests/extract.yaml`` (or ``path``), then ``overrides``.

    Raises:
        ConfigError: an unknown key, a wrong type or an invalid value, naming the file.
    """
    from pipeline.config import from_dict, load_yaml
    from pipeline.manifest import MANIFEST_DIR

    source = path or str(MANIFEST_DIR / DEFAULT_CONFIG)
    data = load_yaml(source)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return from_dict(ExtractConfig, data, source)
