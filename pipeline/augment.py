"""Augmented views for the ``instance_cont`` objective.

View 0 is always the clean clip. Views 1..N-1 apply one random transform per clip, the same to
every frame (temporally consistent, as in Qian et al., CVPR 2021): crop, flip, colour jitter,
grayscale, blur on the face crops; SpecAugment-style time and frequency masks on the waveform;
word swaps on the transcript. The randomness derives from (seed, sample_id, view) only, so a
re-run or another worker produces the same views.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.extract import ClipInputs


def view_rng(seed: int, sample_id: str, view: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{sample_id}/{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def augment_frames(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random crop/flip/jitter/grayscale/blur, applied identically to every frame.

    Args:
        frames: uint8 [T, H, W, 3].

    Returns:
        uint8 [T, H, W, 3] (same size: the crop is resized back).
    """
    import torch
    import torch.nn.functional as F

    t, h, w, _ = frames.shape
    if t == 0:
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    scale = rng.uniform(0.75, 1.0)
    ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    x = F.interpolate(x[:, :, top:top + ch, left:left + cw], size=(h, w), mode="bilinear",
                      antialias=True, align_corners=False)
    if rng.random() < 0.5:
        x = x.flip(-1)
    brightness, contrast, saturation = rng.uniform(0.7, 1.3, size=3)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = gray + (x - gray) * (0.0 if rng.random() < 0.2 else saturation)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.1, 2.0)
        radius = max(1, int(3 * sigma))
        k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2)
                      / (2 * sigma**2))
        k = (k / k.sum()).to(x.dtype)
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"),
                     k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"),
                     k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    out = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
    return out.contiguous().numpy()


def augment_audio(wave: np.ndarray, rng: np.random.Generator, sample_rate: int,
                  *, time_masks: int = 2, freq_masks: int = 2) -> np.ndarray:
    """SpecAugment-style masks applied to the waveform (so any audio backbone sees them).

    Time masks zero up to 10 % of the clip each; frequency masks zero a band of up to 1/8 of
    the spectrum in the waveform's Fourier transform.
    """
    x = wave.astype(np.float32, copy=True)
    n = len(x)
    for _ in range(time_masks):
        width = int(rng.integers(0, max(1, n // 10)))
        start = int(rng.integers(0, max(1, n - width)))
        x[start:start + width] = 0.0
    spec = np.fft.rfft(x)
    bins = len(spec)
    for _ in range(freq_masks):
        width = int(rng.integers(0, max(1, bins // 8)))
        start = int(rng.integers(0, max(1, bins - width)))
        spec[start:start + width] = 0.0
    del sample_rate  # masks are relative to the clip; kept in the signature for clarity
    return np.fft.irfft(spec, n=n).astype(np.float32)


def augment_text(text: str, rng: np.random.Generator, *, swaps: int = 1) -> str:
    """Swap ``swaps`` random pairs of neighbouring words."""
    words = text.split()
    for _ in range(swaps if len(words) > 1 else 0):
        i = int(rng.integers(0, len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def augment_clip(clip: ClipInputs, view: int, *, seed: int, sample_rate: int) -> ClipInputs:
    """View ``view`` of a clip (view 0 returns the clip unchanged)."""
    if view == 0:
        return clip
    rng = view_rng(seed, clip.sample_id, view)
    # One seed for both frame streams: the 2D and 3D frames of a view get the same transform.
    frame_seed = int(rng.integers(2**63))
    return replace(
        clip,
        frames_2d=None if clip.frames_2d is None else augment_frames(
            clip.frames_2d, np.random.default_rng(frame_seed)),
        frames_3d=None if clip.frames_3d is None else augment_frames(
            clip.frames_3d, np.random.default_rng(frame_seed)),
        audio=None if clip.audio is None else augment_audio(clip.audio, rng, sample_rate),
        text=None if clip.text is None else augment_text(clip.text, rng),
    )
