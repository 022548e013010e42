"""Feature batches for the head trainer, from a feature store.

Modalities are assembled from store keys (video = ``frames_2d ++ frames_3d``): the config names
the keys per modality, the store says which exist. A modality with some keys missing is built
from the rest (logged; the keys used are recorded in the run's config and checkpoint), one with
none of its keys is an error naming the store and what it holds.

Two sources, one interface (``epoch(generator)`` yields shuffled batches, ``ordered()`` yields
the rows in index order):

- :class:`InMemoryFeatures`: the chosen splits in one tensor per modality on the device, float16
  on a GPU (they fit for MELD, CAER, CMU-MOSEI and VoxCeleb2 on an 80 GB GPU), float32 on the
  CPU; each epoch is a random permutation cut into batches, as index draws from a seeded CPU
  generator.
- :class:`StreamedFeatures`: for stores that do not fit. Reads chunks of contiguous rows (fast
  HDF5 slices) in a random chunk order, a group of chunks at a time into one of two reused
  buffers while batches are drawn from the other (a shuffle buffer); the rows left over join the
  next group. On CUDA the buffers are pinned and copied with ``non_blocking``.

Batches hold float32 [N, E_m] (view 0, the clean features) per modality, or [N, 2, E_m] with two
distinct views per sample when an objective contrasts augmented views.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from heads.config import DataConfig
from pipeline.errors import UserError

if TYPE_CHECKING:
    from pipeline.store import FeatureStore

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]


class DataError(UserError, ValueError):
    """The store cannot provide what the run asks for; the message names store and keys."""


@dataclass(frozen=True)
class Layout:
    """Which store keys make up each modality, and the resulting input dims."""

    keys: dict[str, tuple[str, ...]]
    dims: dict[str, int]


def assemble_modalities(store: FeatureStore, modality_keys: Mapping[str, Sequence[str]],
                        modalities: Sequence[str]) -> Layout:
    """Map each requested modality to the store keys it is concatenated from.

    Args:
        store: an open feature store (``keys``, ``dim(key)``, ``url``).
        modality_keys: per modality the keys to concatenate, in order.
        modalities: the modalities the run trains on.

    Raises:
        DataError: a modality is not configured, or the store has none of its keys.
    """
    keys, dims = {}, {}
    for m in modalities:
        if m not in modality_keys:
            raise DataError(f"modality {m!r} has no entry in modality_keys {sorted(modality_keys)}")
        wanted = tuple(modality_keys[m])
        present = tuple(k for k in wanted if k in store.keys)
        if not present:
            raise DataError(f"{store.url}: modality {m!r} needs key(s) {list(wanted)}, but the "
                            f"store has only {list(store.keys)}")
        if present != wanted:
            log.warning("%s: modality %r built from %s only (missing %s)", store.url, m,
                        list(present), [k for k in wanted if k not in present])
        keys[m] = present
        dims[m] = sum(store.dim(k) for k in present)
    return Layout(keys, dims)


def check_views(store: FeatureStore, needs_views: bool,
                contrast_views: str = "augmented") -> None:
    """Objectives that contrast views need two to draw from: two augmented views (views
    1..V-1, so a store of at least 3) or, with ``contrast_views: all``, any two (at least 2)."""
    need = 3 if contrast_views == "augmented" else 2
    if needs_views and store.views < need:
        raise DataError(f"{store.url} holds {store.views} view(s) per sample; contrasting "
                        f"{'two augmented views' if need == 3 else 'two views'} needs at least "
                        f"{need} (extract with --views {need}"
                        + (", or --set data.contrast_views=all to pair the clean view with an "
                           "augmented one)" if need == 3 else ")"))


def read_modality(store: FeatureStore, keys: Sequence[str], positions: np.ndarray, *,
                  all_views: bool, first_view: int = 0) -> np.ndarray:
    """float16 features of one modality: [n, E] (view 0) or, with ``all_views``, [n, V', E]
    of views ``first_view..V-1`` (1: the augmented views only, without the clean one)."""
    view = None if all_views else 0
    parts = [store.read(k, positions, view=view) for k in keys]
    arr = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
    return arr[:, first_view:] if all_views and first_view else arr


TEXT_CHECK_ROWS = 65_536


def check_text_varies(store: FeatureStore, layout: Layout, positions: np.ndarray,
                      splits: Sequence[str]) -> None:
    """Refuse a text modality whose features are the same for every row read (a dataset
    without transcripts extracted with an empty one per clip): every objective would learn
    from a constant. Reads chunks until two rows differ (the first chunk, for real text).

    Raises:
        DataError: naming the store, the rows and the two ways out.
    """
    keys = [k for m, ks in layout.keys.items() if m == "text" for k in ks]
    if not keys or len(positions) < 2:
        return
    first = read_modality(store, keys, positions[:1], all_views=False)[0]
    for start in range(0, len(positions), TEXT_CHECK_ROWS):
        chunk = read_modality(store, keys, positions[start:start + TEXT_CHECK_ROWS],
                              all_views=False)
        if (chunk != first).any():
            return
    raise DataError(f"{store.url}: the text features of all {len(positions)} clips of splits "
                    f"{list(splits)} are the same (one transcript for every clip, e.g. empty: "
                    "the dataset has no text), so the text modality would teach nothing: drop "
                    "it (--modalities video,audio), or transcribe the clips (cli transcribe) "
                    "and extract again")


def steps_per_epoch(rows: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch: full batches (at least one), plus a partial one of >= 2 rows."""
    full = rows // batch_size
    if full == 0:
        return 1
    return full + int(not drop_last and rows % batch_size >= 2)


def pick_two_views(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """[N, V, E] -> [N, 2, E]: two distinct random views per row (views 0, 1 without generator)."""
    n, v = x.shape[:2]
    if generator is None:
        return x[:, :2]
    first = torch.randint(v, (n,), generator=generator)
    second = (first + torch.randint(1, v, (n,), generator=generator)) % v
    rows = torch.arange(n)
    idx = torch.stack([first, second], dim=1).to(x.device)
    return x[rows.to(x.device)[:, None], idx]


def _to_batch(tensors: Mapping[str, Tensor], pair_views: bool,
              generator: torch.Generator | None) -> Batch:
    out = {}
    for m, x in tensors.items():
        x = pick_two_views(x, generator) if pair_views else x
        out[m] = x.float()
    return out


def _split(n: int, batch_size: int, drop_last: bool,
           order: Tensor | None = None) -> list[Tensor]:
    order = torch.arange(n) if order is None else order
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < batch_size and (drop_last or len(batches[-1]) < 2):
        batches.pop()
    return batches


class InMemoryFeatures:
    """All rows of the chosen splits as one tensor per modality on the device.

    Args:
        tensors: per modality [n, E] or [n, V, E] (float16 on a GPU, float32 on the CPU),
            already on the device.
        batch_size: rows per batch.
        drop_last: drop the trailing partial batch of an epoch.
        pair_views: batches carry two random views per row ([N, 2, E]).
    """

    def __init__(self, tensors: Mapping[str, Tensor], *, batch_size: int, drop_last: bool,
                 pair_views: bool) -> None:
        self.tensors = dict(tensors)
        self.rows = len(next(iter(self.tensors.values())))
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.pair_views = pair_views
        self.device = next(iter(self.tensors.values())).device

    def __len__(self) -> int:
        return steps_per_epoch(self.rows, self.batch_size, self.drop_last)

    def close(self) -> None:
        """Nothing to release (the tensors go with the object)."""

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled batches; all randomness comes from ``generator`` (CPU)."""
        order = torch.randperm(self.rows, generator=generator)
        for idx in _split(self.rows, self.batch_size, self.drop_last, order):
            idx = idx.to(self.device, non_blocking=True)
            yield _to_batch({m: t[idx] for m, t in self.tensors.items()}, self.pair_views,
                            generator)

    def ordered(self) -> Iterator[Batch]:
        """Every row in index order (evaluation); views 0 and 1 when pairing. A last batch of a
        single row is left out: contrastive losses need two."""
        for idx in _split(self.rows, self.batch_size, drop_last=False):
            idx = idx.to(self.device)
            yield _to_batch({m: t[idx] for m, t in self.tensors.items()}, self.pair_views, None)


class StreamedFeatures:
    """Rows streamed from the store's shards in large chunks through a shuffle buffer.

    Two buffers per modality, each of ``chunk_rows * shuffle_chunks + batch_size`` rows, are
    allocated once and reused: a reader thread fills one with the next group of chunks (each
    store key read straight into its columns, float16 converted in place) while batches are
    drawn from the other, so the training thread neither waits for the store nor allocates,
    concatenates or converts anything per group. The rows a group leaves over (fewer than a
    batch) are copied after the next group's rows. On CUDA the buffers are pinned float16 host
    memory, copied without blocking into two device buffers where batches are gathered and
    converted to float32; on the CPU they hold float32 and batches are gathered from them.

    Args:
        store: the open feature store.
        layout: modality -> keys.
        positions: [n] index positions of the rows to serve.
        device: where batches go.
        batch_size: rows per batch.
        drop_last: drop the trailing partial batch of an epoch.
        pair_views: read all views and pair two per row.
        chunk_rows: rows per read (contiguous in the store).
        shuffle_chunks: chunks per shuffle buffer (the buffer holds about
            ``chunk_rows * shuffle_chunks`` rows; batches are drawn at random from it).
        first_view: with ``pair_views``, the first view served (1: the augmented views only).
    """

    def __init__(self, store: FeatureStore, layout: Layout, positions: np.ndarray, *,
                 device: torch.device, batch_size: int, drop_last: bool, pair_views: bool,
                 chunk_rows: int, shuffle_chunks: int, first_view: int = 0) -> None:
        self.store, self.layout, self.first_view = store, layout, first_view
        self.positions = np.asarray(positions, dtype=np.int64)
        self.rows = len(self.positions)
        self.device = device
        self.batch_size, self.drop_last, self.pair_views = batch_size, drop_last, pair_views
        self.chunks = [self.positions[i:i + chunk_rows] for i in range(0, self.rows, chunk_rows)]
        self.shuffle_chunks = max(1, shuffle_chunks)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-reader")
        self._pending: Future[int] | None = None
        self._host: list[dict[str, Tensor]] = []  # two buffers, allocated on first use
        self._on_gpu: list[dict[str, Tensor]] = []  # CUDA: their device counterparts
        self._copied: list[torch.cuda.Event | None] = [None, None]  # CUDA: host -> device done
        self._ahead: tuple[int, list[int]] | None = None  # the next epoch's first group, read

    def __len__(self) -> int:
        return steps_per_epoch(self.rows, self.batch_size, self.drop_last)

    def close(self) -> None:
        """Stop the reader thread and free the buffers (pinned memory on CUDA)."""
        self._settle()
        self._reader.shutdown(wait=True)
        self._host, self._on_gpu, self._ahead = [], [], None

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch: random chunk order, random batches within each shuffle buffer.

        The first group of the next epoch is read ahead (during the last group's batches, or
        after them when batches draw views; and while the trainer evaluates and saves): its
        chunk order is drawn from a copy of ``generator`` once this epoch has drawn everything,
        and used only if the next epoch draws the same, so batches never depend on it.
        """
        groups = self._groups(generator)
        first = self._start_epoch(groups[0])
        rows: dict[str, Tensor] = {}
        carry: Tensor | None = None  # rows of ``rows`` not served yet, fewer than a batch
        emitted = 0
        for g in range(len(groups)):
            slot = (first + g) % 2
            n, previous, rows = self._finish(slot), rows, self._buffers(slot)
            if carry is not None:
                for m, t in rows.items():
                    t[n:n + len(carry)] = previous[m][carry]
                n += len(carry)
            if g + 1 < len(groups):  # the other buffer is free again: fill it meanwhile
                self._start(1 - slot, groups[g + 1], offset=0)
            perm = torch.randperm(n, generator=generator).to(self.device)
            if g + 1 == len(groups) and not self.pair_views:
                self._read_ahead(1 - slot, generator)  # the epoch draws nothing more
            full = n // self.batch_size * self.batch_size
            for start in range(0, full, self.batch_size):
                idx = perm[start:start + self.batch_size]
                emitted += 1
                yield _to_batch({m: t[idx] for m, t in rows.items()}, self.pair_views, generator)
            carry = perm[full:]
        if carry is not None and len(carry) >= 2 and (not self.drop_last or emitted == 0):
            yield _to_batch({m: t[carry] for m, t in rows.items()}, self.pair_views, generator)
        if self.pair_views:  # each batch drew its views: the epoch's last draw is behind us
            self._read_ahead(1 - slot, generator)

    def ordered(self) -> Iterator[Batch]:
        """Every row in index order (evaluation), in the batches :class:`InMemoryFeatures`
        makes: the first two served views when pairing; a last batch of a single row is left
        out (contrastive losses need two)."""
        b = self.batch_size
        rows: dict[str, Tensor] = {}
        left: Tensor | None = None  # the last chunk's rows that did not fill a batch
        emitted = 0
        if self.chunks:
            self._start(0, [0], offset=b)
        for k in range(len(self.chunks)):
            slot = k % 2
            n, previous, rows = self._finish(slot, offset=b), rows, self._buffers(slot)
            first = b - (0 if left is None else len(left))  # left-over rows go first
            if left is not None:
                for m, t in rows.items():
                    t[first:b] = previous[m][left]
            if k + 1 < len(self.chunks):
                self._start(1 - slot, [k + 1], offset=b)
            stop = b + n
            for start in range(first, stop - b + 1, b):
                emitted += 1
                idx = torch.arange(start, start + b, device=self.device)
                yield _to_batch({m: t[idx] for m, t in rows.items()}, self.pair_views, None)
            rest = (stop - first) % b
            left = torch.arange(stop - rest, stop, device=self.device)
        if left is not None and (len(left) >= 2 or (len(left) == 1 and emitted == 0)):
            yield _to_batch({m: t[left] for m, t in rows.items()}, self.pair_views, None)

    # ---- the two buffers and the reader thread

    def _groups(self, generator: torch.Generator) -> list[list[int]]:
        """An epoch's chunks in random order, cut into shuffle buffers."""
        order = torch.randperm(len(self.chunks), generator=generator).tolist()
        return [order[i:i + self.shuffle_chunks]
                for i in range(0, len(order), self.shuffle_chunks)]

    def _read_ahead(self, slot: int, generator: torch.Generator) -> None:
        """Read the next epoch's first group into ``slot``: drawn from a copy of ``generator``,
        in its state once this epoch has drawn everything."""
        group = self._groups(torch.Generator().set_state(generator.get_state()))[0]
        self._start(slot, group, offset=0)
        self._ahead = (slot, group)

    def _start_epoch(self, group: list[int]) -> int:
        """The buffer an epoch starts in: the one read ahead if it holds ``group``."""
        if self._ahead is not None and self._ahead[1] == group and self._pending is not None:
            slot, self._ahead = self._ahead[0], None
            return slot
        self._start(0, group, offset=0)
        return 0

    def _start(self, slot: int, chunk_ids: list[int], *, offset: int) -> None:
        """Have the reader fill buffer ``slot`` with ``chunk_ids`` from row ``offset`` on."""
        self._settle()  # an abandoned iteration (or an unused read-ahead) may still be reading
        self._allocate()
        self._ahead = None
        self._pending = self._reader.submit(self._fill, slot, chunk_ids, offset)

    def _finish(self, slot: int, offset: int = 0) -> int:
        """Wait for the read into ``slot``; on CUDA start its copy to the device. Row count."""
        assert self._pending is not None
        n, self._pending = self._pending.result(), None
        if self.device.type == "cuda":
            rows = slice(offset, offset + n)
            for m, t in self._host[slot].items():
                self._on_gpu[slot][m][rows].copy_(t[rows], non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._copied[slot] = event
        return n

    def _settle(self) -> None:
        if self._pending is not None:
            self._pending.exception()  # waits; an error is raised where the result is used
            self._pending = None

    def _buffers(self, slot: int) -> dict[str, Tensor]:
        return (self._on_gpu if self.device.type == "cuda" else self._host)[slot]

    def _allocate(self) -> None:
        if self._host:
            return
        cuda = self.device.type == "cuda"
        # Room for a shuffle buffer plus the rows carried over from the previous one (or, in
        # index order, for a chunk after the rows left from the previous chunk).
        group = min(self.rows, len(self.chunks[0]) * self.shuffle_chunks)
        rows = group + self.batch_size
        views = (self.store.views - self.first_view,) if self.pair_views else ()
        # float16 over PCIe (half the bytes), float32 on the CPU (no per-batch conversion).
        dtype = torch.float16 if cuda else torch.float32
        for _ in range(2):
            self._host.append({m: torch.empty((rows, *views, dim), dtype=dtype, pin_memory=cuda)
                               for m, dim in self.layout.dims.items()})
            if cuda:
                self._on_gpu.append({m: torch.empty_like(t, device=self.device)
                                     for m, t in self._host[-1].items()})

    def _fill(self, slot: int, chunk_ids: list[int], offset: int) -> int:
        """Reader thread: the rows of ``chunk_ids`` into host buffer ``slot`` at ``offset``.

        Each store key is read (one contiguous slice per shard) straight into its columns.
        Returns the number of rows read.
        """
        copied = self._copied[slot]
        if copied is not None:
            copied.synchronize()  # the last copy out of this pinned buffer has finished
        host, row = self._host[slot], offset
        for k in chunk_ids:
            pos = self.chunks[k]
            for m, keys in self.layout.keys.items():
                col = 0
                for key in keys:
                    arr = self.store.read(key, pos, view=None if self.pair_views else 0)
                    if self.pair_views:
                        arr = arr[:, self.first_view:]
                    host[m][row:row + len(pos), ..., col:col + arr.shape[-1]].copy_(
                        torch.from_numpy(arr))
                    col += arr.shape[-1]
            row += len(pos)
        return row - offset


FeatureSource = InMemoryFeatures | StreamedFeatures


def fits_in_memory(nbytes: int, device: torch.device, fraction: float) -> bool:
    """Whether ``nbytes`` of features fit in ``fraction`` of the device's free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        import psutil  # installed with dask.distributed

        free = psutil.virtual_memory().available
    return nbytes <= fraction * free


def load_features(store: FeatureStore, layout: Layout, splits: Sequence[str], cfg: DataConfig, *,
                  device: torch.device, pair_views: bool) -> FeatureSource | None:
    """The rows of ``splits`` as an in-memory or streamed source (None when there are none).

    Args:
        store: the open feature store.
        layout: modality -> keys (see :func:`assemble_modalities`).
        splits: which splits to serve.
        cfg: batch size, placement (auto/memory/stream), chunking.
        device: the training device.
        pair_views: serve two views per row (for view-contrasting objectives).
    """
    positions = store.positions(list(splits))
    if len(positions) == 0:
        return None
    check_text_varies(store, layout, positions, splits)
    # View-contrasting objectives pair two of the augmented views (1..V-1) by default; view 0,
    # the clean clip, is then never loaded.
    first_view = 1 if pair_views and cfg.contrast_views == "augmented" else 0
    views = store.views - first_view if pair_views else 1
    # float16 on a GPU (twice the rows fit); float32 on the CPU, which has no fast float16 math.
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    nbytes = len(positions) * views * sum(layout.dims.values()) * dtype.itemsize
    placement = cfg.placement
    if placement == "auto":
        fits = fits_in_memory(nbytes, device, cfg.memory_fraction)
        placement = "memory" if fits else "stream"
    log.info("%s splits %s: %d rows, %.2f GB, %s", store.url, list(splits),
             len(positions), nbytes / 1e9, "on the device" if placement == "memory"
             else "streamed")
    if len(positions) < cfg.batch_size:
        log.warning("%s splits %s: %d rows, fewer than one batch of %d", store.url,
                    list(splits), len(positions), cfg.batch_size)
    if placement == "stream":
        return StreamedFeatures(store, layout, positions, device=device,
                                batch_size=cfg.batch_size, drop_last=cfg.drop_last,
                                pair_views=pair_views, chunk_rows=cfg.chunk_rows,
                                shuffle_chunks=cfg.shuffle_chunks, first_view=first_view)
    tensors = {m: torch.from_numpy(read_modality(store, keys, positions, all_views=pair_views,
                                                 first_view=first_view))
               .to(device=device, dtype=dtype) for m, keys in layout.keys.items()}
    return InMemoryFeatures(tensors, batch_size=cfg.batch_size, drop_last=cfg.drop_last,
                            pair_views=pair_views)
