"""The reference code's face crop (``FaceSpec.crop_mode: union``): one box per clip, the running
union of overlapping detections, stretched to the square."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.datasets import scan
from pipeline.extract import prepare_clip
from pipeline.extract_config import load_extract_config
from pipeline.faces import FaceDetector, FaceSpec, crop, track, union_box
from pipeline.identity import feature_identity
from pipeline.manifest import FacePolicy, load_manifest
from pipeline.presets import extract_settings
from pipeline.store.store_identity import store_id_of, to_json

UNION = FaceSpec(crop_mode="union")


def _det(*boxes: tuple[float, float, float, float, float]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32)


def test_union_of_overlapping_detections_truncated_and_clipped() -> None:
    detections = [
        None,
        _det((10.7, 20.2, 50.9, 70.5, 0.99)),
        _det((30.0, 15.0, 60.0, 60.0, 0.95), (200.0, 10.0, 240.0, 60.0, 0.90)),
        _det((-5.5, 40.0, 45.0, 130.0, 0.98)),   # overlaps the last one, spills out of the frame
    ]
    box, found = union_box(detections, (320, 120))
    assert box is not None
    np.testing.assert_array_equal(box, [0, 15, 60, 120])  # trunc, min/max, clipped to 320x120
    assert found.tolist() == [False, True, True, True]


def test_a_detection_apart_from_the_last_is_left_out() -> None:
    detections = [_det((10, 10, 50, 50, 0.99)),
                  _det((100, 10, 140, 50, 0.99)),   # someone else: no overlap with the last
                  _det((50, 20, 90, 60, 0.98))]     # touches the first one's edge: joins
    box, found = union_box(detections, (320, 240))
    np.testing.assert_array_equal(box, [10, 10, 90, 60])
    assert found.tolist() == [True, False, True]


def test_the_most_confident_detection_of_a_frame_is_taken() -> None:
    box, _ = union_box([_det((100, 100, 140, 150, 0.99), (10, 10, 30, 30, 0.8))], (320, 240))
    np.testing.assert_array_equal(box, [100, 100, 140, 150])
    assert union_box([None, None], (320, 240))[0] is None


def test_union_track_holds_one_box_and_counts_the_joined_frames() -> None:
    detections = [_det((10, 10, 50, 60, 0.99)), None, _det((20, 5, 70, 55, 0.9))]
    got = track([0.0, 1.0, 2.0], detections, UNION, (320, 240))
    assert got is not None
    np.testing.assert_array_equal(got.boxes, np.tile([10, 5, 70, 60], (3, 1)))
    np.testing.assert_array_equal(got.box_at(1.5), [10, 5, 70, 60])
    assert got.face_ratio == pytest.approx(2 / 3)
    assert track([0.0], [None], UNION, (320, 240)) is None
    square = track([0.0, 1.0, 2.0], detections, FaceSpec(), (320, 240))
    assert square is not None and not np.array_equal(square.boxes, got.boxes)


def test_stretched_crop_turns_a_wide_box_into_the_square() -> None:
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[20:60, 40:200] = 255                        # a 160 x 40 bar inside the box
    out = crop(frame, np.array([40.0, 20.0, 240.0, 70.0]), 100, stretch=True)  # 200 x 50 box
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8
    rows, cols = np.nonzero(out[..., 0] > 127)
    # the bar fills 160/200 of the width and 40/50 of the height: stretched, not letterboxed
    assert cols.max() - cols.min() + 1 == pytest.approx(80, abs=2)
    assert rows.max() - rows.min() + 1 == pytest.approx(80, abs=2)
    with pytest.raises(ValueError, match="square"):
        crop(frame, np.array([40.0, 20.0, 240.0, 70.0]), 100)  # without stretch: refused


def test_crop_mode_is_checked() -> None:
    assert FaceSpec().crop_mode == "square"
    with pytest.raises(ConfigError, match=r"crop_mode='tight'.*square\|union"):
        FaceSpec(crop_mode="tight")


def test_default_crop_mode_keeps_the_store_id_and_union_changes_it() -> None:
    manifest = load_manifest("meld")
    weights = {k: "random" for k in ("frames_2d", "frames_3d", "audio", "text")}
    square = feature_identity(load_extract_config(weights=weights), manifest)
    union = feature_identity(load_extract_config(weights=weights,
                                                 faces={"crop_mode": "union"}), manifest)
    data = to_json(square)
    assert data["extraction"]["faces"]["crop_mode"] == "square"
    before = {**data, "extraction": {**data["extraction"], "faces": {
        k: v for k, v in data["extraction"]["faces"].items() if k != "crop_mode"}}}
    assert store_id_of(square) == store_id_of(before)  # as stores written before the setting
    assert store_id_of(union) != store_id_of(square)


def test_the_reference_preset_selects_the_union_crop() -> None:
    assert load_extract_config(**extract_settings("reference", {})[1]).features.faces.crop_mode \
        == "union"
    assert load_extract_config(**extract_settings("paper", {})[1]).features.faces.crop_mode \
        == "square"


def test_union_crops_of_a_real_clip_are_stretched_to_size(meld_sample: Path) -> None:
    row: dict[str, Any] = next(r for r in scan("meld", meld_sample).samples.to_pylist()
                               if r["sample_id"] == "train/dia0_utt0")
    weights = {"frames_2d": "random"}
    union_cfg = load_extract_config(modalities=["frames_2d"], weights=weights,
                                    faces={"crop_mode": "union", "size": 96})
    detector = FaceDetector(union_cfg.features.faces)
    clip = prepare_clip(row, union_cfg, detector, FacePolicy())
    square = prepare_clip(row, load_extract_config(modalities=["frames_2d"], weights=weights,
                                                   faces={"size": 96}), detector, FacePolicy())
    assert clip.frames_2d is not None and square.frames_2d is not None
    assert clip.frames_2d.shape[1:] == (96, 96, 3)
    assert clip.frames_2d.shape == square.frames_2d.shape
    assert not np.array_equal(clip.frames_2d, square.frames_2d)
