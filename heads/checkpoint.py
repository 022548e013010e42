"""Checkpoints of head training: plain state dicts, written atomically, loaded weights-only.

A checkpoint is a ``torch.save`` of a mapping of tensors and plain Python values (no pickled
objects: :func:`load_checkpoint` uses ``weights_only=True``)::

    format       "conclugen-heads/1"
    objective    the objective name
    config       the resolved TrainConfig as a mapping (see heads.config)
    store_id     sha256 of the features it was trained on; training and evaluation refuse others
    store_url    where they were read from (informative)
    layout       modality -> store keys concatenated into its input
    model_spec   heads.models.ModelSpec as a mapping: the model is rebuilt from this alone
    model        the model's state dict
    optimizer    the AdamW state dict
    scheduler    {"kind": "cosine_warm_restarts", "step": step}: the lr is a pure function of step
    objective_state  k-means centroids, queue and generator
    step, epoch  optimizer steps done, epochs completed
    rng          torch CPU / CUDA RNG states and the batch generator's state
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from heads.models import ConCluGenHeads, ModelSpec
from pipeline.errors import UserError

log = logging.getLogger(__name__)

FORMAT = "conclugen-heads/1"
LAST = "last.pt"
_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.pt$")


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, of another format, or belongs to other features or settings."""


def epoch_file(epoch: int) -> str:
    """File name of the checkpoint taken after ``epoch`` completed epochs."""
    return f"epoch-{epoch:04d}.pt"


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A run killed mid-write leaves the previous checkpoint intact, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(payload), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (weights-only unpickling).

    Raises:
        CheckpointError: the file is missing or not a checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        # torch's weights-only message is long; its "Unsupported global" line is the fact.
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines
                      else type(err).__name__)
        raise CheckpointError(f"{path}: not a readable checkpoint of plain tensors and values: "
                              f"{reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}")
    return payload


def check_store(payload: Mapping[str, Any], store_id: str, *, checkpoint: str | Path,
                store: str) -> None:
    """Refuse features other than those the checkpoint was trained on.

    Raises:
        CheckpointError: the store's id differs from the checkpoint's.
    """
    if payload["store_id"] != store_id:
        raise CheckpointError(
            f"{checkpoint} was trained on store_id {payload['store_id'][:16]}... "
            f"({payload.get('store_url')}), but {store} has store_id {store_id[:16]}...: "
            "these are other features; use the store the run was trained on or a new run folder")


def load_model(path: str | Path, *, device: str | torch.device = "cpu"
               ) -> tuple[ConCluGenHeads, dict[str, Any]]:
    """Rebuild the trained heads from a checkpoint alone, in eval mode.

    Returns:
        the model (``model.represent(batch)`` gives per-modality [N, D] representations) and
        the checkpoint payload (config, layout, store_id, ...).
    """
    payload = load_checkpoint(path, map_location=device)
    model = ConCluGenHeads(ModelSpec.from_dict(payload["model_spec"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload


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
