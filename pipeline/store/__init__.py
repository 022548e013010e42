"""The feature store: HDF5 shards + Parquet index + ``store.json``, on any fsspec filesystem.

One module per concern:

- :mod:`~pipeline.store.manifest`: ``store.json`` as typed dataclasses (the contract), the
  ``store_id`` and the feature-space identity, format versions;
- :mod:`~pipeline.store.writer`: shards, ``finalize``, stores written from arrays;
- :mod:`~pipeline.store.reader`: :func:`open_store` and :class:`FeatureStore`, with the shard
  files it keeps open (:mod:`~pipeline.store.shard_files`), the checks of a shard's HDF5
  contents it shares with verify and the writer (:mod:`~pipeline.store.shard_checks`) and the
  index's columns as arrays (:mod:`~pipeline.store.index_columns`);
- :mod:`~pipeline.store.verify`: ``store verify`` (its report, shard and label-text checks in
  ``verify_report``, ``verify_shards``, ``verify_label_texts``);
- :mod:`~pipeline.store.ops`: ``store info``, ``diff``, ``upgrade``; :mod:`~pipeline.store.merge`:
  ``store merge``;
- :mod:`~pipeline.store.filesystem`: where the files live (fsspec), the one gate every read of
  a store file goes through, atomic writes, storage errors, redaction;
- :mod:`~pipeline.store.destination` and :mod:`~pipeline.store.lock`: where an extraction may
  write, and one extraction at a time per store;
- :mod:`~pipeline.store.errors`: the store's errors (all of them user errors).

The names below are the public API: ``from pipeline.store import open_store``.
"""

from __future__ import annotations

from pipeline.store.errors import LockedError, MissingFileError, StoreError, UnsafePathError
from pipeline.store.filesystem import (COPY_BLOCK_SIZE, READ_BLOCK_SIZE, READ_CACHE_TYPE,
                                       Location, check_relative, read_parquet, redact_url,
                                       sha256_file, storage_errors, table_to_bytes)
from pipeline.store.index_columns import dictionary_codes, group_by_code
from pipeline.store.manifest import (FORMAT, SHARD_DIR, StoreManifest, canonical_json,
                                     feature_space_differences, shard_paths, store_id_of)
from pipeline.store.reader import FeatureStore, load_manifest, open_store
from pipeline.store.split import StoreSplit
from pipeline.store.writer import (ShardResult, completed_shard, finalize, shard_name,
                                   write_arrays, write_shard)

__all__ = ["COPY_BLOCK_SIZE", "FORMAT", "READ_BLOCK_SIZE", "READ_CACHE_TYPE", "SHARD_DIR",
           "FeatureStore", "Location", "LockedError", "MissingFileError", "ShardResult",
           "StoreError", "StoreManifest", "StoreSplit", "UnsafePathError", "canonical_json",
           "check_relative",
           "completed_shard", "dictionary_codes", "feature_space_differences", "finalize",
           "group_by_code", "load_manifest", "open_store", "read_parquet", "redact_url",
           "sha256_file", "shard_name", "shard_paths", "storage_errors", "store_id_of",
           "table_to_bytes", "write_arrays", "write_shard"]
