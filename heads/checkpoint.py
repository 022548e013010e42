"""Checkpoints of head training: plain state dicts, written atomically, loaded weights-only.

A checkpoint is a ``torch.save`` of a mapping of tensors and plain Python values (no pickled
objects: :func:`load_checkpoint` uses ``weights_only=True``)::

    format       "conclugen-heads/1"
    objective    the objective name
    config       the resolved TrainConfig as a mapping (see heads.config)
    store_id     sha256 of the store it was trained on; resuming requires the same store
    store_url    where they were read from (informative)
    feature_space  per store key of ``layout``, the store's feature space: evaluation and
                 prediction accept any store with the same feature space for these keys
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from torch import nn

from heads.evaluation.probe import ProbeModel, ProbeSpec, encoder_heads
from heads.models import ConCluGenHeads, ModelSpec
from pipeline.errors import UserError
from pipeline.store.manifest import (StoreManifest, feature_space_differences,
                                     format_differences)

log = logging.getLogger(__name__)

FORMAT = "conclugen-heads/1"
LAST = "last.pt"
CLASSIFIER = "classifier.pt"
CLASSIFIER_FORMAT = "conclugen-classifier/1"
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
    payload = _load_plain(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}")
    return payload


def _load_plain(path: Path, *, map_location: str | torch.device) -> Any:
    """``torch.load`` of plain tensors and values only (no pickled objects)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        # torch's weights-only message is long and advises weights_only=False (unsafe here);
        # its "Unsupported global" line (a class) or "unsupported GLOBAL" line (a function,
        # e.g. os.mkdir) is the fact.
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "unsupported global" in ln.lower()),
                      lines[0] if lines else type(err).__name__)
        # keep the fact, not torch's advice on how to allow the class
        reason = reason.split(" was not an allowed global")[0].split(". ")[0]
        raise CheckpointError(f"{path}: not a readable file of plain tensors and values "
                              f"(pickled objects are refused): {reason}") from None


def check_same_store(payload: Mapping[str, Any], store_id: str, *, checkpoint: str | Path,
                     store: str) -> None:
    """Refuse any store but the one a run was trained on (resuming a pretraining run).

    Raises:
        CheckpointError: the store's id differs from the checkpoint's.
    """
    if payload["store_id"] != store_id:
        raise CheckpointError(
            f"{checkpoint} was trained on store_id {payload['store_id'][:16]}... "
            f"({payload.get('store_url')}), but {store} has store_id {store_id[:16]}...: "
            "resuming needs the store the run was trained on; use a new run folder to train "
            "on another store")


def layout_keys(payload: Mapping[str, Any]) -> list[str]:
    """The store keys a checkpoint's (or classifier's) heads read, in layout order."""
    return [k for keys in payload["layout"].values() for k in keys]


def check_feature_space(payload: Mapping[str, Any], manifest: StoreManifest, *,
                        checkpoint: str | Path, store: str) -> None:
    """Refuse a store whose vectors are not comparable with those the heads were trained on.

    Only the keys the heads read are compared (see
    :func:`pipeline.store.manifest.feature_space_of` for what a feature space holds). A
    checkpoint written before feature spaces were recorded accepts its own store only.

    Raises:
        CheckpointError: naming, per store key, the feature-space fields that differ.
    """
    recorded = payload.get("feature_space")
    if recorded is None:
        if payload["store_id"] != manifest.store_id:
            raise CheckpointError(
                f"{checkpoint} records no feature space (it was written by an earlier release) "
                f"and was trained on store_id {payload['store_id'][:16]}..., not {store}; "
                "evaluate it on that store, or pretrain again")
        return
    keys = layout_keys(payload)
    diffs = feature_space_differences(recorded, manifest.feature_space, keys)
    if diffs:
        raise CheckpointError(
            f"{store} is not in the feature space {checkpoint} was trained in; differing "
            f"fields per store key: {format_differences(diffs)}. Extract the store with the "
            "same backbones, weights and preprocessing (`cli store diff` compares two stores)")


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


# ------------------------------------------------------------------------- the classifier file

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


def save_classifier(path: Path, model: ProbeModel, *, protocol: str,
                    checkpoint: Mapping[str, Any] | None, store_id: str, store_url: str,
                    feature_space: Mapping[str, Any],
                    layout: Mapping[str, Sequence[str]], label_names: Sequence[str],
                    config: Mapping[str, Any], seed: int, best_epoch: int) -> Path:
    """Write ``classifier.pt``: plain tensors and values, everything needed to rebuild the
    probe (loaded weights-only).

    The linear protocol stores the linear layer and the standardisation only: its heads are
    the run's checkpoint, referenced by ``checkpoint`` (path and step). The other protocols
    trained their heads and store them too.
    """
    payload = {
        "format": CLASSIFIER_FORMAT,
        "protocol": protocol,
        "probe": model.spec.to_dict(),
        "heads_spec": model.heads.spec.to_dict(),
        # the linear layer and the standardisation statistics: everything but the heads
        "probe_state": {k: v.detach().cpu() for k, v in model.state_dict().items()
                        if not k.startswith("heads.")},
        "heads": (None if protocol == "linear" else
                  {k: v.detach().cpu() for k, v in model.heads.state_dict().items()}),
        "checkpoint": dict(checkpoint) if checkpoint is not None else None,
        "store_id": store_id,
        "store_url": store_url,
        "feature_space": {k: dict(v) for k, v in feature_space.items()},
        "layout": {m: list(k) for m, k in layout.items()},
        "label_names": list(label_names),
        "multilabel": model.spec.multilabel,
        "config": dict(config),
        "seed": seed,
        "best_epoch": best_epoch,
    }
    return save_checkpoint(path, payload)


def load_classifier(path: str | Path, *, run: str | Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[ProbeModel, dict[str, Any]]:
    """Rebuild a probe written by :func:`save_classifier`, in eval mode.

    Args:
        path: a ``classifier.pt``.
        run: the run folder (or checkpoint) whose heads a linear probe sits on (default: the
            checkpoint path recorded in the classifier).
        device: where the model goes.

    Returns:
        the probe (per modality [N, E_m] features -> [N, C] logits) and the file's payload.

    Raises:
        CheckpointError: not a classifier file, or the run's checkpoint is not the one the
            classifier was trained on (other features or a later step).
    """
    path = Path(path)
    payload = _read_classifier(path)
    if payload.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path}: not a classifier of format {CLASSIFIER_FORMAT!r}")
    return _probe(path, payload, run=run, device=device)


def _read_classifier(path: Path) -> dict[str, Any]:
    """A ``classifier.pt`` of any protocol, as plain values."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no classifier; run the evaluation (linear protocol) first")
    payload = _load_plain(path, map_location="cpu")
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a classifier of format {CLASSIFIER_FORMAT!r}")
    return payload


def _probe(path: Path, payload: dict[str, Any], *, run: str | Path | None,
           device: str | torch.device) -> tuple[ProbeModel, dict[str, Any]]:
    """The paper's probe of a :data:`CLASSIFIER_FORMAT` payload, in eval mode."""
    spec = ModelSpec.from_dict(payload["heads_spec"])
    if payload["heads"] is not None:
        heads = ConCluGenHeads(spec)
        heads.load_state_dict(payload["heads"])
    else:
        heads = _run_heads(path, payload, spec, run)
    model = ProbeModel(ProbeSpec.from_dict(payload["probe"]), heads)
    model.load_state_dict({**{f"heads.{k}": v for k, v in heads.state_dict().items()},
                           **payload["probe_state"]})
    return model.to(device).eval(), payload


def load_predictor(path: str | Path, *, run: str | Path | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the classifier of any protocol that ``cli eval`` saved, in eval mode.

    The paper's probes (:func:`load_classifier`) and the heads of the other systems (CLEF's
    prototypes, AVCE's regressor: :func:`load_head`) take the same input, per modality of
    ``payload["layout"]`` its concatenated store features [N, E_m]; their output is told
    apart by ``payload["task"]``.

    Returns:
        the model and the file's payload, with ``task`` (``classification`` or
        ``regression``) and ``multilabel`` set for every protocol.

    Raises:
        CheckpointError: not a classifier file, a head of an unknown kind, or (a linear probe)
            a run whose checkpoint is not the one the classifier was trained on.
    """
    path = Path(path)
    payload = _read_classifier(path)
    if payload.get("format") == CLASSIFIER_FORMAT:
        model, meta = _probe(path, payload, run=run, device=device)
        return model, {**meta, "task": "classification"}
    head, meta = load_head(path, payload, device=device)
    return head, meta


def load_head(path: Path, payload: dict[str, Any], *,
              device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The head of another system's protocol (``conclugen-eval-head/1``: its ``spec``, as the
    model's ``describe()`` gave it, and its state dict), in eval mode.

    A head file written before the spec recorded ``multilabel`` is single-label.
    """
    from heads.evaluation.avce import AvceModel
    from heads.evaluation.clef import ClefModel
    from heads.evaluation.run import HEAD_FORMAT

    builders = {"clef": ClefModel.from_spec, "avce": AvceModel.from_spec}
    if payload.get("format") != HEAD_FORMAT:
        raise CheckpointError(f"{path}: format {payload.get('format')!r}; a classifier is "
                              f"{CLASSIFIER_FORMAT!r} or {HEAD_FORMAT!r}")
    spec = payload.get("spec") or {}
    kind = spec.get("kind")
    if kind not in builders:
        raise CheckpointError(f"{path}: a {payload.get('protocol')!r} head of kind {kind!r} "
                              f"cannot be rebuilt; valid kinds: {list(builders)}")
    model = builders[kind](spec)
    model.load_state_dict(payload["state"])
    regression = payload.get("task") == "regression"
    meta = {**payload, "task": "regression" if regression else "classification",
            "multilabel": bool(spec.get("multilabel", False)) and not regression}
    return model.to(device).eval(), meta


def _run_heads(path: Path, payload: Mapping[str, Any], spec: ModelSpec,
               run: str | Path | None) -> ConCluGenHeads:
    """A linear probe's heads: the run's, if they are those it was trained on."""
    ref = payload["checkpoint"]
    ckpt = checkpoint_of(run) if run is not None else Path(ref["path"])
    pretrained, meta = load_model(ckpt, device="cpu")
    trained_on = ref.get("store_id", payload["store_id"])
    if meta["store_id"] != trained_on:
        raise CheckpointError(f"{ckpt} was pretrained on store_id {meta['store_id'][:16]}..., "
                              f"but {path} sits on heads pretrained on {trained_on[:16]}...: "
                              "pass the run the classifier was trained on")
    if int(meta["step"]) != ref["step"]:
        raise CheckpointError(f"{ckpt} is at step {meta['step']}, but {path} was trained on "
                              f"the heads of step {ref['step']}: evaluate the run again")
    return encoder_heads(spec.input_dims, spec.representation_dim, seed=0,
                         pretrained=pretrained)
