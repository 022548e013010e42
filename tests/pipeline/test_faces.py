"""Face detection, tracking and cropping.

Real faces, offline: ``skimage.data.astronaut()`` (a portrait MTCNN finds with p > 0.999) pasted
onto grey canvases; ``skimage.data.coffee()`` has no face. Tracking rules are also checked on
hand-made detections, without MTCNN.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from pipeline.extract_config import load_extract_config
from pipeline.faces import (MTCNN_FACTOR, MTCNN_THRESHOLDS, FaceDetector, FaceSpec, FaceTrack,
                            centre_box, crop, detection_size, track)

GREY = 110


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(FaceSpec())


def _head(side: int) -> np.ndarray:
    """The astronaut's head and shoulders, square, ``side`` pixels (the face is ~40% of it)."""
    head = data.astronaut()[6:226, 114:334]
    return np.asarray(Image.fromarray(head).resize((side, side), Image.Resampling.BILINEAR))


def _canvas(heads: list[tuple[int, int, int]], height: int = 240, width: int = 320
            ) -> np.ndarray:
    """A grey frame with heads ``(x, y, side)`` pasted at their top-left corners."""
    frame = np.full((height, width, 3), GREY, np.uint8)
    for x, y, side in heads:
        frame[y:y + side, x:x + side] = _head(side)
    return frame


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _det(*boxes: tuple[float, float, float, float, float]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32)


# --- detection on real faces ---------------------------------------------------------------


def test_crop_of_an_off_centre_face_contains_the_face(detector: FaceDetector) -> None:
    frame = _canvas([(400, 120, 200)], height=360, width=640)
    dets = detector.detect([frame])
    assert dets[0] is not None and dets[0][0, 4] > 0.99
    face_track = track([0.0], dets, detector.spec, frame.shape[1::-1])
    assert face_track is not None
    face = crop(frame, face_track.boxes[0], detector.spec.size)
    assert face.shape == (180, 180, 3) and face.dtype == np.uint8
    again = detector.detect([face])[0]
    assert again is not None and again[0, 4] > 0.9
    assert np.abs(_centre(again[0]) - 90).max() < 0.1 * 180


def test_no_face_gives_no_track(detector: FaceDetector) -> None:
    coffee = data.coffee()
    dets = detector.detect([coffee, coffee])
    assert dets == [None, None]
    assert track([0.0, 1.0], dets, detector.spec, coffee.shape[1::-1]) is None


def test_downscaled_detection_returns_original_coordinates(detector: FaceDetector) -> None:
    small = _canvas([(60, 40, 150)])
    large = np.asarray(Image.fromarray(small).resize((1280, 960), Image.Resampling.BILINEAR))
    # Different sizes in one call: grouped by size, answered in input order.
    dets_large, dets_small = detector.detect([large, small])
    assert dets_large is not None and dets_small is not None
    # The two sizes run through different image pyramids (MTCNN's 20 px minimum face scales
    # with the frame), so the boxes agree to a few pixels of the small frame, not exactly.
    np.testing.assert_allclose(dets_large[0, :4], 4 * dets_small[0, :4], atol=12)


def test_moving_face_is_followed(detector: FaceDetector) -> None:
    times = [0.0, 1.0, 2.0, 3.0]
    xs = [20 + 40 * t for t in times]  # 40 px/s
    dets = detector.detect([_canvas([(int(x), 50, 140)]) for x in xs])
    face_track = track(times, dets, detector.spec, (320, 240))
    assert face_track is not None and face_track.found.all()
    first = _centre(face_track.box_at(0.0))
    for t in (0.5, 1.5, 2.5):
        np.testing.assert_allclose(_centre(face_track.box_at(t)), first + [40 * t, 0], atol=8)


def test_frames_without_the_face_are_filled(detector: FaceDetector) -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    frames = [_canvas([(20 + 30 * int(t), 50, 140)]) for t in times]
    frames[2] = _canvas([])  # the face is gone for a moment (a hand, a turn)
    dets = detector.detect(frames)  # a batch where some frames have no face
    assert dets[2] is None
    face_track = track(times, dets, detector.spec, (320, 240))
    assert face_track is not None
    assert face_track.found.tolist() == [True, True, False, True, True]
    assert face_track.face_ratio == pytest.approx(0.8)
    np.testing.assert_allclose(_centre(face_track.boxes[2]),
                               (_centre(face_track.boxes[1]) + _centre(face_track.boxes[3])) / 2,
                               atol=3)


def test_two_faces_the_most_confident_is_followed(detector: FaceDetector) -> None:
    big, small = (10, 40, 150), (210, 90, 100)
    frames = [_canvas([big, small]), _canvas([big, small]), _canvas([small]),
              _canvas([big, small])]
    dets = detector.detect(frames)
    assert all(d is not None for d in dets) and len(dets[0]) == 2
    best = max((d for d in dets if d is not None), key=lambda d: d[0, 4])[0]
    face_track = track([0.0, 1.0, 2.0, 3.0], dets, detector.spec, (320, 240))
    assert face_track is not None
    # The other face, alone in frame 2, does not pull the track over: that frame is filled.
    assert face_track.found.tolist() == [True, True, False, True]
    for box in face_track.boxes:
        np.testing.assert_allclose(_centre(box), _centre(best), atol=5)


# --- tracking rules on hand-made detections ------------------------------------------------


def test_square_box_with_margin_shifted_into_the_frame() -> None:
    spec = FaceSpec(margin=0.5, smoothing=0.0)
    centred = track([0.0], [_det((100, 100, 140, 150, 0.99))], spec, (640, 480))
    assert centred is not None
    # Longer side 50 x 1.5 = 75, on the box centre (120, 125).
    np.testing.assert_allclose(centred.boxes[0], [82.5, 87.5, 157.5, 162.5])
    edge = track([0.0], [_det((0, 10, 40, 50, 0.99))], spec, (640, 480))
    assert edge is not None
    np.testing.assert_allclose(edge.boxes[0], [0, 0, 60, 60])  # side 60 kept, moved inside
    huge = track([0.0], [_det((0, 0, 100, 100, 0.99))], spec, (200, 100))
    assert huge is not None  # side 150 > 100 px high: centred vertically (the crop pads)
    np.testing.assert_allclose(huge.boxes[0], [0, -25, 150, 125])


def test_far_detection_is_someone_else_and_gaps_are_interpolated() -> None:
    spec = FaceSpec(margin=0.0, smoothing=0.0)
    dets = [_det((100, 100, 140, 140, 0.99)),
            _det((400, 100, 440, 140, 0.999)),  # more confident, but far: another person...
            _det((120, 100, 160, 140, 0.95)),
            None]
    face_track = track([0.0, 1.0, 2.0, 3.0], dets, spec, (640, 480))
    assert face_track is not None
    # ...and the most confident detection of the clip picks the person: the one at x=400.
    assert face_track.found.tolist() == [False, True, False, False]
    np.testing.assert_allclose(face_track.boxes, [[400, 100, 440, 140]] * 4)


def test_track_follows_and_fills_between_detections() -> None:
    spec = FaceSpec(margin=0.0, smoothing=0.0)
    dets = [_det((100, 100, 140, 140, 0.999)), None,
            _det((140, 100, 180, 140, 0.95), (500, 300, 540, 340, 0.96)), None]
    face_track = track([0.0, 1.0, 2.0, 3.0], dets, spec, (640, 480))
    assert face_track is not None
    assert face_track.found.tolist() == [True, False, True, False]
    np.testing.assert_allclose(face_track.boxes[:, 0], [100, 120, 140, 140])
    assert face_track.box_at(0.5)[0] == pytest.approx(110)
    assert face_track.box_at(-1.0)[0] == pytest.approx(100)  # held at the ends
    assert face_track.box_at(10.0)[0] == pytest.approx(140)


def test_smoothing_removes_jitter_without_moving_a_still_face() -> None:
    times = np.arange(12) / 4  # detections at 4 fps
    jitter = 4.0 * (-1.0) ** np.arange(12)
    dets = [_det((100 + j, 100, 160 + j, 160, 0.99)) for j in jitter]
    raw = track(times, dets, FaceSpec(margin=0.0, smoothing=0.0), (640, 480))
    smooth = track(times, dets, FaceSpec(margin=0.0, smoothing=0.5), (640, 480))
    assert raw is not None and smooth is not None
    assert np.ptp(raw.boxes[:, 0]) == pytest.approx(8.0)
    assert np.ptp(smooth.boxes[2:-2, 0]) < 1.0
    assert np.mean(smooth.boxes[:, 0]) == pytest.approx(100.0, abs=1.0)


def test_track_checks_its_inputs() -> None:
    spec = FaceSpec()
    with pytest.raises(ValueError, match="2 times for 1 detections"):
        track([0.0, 1.0], [None], spec, (10, 10))
    with pytest.raises(ValueError, match="strictly increasing"):
        track([1.0, 1.0], [None, None], spec, (10, 10))
    with pytest.raises(ValueError, match="margin=-0.1"):
        FaceSpec(margin=-0.1)


def test_face_ratio() -> None:
    face_track = FaceTrack(np.arange(4.0), np.zeros((4, 4)), np.array([1, 0, 0, 1], bool))
    assert face_track.face_ratio == 0.5


def test_min_face_ratio_default_and_range() -> None:
    # At 1-fps detection a clip under 10 s with one detection passes 0.1 (the paper kept
    # every clip with a face); extraction applies it (tests/pipeline/test_extract.py).
    assert FaceSpec().min_face_ratio == 0.1
    assert FaceSpec(min_face_ratio=0.0).min_face_ratio == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"min_face_ratio={bad}"):
            FaceSpec(min_face_ratio=bad)


# --- cropping ------------------------------------------------------------------------------


def test_crop_partly_outside_pads_with_black_and_keeps_size() -> None:
    frame = np.full((100, 100, 3), 200, np.uint8)
    out = crop(frame, np.array([-50.0, -50.0, 50.0, 50.0]), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[:30, :30] == 0).all() and (out[34:, 34:] == 200).all()


def _disc(height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    return np.where(inside[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)


def _extent(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(mask)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize("box", [np.array([210.0, 10.0, 390.0, 190.0]), None])
def test_crop_keeps_a_circle_round(box: np.ndarray | None) -> None:
    frame = _disc(200, 400, cx=300 if box is not None else 200, cy=100, r=80)
    box = centre_box(frame.shape[1::-1]) if box is None else box
    out = crop(frame, box, 90)
    height, width = _extent(out[..., 0] > 127)
    assert abs(height - width) <= 1
    assert height == pytest.approx(161 * 90 / (box[2] - box[0]), abs=2)


def test_crop_refuses_a_non_square_box() -> None:
    with pytest.raises(ValueError, match="square"):
        crop(np.zeros((100, 200, 3), np.uint8), np.array([0.0, 0.0, 200.0, 100.0]), 64)


def test_centre_box() -> None:
    np.testing.assert_allclose(centre_box((320, 240)), [40, 0, 280, 240])  # (width, height)
    np.testing.assert_allclose(centre_box((300, 400)), [0, 50, 300, 350])


# --- detection thresholds: MTCNN's defaults relative to the original frame (CHOICES.md) -----


def test_detection_defaults_are_mtcnns() -> None:
    spec = load_extract_config().features.faces
    assert spec == FaceSpec()
    assert (spec.min_face_size, spec.min_prob, spec.detect_max_side) == (20, 0.7, 640)
    assert MTCNN_THRESHOLDS == (0.6, 0.7, 0.7) and MTCNN_FACTOR == 0.709
    assert spec.min_prob == MTCNN_THRESHOLDS[-1]  # no filtering beyond MTCNN's own


@pytest.mark.parametrize("size, expected", [
    ((640, 360), (640, 360, 20.0)),      # at most 640 px: MTCNN's defaults exactly
    ((320, 240), (320, 240, 20.0)),
    ((1280, 720), (640, 360, 12.0)),     # 20 * 0.5 = 10 < MTCNN's 12-px window: 24 px found
    ((1920, 1080), (640, 360, 12.0)),    # 36 px of the original frame
    ((960, 540), (640, 360, 13.333)),    # 20 * 2/3: exactly 20 px of the original frame
])
def test_the_minimum_face_scales_with_the_detection_frame(size: tuple[int, int],
                                                          expected: tuple) -> None:
    w, h, face = detection_size(*size, FaceSpec())
    assert (w, h) == expected[:2] and face == pytest.approx(expected[2], abs=1e-3)
    assert detection_size(1920, 1080, FaceSpec(detect_max_side=4096)) == (1920, 1080, 20.0)


def test_small_faces_of_large_frames_are_found(detector: FaceDetector) -> None:
    # A ~32 px face on a 1280x720 frame (a speaker in the background of a TV shot): found with
    # MTCNN's 20 px default scaled to the 640-px detection frame; a fixed 40 px minimum in
    # detection pixels (the earlier default) missed it.
    frame = _canvas([(700, 300, 80)], height=720, width=1280)
    dets = detector.detect([frame])[0]
    assert dets is not None
    box = dets[0]
    assert 700 <= (box[0] + box[2]) / 2 <= 780 and 300 <= (box[1] + box[3]) / 2 <= 380
    tiny = _canvas([(300, 150, 50)], height=360, width=640)  # a ~20 px face, MTCNN's minimum
    assert detector.detect([tiny])[0] is not None
