"""AFEW-VA sample data: clips as folders of PNG frames with per-frame valence and arousal.

Writes ``<out>/<clip>/<NNNNN>.png`` (the frames, 25 per second) and ``<out>/<clip>/<clip>.json``
(``actor``, ``video_id``, ``frames``: per frame ``valence``, ``arousal`` and ``landmarks``),
the release's layout; clips are numbered ``001``, ``002``, ... Each clip shows one emotion
(the face's tint, size and motion of :mod:`pipeline.sample_data.signals`), and its valence and
arousal are that emotion's point of the circumplex (:data:`CIRCUMPLEX`) times an intensity, with
a small drift from frame to frame: the targets are carried by the picture, so a working
pipeline learns them. The landmarks are left empty (nothing reads them).

The actors are named so that every split has clips (the adapter splits by a hash of the actor's
name); on top of the usable clips, one folder without its JSON (not a clip: skipped) and one JSON
without frames (a ``missing_file`` failure) exercise the adapter.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

from pipeline.datasets.afewva import actor_split
from pipeline.manifest import SPLITS
from pipeline.sample_data import render, signals
from pipeline.sample_data.meld import split_counts

log = logging.getLogger(__name__)

SIZE = (160, 120)
DURATION_S = (1.0, 1.6)
INTENSITY = (0.7, 1.0)
#: (valence, arousal) of each emotion on AFEW-VA's -10..10 scale, after the circumplex model
#: of affect (Russell 1980): pleasant or not, calm or excited.
CIRCUMPLEX = {"neutral": (0.0, 0.0), "joy": (7.0, 5.0), "sadness": (-6.0, -4.0),
              "anger": (-6.0, 7.0), "fear": (-5.0, 6.0), "disgust": (-6.0, 2.0),
              "surprise": (3.0, 8.0)}


def write(out: Path, *, clips: int, seed: int) -> None:
    """Write an AFEW-VA-layout sample dataset under ``out``.

    Args:
        out: an existing, empty folder; becomes the dataset root.
        clips: usable clips (about 60/20/20 over train/val/test by their actors, at least one
            per split from 3 on); emotions cycle within each split.
        seed: the only source of randomness; the same seed writes the same files.
    """
    rng = random.Random(seed)
    actors = _actors(split_counts(clips))
    emotions = list(CIRCUMPLEX)
    with tempfile.TemporaryDirectory(prefix="afewva-") as tmp:
        for number, (split, actor, k) in enumerate(actors, start=1):
            clip = f"{number:03d}"
            write_clip(out / clip, clip, actor, emotions[k % len(emotions)], rng, Path(tmp))
    extra = len(actors) + 1
    (out / f"{extra:03d}").mkdir()  # a folder without its JSON: not a clip
    _write_json(out / f"{extra + 1:03d}", f"{extra + 1:03d}", "actor-lost", [(0.0, 0.0)])
    log.info("AFEW-VA sample data: %d clips and 2 defective folders in %s", len(actors), out)


def _actors(counts: dict[str, int]) -> list[tuple[str, str, int]]:
    """``(split, actor, index in the split)`` per clip: two clips per actor, the actors named
    ``actor-<n>`` with the first n whose hash falls in the split."""
    out = []
    names = (f"actor-{n:04d}" for n in itertools.count())
    pools: dict[str, list[str]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        for k in range(counts[split]):
            if k % 2 == 0:
                pools[split].append(next(n for n in names if actor_split(n) == split))
            out.append((split, pools[split][-1], k))
    return out


def write_clip(folder: Path, clip: str, actor: str, emotion: str, rng: random.Random,
               tmp: Path) -> None:
    """Render ``emotion`` (with a face) and write its frames and annotations to ``folder``."""
    duration = rng.uniform(*DURATION_S)
    video = tmp / f"{clip}.avi"
    render.render_clip(render.ClipRequest(video, (emotion,), "", duration, SIZE, audio=False,
                                          seed=rng.randrange(2**31)))
    folder.mkdir(parents=True)
    n = 0
    with av.open(str(video)) as src:
        for n, frame in enumerate(src.decode(video=0)):
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(folder / f"{n:05d}.png")
    video.unlink()
    intensity = rng.uniform(*INTENSITY)
    valence, arousal = (intensity * v for v in CIRCUMPLEX[signals.canonical(emotion)])
    drift = np.random.default_rng(rng.randrange(2**31)).normal(0.0, 0.6, size=(n + 1, 2))
    values = [(float(np.clip(round(valence + dv), -10, 10)),
               float(np.clip(round(arousal + da), -10, 10))) for dv, da in drift]
    _write_json(folder, clip, actor, values)


def _write_json(folder: Path, clip: str, actor: str, values: list[tuple[float, float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frames = {f"{k:05d}": {"valence": v, "arousal": a, "landmarks": []}
              for k, (v, a) in enumerate(values)}
    (folder / f"{clip}.json").write_text(json.dumps(
        {"actor": actor, "video_id": clip, "frames": frames}, indent=1), encoding="utf-8")
