"""Checks of a shard's HDF5 contents that the reader, ``store verify`` and the writer share: h5py
failures as one :class:`~pipeline.store.errors.StoreError` naming the file, plain datasets
only (no link, virtual dataset or external storage), and no NaN or Inf in what is read."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import h5py
import numpy as np

from pipeline.store.errors import StoreError

H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError)
"""What h5py raises on a damaged file (it maps HDF5 library errors onto these)."""
VERIFY_HINT = "; `cli store verify` checks the whole store"


@contextlib.contextmanager
def h5_errors(where: str, action: str) -> Iterator[None]:
    """An h5py failure on a store file as one :class:`StoreError` naming the file."""
    try:
        yield
    except StoreError:
        raise
    except H5_ERRORS as err:
        raise StoreError(f"{where}: cannot {action}: {err}{VERIFY_HINT}") from err


def plain_dataset_problem(h5: h5py.File, name: str) -> str | None:
    """Why member ``name`` of a shard is not a plain dataset stored in the shard itself, or
    None. A shard holds plain datasets only: an external link, a soft link, a virtual dataset
    or external storage would make a reader (and ``store merge``) read another file, or read
    zeros once that file is gone. The link is inspected before anything is opened."""
    link = h5.get(name, getlink=True)
    if link is None:
        return None  # missing: the callers say so with what they expected
    if not isinstance(link, h5py.HardLink):
        return (f"a {type(link).__name__} (its data would be read from elsewhere); a shard "
                "holds plain datasets only")
    obj = h5[name]
    if not isinstance(obj, h5py.Dataset):
        return f"a {type(obj).__name__}, not a dataset"
    if obj.is_virtual:
        return ("a virtual dataset (its data would be read from other files); a shard holds "
                "plain datasets only")
    if obj.external:
        return ("external storage (its data would be read from other files); a shard holds "
                "plain datasets only")
    return None


#: Per float width: the unsigned integer of the same width and its exponent bits.
_EXPONENT_BITS = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000),
                  8: (np.uint64, 0x7FF0000000000000)}


def nonfinite_rows(block: np.ndarray) -> np.ndarray:
    """Positions of the rows of ``block`` [rows, ...] holding a NaN or an Inf.

    A float is NaN or Inf exactly when its exponent bits are all ones; testing them on the
    integer view is ten times faster than :func:`numpy.isfinite` on float16 (which converts to
    float32 first), and ``store verify`` reads every stored value.
    """
    flat = np.ascontiguousarray(block).reshape(len(block), int(np.prod(block.shape[1:])))
    if flat.dtype.kind != "f" or flat.dtype.itemsize not in _EXPONENT_BITS:
        return np.flatnonzero(~np.isfinite(flat).all(axis=1))
    kind, bits = _EXPONENT_BITS[flat.dtype.itemsize]
    exponent = flat.view(kind) & kind(bits)
    return np.flatnonzero((exponent == kind(bits)).any(axis=1))


def check_finite(block: np.ndarray, where: str, rows: np.ndarray) -> None:
    """No NaN or Inf reaches a reader: a store never holds one (the writer refuses them), so
    one read is damage or tampering, named here rather than scored as a number.

    Raises:
        StoreError: naming the shard, key and row.
    """
    bad = nonfinite_rows(block)
    if bad.size:
        raise StoreError(f"{where} row {int(rows[int(bad[0])])}: NaN or Inf values "
                         f"({bad.size} rows of this read){VERIFY_HINT}")
