"""The pretraining checkpoint: :class:`HeadsCheckpoint`, written atomically, read strictly.

A checkpoint is a ``torch.save`` of plain tensors and values (:mod:`heads.files`; loaded
with ``weights_only=True``), format :data:`FORMAT`::

    format       "conclugen-heads/2"
    objective    the objective name
    config       the resolved TrainConfig as a mapping (see heads.config)
    store_id     sha256 of the store it was trained on; resuming requires the same store
    store_url    where they were read from (informative)
    dataset      that store's dataset (informative)
    feature_space  per store key of ``layout``, the store's feature space: evaluation and
                 prediction accept any store with the same feature space for these keys
                 (null: written before feature spaces were recorded; its own store only)
    layout       modality -> store keys concatenated into its input
    model_spec   heads.models.ModelSpec as a mapping: the model is rebuilt from this alone
    model        the model's state dict
    optimizer    the AdamW state dict
    scheduler    {"kind": "cosine_warm_restarts", "step": step}: the lr is a pure function of step
    objective_state  k-means centroids, queue and generator
    step, epoch  optimizer steps done, epochs completed
    rng          torch CPU / CUDA RNG states and the batch generator's state
    device       where it was trained (informative)

Format 1 (``conclugen-heads/1``) held the same entries, some of them optional (``dataset``,
``feature_space``, ``device``); :func:`upgrade_heads` reads it as format 2 with those null.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from heads.files import CheckpointError, format_of, load_plain, parse_fields, save_checkpoint
from heads.models import ConCluGenHeads, ModelSpec
from pipeline.store.manifest import (StoreManifest, feature_space_differences,
                                     format_differences)

log = logging.getLogger(__name__)

FORMAT = "conclugen-heads/2"
#: Earlier formats :func:`load_checkpoint` reads (and upgrades).
FORMAT_1 = "conclugen-heads/1"
LAST = "last.pt"
CLASSIFIER = "classifier.pt"
_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.pt$")


# eq=False: tensors have no truth value, so field-wise equality is meaningless
@dataclass(frozen=True, eq=False)
class HeadsCheckpoint:
    """A pretraining run's checkpoint (see the module docstring for each field)."""

    objective: str
    config: dict[str, Any]
    store_id: str
    store_url: str
    dataset: str | None
    feature_space: dict[str, dict[str, Any]] | None
    layout: dict[str, tuple[str, ...]]
    model_spec: ModelSpec
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    objective_state: dict[str, Any]
    step: int
    epoch: int
    rng: dict[str, Any]
    device: str | None

    def to_payload(self) -> dict[str, Any]:
        """Plain tensors and values, as :func:`save_checkpoint` writes them."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"format": FORMAT, **fields, "model_spec": self.model_spec.to_dict(),
                "layout": {m: list(k) for m, k in self.layout.items()}}

    @property
    def keys(self) -> list[str]:
        """The store keys the heads read, in layout order."""
        return [k for keys in self.layout.values() for k in keys]


def upgrade_heads(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint's entries as format 2: the entries it could lack are null."""
    return {"dataset": None, "feature_space": None, "device": None, **payload,
            "format": FORMAT}


def epoch_file(epoch: int) -> str:
    """File name of the checkpoint taken after ``epoch`` completed epochs."""
    return f"epoch-{epoch:04d}.pt"


def link_checkpoint(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source``: a hard link (no second write of a large file), or
    a byte copy where the filesystem has no links; atomically replaced either way."""
    tmp = target.with_name(target.name + ".link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def load_checkpoint(path: str | Path, *,
                    map_location: str | torch.device = "cpu") -> HeadsCheckpoint:
    """Read a checkpoint of format 2 or 1 (weights-only unpickling), strictly.

    Raises:
        CheckpointError: the file is missing, of another format, or a field is missing,
            unknown or of the wrong type (named).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    payload = load_plain(path, map_location=map_location)
    found = format_of(path, payload, FORMAT)
    if found == FORMAT_1:
        payload = upgrade_heads(payload)
    elif found != FORMAT:
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r} (or {FORMAT_1!r})")
    entries = {k: v for k, v in payload.items() if k != "format"}
    return parse_fields(HeadsCheckpoint, entries, path, tensors=("model",))


def check_same_store(saved: HeadsCheckpoint, store_id: str, *, checkpoint: str | Path,
                     store: str) -> None:
    """Refuse any store but the one a run was trained on (resuming a pretraining run).

    Raises:
        CheckpointError: the store's id differs from the checkpoint's.
    """
    if saved.store_id != store_id:
        raise CheckpointError(
            f"{checkpoint} was trained on store_id {saved.store_id[:16]}... "
            f"({saved.store_url}), but {store} has store_id {store_id[:16]}...: "
            "resuming needs the store the run was trained on; use a new run folder to train "
            "on another store")


def check_feature_space(recorded: Mapping[str, Any] | None, trained_on: str,
                        keys: Sequence[str], manifest: StoreManifest, *, checkpoint: str | Path,
                        store: str) -> None:
    """Refuse a store whose vectors are not comparable with those the heads were trained on.

    Only the keys the heads read are compared (see
    :func:`pipeline.store.manifest.feature_space_of` for what a feature space holds). A
    checkpoint written before feature spaces were recorded accepts its own store only.

    Args:
        recorded: the file's feature space per store key (None: not recorded).
        trained_on: the store_id it was trained on.
        keys: the store keys its heads read.
        manifest: the store's.
        checkpoint: the file, for the message.
        store: the store, for the message.

    Raises:
        CheckpointError: naming, per store key, the feature-space fields that differ.
    """
    if recorded is None:
        if trained_on != manifest.store_id:
            raise CheckpointError(
                f"{checkpoint} records no feature space (it was written by an earlier release) "
                f"and was trained on store_id {trained_on[:16]}..., not {store}; "
                "evaluate it on that store, or pretrain again")
        return
    diffs = feature_space_differences(recorded, manifest.feature_space, list(keys))
    if diffs:
        raise CheckpointError(
            f"{store} is not in the feature space {checkpoint} was trained in; differing "
            f"fields per store key: {format_differences(diffs)}. Extract the store with the "
            "same backbones, weights and preprocessing (`cli store diff` compares two stores)")


def load_model(path: str | Path, *, device: str | torch.device = "cpu"
               ) -> tuple[ConCluGenHeads, HeadsCheckpoint]:
    """Rebuild the trained heads from a checkpoint alone, in eval mode.

    Returns:
        the model (``model.represent(batch)`` gives per-modality [N, D] representations) and
        the checkpoint (config, layout, store_id, ...).
    """
    checkpoint = load_checkpoint(path, map_location=device)
    model = ConCluGenHeads(checkpoint.model_spec)
    model.load_state_dict(checkpoint.model)
    return model.to(device).eval(), checkpoint


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs to draw the same numbers."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generator": generator.get_state()}


def restore_rng(state: Mapping[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    generator.set_state(state["generator"].cpu())


def prune_epochs(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` epoch checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if (m := _EPOCH_FILE.match(p.name)))
    for _, p in found[:-keep]:
        log.debug("removing old checkpoint %s", p)
        p.unlink()


# ------------------------------------------------------------------------------ run folders

def checkpoint_of(run: str | Path) -> Path:
    """A run folder's ``checkpoints/last.pt``, or ``run`` itself when it is a file."""
    run = Path(run)
    return run if run.is_file() else run / "checkpoints" / LAST


def run_folder(run: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint file inside it."""
    run = Path(run)
    if run.is_file():
        return run.parent.parent if run.parent.name == "checkpoints" else run.parent
    return run


__all__ = ["CLASSIFIER", "FORMAT", "LAST", "CheckpointError", "HeadsCheckpoint",
           "check_feature_space", "check_same_store", "checkpoint_of", "epoch_file",
           "link_checkpoint", "load_checkpoint", "load_model", "prune_epochs", "restore_rng",
           "rng_state", "run_folder", "save_checkpoint", "upgrade_heads"]
