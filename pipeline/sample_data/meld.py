"""MELD sample data: rendered clips in MELD's raw layout, with the release's defects.

Writes the three annotation CSVs with MELD's eleven columns (MELD's emotion spelling, sentiment
derived from the emotion, Friends speakers, season/episode, episode times in both of MELD's time
formats, typographic apostrophes and quoted commas in utterances) and the three media folders.
On top of the ``clips`` usable clips it reproduces the defects of the official release, so that
the pipeline's handling of them is exercised:

- train ``dia125_utt3`` is annotated but its file is corrupt;
- dev ``dia110_utt7`` is annotated but has no file;
- test ``dia120_utt0`` is annotated and its file is cut short (an interrupted copy): it is in no
  known-bad list, so extraction must find it broken and record ``corrupt_media``;
- ``test/output_repeated_splits_test/final_videos_test0.mp4`` is a clip no CSV row names.
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from pipeline.datasets.meld import COLUMNS
from pipeline.manifest import SPLITS, DatasetManifest, load_manifest
from pipeline.sample_data import render, signals

log = logging.getLogger(__name__)

SPEAKERS = ("Rachel", "Ross", "Monica", "Chandler", "Joey", "Phoebe", "Gunther", "Janice")
SIZES = ((320, 240), (480, 360), (640, 360))
SPLIT_SHARES = {"val": 0.2, "test": 0.2}  # train takes the rest
NO_FACE_EVERY = 12
MAX_UTTERANCES_PER_DIALOGUE = 4

# (split, Dialogue_ID, Utterance_ID) of the release's defects; usable clips avoid these dialogues.
CORRUPT = ("train", 125, 3)
MISSING = ("val", 110, 7)
TRUNCATED = ("test", 120, 0)
UNANNOTATED = ("test", "final_videos_test0")


@dataclass(frozen=True)
class Row:
    """One utterance: a CSV row and, unless it is a defect, the clip rendered for it."""

    split: str
    dialogue: int
    utterance: int
    emotion: str
    transcript: str
    speaker: str
    season: int
    episode: int
    start_s: float
    duration_s: float

    @property
    def clip_id(self) -> str:
        return f"dia{self.dialogue}_utt{self.utterance}"


def write(out: Path, *, clips: int, seed: int) -> None:
    """Write a MELD-layout sample dataset under ``out``.

    Args:
        out: an existing, empty folder; becomes the dataset root.
        clips: number of usable clips (about 60/20/20 over train/val/test, at least one per
            split from 3 clips on; classes cycle in the manifest's label order in each split).
        seed: the only source of randomness; the same seed writes the same files.
    """
    manifest = load_manifest("meld")
    rng = random.Random(seed)
    usable = plan_rows(manifest, split_counts(clips), rng)
    defects = [_defect_row(manifest, split, dia, utt, rng)
               for split, dia, utt in (CORRUPT, MISSING, TRUNCATED)]
    for split in SPLITS:
        layout = manifest.splits[split]
        (out / layout.media).mkdir(parents=True, exist_ok=True)
        rows = sorted((r for r in usable + defects if r.split == split),
                      key=lambda r: (r.dialogue, r.utterance))
        write_csv(out / str(layout.annotations), rows)
    ext = manifest.media_ext
    for index, row in enumerate(usable):
        render.render_clip(_request(out / manifest.splits[row.split].media / (row.clip_id + ext),
                                    row, index, rng.randrange(2**31)))
    split, dia, utt = CORRUPT
    render.write_corrupt(out / manifest.splits[split].media / f"dia{dia}_utt{utt}{ext}", seed=seed)
    split, dia, utt = TRUNCATED
    _write_truncated(out / manifest.splits[split].media / f"dia{dia}_utt{utt}{ext}", rng)
    _write_unannotated(out / manifest.splits[UNANNOTATED[0]].media / (UNANNOTATED[1] + ext), rng)
    log.info("MELD sample data: %d usable clips, 3 defective rows, 1 unannotated file in %s",
             len(usable), out)


def split_counts(clips: int) -> dict[str, int]:
    """Usable clips per split: about 60/20/20, at least one per split when ``clips >= 3``."""
    if clips < 3:
        return {"train": clips, "val": 0, "test": 0}
    counts = {split: max(1, round(clips * share)) for split, share in SPLIT_SHARES.items()}
    return {"train": clips - sum(counts.values()), **counts}


def plan_rows(manifest: DatasetManifest, counts: dict[str, int], rng: random.Random) -> list[Row]:
    """The usable utterances, split by split, grouped into dialogues of 1 to 4 utterances.

    Classes cycle in the manifest's label order within each split, so every split holds every
    class once it has as many clips as there are classes. Dialogue ids count up from 0 per
    split, skipping the defects' dialogues.
    """
    rows: list[Row] = []
    for split in SPLITS:
        skip = {dia for s, dia, _ in (CORRUPT, MISSING, TRUNCATED) if s == split}
        dialogue, utterance, left, t, season, episode = -1, 0, 0, 0.0, 1, 1
        for index in range(counts[split]):
            if left == 0:
                # the next id, stepping over a defect's dialogue (at most one per split)
                dialogue = next(d for d in range(dialogue + 1, dialogue + 3) if d not in skip)
                utterance, left = 0, rng.randint(1, MAX_UTTERANCES_PER_DIALOGUE)
                season, episode = rng.randint(1, 10), rng.randint(1, 24)
                t = rng.uniform(30.0, 1200.0)
            emotion = manifest.labels[index % len(manifest.labels)]
            duration = round(rng.uniform(2.0, 4.0), 2)
            rows.append(Row(split, dialogue, utterance, emotion,
                            _transcript(emotion, len(rows), rng), rng.choice(SPEAKERS),
                            season, episode, round(t, 3), duration))
            t += duration + rng.uniform(0.1, 2.0)
            utterance, left = utterance + 1, left - 1
    return rows


def write_csv(path: Path, rows: list[Row]) -> None:
    """Write one annotation CSV as MELD does: CRLF line ends, quotes only where needed."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for sr_no, row in enumerate(rows, start=1):
            writer.writerow([
                sr_no, row.transcript, row.speaker, row.emotion, sentiment(row),
                row.dialogue, row.utterance, row.season, row.episode,
                format_time(row.start_s, long=sr_no % 2 == 0),
                format_time(row.start_s + row.duration_s, long=sr_no % 3 != 0),
            ])


def sentiment(row: Row) -> str:
    """MELD's sentiment of a row's emotion: joy positive, neutral neutral, surprise either."""
    if row.emotion == "joy":
        return "positive"
    if row.emotion == "neutral":
        return "neutral"
    if row.emotion == "surprise":  # MELD has both; the clip id picks one, deterministically
        return ("positive", "negative")[(row.dialogue + row.utterance) % 2]
    return "negative"


def format_time(seconds: float, *, long: bool) -> str:
    """A MELD time, ``HH:MM:SS,mmm`` (``long``) or ``H:MM:SS,mmm``: the release mixes both."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:0{2 if long else 1}d}:{minutes:02d}:{secs:02d},{millis:03d}"


def _transcript(emotion: str, index: int, rng: random.Random) -> str:
    # Typographic apostrophes and commas (quoted fields) as in the real utterances.
    text = signals.transcript_for([signals.canonical(emotion)], rng)
    lead = ("It’s ", "", "Well, ", "")[index % 4]
    return lead + (text[0].lower() + text[1:] if lead else text)


def _request(path: Path, row: Row, index: int, seed: int) -> render.ClipRequest:
    return render.ClipRequest(
        path=path, emotions=(signals.canonical(row.emotion),), transcript=row.transcript,
        duration_s=row.duration_s, size=SIZES[index % len(SIZES)],
        face=index % NO_FACE_EVERY != NO_FACE_EVERY // 2, seed=seed)


def _defect_row(manifest: DatasetManifest, split: str, dialogue: int, utterance: int,
                rng: random.Random) -> Row:
    emotion = manifest.labels[0]
    return Row(split, dialogue, utterance, emotion, _transcript(emotion, 1, rng), "Monica",
               rng.randint(1, 10), rng.randint(1, 24), round(rng.uniform(30.0, 1200.0), 3), 2.5)


def _write_truncated(path: Path, rng: random.Random) -> None:
    """A real clip with its second half (and the mp4 index written at the end) missing."""
    render.render_clip(render.ClipRequest(
        path=path, emotions=("neutral",), transcript=signals.transcript_for(["neutral"], rng),
        duration_s=2.5, size=SIZES[0], seed=rng.randrange(2**31)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_unannotated(path: Path, rng: random.Random) -> None:
    render.render_clip(render.ClipRequest(
        path=path, emotions=("neutral",), transcript=signals.transcript_for(["neutral"], rng),
        duration_s=2.0, size=SIZES[0], seed=rng.randrange(2**31)))
