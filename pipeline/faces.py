"""Face detection (facenet-pytorch MTCNN), one face track per clip, and square face crops.

The flow for a clip: :meth:`FaceDetector.detect` runs MTCNN in batches on a few frames (the
1-fps frames), :func:`track` follows the most confident face through them and turns the
detections into smooth square boxes, and :func:`crop` cuts any frame (also the 16-fps frames in
between, through :meth:`FaceTrack.box_at`) to a ``size x size`` RGB crop without distorting it.
``FaceSpec.crop_mode: union`` gives the reference code's crop instead: one box per clip, the
running union of the overlapping detections (:func:`union_box`), stretched to the square.

Frames are RGB throughout (MTCNN's weights expect RGB; the paper's reference code fed BGR).
Boxes are ``(x1, y1, x2, y2)`` in pixels of the original frame, float; frame sizes are
``(width, height)`` as in PIL (``frame.shape[1::-1]``), taken from the frames as decoded (a
rotated video's frames are turned upright, so their size is not the coded one
:class:`~pipeline.media.MediaInfo` reports).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.extract_config import FaceSpec

logger = logging.getLogger(__name__)

# facenet-pytorch is not a declared dependency: its metadata demands torch<2.3, but it runs on
# the torch this package requires, so it is installed without its metadata (setup.cfg).
FACENET_MISSING = ("face detection needs facenet-pytorch, which is not installed; install it "
                   "without its stale dependency pins: pip install --no-deps "
                   "facenet-pytorch==2.6.0")

#: MTCNN's default P-, R- and O-net thresholds and image-pyramid factor (facenet-pytorch's, as
#: the paper's reference code used them), passed explicitly so that they are on record here.
MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)
MTCNN_FACTOR = 0.709
#: MTCNN's smallest window: a face smaller than this in the detection frame is never found.
MTCNN_WINDOW = 12


def detection_size(width: int, height: int, spec: FaceSpec) -> tuple[int, int, float]:
    """The detection frame and MTCNN's ``min_face_size`` for a frame of ``width x height``.

    The frame is downscaled so that its longer side is at most ``spec.detect_max_side``, and
    ``spec.min_face_size`` (pixels of the original frame) is scaled with it, but never below
    MTCNN's 12-pixel window (a smaller value would make MTCNN upsample the frame it was just
    given smaller). On a frame no larger than ``detect_max_side`` this is MTCNN's default
    exactly.

    Returns:
        ``(new_width, new_height, min_face_size)`` for MTCNN.
    """
    scale = min(1.0, spec.detect_max_side / max(width, height))
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_w, new_h, max(float(MTCNN_WINDOW), spec.min_face_size * scale)


class FaceDetector:
    """Batched MTCNN face detection on RGB frames.

    Uses ``MTCNN.detect`` (boxes and probabilities), not the batched ``forward``, which fails
    when some frames of a batch have no face. The network weights ship with facenet-pytorch.
    """

    def __init__(self, spec: FaceSpec, device: str = "cpu", batch_size: int = 32) -> None:
        """Build MTCNN once.

        Args:
            spec: detection settings.
            device: torch device for the networks and the downscaling.
            batch_size: frames per MTCNN call (bounds the memory of the image pyramid).
        """
        try:
            from facenet_pytorch import MTCNN  # heavy import, only where detection runs
        except ModuleNotFoundError as err:
            if err.name != "facenet_pytorch":
                raise
            raise ModuleNotFoundError(FACENET_MISSING, name=err.name) from None

        if batch_size < 1:
            raise ValueError(f"FaceDetector: batch_size must be >= 1, got {batch_size}")
        self.spec = spec
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._mtcnn = MTCNN(keep_all=True, select_largest=False, post_process=False,
                            min_face_size=spec.min_face_size,
                            thresholds=list(MTCNN_THRESHOLDS), factor=MTCNN_FACTOR,
                            device=self.device)
        self._mtcnn.eval()

    def detect(self, frames: list[np.ndarray]) -> list[np.ndarray | None]:
        """Detect faces in each frame.

        Frames of one size go through MTCNN together (its batches need one size), in chunks
        of ``batch_size``.

        Args:
            frames: RGB uint8 frames ``[H, W, 3]``; sizes may differ.

        Returns:
            Per frame, float32 ``[n_faces, 5]`` rows ``(x1, y1, x2, y2, prob)`` in the frame's
            own pixel coordinates, sorted by decreasing probability, all ``prob >= min_prob``;
            or None when no face passes.
        """
        results: list[np.ndarray | None] = [None] * len(frames)
        for shape, indices in _group_by_shape(frames).items():
            for lo in range(0, len(indices), self.batch_size):
                chunk = indices[lo:lo + self.batch_size]
                for i, dets in zip(chunk, self._detect_same_size([frames[i] for i in chunk]),
                                   strict=True):
                    results[i] = dets
            logger.debug("detected faces in %d frames of size %s", len(indices), shape)
        return results

    def _detect_same_size(self, frames: list[np.ndarray]) -> list[np.ndarray | None]:
        batch = torch.from_numpy(np.stack(frames)).to(self.device)  # [B, H, W, 3] uint8
        height, width = batch.shape[1:3]
        new_w, new_h, self._mtcnn.min_face_size = detection_size(width, height, self.spec)
        if (new_w, new_h) != (width, height):
            batch = F.interpolate(batch.permute(0, 3, 1, 2).float(), size=(new_h, new_w),
                                  mode="bilinear", antialias=True, align_corners=False
                                  ).permute(0, 2, 3, 1)
        boxes, probs = self._mtcnn.detect(batch.float())
        to_original = np.array([width / new_w, height / new_h] * 2, dtype=np.float32)
        return [self._keep(b, p, to_original) for b, p in zip(boxes, probs, strict=True)]

    def _keep(self, boxes: np.ndarray | None, probs: np.ndarray, to_original: np.ndarray
              ) -> np.ndarray | None:
        if boxes is None:
            return None
        dets = np.concatenate([np.asarray(boxes, np.float32).reshape(-1, 4) * to_original,
                               np.asarray(probs, np.float32).reshape(-1, 1)], axis=1)
        dets = dets[dets[:, 4] >= self.spec.min_prob]
        return dets[np.argsort(-dets[:, 4], kind="stable")] if len(dets) else None


def _group_by_shape(frames: list[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"FaceDetector.detect: frame {i} must be RGB uint8 [H, W, 3], "
                             f"got {frame.dtype} {frame.shape}")
        groups.setdefault(frame.shape, []).append(i)
    return groups


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through a clip.

    Attributes:
        times: ``[K]`` seconds of the detection frames, increasing.
        boxes: ``[K, 4]`` smoothed square boxes with margin, ``(x1, y1, x2, y2)``, float
            (``crop_mode: union``: the clip's one union box in every row).
        found: ``[K]`` bool: the face was detected in that frame (otherwise its box was
            interpolated from the neighbouring detections).
    """

    times: np.ndarray
    boxes: np.ndarray
    found: np.ndarray

    @property
    def face_ratio(self) -> float:
        """Fraction of detection frames in which the face was found. Extraction uses the
        track only when this is at least ``FaceSpec.min_face_ratio``: a face glimpsed in one
        frame of many would otherwise place every crop of the clip."""
        return float(np.mean(self.found))

    def box_at(self, t: float) -> np.ndarray:
        """The box at time ``t``: linear between detection times, held constant beyond the ends.

        Returns:
            float ``[4]`` ``(x1, y1, x2, y2)``.
        """
        return np.array([np.interp(t, self.times, self.boxes[:, j]) for j in range(4)])


def track(times: Sequence[float], detections: list[np.ndarray | None], spec: FaceSpec,
          frame_size: tuple[int, int]) -> FaceTrack | None:
    """Follow the clip's most confident face through the detection frames.

    The track starts at the single most confident detection of the clip and is followed
    forwards and backwards: in each frame the detection whose centre is nearest the previous
    box's centre continues it, unless it is farther than ``spec.max_shift`` box sides (another
    person). Frames without a match get boxes interpolated between their neighbours; then boxes
    are smoothed over time (``spec.smoothing``), made square with ``spec.margin``, and shifted
    into the frame where they fit. With ``spec.crop_mode == "union"`` every time has the clip's
    one :func:`union_box` instead.

    Args:
        times: ``[K]`` seconds of the detection frames, strictly increasing.
        detections: ``K`` outputs of :meth:`FaceDetector.detect` (``[n, 5]`` or None).
        spec: tracking and cropping settings.
        frame_size: ``(width, height)`` of the frames, i.e. ``frame.shape[1::-1]``.

    Returns:
        The :class:`FaceTrack`, or None when no frame has a face.
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or len(t) != len(detections):
        raise ValueError(f"track: {len(t)} times for {len(detections)} detections")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"track: times must be strictly increasing, got {t.tolist()}")
    if spec.crop_mode == "union":
        box, found = union_box(detections, frame_size)
        return None if box is None else FaceTrack(times=t, boxes=np.tile(box, (len(t), 1)),
                                                  found=found)
    raw, found = _follow(t, detections, spec.max_shift)
    if raw is None:
        return None
    raw = _fill(t, raw, found)
    raw = _smooth(t, raw, spec.smoothing)
    boxes = _fit_inside(_square(raw, spec.margin), frame_size)
    return FaceTrack(times=t, boxes=boxes, found=found)


def union_box(detections: Sequence[np.ndarray | None], frame_size: tuple[int, int]
              ) -> tuple[np.ndarray | None, np.ndarray]:
    """The reference code's face box of a clip: the running union of overlapping detections.

    In each frame the most confident detection (the reference ran MTCNN with
    ``select_largest=False``) has its corners truncated to whole pixels; it joins the union if
    it overlaps the last detection that joined (touching edges count), and is left out
    otherwise (another face, or a jump: the reference cut the clip into segments there). The
    union is clipped to the frame; it is neither squared nor given a margin, and the crop
    stretches it to a square (:func:`crop` with ``stretch``).

    Args:
        detections: per frame, ``[n, 5]`` rows sorted by decreasing probability, or None.
        frame_size: ``(width, height)`` of the frames.

    Returns:
        The box ``[4]`` ``(x1, y1, x2, y2)`` (None when no frame has a face) and ``found [K]``:
        the frames whose detection joined the union.
    """
    found = np.zeros(len(detections), dtype=bool)
    union: np.ndarray | None = None
    last: np.ndarray | None = None
    for i, dets in enumerate(detections):
        if dets is None or len(dets) == 0:
            continue
        box = np.trunc(dets[0, :4].astype(np.float64))
        if last is not None and not _overlap(box, last):
            continue
        union = box if union is None else np.concatenate([np.minimum(union[:2], box[:2]),
                                                          np.maximum(union[2:], box[2:])])
        last, found[i] = box, True
    if union is None:
        return None, found
    width, height = frame_size
    return np.clip(union, 0, [width, height, width, height]), found


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two boxes share a point (edges included)."""
    return bool(a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3])


def _follow(times: np.ndarray, detections: list[np.ndarray | None], max_shift: float
            ) -> tuple[np.ndarray | None, np.ndarray]:
    """Raw boxes ``[K, 4]`` of the followed face (NaN where unmatched) and ``found [K]``."""
    found = np.zeros(len(times), dtype=bool)
    best = [d[:, 4].max() if d is not None and len(d) else -np.inf for d in detections]
    if not np.isfinite(np.max(best, initial=-np.inf)):
        return None, found
    anchor = int(np.argmax(best))
    anchor_dets = detections[anchor]
    assert anchor_dets is not None
    raw = np.full((len(times), 4), np.nan)
    raw[anchor], found[anchor] = anchor_dets[np.argmax(anchor_dets[:, 4]), :4], True
    for order in (range(anchor + 1, len(times)), range(anchor - 1, -1, -1)):
        last = anchor
        for i in order:
            # The allowed shift grows with the time since the face was last seen.
            reach = max_shift * max(1.0, abs(times[i] - times[last]))
            match = _nearest(raw[last], detections[i], reach)
            if match is not None:
                raw[i], found[i], last = match, True, i
    return raw, found


def _nearest(box: np.ndarray, dets: np.ndarray | None, max_shift: float) -> np.ndarray | None:
    """The detection box nearest ``box`` by centre distance, within ``max_shift`` box sides."""
    if dets is None or len(dets) == 0:
        return None
    dist = np.linalg.norm(_centres(dets[:, :4]) - _centres(box[None]), axis=1)
    i = int(np.argmin(dist))
    side = max(box[2] - box[0], box[3] - box[1])
    return dets[i, :4] if dist[i] <= max_shift * side else None


def _centres(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def _fill(times: np.ndarray, boxes: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Boxes of unmatched frames, linearly interpolated in time (held at the ends)."""
    return np.stack([np.interp(times, times[found], boxes[found, j]) for j in range(4)], axis=1)


def _smooth(times: np.ndarray, boxes: np.ndarray, sigma_s: float) -> np.ndarray:
    """Gaussian-weighted average of the boxes over time (centred: no lag)."""
    if sigma_s == 0 or len(times) == 1:
        return boxes
    weights = np.exp(-0.5 * ((times[:, None] - times[None, :]) / sigma_s) ** 2)  # [K, K]
    return (weights @ boxes) / weights.sum(axis=1, keepdims=True)


def _square(boxes: np.ndarray, margin: float) -> np.ndarray:
    """Square boxes on the same centres, side = longer side x (1 + margin)."""
    centres = _centres(boxes)
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + margin) / 2
    return np.stack([centres[:, 0] - half, centres[:, 1] - half,
                     centres[:, 0] + half, centres[:, 1] + half], axis=1)


def _fit_inside(boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Shift boxes into the frame along each axis where the side fits in it.

    Real pixels beat padding; a box larger than the frame stays centred on the face and the
    crop pads it.
    """
    width, height = frame_size
    out = boxes.copy()
    for lo, hi, limit in ((0, 2, width), (1, 3, height)):
        side = out[:, hi] - out[:, lo]
        fits = side <= limit
        shift = np.where(out[:, lo] < 0, -out[:, lo], np.minimum(0.0, limit - out[:, hi]))
        out[fits, lo] += shift[fits]
        out[fits, hi] += shift[fits]
    return out


def crop(frame: np.ndarray, box: np.ndarray, size: int, *, stretch: bool = False) -> np.ndarray:
    """Cut a box out of a frame and resize it to ``size x size``.

    Parts of the box outside the frame are filled with black (zeros), as PIL's ``crop`` does.
    Resizing is PIL bilinear, which filters over the whole source area when shrinking. A
    square box keeps its aspect ratio; with ``stretch`` any box is taken (the reference's
    union box, ``FaceSpec.crop_mode: union``) and its aspect ratio is not kept.

    Args:
        frame: RGB uint8 ``[H, W, 3]``.
        box: ``[4]`` box ``(x1, y1, x2, y2)`` in pixels (any overhang allowed), square unless
            ``stretch``.
        size: output side.
        stretch: accept a box of any aspect ratio and stretch it to the square.

    Returns:
        RGB uint8 ``[size, size, 3]``.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1)
    square = abs((x2 - x1) - (y2 - y1)) <= max(1.0, 0.01 * side)
    if not side > 0 or min(x2 - x1, y2 - y1) <= 0 or not (square or stretch):
        what = "non-empty box" if stretch else "non-empty square"
        raise ValueError(f"crop: box must be a {what}, got {np.round(box, 2).tolist()}")
    left, top = round(x1), round(y1)
    width, height = (max(1, round(x2 - x1)), max(1, round(y2 - y1))) if stretch else \
        (max(1, round(side)),) * 2
    region = Image.fromarray(frame).crop((left, top, left + width, top + height))
    return np.asarray(region.resize((size, size), Image.Resampling.BILINEAR))


def centre_box(frame_size: tuple[int, int]) -> np.ndarray:
    """The largest square centred in the frame (for clips without face cropping).

    Args:
        frame_size: ``(width, height)``.

    Returns:
        float ``[4]`` ``(x1, y1, x2, y2)``.
    """
    width, height = frame_size
    side = min(height, width)
    x1, y1 = (width - side) / 2, (height - side) / 2
    return np.array([x1, y1, x1 + side, y1 + side], dtype=np.float64)
