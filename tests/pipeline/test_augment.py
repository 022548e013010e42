"""Augmented views: deterministic per (seed, clip, view), consistent over time, view 0 clean,
and as strong as the reference code's SimCLR augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.augment import (augment_audio, augment_clip, augment_frames, augment_text,
                              colour_jitter, crop_box)
from pipeline.config import ConfigError
from pipeline.extract_config import ClipInputs, load_extract_config
from pipeline.extract_config import AugmentSpec


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


# ------------------------------------------------ strength: the reference code's (CHOICES.md)

def test_default_strength_is_the_reference_simclr_augmentation() -> None:
    spec = load_extract_config().features.augment
    assert spec == AugmentSpec()
    assert (spec.crop_scale, spec.crop_ratio, spec.flip_p) == ((0.3, 1.0), (0.5, 2.0), 0.5)
    assert (spec.jitter_p, spec.brightness, spec.contrast, spec.saturation, spec.hue) == \
        (0.8, 0.8, 0.8, 0.8, 0.2)
    assert (spec.grayscale_p, spec.blur_p, spec.blur_sigma, spec.blur_kernel) == \
        (0.2, 0.5, (0.1, 2.0), 0.1)


def test_crops_cover_the_scale_and_aspect_ratio_ranges() -> None:
    rng = np.random.default_rng(0)
    spec = AugmentSpec()
    boxes = [crop_box(180, 180, spec, rng) for _ in range(2000)]
    areas = np.array([h * w / 180**2 for _, _, h, w in boxes])
    ratios = np.array([w / h for _, _, h, w in boxes])
    assert areas.min() >= 0.3 - 0.02 and areas.max() <= 1.0
    assert areas.min() < 0.35 and np.median(areas) < 0.8  # down to a third of the face
    assert ratios.min() >= 0.5 - 0.02 and ratios.max() <= 2.0 + 0.05
    assert ratios.min() < 0.6 and ratios.max() > 1.7
    for top, left, h, w in boxes:
        assert 0 <= top <= 180 - h and 0 <= left <= 180 - w


def test_hue_jitter_turns_colours_and_a_zero_spec_is_the_identity() -> None:
    import torch

    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 0.8
    hue_only = AugmentSpec(brightness=0, contrast=0, saturation=0, hue=0.2)
    turned = colour_jitter(red, hue_only, np.random.default_rng(3))
    assert turned[:, 1:].max() > 0.05  # some green or blue now: the hue moved
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 24, 24, 3), dtype=np.uint8)
    none = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, jitter_p=0,
                       grayscale_p=0, blur_p=0)
    np.testing.assert_array_equal(augment_frames(frames, np.random.default_rng(0), none), frames)


def test_jitter_and_grayscale_probabilities_are_the_ones_asked_for() -> None:
    # The reference code applied its colour jitter when a uniform draw EXCEEDED p (so with
    # probability 0.2 for p = 0.8); here p is the probability of applying it.
    frames = np.full((1, 16, 16, 3), (200, 60, 30), np.uint8)
    only = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, blur_p=0,
                       grayscale_p=0)
    changed = [not np.array_equal(augment_frames(frames, np.random.default_rng(s), only), frames)
               for s in range(400)]
    assert 0.72 < np.mean(changed) < 0.88
    gray = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, blur_p=0,
                       jitter_p=0)
    grey = [np.ptp(augment_frames(frames, np.random.default_rng(s), gray)[0, 0, 0]) == 0
            for s in range(400)]
    assert 0.15 < np.mean(grey) < 0.25


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ConfigError, match="crop_scale"):
        AugmentSpec(crop_scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="hue"):
        AugmentSpec(hue=0.7)
