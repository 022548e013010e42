"""Extraction of clips: decode, crop faces, augment, encode. Pure functions of clips and models.

:func:`prepare_clip` turns one sample-table row into the backbones' inputs (or raises a typed
:class:`~pipeline.failures.ClipError`); :func:`extract_clips` runs a list of rows through the
loaded :class:`Models` in batches and returns features, index rows and failures. Dask and the
shard writer (:mod:`pipeline.run`) only map these functions over shards. Face detection across
a batch's clips is :mod:`pipeline.detect`, the streaming of a long clip's crops into the frame
backbones :mod:`pipeline.segments`.
"""


from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline import faces as faces_mod
from pipeline import media
from pipeline.augment import augment_clip
from pipeline.config import ConfigError
from pipeline.detect import Detected, clip_interval, detect_clips, track_face
from pipeline.extract_config import MODALITIES, ClipInputs, ExtractConfig
from pipeline.failures import ClipError, Failure, Reason, Stage
from pipeline.manifest import FacePolicy
from pipeline.models import Models
from pipeline.segments import Segments, crop_pass
from pipeline.timer import Timer

log = logging.getLogger(__name__)


def prepare_clip(row: dict[str, Any], cfg: ExtractConfig, detector: faces_mod.FaceDetector | None,
                 policy: FacePolicy, timer: Timer | None = None,
                 encoders: dict[str, Any] | None = None) -> ClipInputs:
    """Decode one clip and crop its face track: the backbones' inputs for view 0.

    Streaming passes over the video, each holding one decoded frame at a time: face detection
    at ``detect_fps``, then the 16-fps frames cropped with the track's box at their own
    timestamps (interpolated between detections); the 1-fps frames are every 16th of those (a
    pass of their own when the rates are not multiples). With ``encoders``, a clip longer
    than :data:`~pipeline.segments.SEGMENT_FRAMES` frames is encoded segment by segment during the pass (its
    ``encoded`` vectors, every view, replace the frames), so a long clip costs time, not
    memory; without, every crop is held.

    Decoding skips undecodable packets within ``cfg.features.decode``'s limits: ``decode_errors``
    counts them (the video pass that met the most, plus the audio) and ``coverage`` is the
    least covered stream's decoded fraction.

    Args:
        row: a sample-table row (``sample_id``, ``media_path``, ``start_s``, ``end_s``,
            ``transcript``, ...).
        cfg: the extraction config.
        detector: the face detector (None when the dataset is not cropped).
        policy: the dataset's face policy (crop or not; what a clip without faces becomes).
        encoders: the frame keys' encoders, to stream long clips into.

    Raises:
        ClipError: decoding failed (or the damage is beyond ``cfg.features.decode``), no usable face
            (policy ``fail``), empty transcript (policy ``fail``; with ``keep`` the empty
            transcript is what the text backbone encodes), a backbone failing on a streamed
            clip.
    """
    timer = timer or Timer()
    header = _header(row, cfg, timer)
    detected = None
    if cfg.choices.needs_video and policy.crop:
        assert detector is not None
        detected = detect_clips([row], cfg, detector, timer)[0]
    return _prepare(row, cfg, header, detected, policy, timer, encoders)


@dataclass(frozen=True)
class _Header:
    """What a clip's annotation and container header give before any decoding."""

    text: str | None   # what the text backbone gets ("" for an empty transcript kept)
    info: media.MediaInfo


def _header(row: dict[str, Any], cfg: ExtractConfig, timer: Timer) -> _Header:
    """The clip's transcript (per ``empty_text``) and container header.

    Raises:
        ClipError: an empty transcript under ``empty_text: fail``; no video stream where
            the frame keys need one; a file that is missing or not media.
    """
    text = row.get("transcript")
    if "text" in cfg.choices.modalities and not (text or "").strip():
        if cfg.features.empty_text == "fail":
            raise ClipError(Stage.BACKBONE, Reason.EMPTY_TRANSCRIPT, "the clip has no transcript")
        if cfg.features.empty_text == "keep":
            text = ""  # the text backbone sees the empty transcript ([CLS] [SEP] only)
    with timer("decode"):
        info = media.probe(row["media_path"])
    if cfg.choices.needs_video and not info.has_video:
        raise ClipError(Stage.DECODE, Reason.NO_VIDEO_STREAM, f"{row['media_path']}: no video")
    # Before face detection, so that a clip without sound is reported as such, not as no_face.
    if "audio" in cfg.choices.modalities and not info.has_audio:
        raise media.no_audio(row["media_path"])
    return _Header(text, info)


def _prepare(row: dict[str, Any], cfg: ExtractConfig, header: _Header,
             detected: Detected | None, policy: FacePolicy, timer: Timer,
             encoders: dict[str, Any] | None) -> ClipInputs:
    """:func:`prepare_clip` past its header and face detection: tracking, the crop passes
    and the audio (``detected`` is None when the dataset is not cropped)."""
    text, info = header.text, header.info
    start, end = clip_interval(row)
    duration = (end - start) if start is not None and end is not None else info.duration_s
    video_reports: list[media.DecodeReport] = []
    frames: dict[str, np.ndarray] = {}
    encoded: dict[str, np.ndarray] = {}
    face_ratio: float | None = None
    if cfg.choices.needs_video:
        track = None
        if policy.crop:
            assert detected is not None
            video_reports.append(detected.report)
            track, face_ratio = track_face(cfg, detected, policy, timer)
        for fps, keys, step in _passes(cfg):
            sink = Segments(keys, step, encoders, str(row["sample_id"]), cfg, timer)
            video_reports.append(media.DecodeReport())
            crop_pass(row, fps, track, cfg.features.faces.size, sink, cfg, timer,
                       video_reports[-1])
            got, streamed = sink.finish()
            frames.update(got)
            encoded.update(streamed)
    audio, audio_report = None, None
    if "audio" in cfg.choices.modalities:
        audio_report = media.DecodeReport()
        with timer("decode"):
            audio = media.read_audio(row["media_path"], sample_rate=cfg.features.sample_rate,
                                     start_s=start, end_s=end, rule=cfg.features.decode,
                                     report=audio_report)
    reports = [*video_reports, *([audio_report] if audio_report else [])]
    errors = max((r.errors for r in video_reports), default=0)
    return ClipInputs(str(row["sample_id"]), frames.get("frames_2d"), frames.get("frames_3d"),
                      audio, text if "text" in cfg.choices.modalities else None, float(duration),
                      face_ratio, decode_errors=errors + (audio_report.errors if audio_report
                                                          else 0),
                      coverage=min((r.coverage for r in reports), default=None),
                      encoded=encoded)


Prepared = tuple[list[tuple[dict[str, Any], ClipInputs]], list[Failure]]


def prepare_batch(rows: Sequence[dict[str, Any]], cfg: ExtractConfig, models: Models,
                  policy: FacePolicy, timer: Timer) -> Prepared:
    """Decode and crop a batch of clips, their faces detected in shared MTCNN calls: the
    clips ready for the backbones, and a failure per clip that is not (in row order, each
    failing where it would alone: header, detection, tracking, crops, audio)."""
    headers: list[_Header | ClipError] = []
    for row in rows:
        try:
            headers.append(_header(row, cfg, timer))
        except ClipError as err:
            headers.append(err)
    detected: list[Detected | None] = [None] * len(rows)
    if cfg.choices.needs_video and policy.crop:
        assert models.detector is not None
        detected = detect_clips([row if isinstance(h, _Header) else None
                                 for row, h in zip(rows, headers, strict=True)],
                                cfg, models.detector, timer)
    ready: list[tuple[dict[str, Any], ClipInputs]] = []
    failures: list[Failure] = []
    for row, header, found in zip(rows, headers, detected, strict=True):
        try:
            if isinstance(header, ClipError):
                raise header
            ready.append((row, _prepare(row, cfg, header, found, policy, timer,
                                        models.encoders)))
        except ClipError as err:
            failures.append(err.to_failure(str(row["sample_id"]), str(row["split"])))
    return ready, failures


def _prepared_batches(batches: Sequence[Sequence[dict[str, Any]]], cfg: ExtractConfig,
                      models: Models, policy: FacePolicy, timer: Timer) -> Iterator[Prepared]:
    """Each batch prepared, in order; with ``cfg.run.prefetch`` the next batch is prepared on a
    second thread while the caller encodes the current one.

    At most one batch is prepared ahead (its short clips' crops, a few tens of MB at the
    default ``batch_clips``; :data:`pipeline.extract_config.BATCH_CLIPS` has the figures), so
    memory stays bounded. Decoding (PyAV) and MTCNN release the
    GIL, so on a GPU the backbones no longer wait for the CPU work of the next batch, and on
    a CPU that work uses a core the backbones leave idle. An error other than a clip's own
    (a bug, an interrupt) surfaces in the caller when it asks for that batch.
    """
    if not cfg.run.prefetch or len(batches) < 2:
        for batch in batches:
            yield prepare_batch(batch, cfg, models, policy, timer)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        ahead: Future[Prepared] = pool.submit(prepare_batch, batches[0], cfg, models, policy,
                                              timer)
        try:
            for k in range(len(batches)):
                with timer("prefetch_wait"):
                    current = ahead.result()
                if k + 1 < len(batches):
                    ahead = pool.submit(prepare_batch, batches[k + 1], cfg, models, policy,
                                        timer)
                yield current
        finally:
            ahead.cancel()  # the caller stopped early: the batch ahead is not needed


def _passes(cfg: ExtractConfig) -> list[tuple[float, list[str], int]]:
    """The crop passes over the video: ``(fps, keys, step of frames_2d)``. The 1-fps instants
    are every 16th 16-fps instant: the same frames, one pass less, when the rates divide."""
    step = cfg.features.fps_3d / cfg.features.fps_2d
    want_2d, want_3d = "frames_2d" in cfg.choices.modalities, "frames_3d" in cfg.choices.modalities
    if want_3d and want_2d and step.is_integer():
        return [(cfg.features.fps_3d, ["frames_3d", "frames_2d"], int(step))]
    return ([(cfg.features.fps_3d, ["frames_3d"], 1)] if want_3d else []) + (
        [(cfg.features.fps_2d, ["frames_2d"], 1)] if want_2d else [])


def _encode(models: Models, cfg: ExtractConfig, clips: Sequence[ClipInputs],
            timer: Timer) -> dict[str, np.ndarray]:
    """Features of every modality for clips (all views already expanded): key -> [n, dim].

    A clip whose key was streamed (``encoded``) carries its vector already.
    """
    out = {}
    for key in cfg.choices.modalities:
        inputs = [None if key in c.encoded else getattr(c, key) for c in clips]
        if key == "text" and cfg.features.empty_text == "skip_text":
            inputs = [t if (t or "").strip() else None for t in inputs]
        with timer(f"backbone:{key}"):
            out[key] = _encode_key(models.encoders[key], key, inputs)
        for i, clip in enumerate(clips):
            if key in clip.encoded:
                out[key][i] = clip.encoded[key]
    return out


def _encode_key(encoder: Any, key: str, inputs: list[Any]) -> np.ndarray:
    present = [i for i, x in enumerate(inputs) if x is not None]
    result = np.zeros((len(inputs), encoder.dim), dtype=np.float32)
    if present:
        result[present] = encoder.encode_batch([inputs[i] for i in present])
    return result


def extract_clips(rows: Sequence[dict[str, Any]], cfg: ExtractConfig, models: Models,
                  policy: FacePolicy, timer: Timer | None = None,
                  on_batch: Callable[[int, list[Failure]], None] | None = None,
                  ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], list[Failure]]:
    """Extract a list of sample-table rows, ``cfg.run.batch_clips`` clips per backbone batch (by
    default 8 on a CPU, 64 on a GPU), the next batch decoded and cropped meanwhile when
    ``cfg.run.prefetch``.

    Returns:
        ``(kept_rows, features, failures)``: the rows that succeeded, with ``duration_s``,
        ``face_ratio``, ``empty_transcript`` (the row has no transcript: with ``empty_text:
        keep`` its text features encode the empty string), ``decode_errors`` (undecodable
        packets skipped) and ``coverage`` (the least covered stream's decoded fraction; None
        when no media was decoded) added, in input order; per modality key an array
        [kept, views, dim] (float32); one failure per row that did not.
    """
    timer = timer or Timer()
    kept: list[dict[str, Any]] = []
    feats: dict[str, list[np.ndarray]] = {k: [] for k in cfg.choices.modalities}
    failures: list[Failure] = []
    size = cfg.run.clips_per_batch(models.device)
    batches = [rows[i:i + size] for i in range(0, len(rows), size)]
    for batch, prepare_failures in _prepared_batches(batches, cfg, models, policy, timer):
        first = len(failures)
        failures.extend(prepare_failures)
        if batch:
            _encode_into(kept, feats, failures, batch, models, cfg, timer)
        if on_batch:
            on_batch(len(batch) + len(prepare_failures), failures[first:])
    dims = {k: models.encoders[k].dim for k in cfg.choices.modalities}
    return kept, {k: (np.stack(v) if v else np.zeros((0, cfg.choices.views, dims[k]), np.float32))
                  for k, v in feats.items()}, failures


def _encode_into(kept: list[dict[str, Any]], feats: dict[str, list[np.ndarray]],
                 failures: list[Failure], batch: list[tuple[dict[str, Any], ClipInputs]],
                 models: Models, cfg: ExtractConfig, timer: Timer) -> None:
    """Encode a prepared batch; append its kept rows, their features and its failures."""
    encoded, errors = _encode_batch(models, cfg, [c for _, c in batch], timer)
    errors = [error or _unstorable(encoded, i, cfg) for i, error in enumerate(errors)]
    for (row, clip), error in zip(batch, errors, strict=True):
        if error is not None:
            failures.append(error.to_failure(str(row["sample_id"]), str(row["split"])))
            continue
        kept.append({**row, "duration_s": clip.duration_s, "face_ratio": clip.face_ratio,
                     "empty_transcript": not (row.get("transcript") or "").strip(),
                     "decode_errors": clip.decode_errors, "coverage": clip.coverage})
    for key in cfg.choices.modalities:
        ok = [i for i, e in enumerate(errors) if e is None]
        feats[key].extend(encoded[key][i] for i in ok)


def _unstorable(encoded: dict[str, np.ndarray], i: int, cfg: ExtractConfig) -> ClipError | None:
    """A ``backbone_error`` for clip ``i`` when a vector of it is not finite once cast to the
    store's dtype (float16 holds at most 65504: larger values would be stored as Inf)."""
    limit = float(np.finfo(np.dtype(cfg.features.dtype)).max)
    for key in cfg.choices.modalities:
        peak = float(np.abs(encoded[key][i]).max(initial=0.0))
        if not peak <= limit:  # also catches NaN
            return ClipError(Stage.BACKBONE, Reason.BACKBONE_ERROR,
                             f"{key}: features reach {peak:.6g}, beyond what {cfg.features.dtype} "
                             f"stores (at most {limit:g}); extract with dtype: float32")
    return None


def _encode_batch(models: Models, cfg: ExtractConfig, clips: list[ClipInputs], timer: Timer,
                  ) -> tuple[dict[str, np.ndarray], list[ClipError | None]]:
    """Encode clips x views; returns key -> [n, views, dim] and a per-clip error (or None).

    The batch is encoded in one call per backbone; if that fails, the clips are encoded one at
    a time so that a single bad clip becomes a ``backbone_error`` instead of sinking the batch.
    """
    expanded = [_view(c, v, cfg) for c in clips for v in range(cfg.choices.views)]
    try:
        flat = _encode(models, cfg, expanded, timer)
        return ({k: v.reshape(len(clips), cfg.choices.views, -1) for k, v in flat.items()},
                [None] * len(clips))
    except ClipError:
        pass
    except (RuntimeError, ValueError) as err:
        log.warning("batch of %d clips failed in a backbone (%s); retrying one by one",
                    len(clips), err)
    out: dict[str, list[np.ndarray]] = {k: [] for k in cfg.choices.modalities}
    errors: list[ClipError | None] = []
    for i in range(len(clips)):
        try:
            views = cfg.choices.views
            one = _encode(models, cfg, expanded[i * views:(i + 1) * views], timer)
        except ClipError as err:
            errors.append(err)
            one = {k: np.zeros((cfg.choices.views, models.encoders[k].dim), np.float32)
                   for k in cfg.choices.modalities}
        except (RuntimeError, ValueError) as err:
            errors.append(ClipError(Stage.BACKBONE, Reason.BACKBONE_ERROR, str(err)[:500]))
            one = {k: np.zeros((cfg.choices.views, models.encoders[k].dim), np.float32)
                   for k in cfg.choices.modalities}
        else:
            errors.append(None)
        for k in cfg.choices.modalities:
            out[k].append(one[k])
    return {k: np.stack(v) for k, v in out.items()}, errors


def _view(clip: ClipInputs, view: int, cfg: ExtractConfig) -> ClipInputs:
    """View ``view`` of a clip, with that view's vectors of its streamed keys."""
    features = cfg.features
    out = augment_clip(clip, view, seed=features.seed, sample_rate=features.sample_rate,
                       spec=features.augment)
    return replace(out, encoded={k: v[view] for k, v in clip.encoded.items()})
