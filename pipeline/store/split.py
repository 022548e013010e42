"""A store's splits as arrays: the features, labels and ids a researcher's own code needs.

Two lines from a store (a folder or any fsspec URL) to arrays or a PyTorch dataset, without
the head trainer::

    from pipeline.store import open_store
    train = open_store("s3://lab/meld").split("train")
    x = train.features(["frames_2d", "audio"])        # {key: float32 [n, dim]} (view 0)
    y = train.labels                                   # int64 [n], or float32 [n, L] multi-label
    dataset = train.to_torch(["frames_2d", "audio"])  # a torch Dataset: ({key: [dim]}, label)
    for ids, batch, labels in train.batches(4096):     # bounded memory, any store size
        ...

Features are read once per call (:meth:`FeatureStore.read`: one slice per shard), as float32
by default; ``view=None`` keeps every augmented view (``[n, views, dim]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from pipeline.store.errors import StoreError
from pipeline.store.manifest import StoreManifest


class FeatureStore(Protocol):
    """What a split reads of its store (:class:`pipeline.store.reader.FeatureStore`, which
    imports this module)."""

    url: str
    manifest: StoreManifest
    index: pa.Table

    @property
    def keys(self) -> tuple[str, ...]: ...
    @property
    def views(self) -> int: ...
    @property
    def splits(self) -> tuple[str, ...]: ...
    def positions(self, splits: str | Sequence[str] | None = None) -> np.ndarray: ...
    def labels(self, positions: np.ndarray | None = None) -> np.ndarray: ...
    def read(self, key: str, positions: np.ndarray | None = None, *,
             view: int | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class StoreSplit:
    """The rows of one or more splits of a store, in index order.

    Attributes:
        store: the open store.
        names: the splits.
        positions: int64 [n] their rows in the store's index.
    """

    store: FeatureStore
    names: tuple[str, ...]
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        return (f"StoreSplit({self.store.url!r}, {'+'.join(self.names)}, {len(self)} samples, "
                f"keys={self.store.keys})")

    @property
    def sample_ids(self) -> list[str]:
        return self.store.index.column("sample_id").take(pa.array(self.positions)).to_pylist()

    @property
    def labels(self) -> np.ndarray:
        """int64 [n] class indices (-1: unlabelled), or float32 [n, L] for multi-label stores;
        the class names are ``store.label_names``."""
        return self.store.labels(self.positions)

    @property
    def targets(self) -> np.ndarray | None:
        """float32 [n, T] continuous targets (``store.manifest.dataset.targets`` names them,
        each in [-1, 1]; NaN where a clip has none), or None when the store has none."""
        names = self.store.manifest.dataset.targets
        if not names or "targets" not in self.store.index.column_names:
            return None
        column = self.store.index.column("targets").take(pa.array(self.positions))
        return np.array([v if v is not None else [np.nan] * len(names)
                         for v in column.to_pylist()], np.float32).reshape(len(self), len(names))

    def _keys(self, keys: Sequence[str] | str | None) -> tuple[str, ...]:
        chosen = (self.store.keys if keys is None else (keys,) if isinstance(keys, str)
                  else tuple(keys))
        unknown = [k for k in chosen if k not in self.store.keys]
        if unknown:
            raise StoreError(f"{self.store.url}: no features {unknown}; it has "
                             f"{list(self.store.keys)}")
        return chosen

    def _view(self, view: int | None) -> int | None:
        if view is not None and not 0 <= view < self.store.views:
            raise StoreError(f"{self.store.url}: view {view} out of range: it holds "
                             f"{self.store.views} view(s) per clip (0 is the clean clip)")
        return view

    def features(self, keys: Sequence[str] | str | None = None, *, view: int | None = 0,
                 dtype: Any = np.float32) -> dict[str, np.ndarray]:
        """Per key the features of these rows: ``[n, dim]`` of ``view`` (0: the clean clip),
        or ``[n, views, dim]`` with ``view=None``; as ``dtype`` (the store's own with
        ``dtype=None``)."""
        chosen, view = self._keys(keys), self._view(view)
        out = {}
        for key in chosen:
            values = self.store.read(key, self.positions, view=view)
            out[key] = values if dtype is None else values.astype(dtype, copy=False)
        return out

    def batches(self, batch_size: int, keys: Sequence[str] | str | None = None, *,
                view: int | None = 0) -> Iterator[tuple[list[str], dict[str, np.ndarray],
                                                        np.ndarray]]:
        """``(sample_ids, {key: float32 [b, dim]}, labels)`` in index order, ``batch_size``
        rows at a time: memory bounded by the batch, whatever the store's size."""
        if batch_size < 1:
            raise StoreError(f"batch_size must be at least 1, got {batch_size}")
        chosen, view = self._keys(keys), self._view(view)
        ids = self.store.index.column("sample_id")
        for start in range(0, len(self), batch_size):
            pos = self.positions[start:start + batch_size]
            feats = {k: self.store.read(k, pos, view=view).astype(np.float32) for k in chosen}
            yield ids.take(pa.array(pos)).to_pylist(), feats, self.store.labels(pos)

    def to_torch(self, keys: Sequence[str] | str | None = None, *, view: int | None = 0) -> Any:
        """A ``torch.utils.data.Dataset`` of these rows (read into memory once): item ``i`` is
        ``({key: float32 tensor [dim]}, label)``, the label an int64 scalar or, multi-label,
        a float32 ``[L]`` tensor. Works with any ``DataLoader``."""
        from pipeline.store.torch_split import FeatureDataset

        return FeatureDataset(self.features(keys, view=view), self.labels, self.sample_ids)


def split_of(store: FeatureStore, names: Sequence[str]) -> StoreSplit:
    """The rows of ``names`` (every row when empty); an unknown split lists the store's."""
    unknown = [n for n in names if n not in store.splits]
    if unknown:
        raise StoreError(f"{store.url}: no split {unknown}; it has {list(store.splits)}")
    chosen = tuple(names) or store.splits
    return StoreSplit(store, chosen, store.positions(list(chosen)))


__all__ = ["StoreSplit", "split_of"]
