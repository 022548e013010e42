"""Dataset adapters: each reads one dataset's official raw layout into a sample table.

Every adapter module exposes ``read(root, manifest, *, annotations=None, transcripts=None)
-> SampleTable`` (see :mod:`pipeline.datasets.table`); what is data about the dataset (labels,
layout, known-bad clips) lives in ``manifests/<name>.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from pipeline.datasets import afewva, caer, meld, mosei, voxceleb2
from pipeline.datasets.table import DatasetError, SampleTable
from pipeline.manifest import DatasetManifest, load_manifest

DATASETS: dict[str, ModuleType] = {
    "meld": meld,
    "caer": caer,
    "mosei": mosei,
    "voxceleb2": voxceleb2,
    "afewva": afewva,
}

__all__ = ["DATASETS", "DatasetError", "SampleTable", "get_adapter", "scan", "text_source"]


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


def scan(name: str, root: str | Path, *, manifest: DatasetManifest | None = None,
         annotations: str | Path | None = None,
         transcripts: str | Path | None = None) -> SampleTable:
    """Read a raw dataset into its sample table.

    Args:
        name: dataset name (a key of :data:`DATASETS`).
        root: the dataset root in its official layout.
        manifest: defaults to ``manifests/<name>.yaml``.
        annotations: folder holding the annotation files if not under ``root``.
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
    manifest = manifest or load_manifest(name)
    return adapter.read(
        root.resolve(), manifest,
        annotations=Path(annotations) if annotations else None,
        transcripts=Path(transcripts) if transcripts else None,
    )
