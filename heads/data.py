"""Feature batches for the head trainer, from a feature store.

Modalities are assembled from store keys (video = ``frames_2d ++ frames_3d``): the config names
the keys per modality, the store says which exist. A modality with some keys missing is built
from the rest (logged; the keys used are recorded in the run's config and checkpoint), one with
none of its keys is an error naming the store and what it holds.

:func:`load_features` serves the chosen splits from one of two sources
(:mod:`heads.sources`): all rows on the device when they fit, else streamed from the shards
through a shuffle buffer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from heads.config import DataConfig
from heads.sources import (Batch, FeatureSource, InMemoryFeatures, Layout, StreamedFeatures,
                           pick_two_views, steps_per_epoch)
from pipeline.errors import UserError

if TYPE_CHECKING:
    from pipeline.store import FeatureStore

log = logging.getLogger(__name__)


class DataError(UserError, ValueError):
    """The store cannot provide what the run asks for; the message names store and keys."""


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


# The sources' names are part of this module's interface (the trainer, benchmarks and tests read
# them from here).
__all__ = ["Batch", "DataError", "FeatureSource", "InMemoryFeatures", "Layout", "StreamedFeatures",
           "assemble_modalities", "check_views", "fits_in_memory", "load_features",
           "pick_two_views", "read_modality", "steps_per_epoch"]
