"""Any folder of videos, or a CSV list of them: a user's own clips as an ordinary dataset.

Two forms:

- ``--dataset videos --root DIR``: every file under ``DIR`` (recursively, hidden entries
  skipped) whose suffix is one of :data:`VIDEO_SUFFIXES`, in path order; ``sample_id`` is the
  path under ``DIR`` without its suffix (with it where two files differ only in it); every
  clip unlabelled (-1), split ``train``, without transcript (a transcript sidecar keyed by
  those ids adds them).
- ``--dataset videos --list FILE.csv [--root DIR]``: the rows of a videos list
  (:mod:`pipeline.datasets.video_list`: ``path`` and optional ``sample_id``, ``split``,
  ``label``, ``transcript``, ``start_s``, ``end_s``). Paths are relative to ``--root`` when it
  is given, else to the list's own folder (a list kept beside its videos travels with them).

Decisions:

- The manifest is built at run time (:func:`build_manifest`) from ``manifests/videos.yaml``:
  label names are the distinct non-empty ``label`` values, **sorted** (a class's index does not
  depend on the order of the rows); the face policy comes from ``--faces``
  (:data:`FACE_POLICIES`); the modalities are those the clips can give (no audio when every
  clip is a folder of frames, text only when some clip has a transcript).
- Its ``sha256`` (the store identity's ``manifest_sha256``) covers the template's sha256, the
  list's sha256 (or, for a folder, the sha256 of its listing: each file's path and size), the
  label names and the face policy: another list, another label set or a changed folder is
  another store; the same list at another path is the same store. :func:`read` recomputes it,
  so a list edited between planning and reading is refused.
- A listed path that does not exist is a ``missing_file`` failure, as in every adapter; a path
  that is a folder is a clip's folder of frames (AFEW-VA's release format).
- A transcript sidecar (``--transcripts``, which ``cli transcribe`` writes) fills the clips the
  list gives no transcript; a clip with two different transcripts is an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.config import file_sha256
from pipeline.datasets.table import DatasetError, SampleTable, build_table
from pipeline.datasets.transcripts import read_sidecar
from pipeline.datasets.video_list import ListRow, default_sample_id, read_list
from pipeline.failures import Failure, Reason, Stage
from pipeline.manifest import DatasetManifest, FacePolicy, load_manifest

log = logging.getLogger(__name__)

NAME = "videos"
#: What the folder form takes as a video (any container PyAV reads can be listed explicitly).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv",
                  ".wmv", ".3gp", ".ts", ".mts")
#: ``--faces`` values: crop (no face: a ``no_face`` failure), crop where a face is found and
#: keep the whole frame elsewhere (``face_ratio`` 0 in the index), or never crop.
FACE_POLICIES = {"crop": FacePolicy(crop=True, no_face="fail"),
                 "crop-or-full": FacePolicy(crop=True, no_face="full_frame"),
                 "none": FacePolicy(crop=False, no_face="fail")}


def build_manifest(root: Path | None, list_file: Path | None, *, faces: str | None = None,
                   transcripts: Path | None = None) -> tuple[Path, DatasetManifest]:
    """The dataset root and the run-time manifest of a folder or list of videos.

    Args:
        root: the folder the clips are under (required without ``list_file``).
        list_file: a videos list; its paths are relative to ``root``, or to its own folder
            when ``root`` is None.
        faces: a key of :data:`FACE_POLICIES` (default: the template's, ``crop``).
        transcripts: a transcript sidecar given with the clips (text is then available).

    Raises:
        DatasetError: neither given, a root that is not a folder, an unknown ``faces``, an
            unreadable list, or a folder without any video.
    """
    if root is None and list_file is None:
        raise DatasetError("--root", "--dataset videos needs --root DIR (every video under "
                                     "it) or --list FILE.csv")
    root = (root if root is not None else Path(list_file or ".").parent).resolve()
    if not root.is_dir():
        raise DatasetError(root, "dataset root not found (expected the folder the videos "
                                 "are under)")
    template = load_manifest(NAME)
    policy = template.faces if faces is None else _face_policy(faces)
    if list_file is not None:
        rows = read_list(list_file)
        labels = tuple(sorted({r.label for r in rows if r.label is not None}))
        source = {"list_sha256": file_sha256(list_file)}
        has_text = transcripts is not None or any(r.transcript for r in rows)
        has_audio = not all((root / r.path).is_dir() for r in rows)
    else:
        files = folder_videos(root)
        labels, source = (), {"listing_sha256": listing_sha256(root, files)}
        has_text, has_audio = transcripts is not None, True
    modalities = tuple(m for m in template.modalities
                       if (m != "audio" or has_audio) and (m != "text" or has_text))
    manifest = dataclasses.replace(
        template, labels=labels, faces=policy, modalities=modalities,
        label_file=str(list_file.resolve()) if list_file is not None else None)
    return root, dataclasses.replace(manifest, sha256=_sha256(template, manifest, source))


def _face_policy(faces: str) -> FacePolicy:
    if faces not in FACE_POLICIES:
        raise DatasetError("--faces", f"{faces!r} is not one of {list(FACE_POLICIES)}")
    return FACE_POLICIES[faces]


def _sha256(template: DatasetManifest, manifest: DatasetManifest,
            source: dict[str, str]) -> str:
    """What makes a videos store reproducible, hashed (see the module docstring)."""
    content = {"template_sha256": template.sha256, **source, "labels": list(manifest.labels),
               "faces": dataclasses.asdict(manifest.faces)}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def folder_videos(root: Path) -> list[Path]:
    """Every video file under ``root`` (:data:`VIDEO_SUFFIXES`, any case), hidden files and
    folders skipped, sorted by their path under ``root``.

    Raises:
        DatasetError: no video file under ``root``.
    """
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, n) for n in names
                  if not n.startswith(".") and n.lower().endswith(VIDEO_SUFFIXES)]
    if not found:
        raise DatasetError(root, f"no video file under this folder (suffixes "
                                 f"{', '.join(VIDEO_SUFFIXES)}); list other files with --list")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def listing_sha256(root: Path, files: list[Path]) -> str:
    """sha256 of a folder's listing: one ``path<TAB>size`` line per file (not the contents:
    hashing every video would read the whole dataset before the first clip)."""
    lines = "".join(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def read(root: Path, manifest: DatasetManifest, *, annotations: Path | None = None,
         transcripts: Path | None = None) -> SampleTable:
    """Read a folder or list of videos into a sample table (the adapter interface).

    Args:
        root: the folder the clips are under (absolute, existing).
        manifest: the run-time manifest of :func:`build_manifest` (its ``label_file`` is the
            list, or None for the folder form).
        annotations: unused; the list is ``--list``. Must be None.
        transcripts: a transcript sidecar (``sample_id,transcript``).

    Raises:
        DatasetError: annotations given, a manifest that is not this folder's or list's (the
            list or folder changed since it was built, or the template was passed as is), an
            invalid list, duplicate sample ids, or a transcript given twice differently.
    """
    if annotations is not None:
        raise DatasetError(annotations, "--dataset videos has no annotation files: give the "
                                        "list with --list")
    list_file = Path(manifest.label_file) if manifest.label_file else None
    rebuilt = build_manifest(root, list_file, faces=_faces_key(manifest.faces),
                             transcripts=transcripts)[1]
    if rebuilt.sha256 != manifest.sha256:
        raise DatasetError(list_file or root, "changed since the run was planned (or the "
                                              "manifest was not built by build_manifest)")
    rows = (read_list(list_file) if list_file is not None
            else _folder_rows(root, folder_videos(root)))
    sidecar = read_sidecar(transcripts) if transcripts is not None else {}
    samples, failures = [], []
    for row in rows:
        media = root / row.path
        if not media.exists():
            failures.append(Failure(row.sample_id, row.split, Stage.ADAPTER,
                                    Reason.MISSING_FILE, f"{media} not found"))
            continue
        samples.append(_sample(row, media, manifest, sidecar, list_file))
    log.info("videos: %d clips, %d failures, labels %s from %s", len(samples), len(failures),
             list(manifest.labels), list_file or root)
    return build_table(NAME, samples, failures, multilabel=False, source=list_file or root)


def _faces_key(policy: FacePolicy) -> str:
    return next(k for k, v in FACE_POLICIES.items() if v == policy)


def _folder_rows(root: Path, files: list[Path]) -> list[ListRow]:
    """The folder form's clips; files that differ only in their suffix (``a.mp4``, ``a.avi``)
    keep it in their ids, so every id is unique."""
    paths = [p.relative_to(root).as_posix() for p in files]
    stems = Counter(default_sample_id(p) for p in paths)
    return [ListRow(path=p, sample_id=p if stems[default_sample_id(p)] > 1
                    else default_sample_id(p), split="train", label=None, transcript=None,
                    start_s=None, end_s=None, row=0) for p in paths]


def _sample(row: ListRow, media: Path, manifest: DatasetManifest, sidecar: dict[str, str],
            list_file: Path | None) -> dict[str, Any]:
    transcript = row.transcript
    heard = sidecar.get(row.sample_id)
    if transcript is not None and heard is not None and heard != transcript:
        raise DatasetError(list_file or media, f"clip {row.sample_id!r} has the transcript "
                                               f"{transcript!r} here and {heard!r} in the "
                                               "sidecar; keep one", row=row.row or None,
                           column="transcript")
    return {"sample_id": row.sample_id, "split": row.split, "media_path": str(media),
            "start_s": row.start_s, "end_s": row.end_s,
            "transcript": transcript if transcript is not None else heard,
            "label": manifest.labels.index(row.label) if row.label is not None else -1}


__all__ = ["FACE_POLICIES", "VIDEO_SUFFIXES", "build_manifest", "folder_videos",
           "listing_sha256", "read"]
