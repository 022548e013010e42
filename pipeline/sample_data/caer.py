"""CAER sample data: rendered ``.avi`` clips in CAER's class-folder layout, plus ASR-like text.

Writes ``<out>/train|validation|test/<Class>/<NNNN>.avi`` (numbered per class folder from
``0001``; every split gets all seven class folders, empty ones included, as in the release) and
``<out>/transcripts.csv``, the sidecar a speech recogniser would produce: the words each clip
speaks. The CAER manifest names that file, so the adapter picks the text up without options.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.datasets.transcripts import write_sidecar
from pipeline.manifest import SPLITS, load_manifest
from pipeline.sample_data import render, signals
from pipeline.sample_data.meld import split_counts

log = logging.getLogger(__name__)

SIZES = ((320, 240), (480, 360), (640, 360))
NO_FACE_EVERY = 12


@dataclass(frozen=True)
class Clip:
    """One planned clip: where it goes and what it shows and says."""

    split: str
    label: str
    number: int
    transcript: str
    duration_s: float

    @property
    def sample_id(self) -> str:
        return f"{self.split}/{self.label}/{self.number:04d}"


def write(out: Path, *, clips: int, seed: int) -> None:
    """Write a CAER-layout sample dataset under ``out``.

    Args:
        out: an existing, empty folder; becomes the dataset root.
        clips: number of clips (about 60/20/20 over train/val/test, at least one per split
            from 3 clips on; classes cycle in the manifest's label order within each split;
            about one in twelve shows no face).
        seed: the only source of randomness; the same seed writes the same files.
    """
    manifest = load_manifest("caer")
    rng = random.Random(seed)
    planned = plan(manifest.labels, split_counts(clips), rng)
    for split in SPLITS:
        for label in manifest.labels:
            (out / manifest.splits[split].media / label).mkdir(parents=True, exist_ok=True)
    for index, clip in enumerate(planned):
        folder = out / manifest.splits[clip.split].media / clip.label
        render.render_clip(render.ClipRequest(
            path=folder / f"{clip.number:04d}{manifest.media_ext}",
            emotions=(signals.canonical(clip.label),), transcript=clip.transcript,
            duration_s=clip.duration_s, size=SIZES[index % len(SIZES)],
            face=index % NO_FACE_EVERY != NO_FACE_EVERY - 1, seed=rng.randrange(2**31)))
    write_sidecar(out / str(manifest.transcripts), {c.sample_id: c.transcript for c in planned})
    log.info("CAER sample data: %d clips (%s) in %s", len(planned),
             dict(Counter(c.split for c in planned)), out)


def plan(labels: tuple[str, ...], counts: dict[str, int], rng: random.Random) -> list[Clip]:
    """The clips split by split; within a split, class ``i % len(labels)`` for the i-th clip."""
    clips: list[Clip] = []
    for split in SPLITS:
        numbers: Counter[str] = Counter()
        for index in range(counts[split]):
            label = labels[index % len(labels)]
            numbers[label] += 1
            transcript = signals.transcript_for([signals.canonical(label)], rng)
            clips.append(Clip(split, label, numbers[label], transcript,
                              round(rng.uniform(2.0, 4.0), 2)))
    return clips
