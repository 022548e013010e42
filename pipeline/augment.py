"""Augmented views for the ``instance_cont`` objective.

View 0 is always the clean clip (what every other objective and the evaluation read). Views
1..N-1 apply one random transform per clip, the same to every frame (temporally consistent, as
in Qian et al., CVPR 2021): the reference code's SimCLR-strength image transforms on the face
crops (:class:`~pipeline.extract_config.AugmentSpec`: random resized crop, flip, colour jitter
with hue in random order, grayscale, Gaussian blur), SpecAugment-style time and frequency masks
on the waveform, word swaps on the transcript. The randomness derives from (seed, sample_id,
view) only, so a re-run or another worker produces the same views. ``instance_cont`` contrasts
two augmented views (``data.contrast_views``), as the reference code did.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from pipeline.extract_config import AugmentSpec

if TYPE_CHECKING:
    import torch

    from pipeline.extract_config import ClipInputs

DEFAULT = AugmentSpec()


def view_rng(seed: int, sample_id: str, view: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{sample_id}/{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def crop_box(height: int, width: int, spec: AugmentSpec,
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, crop_height, crop_width)`` of a random resized crop: an area fraction from
    ``crop_scale`` and a log-uniform aspect ratio from ``crop_ratio`` (ten tries, then the
    largest centred crop within the ratio range), as torchvision's ``RandomResizedCrop``."""
    area = height * width
    log_ratio = (math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*spec.crop_scale)
        ratio = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= width and 0 < ch <= height:
            return (int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1)),
                    ch, cw)
    aspect = width / height
    if aspect < spec.crop_ratio[0]:
        cw, ch = width, round(width / spec.crop_ratio[0])
    elif aspect > spec.crop_ratio[1]:
        ch, cw = height, round(height * spec.crop_ratio[1])
    else:
        cw, ch = width, height
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def colour_jitter(x: torch.Tensor, spec: AugmentSpec, rng: np.random.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue with random factors, in a random order (as
    torchvision's ``ColorJitter``): float [T, 3, H, W] in [0, 1] -> the same."""
    from torchvision.transforms.v2 import functional as TF

    factors = {"brightness": rng.uniform(max(0.0, 1 - spec.brightness), 1 + spec.brightness),
               "contrast": rng.uniform(max(0.0, 1 - spec.contrast), 1 + spec.contrast),
               "saturation": rng.uniform(max(0.0, 1 - spec.saturation), 1 + spec.saturation),
               "hue": rng.uniform(-spec.hue, spec.hue)}
    ops = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast,
           "saturation": TF.adjust_saturation, "hue": TF.adjust_hue}
    for i in rng.permutation(4):
        name = list(ops)[int(i)]
        x = ops[name](x, float(factors[name]))
    return x


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders: float [T, 3, H, W] -> the same."""
    import torch
    import torch.nn.functional as F

    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2)
                  / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"),
                 k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"),
                    k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def augment_frames(frames: np.ndarray, rng: np.random.Generator,
                   spec: AugmentSpec = DEFAULT) -> np.ndarray:
    """One random resized crop, flip, colour jitter, grayscale and blur, applied identically to
    every frame.

    Args:
        frames: uint8 [T, H, W, 3].
        rng: the view's generator (every draw comes from it).
        spec: the transforms' strengths and probabilities.

    Returns:
        uint8 [T, H, W, 3] (same size: the crop is resized back).
    """
    import torch
    import torch.nn.functional as F
    from torchvision.transforms.v2 import functional as TF

    t, h, w, _ = frames.shape
    if t == 0:
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    top, left, ch, cw = crop_box(h, w, spec, rng)
    x = F.interpolate(x[:, :, top:top + ch, left:left + cw], size=(h, w), mode="bilinear",
                      antialias=True, align_corners=False).clamp(0, 1)
    if rng.random() < spec.flip_p:
        x = x.flip(-1)
    if rng.random() < spec.jitter_p:
        x = colour_jitter(x, spec, rng)
    if rng.random() < spec.grayscale_p:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    radius = int(spec.blur_kernel * min(h, w)) // 2  # the reference: an odd kernel of 0.1 * side
    if rng.random() < spec.blur_p and radius > 0 and radius < min(h, w):
        x = gaussian_blur(x, rng.uniform(*spec.blur_sigma), radius)
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


def augment_clip(clip: ClipInputs, view: int, *, seed: int, sample_rate: int,
                 spec: AugmentSpec = DEFAULT) -> ClipInputs:
    """View ``view`` of a clip (view 0 returns the clip unchanged)."""
    if view == 0:
        return clip
    rng = view_rng(seed, clip.sample_id, view)
    # One seed for both frame streams: the 2D and 3D frames of a view get the same transform.
    frame_seed = int(rng.integers(2**63))
    return replace(
        clip,
        frames_2d=None if clip.frames_2d is None else augment_frames(
            clip.frames_2d, np.random.default_rng(frame_seed), spec),
        frames_3d=None if clip.frames_3d is None else augment_frames(
            clip.frames_3d, np.random.default_rng(frame_seed), spec),
        audio=None if clip.audio is None else augment_audio(clip.audio, rng, sample_rate),
        text=None if clip.text is None else augment_text(clip.text, rng),
    )
