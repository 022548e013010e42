"""Dataset manifests: what is data about a dataset, not code (``manifests/<name>.yaml``).

Label names in the official order, the raw layout of each split, known-bad clips, the face
policy. Adapters in :mod:`pipeline.datasets` read a manifest; nothing dataset-specific that could
change with a release is hard-coded in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import manifests
from pipeline.config import ConfigError, file_sha256, from_dict, load_yaml
from pipeline.extract_config import MODALITIES

# The shipped YAML files (the top-level ``manifests`` package: the source folder in a checkout,
# package data in an installed wheel).
MANIFEST_DIR = manifests.directory()
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitLayout:
    """Where one split lives in the official raw layout (paths relative to the dataset root)."""

    media: str
    annotations: str | None = None


@dataclass(frozen=True)
class KnownBad:
    """A clip the dataset's users know to be broken; it becomes a ``known_bad`` failure row."""

    split: Literal["train", "val", "test"]
    sample_id: str
    note: str


@dataclass(frozen=True)
class FacePolicy:
    """Whether clips are face-cropped, and what a clip without any face becomes.

    ``no_face: fail`` records a ``no_face`` failure (default); ``full_frame`` keeps the clip
    uncropped and records ``face_ratio = 0`` in the index.
    """

    crop: bool = True
    no_face: Literal["fail", "full_frame"] = "fail"


@dataclass(frozen=True)
class EvalDefaults:
    """Downstream defaults of a dataset: the optimiser of the paper's appendix and, where the
    dataset has its own, the class weights (``docs/CHOICES.md``).

    ``class_weights`` / ``class_weight_values`` override the evaluation config's keys of the
    same names (``fixed`` with one value per label, in label order; or ``inverse``).
    """

    lr: float
    weight_decay: float
    class_weights: Literal["inverse", "frequency", "fixed", "none"] | None = None
    class_weight_values: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DatasetManifest:
    """The parsed ``manifests/<name>.yaml``.

    ``targets`` names the dataset's continuous targets (``valence``, ``arousal``), which the
    adapter writes into the sample table's ``targets`` column, each scaled to [-1, 1].
    ``modalities`` names the store keys the dataset's clips can give (AFEW-VA's folders of
    frames: no audio, no text); extraction defaults to them and refuses the others.
    """

    name: str
    title: str
    labels: tuple[str, ...]
    multilabel: bool
    splits: dict[str, SplitLayout]
    media_ext: str
    targets: tuple[str, ...] = ()
    modalities: tuple[str, ...] = MODALITIES
    faces: FacePolicy = field(default_factory=FacePolicy)
    known_bad: tuple[KnownBad, ...] = ()
    label_file: str | None = None
    folds: dict[str, tuple[str, ...]] | None = None
    transcripts: str | None = None
    eval: EvalDefaults | None = None
    notes: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        bad = sorted(set(self.splits) - set(SPLITS))
        if bad:
            raise ConfigError(f"{self.name}: unknown split(s) {bad}; valid: {list(SPLITS)}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"{self.name}: duplicate label names in {list(self.labels)}")
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or not self.modalities:
            raise ConfigError(f"{self.name}: modalities: unknown {unknown or 'none given'}; "
                              f"valid: {list(MODALITIES)}")

    def label_index(self, name: str) -> int:
        """Index of a label name in the official order (case-insensitive)."""
        lowered = [label.lower() for label in self.labels]
        try:
            return lowered.index(name.strip().lower())
        except ValueError:
            raise KeyError(f"unknown label {name!r}; valid: {list(self.labels)}") from None


def manifest_path(name: str) -> Path:
    """The shipped ``<name>.yaml`` (it may not exist; :func:`load_manifest` says so)."""
    return manifests.path(name)


def load_manifest(name_or_path: str | Path) -> DatasetManifest:
    """Load a manifest by dataset name (``"meld"``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = manifest_path(str(name_or_path))
    data = load_yaml(path)
    if "sha256" in data:
        raise ConfigError(f"{path}: 'sha256' is computed, not written in the file")
    data["sha256"] = file_sha256(path)
    return from_dict(DatasetManifest, data, str(path))
