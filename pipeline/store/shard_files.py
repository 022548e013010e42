"""The shard files a reader has open: at most ``max_open`` at once (the least recently read is
closed first), each opened without HDF5's chunk cache, checked once per store when first
opened, and each dataset checked once against the shape and dtype ``store.json`` declares."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from pipeline.store.errors import StoreError
from pipeline.store.filesystem import READ_BLOCK_SIZE, Location
from pipeline.store.shard_checks import VERIFY_HINT, h5_errors

MAX_OPEN_SHARDS = 64
"""Shard files a reader keeps open at once (the least recently read is closed first): a
streamed epoch over VoxCeleb2 reads ~4,300 shards, more than a process may usually have open
(``ulimit -n`` is often 1024), and each open file holds HDF5's metadata."""

#: ``(shard, open file, where)``: raises a StoreError when the shard is not what the index says.
ShardCheck = Callable[[str, h5py.File, str], None]


class ShardFiles:
    """The open shards of one store.

    Args:
        loc: the store.
        shard_paths: index ``shard`` value -> its path in ``store.json``.
        rows: shard path -> the rows ``store.json`` declares for it.
        check: run once per shard, when it is first opened (not again when reopened after
            eviction); a shard that fails it is closed.
        block_size: bytes per remote read.
        max_open: shard files open at once.
    """

    def __init__(self, loc: Location, shard_paths: dict[str, str], rows: dict[str, int],
                 check: ShardCheck, *, block_size: int = READ_BLOCK_SIZE,
                 max_open: int = MAX_OPEN_SHARDS) -> None:
        self.loc, self.shard_paths, self.rows, self.check = loc, shard_paths, rows, check
        self.block_size = block_size
        self.max_open = max(1, max_open)
        self.files: OrderedDict[str, h5py.File] = OrderedDict()  # least recently read first
        self.datasets: dict[tuple[str, str], h5py.Dataset] = {}
        self._checked: set[str] = set()  # shards whose links and ids were checked
        self._handles: dict[str, Any] = {}  # remote shards: the fsspec file under each

    def file(self, shard: str) -> h5py.File:
        """The open shard ``shard`` (an index ``shard`` value), at its ``store.json`` path.

        Opened without HDF5's chunk cache (8 MiB per dataset by default, kept while the file
        is open): reads are row slices of uncompressed chunks, which HDF5 copies straight into
        the caller's buffer, and a cache per dataset of every open shard made a streamed
        epoch's memory grow with the store's size.
        """
        if shard in self.files:
            self.files.move_to_end(shard)
            return self.files[shard]
        if len(self.files) >= self.max_open:
            self.close_shard(next(iter(self.files)))
        if shard not in self.shard_paths:
            raise StoreError(f"{self.loc.display}/index.parquet: shard {shard!r} is not listed "
                             f"in store.json{VERIFY_HINT}")
        rel = self.shard_paths[shard]
        where = self.loc.where(rel)
        if self.loc.is_local:
            path = self.loc.member(rel)
            with h5_errors(where, "open it as an HDF5 shard"):
                self.files[shard] = h5py.File(path, "r", rdcc_nbytes=0)
        else:
            handle = self.loc.open_read(rel, block_size=self.block_size)
            self._handles[shard] = handle
            with h5_errors(where, "open it as an HDF5 shard"):
                self.files[shard] = h5py.File(handle, "r", rdcc_nbytes=0)
        if shard not in self._checked:  # once per store: reopened after eviction, not again
            try:
                self.check(shard, self.files[shard], where)
            except StoreError:
                self.close_shard(shard)
                raise
            self._checked.add(shard)
        return self.files[shard]

    def dataset(self, shard: str, key: str, *, views: int, dim: int,
                dtype: np.dtype) -> h5py.Dataset:
        """Dataset ``key`` of a shard, checked once against the declared
        ``[rows, views, dim]`` and dtype."""
        h5 = self.file(shard)  # also marks the shard as the most recently read
        if (shard, key) not in self.datasets:
            rel = self.shard_paths[shard]
            where = f"{self.loc.where(rel)} dataset {key!r}"
            with h5_errors(where, "read it"):
                if key not in h5:
                    raise StoreError(f"{where}: missing (the shard holds {sorted(h5)})"
                                     f"{VERIFY_HINT}")
                dataset = h5[key]
                shape, found = dataset.shape, dataset.dtype
            declared = (self.rows[rel], views, dim)
            if shape != declared or found != dtype:
                raise StoreError(f"{where}: shape {shape} {found}, store.json declares "
                                 f"{declared} {dtype}{VERIFY_HINT}")
            self.datasets[shard, key] = dataset
        return self.datasets[shard, key]

    def close_shard(self, shard: str) -> None:
        """Close one open shard file and forget its datasets (checked again if reopened)."""
        self.files.pop(shard).close()
        for key in [k for k in self.datasets if k[0] == shard]:
            del self.datasets[key]
        handle = self._handles.pop(shard, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        """Close every open shard file."""
        for f in self.files.values():
            f.close()
        for handle in self._handles.values():
            handle.close()
        self.files.clear()
        self.datasets.clear()
        self._handles.clear()
