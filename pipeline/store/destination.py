"""Where an extraction may write: ``--out`` is checked before any work, and nothing is written
if it is refused.

- missing, or an empty folder: a new store;
- a complete store (``store.json``) of this configuration: nothing to do; of another: refused;
- a partial store (only the files an extraction writes, with ``shards/``) whose shards were
  extracted with this configuration: resumed; of another configuration: refused;
- anything else (a file, a folder holding other files, a store's files without ``shards/``):
  refused, naming what is there, so a run never overwrites a user's own ``index.parquet``.

Whether ``--out`` can be written is found out by the first write, taking the extraction lock
(:class:`~pipeline.store.lock.StoreLock`), also before any work.
"""

from __future__ import annotations

import posixpath
import re
from typing import Literal

from pipeline.store.errors import StoreError
from pipeline.store.filesystem import Location, storage_errors
from pipeline.store.lock import LOCK_PREFIX
from pipeline.store.manifest import SHARD_DIR
from pipeline.store.reader import open_store
from pipeline.store.writer import shard_attributes

State = Literal["new", "partial", "complete"]

_TEMPORARY = r"(\.[0-9a-f]+)?\.(tmp|partial)"
_TOP = re.compile(rf"^((store\.json|index\.parquet|failures\.parquet|label_texts\.parquet)"
                  rf"({_TEMPORARY})?"
                  rf"|{re.escape(LOCK_PREFIX)}\d+({_TEMPORARY})?)$")
_SHARDS = re.compile(rf"^shard-(\d{{5,}})\.(h5|index\.parquet|failures\.parquet)"
                     rf"({_TEMPORARY})?$")
SHOWN = 5


def _names(loc: Location, path: str) -> list[str]:
    return sorted(posixpath.basename(p.rstrip("/")) for p in loc.fs.ls(path, detail=False))


def check_destination(loc: Location, store_id: str) -> State:
    """What ``loc`` is, for an extraction whose store id is ``store_id`` (see the module
    docstring); reads only, writes nothing.

    Raises:
        StoreError: ``loc`` is a file, holds files that are not a store's, is a store (complete
            or partial) of another configuration, or cannot be read (credentials, connection).
    """
    with storage_errors(loc.display):
        if not loc.fs.exists(loc.root):
            return "new"
        if not loc.fs.isdir(loc.root):
            raise StoreError(f"{loc.display} is a file, not a folder: --out names the folder "
                             "(or fsspec URL) the store is written to")
        top = _names(loc, loc.root)
        shards_dir = loc.path(SHARD_DIR)
        shards = (_names(loc, shards_dir) if SHARD_DIR in top and loc.fs.isdir(shards_dir)
                  else None)
    foreign = [n for n in top if n != SHARD_DIR and not _TOP.match(n)]
    if SHARD_DIR in top and shards is None:
        foreign.append(f"{SHARD_DIR} (a file)")
    foreign += [f"{SHARD_DIR}/{n}" for n in shards or [] if not _SHARDS.match(n)]
    if foreign:
        more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
        raise StoreError(f"{loc.display} is not empty and not a feature store: it holds "
                         f"{', '.join(foreign[:SHOWN])}{more}; an extraction there could "
                         "overwrite them. Choose a new or empty --out (nothing was written)")
    if "store.json" in top:
        existing = open_store(loc.url).store_id
        if existing != store_id:
            raise StoreError(f"{loc.display} is a complete store of another configuration "
                             f"(store_id {existing[:12]}, this run {store_id[:12]}); choose a "
                             "new --out, or compare with `cli store info`")
        return "complete"
    if shards is None:
        data = [n for n in top if not n.startswith(LOCK_PREFIX)]
        if data:
            raise StoreError(f"{loc.display} holds {', '.join(data)} but no {SHARD_DIR}/: not "
                             "a store an extraction wrote. Choose a new or empty --out "
                             "(nothing was written)")
        return "new"
    _check_partial(loc, store_id, top, shards)
    return "partial"


def _check_partial(loc: Location, store_id: str, top: list[str], shards: list[str]) -> None:
    """A partial store's first finished shard must be of this configuration (each one is
    checked again when the run resumes). The store-level tables are written after the last
    shard, so with none finished they are somebody else's files."""
    finished = [m for m in map(_SHARDS.match, shards) if m and m.group(2) == "h5"
                and not m.group(3)]
    tables = [n for n in top if n in ("index.parquet", "failures.parquet",
                                      "label_texts.parquet")]
    if tables and not finished:
        raise StoreError(f"{loc.display} holds {', '.join(tables)} but no finished shard: not "
                         "a store an extraction wrote (it writes those files after its last "
                         "shard). Choose a new or empty --out (nothing was written)")
    if not finished:
        return
    k = int(finished[0].group(1))
    found, _, _ = shard_attributes(loc, k)
    if found != store_id:
        raise StoreError(f"{loc.display} is a partial store of another configuration (shard "
                         f"{k} has store_id {found[:12]}, this run {store_id[:12]}); use the "
                         "same options as the run that started it, or a new --out")


__all__ = ["State", "check_destination"]
