"""AFEW-VA (Kossaifi et al., Image and Vision Computing 2017): film clips as folders of frames
with per-frame valence and arousal.

Official layout::

    <root>/<clip>/00000.png, 00001.png, ...      the frames
    <root>/<clip>/<clip>.json                    {"actor": ..., "video_id": ..., "frames":
                                                  {"00000": {"valence": v, "arousal": a,
                                                             "landmarks": [[x, y] x 68]}, ...}}

Decisions:

- One sample per clip folder; ``sample_id`` is the folder's name; ``media_path`` the folder
  (frames decoded by :mod:`pipeline.frames_folder`); no transcript; ``label`` -1 (no classes).
- ``targets`` follows the manifest's ``targets`` (valence, arousal): the mean over the clip's
  annotated frames (the clip-level target: the features are clip-level too), divided by 10
  into [-1, 1] (:data:`SCALE`, :data:`CLIP_TARGET`).
- The release has no splits: a clip's split is its actor's, from the sha256 of the actor's
  name (:func:`actor_split`: about 70 / 15 / 15 % of the actors), so no actor is in two splits
  and the split of a clip never changes.
- A folder without its JSON is not a clip and is skipped (warned, with a count); a JSON whose
  folder has no frame is a ``missing_file`` failure; a value outside [-10, 10] or a malformed
  JSON is an error naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from pipeline.datasets.table import DatasetError, SampleTable, build_table
from pipeline.failures import Failure, Reason, Stage
from pipeline.frames_folder import SUFFIXES
from pipeline.manifest import SPLITS, DatasetManifest

log = logging.getLogger(__name__)

#: The annotations' range is -10..10: targets are divided by this into [-1, 1].
SCALE = 10.0
#: How a clip's per-frame values become its target.
CLIP_TARGET = "mean"
#: What decides a clip's split (the release has none): its actor, so no actor is in two.
SPLIT_BY = "actor"
#: Actor buckets (sha256 of the name, modulo 20) per split: 14 / 3 / 3 of 20.
SPLIT_BUCKETS = {"train": range(0, 14), "val": range(14, 17), "test": range(17, 20)}


def actor_split(actor: str) -> str:
    """The split of every clip of ``actor``: the bucket of the sha256 of the name."""
    bucket = int(hashlib.sha256(actor.encode("utf-8")).hexdigest()[:8], 16) % 20
    return next(split for split, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def read(root: Path, manifest: DatasetManifest, *, annotations: Path | None = None,
         transcripts: Path | None = None) -> SampleTable:
    """Read AFEW-VA's folders into a sample table.

    Args:
        root: the dataset root holding the clip folders (absolute, existing).
        manifest: the AFEW-VA manifest (its ``targets`` name the columns of ``targets``).
        annotations: unused (the annotations are in the clip folders). Must be None.
        transcripts: unused (AFEW-VA has no speech). Must be None.

    Returns:
        one row per clip folder with a JSON, ordered by split then natural folder order.

    Raises:
        DatasetError: annotations or transcripts passed, a malformed JSON, a value outside
            [-10, 10], a target the manifest names that is not valence or arousal.
    """
    for given, what in ((annotations, "annotations"), (transcripts, "transcripts")):
        if given is not None:
            raise DatasetError(given, f"AFEW-VA has no separate {what}: the annotations are "
                                      "the JSON files in the clip folders")
    unknown = [t for t in manifest.targets if t not in ("valence", "arousal")]
    if unknown:
        raise DatasetError(f"manifests/{manifest.name}.yaml", f"target(s) {unknown} are not "
                           "annotated in AFEW-VA (valence, arousal)", column="targets")
    known_bad = {k.sample_id: k.note for k in manifest.known_bad}
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    skipped = []
    for folder in _clip_folders(root):
        annotation = folder / f"{folder.name}.json"
        if not annotation.is_file():
            skipped.append(folder.name)
            continue
        clip = read_annotation(annotation)
        split = actor_split(clip["actor"])
        if folder.name in known_bad:
            failures.append(Failure(folder.name, split, Stage.ADAPTER, Reason.KNOWN_BAD,
                                    known_bad[folder.name]))
        elif not _has_frames(folder):
            failures.append(Failure(folder.name, split, Stage.ADAPTER, Reason.MISSING_FILE,
                                    f"no frames ({', '.join(SUFFIXES)}) in {folder}"))
        else:
            rows.append({"sample_id": folder.name, "split": split, "media_path": str(folder),
                         "start_s": None, "end_s": None, "transcript": None, "label": -1,
                         "targets": [clip[t] / SCALE for t in manifest.targets]})
    if skipped:
        log.warning("%s: %d folders without their <clip>.json are not clips and are left out; "
                    "first: %s", root, len(skipped), skipped[:10])
    rows.sort(key=lambda r: SPLITS.index(r["split"]))  # stable: natural order within a split
    log.info("AFEW-VA: %d clips, %d failures from %s", len(rows), len(failures), root)
    return build_table(manifest.name, rows, failures, multilabel=False, source=root,
                       targets=True)


def read_annotation(path: Path) -> dict[str, Any]:
    """A clip's JSON: its actor and the mean valence and arousal over its annotated frames.

    Raises:
        DatasetError: not JSON, no ``frames`` mapping or no actor, a frame without a numeric
            valence or arousal in [-10, 10] (names the file and the frame).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"not valid JSON ({err})") from None
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, dict) or not frames:
        raise DatasetError(path, "expected an object with a non-empty 'frames' mapping",
                           column="frames")
    actor = data.get("actor")
    if not isinstance(actor, str) or not actor:
        raise DatasetError(path, "expected the clip's 'actor' (a name): splits are by actor",
                           column="actor")
    sums = {"valence": 0.0, "arousal": 0.0}
    for frame, values in frames.items():
        for key in sums:
            value = values.get(key) if isinstance(values, dict) else None
            if not isinstance(value, (int, float)) or not -SCALE <= value <= SCALE:
                raise DatasetError(path, f"frame {frame!r}: {key} {value!r} is not a number "
                                         f"in [-{SCALE:g}, {SCALE:g}]", column=f"frames.{key}")
            sums[key] += float(value)
    return {"actor": actor, **{key: total / len(frames) for key, total in sums.items()}}


def _clip_folders(root: Path) -> list[Path]:
    with os.scandir(root) as entries:
        names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    return [root / name for name in sorted(names, key=_natural)]


def _natural(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _has_frames(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and e.name.lower().endswith(SUFFIXES) for e in entries)
