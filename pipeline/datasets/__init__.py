"""Dataset adapters: each reads one dataset's official raw layout into a sample table.

Every adapter module exposes ``read(root, manifest, *, annotations=None, transcripts=None)
-> SampleTable`` (see :mod:`pipeline.datasets.table`); what is data about the dataset (labels,
layout, known-bad clips) lives in ``manifests/<name>.yaml``. ``videos`` (any folder or CSV list
of videos) builds its manifest at run time from the list (:func:`dataset_source`).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from pipeline.datasets import afewva, caer, meld, mosei, videos, voxceleb2
from pipeline.datasets.subset import subset_manifest
from pipeline.datasets.table import DatasetError, SampleTable
from pipeline.manifest import DatasetManifest, load_manifest

DATASETS: dict[str, ModuleType] = {
    "meld": meld,
    "caer": caer,
    "mosei": mosei,
    "voxceleb2": voxceleb2,
    "afewva": afewva,
    "videos": videos,
}

__all__ = ["DATASETS", "DatasetError", "SampleTable", "dataset_source", "get_adapter", "scan",
           "text_source"]


def get_adapter(name: str) -> ModuleType:
    """The adapter module for a dataset name; an unknown name lists the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError("--dataset", f"unknown dataset {name!r}; valid: {sorted(DATASETS)}") \
            from None


def text_source(name: str) -> str:
    """Where a dataset's transcripts come from: ``sidecar`` for a dataset released without
    text (its adapter's ``TEXT_SOURCE``: a sidecar made by ``cli transcribe``), else
    ``annotations`` (the dataset ships its text; AFEW-VA ships none)."""
    return str(getattr(DATASETS.get(name), "TEXT_SOURCE", "annotations"))


def dataset_source(name: str, root: str | Path | None, *, list_file: str | Path | None = None,
                   faces: str | None = None, transcripts: str | Path | None = None,
                   annotations: str | Path | None = None) -> tuple[Path, DatasetManifest]:
    """The root to read and the manifest of a dataset as the command line names it.

    ``videos`` builds its manifest from ``list_file`` or the folder
    (:func:`pipeline.datasets.videos.build_manifest`); every other dataset reads
    ``manifests/<name>.yaml`` and takes neither a list nor a face option. For VoxCeleb2,
    ``annotations`` is a list of the sample ids to extract, and the manifest's sha256 covers
    it (:func:`pipeline.datasets.subset.subset_manifest`); for the others it is the folder of
    annotation files, which the manifest does not record.

    Raises:
        DatasetError: an unknown dataset, a missing root, or ``list_file`` / ``faces`` given
            for a dataset other than ``videos``.
    """
    get_adapter(name)
    if name == videos.NAME:
        return videos.build_manifest(Path(root) if root is not None else None,
                                     Path(list_file) if list_file is not None else None,
                                     faces=faces,
                                     transcripts=Path(transcripts) if transcripts else None)
    for given, option in ((list_file, "--list"), (faces, "--faces")):
        if given is not None:
            raise DatasetError(option, f"only for --dataset videos; {name} reads its "
                                       f"official layout and manifests/{name}.yaml")
    if root is None:
        raise DatasetError("--root", f"missing: --dataset {name} reads the dataset's folder")
    if name == "voxceleb2" and annotations is not None:
        return Path(root), subset_manifest(load_manifest(name), Path(annotations))
    return Path(root), load_manifest(name)


def scan(name: str, root: str | Path, *, manifest: DatasetManifest | None = None,
         annotations: str | Path | None = None,
         transcripts: str | Path | None = None) -> SampleTable:
    """Read a raw dataset into its sample table.

    Args:
        name: dataset name (a key of :data:`DATASETS`).
        root: the dataset root in its official layout.
        manifest: defaults to ``manifests/<name>.yaml`` (for ``videos``: the folder form's
            manifest of ``root``, see :func:`dataset_source`).
        annotations: folder holding the annotation files if not under ``root`` (VoxCeleb2: a
            list of the sample ids to read, see :mod:`pipeline.datasets.subset`).
        transcripts: optional sidecar (CSV ``sample_id,transcript``) for datasets released
            without transcripts (CAER, VoxCeleb2).

    Raises:
        DatasetError: the root, an annotation file or a column is missing or unreadable.
    """
    adapter = get_adapter(name)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset root not found "
                           "(expected a folder in the official layout)")
    if manifest is None:
        root, manifest = dataset_source(name, root, transcripts=transcripts,
                                        annotations=annotations)
    return adapter.read(
        root.resolve(), manifest,
        annotations=Path(annotations) if annotations else None,
        transcripts=Path(transcripts) if transcripts else None,
    )
