"""Augmented views: deterministic per (seed, clip, view), consistent over time, view 0 clean."""

from __future__ import annotations

import numpy as np

from pipeline.augment import augment_audio, augment_clip, augment_frames, augment_text
from pipeline.extract import ClipInputs


def _clip() -> ClipInputs:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    return ClipInputs("train/dia0_utt0", frames, frames.copy(),
                      rng.standard_normal(16000).astype(np.float32),
                      "one two three four five", 1.0, 1.0)


def test_view_zero_is_the_clean_clip() -> None:
    clip = _clip()
    assert augment_clip(clip, 0, seed=0, sample_rate=16000) is clip


def test_views_are_deterministic_and_differ_between_views() -> None:
    clip = _clip()
    a = augment_clip(clip, 1, seed=0, sample_rate=16000)
    b = augment_clip(clip, 1, seed=0, sample_rate=16000)
    c = augment_clip(clip, 2, seed=0, sample_rate=16000)
    assert a.frames_2d is not None and b.frames_2d is not None and c.frames_2d is not None
    np.testing.assert_array_equal(a.frames_2d, b.frames_2d)
    assert not np.array_equal(a.frames_2d, c.frames_2d)
    assert a.text == b.text and sorted(a.text.split()) == sorted(clip.text.split())


def test_2d_and_3d_frames_of_a_view_get_the_same_transform() -> None:
    view = augment_clip(_clip(), 1, seed=3, sample_rate=16000)
    np.testing.assert_array_equal(view.frames_2d, view.frames_3d)


def test_one_transform_for_every_frame_of_a_clip() -> None:
    frame = np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    out = augment_frames(np.stack([frame] * 5), np.random.default_rng(7))
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    for t in range(1, 5):
        np.testing.assert_array_equal(out[t], out[0])


def test_audio_masks_keep_length_and_zero_some_samples() -> None:
    wave = np.ones(16000, np.float32)
    out = augment_audio(wave, np.random.default_rng(2), 16000, freq_masks=0)
    assert out.shape == wave.shape and out.dtype == np.float32
    assert (np.abs(out) < 1e-6).sum() > 0


def test_text_swaps_neighbours() -> None:
    out = augment_text("a b c d", np.random.default_rng(0), swaps=1)
    assert out != "a b c d" and sorted(out.split()) == ["a", "b", "c", "d"]
    assert augment_text("single", np.random.default_rng(0)) == "single"
