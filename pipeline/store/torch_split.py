"""The PyTorch face of :class:`~pipeline.store.split.StoreSplit` (imported only when asked for:
reading a store needs no torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class FeatureDataset(Dataset[tuple[dict[str, torch.Tensor], torch.Tensor]]):
    """Features of a split held as tensors; item ``i`` is ``({key: [dim]}, label)``.

    Attributes:
        sample_ids: the rows' ids, in item order.
        tensors: per key the whole split, float32 ``[n, dim]`` (or ``[n, views, dim]``).
        labels: int64 ``[n]`` or float32 ``[n, L]``.
    """

    def __init__(self, features: dict[str, np.ndarray], labels: np.ndarray,
                 sample_ids: list[str]) -> None:
        self.sample_ids = sample_ids
        self.tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in features.items()}
        self.labels = torch.from_numpy(np.ascontiguousarray(labels))

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}, self.labels[i]


__all__ = ["FeatureDataset"]
