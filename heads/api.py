"""The Python API of the trained heads: a pretraining run's representations in your own code.

The store's half is :mod:`pipeline.store` (``open_store(url).split("train")``); this is the
run's::

    from heads.api import load_run
    from pipeline.store import open_store

    run = load_run("runs/conclugen")                  # the run folder (or a checkpoint file)
    train = open_store("s3://lab/meld").split("train")
    z = run.encode(train)                             # float32 [n, modalities x D], concatenated
    per = run.represent(train)                        # {modality: float32 [n, D]}
    z = run.encode({"frames_2d": a, "frames_3d": b, "audio": c, "text": d})   # arrays too

A split is checked against the run's feature space first: heads pretrained on one store map
any store in the same feature space (the paper's protocol), and another store is refused
naming both and the fields that differ. Arrays cannot be checked that way: only their keys and
widths are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from heads.checkpoint import HeadsCheckpoint, check_feature_space, checkpoint_of, load_model
from heads.data import DataError
from heads.models import ConCluGenHeads
from heads.outputs import check_not_running
from heads.run_record import warn_random_weights
from heads.runtime import resolve_device
from pipeline.store import StoreSplit

#: Rows mapped at a time: memory stays bounded whatever the split's size.
BATCH = 4096

Features = StoreSplit | Mapping[str, np.ndarray | Tensor]


class PretrainedRun:
    """The heads of a pretraining run, in eval mode, mapping store features to their
    representations (:func:`load_run` builds it).

    Attributes:
        checkpoint: the checkpoint file read.
        model: the heads (``model.represent(batch)``).
        info: the checkpoint's entries (objective, config, layout, store_id, feature_space, ...).
        device: where the heads run.
    """

    def __init__(self, checkpoint: Path, model: ConCluGenHeads, info: HeadsCheckpoint,
                 device: torch.device) -> None:
        self.checkpoint, self.model, self.info, self.device = checkpoint, model, info, device

    def __repr__(self) -> str:
        return (f"PretrainedRun({str(self.checkpoint)!r}, {self.info.objective}, modalities="
                f"{self.modalities}, dim {self.dim}, epoch {self.info.epoch})")

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities it has heads for, in the order :meth:`encode` concatenates them."""
        return tuple(self.info.layout)

    @property
    def dim(self) -> int:
        """D: the width of one modality's representation."""
        return self.info.model_spec.representation_dim

    def keys(self, modalities: Sequence[str] | None = None) -> list[str]:
        """The store keys ``modalities`` (default: all) are read from, in order."""
        return [k for m in self._modalities(modalities) for k in self.info.layout[m]]

    def represent(self, data: Features, *, modalities: Sequence[str] | None = None,
                  batch_size: int = BATCH) -> dict[str, np.ndarray]:
        """Per modality the representations of ``data``'s rows: ``{modality: float32 [n, D]}``.

        Args:
            data: a store split (checked against the run's feature space), or per store key
                ``[n, dim]`` arrays or tensors (the keys of :meth:`keys`).
            modalities: the modalities to map (default: all the run's).
            batch_size: rows per forward pass.

        Raises:
            CheckpointError: the split's store is in another feature space (named, with the
                differing fields).
            DataError: arrays without a key the heads read, or of another width.
        """
        chosen = self._modalities(modalities)
        parts: dict[str, list[np.ndarray]] = {m: [] for m in chosen}
        with torch.no_grad():
            for batch in self._batches(data, chosen, batch_size):
                for m, z in self.model.represent(batch).items():
                    parts[m].append(z.float().cpu().numpy())
        return {m: (np.concatenate(p) if p else np.zeros((0, self.dim), np.float32))
                for m, p in parts.items()}

    def encode(self, data: Features, *, modalities: Sequence[str] | None = None,
               batch_size: int = BATCH) -> np.ndarray:
        """float32 ``[n, len(modalities) * D]``: the representations concatenated in the order
        of ``modalities`` (what the paper's linear probe reads). See :meth:`represent`."""
        per = self.represent(data, modalities=modalities, batch_size=batch_size)
        return np.concatenate(list(per.values()), axis=1)

    def encode_torch(self, data: Features, *, modalities: Sequence[str] | None = None,
                     batch_size: int = BATCH) -> Tensor:
        """:meth:`encode` as a CPU float32 tensor."""
        return torch.from_numpy(self.encode(data, modalities=modalities, batch_size=batch_size))

    # ---- inputs

    def _modalities(self, modalities: Sequence[str] | None) -> tuple[str, ...]:
        chosen = self.modalities if modalities is None else tuple(modalities)
        unknown = [m for m in chosen if m not in self.info.layout]
        if unknown or not chosen:
            raise DataError(f"{self.checkpoint}: no heads for modalities {unknown or []}; it has "
                            f"{list(self.modalities)}")
        return chosen

    def _batches(self, data: Features, modalities: Sequence[str],
                 batch_size: int) -> Iterator[dict[str, Tensor]]:
        keys = self.keys(modalities)
        if isinstance(data, StoreSplit):
            self._check_store(data, keys)
            for _, feats, _ in data.batches(batch_size, keys):
                yield self._assemble(feats, modalities)
            return
        missing = [k for k in keys if k not in data]
        if missing:
            raise DataError(f"no features {missing}; the heads of {self.checkpoint} read "
                            f"{keys} (given: {list(data)})")
        rows = len(data[keys[0]])
        for start in range(0, rows, batch_size):
            yield self._assemble({k: data[k][start:start + batch_size] for k in keys},
                                 modalities)

    def _check_store(self, split: StoreSplit, keys: Sequence[str]) -> None:
        manifest = split.store.manifest
        check_feature_space(self.info.feature_space, self.info.store_id, keys, manifest,
                            checkpoint=self.checkpoint, store=split.store.url)
        warn_random_weights(split.store.url, [k for k in manifest.random_weights if k in keys],
                            command="load_run")

    def _assemble(self, feats: Mapping[str, Any], modalities: Sequence[str]) -> dict[str, Tensor]:
        """Per modality its keys' features concatenated: ``[b, E_m]`` float32 on the device."""
        batch = {}
        for m in modalities:
            cols = [torch.as_tensor(feats[k]).float() for k in self.info.layout[m]]
            x = torch.cat(cols, dim=-1) if len(cols) > 1 else cols[0]
            want = self.info.model_spec.input_dims[m]
            if x.ndim != 2 or x.shape[1] != want:
                raise DataError(f"{m}: the heads of {self.checkpoint} read [n, {want}] "
                                f"({' + '.join(self.info.layout[m])}), got {tuple(x.shape)}")
            batch[m] = x.to(self.device)
        return batch


def load_run(run: str | Path, *, device: str = "cpu") -> PretrainedRun:
    """The heads of a pretraining run, ready to map features (see the module docstring).

    Args:
        run: the run folder (its ``checkpoints/last.pt``) or a checkpoint file.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, ...

    Raises:
        CheckpointError: no checkpoint there, or not a readable one.
        OutputError: the run is still being trained.
    """
    path = checkpoint_of(run)
    if path != Path(run):
        check_not_running(Path(run))
    dev = resolve_device(device)
    model, info = load_model(path, device=dev)
    return PretrainedRun(path, model, info, dev)


__all__ = ["PretrainedRun", "load_run"]
