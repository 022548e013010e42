"""The sample dataset: small, deterministic clips in each dataset's official raw layout.

Built offline from real material (a real face photo from scikit-image, speech from espeak-ng),
with the emotion label carried by the face (tint, scale, motion), the voice (pitch, speed) and
the words, so that a working pipeline can learn it and one that mixes up samples cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import UserError
from pipeline.sample_data import afewva, caer, meld, mosei, voxceleb2

log = logging.getLogger(__name__)


class SampleDataError(UserError, ValueError):
    """The sample dataset cannot be written as asked (unknown dataset, bad count, used folder)."""

WRITERS: dict[str, Callable[..., None]] = {
    "meld": meld.write,
    "caer": caer.write,
    "mosei": mosei.write,
    "voxceleb2": voxceleb2.write,
    "afewva": afewva.write,
}


def generate(dataset: str, out: str | Path, *, clips: int = 48, seed: int = 0) -> Path:
    """Write the sample dataset ``dataset`` under ``out`` in its official raw layout.

    Args:
        dataset: one of :data:`WRITERS`.
        out: folder to create (must not already hold files).
        clips: number of usable clips, spread over the splits and classes.
        seed: everything random derives from it; the same seed gives the same dataset.

    Returns:
        The dataset root (``out``).
    """
    if dataset not in WRITERS:
        raise SampleDataError(f"unknown dataset {dataset!r}; valid: {sorted(WRITERS)}")
    if clips < 1:
        raise SampleDataError(f"--clips must be at least 1, got {clips}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SampleDataError(f"{out} exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    log.info("writing %d %s sample clips to %s", clips, dataset, out)
    WRITERS[dataset](out, clips=clips, seed=seed)
    return out
