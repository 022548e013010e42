"""VoxCeleb2 sample data: rendered face-track utterances in VoxCeleb2's speaker/video layout.

Writes ``<out>/dev|test/mp4/id<NNNNN>/<11-character YouTube-like id>/<NNNNN>.mp4``: several
speakers, each in one split only, with two or three videos of one to three utterances each,
numbered per speaker across its videos as in the release. Frames are 224 x 224, the release's
size, and always show a face (the release consists of face tracks). Clips are unlabeled
(neutral rendering); each speaker draws its words from its own pair of class vocabularies, so
speakers differ in what they say.

``<out>/transcripts.csv`` holds what a speech recogniser would produce for every clip, plus one
row for an utterance whose file is absent, as a lost file of a large download would be: the
adapter reports it as a ``missing_file`` failure. ``clips`` counts the files actually written.
"""

from __future__ import annotations

import logging
import random
import string
from dataclasses import dataclass
from pathlib import Path

from pipeline.datasets.transcripts import write_sidecar
from pipeline.manifest import load_manifest
from pipeline.sample_data import render, signals

log = logging.getLogger(__name__)

SIZE = (224, 224)
TEST_SHARE = 0.2
MAX_PER_SPEAKER = 6
_YOUTUBE_CHARS = string.ascii_letters + string.digits + "-_"


@dataclass(frozen=True)
class Utterance:
    """One planned utterance of one speaker in one video."""

    split: str
    speaker: str
    video: str
    number: int
    transcript: str
    duration_s: float

    @property
    def sample_id(self) -> str:
        return f"{self.speaker}/{self.video}/{self.number:05d}"


def write(out: Path, *, clips: int, seed: int) -> None:
    """Write a VoxCeleb2-layout sample dataset under ``out``.

    Args:
        out: an existing, empty folder; becomes the dataset root.
        clips: number of utterance files (about 80/20 over dev/test, at least one test speaker
            from 3 clips on).
        seed: the only source of randomness; the same seed writes the same files.
    """
    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}")
    manifest = load_manifest("voxceleb2")
    rng = random.Random(seed)
    planned = plan(split_counts(clips), rng)
    for utt in planned:
        path = (out / manifest.splits[utt.split].media / utt.speaker / utt.video
                / f"{utt.number:05d}{manifest.media_ext}")
        render.render_clip(render.ClipRequest(
            path=path, emotions=(), transcript=utt.transcript, duration_s=utt.duration_s,
            size=SIZE, face=True, seed=rng.randrange(2**31)))
    sidecar = {u.sample_id: u.transcript for u in planned}
    lost = lost_utterance(planned)
    sidecar[lost.sample_id] = lost.transcript
    write_sidecar(out / str(manifest.transcripts), sidecar)
    log.info("VoxCeleb2 sample data: %d utterances of %d speakers in %s (sidecar also lists "
             "lost file %s)", len(planned), len({u.speaker for u in planned}), out,
             lost.sample_id)


def split_counts(clips: int) -> dict[str, int]:
    """Utterances per split: about 80/20 dev/test (VoxCeleb2 has no validation split)."""
    test = max(1, round(clips * TEST_SHARE)) if clips >= 3 else 0
    return {"train": clips - test, "test": test}


def plan(counts: dict[str, int], rng: random.Random) -> list[Utterance]:
    """Utterances split by split, speaker by speaker (speakers never span two splits)."""
    sizes = {split: _speaker_sizes(n, rng) for split, n in counts.items()}
    n_speakers = sum(len(s) for s in sizes.values())
    ids = iter(f"id{n:05d}" for n in sorted(rng.sample(range(10, 9300), n_speakers)))
    return [utt for split, split_sizes in sizes.items() for size in split_sizes
            for utt in _speaker(split, next(ids), size, rng)]


def _speaker_sizes(n: int, rng: random.Random) -> list[int]:
    """Utterances per speaker: ``n`` cut into pieces of 3 to 6 (a smaller last one)."""
    sizes = []
    while n > 0:
        sizes.append(min(n, rng.randint(MAX_PER_SPEAKER // 2, MAX_PER_SPEAKER)))
        n -= sizes[-1]
    return sizes


def _speaker(split: str, speaker: str, n: int, rng: random.Random) -> list[Utterance]:
    """``n`` utterances of one speaker over two or three videos, numbered across videos."""
    vocabulary = rng.sample(signals.EMOTIONS, 2)
    n_videos = min(n, rng.randint(2, 3))
    videos = ["".join(rng.choices(_YOUTUBE_CHARS, k=11)) for _ in range(n_videos)]
    return [Utterance(split, speaker, videos[i * n_videos // n], i + 1,
                      signals.transcript_for(vocabulary, rng), round(rng.uniform(2.0, 4.0), 2))
            for i in range(n)]


def lost_utterance(planned: list[Utterance]) -> Utterance:
    """An utterance after the first speaker's last one, listed in the sidecar but not written."""
    last = max((u for u in planned if u.speaker == planned[0].speaker), key=lambda u: u.number)
    return Utterance(last.split, last.speaker, last.video, last.number + 1,
                     "This file was lost in the download.", last.duration_s)
