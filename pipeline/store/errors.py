"""The store's errors: all of them are problems with a store the user gave (exit code 2).

:class:`StoreError` is the base; two kinds are told apart because ``store verify`` reports
them as findings about a store rather than stopping: a file the store declares that is not
there (:class:`MissingFileError`) and a reference that would make the store read outside
itself (:class:`UnsafePathError`).
"""

from __future__ import annotations

from pipeline.errors import UserError


class StoreError(UserError, ValueError):
    """A store is missing, incomplete, inconsistent or of another configuration."""


class MissingFileError(StoreError):
    """A file the store declares (or every store has) is not there."""


class UnsafePathError(StoreError):
    """A store file reference that leaves the store: an absolute path, a URL, ``..``, a
    symbolic link to somewhere outside the store root, or something that is not a regular file
    (a device such as ``/dev/zero``, a FIFO, a folder)."""


class LockedError(StoreError):
    """Another extraction holds the store's lock."""


__all__ = ["LockedError", "MissingFileError", "StoreError", "UnsafePathError"]
