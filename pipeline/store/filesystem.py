"""Where a feature store lives: a local folder or any fsspec URL, read and written safely.

:class:`Location` pairs a filesystem with a root path. Writes go to a temporary name and are
moved into place, so a reader never sees half a file. Remote reads go through fsspec's block
cache, so h5py reading a few rows of a shard fetches a few blocks, not the shard. Credentials
come from the usual fsspec / cloud configuration (environment, ``~/.aws``, ``storage_options``)
and are never written or logged: messages show :attr:`Location.display`, the URL without user
info or query.

A store never reads outside itself. Every file a store names (the shard paths of
``store.json``, the ``shard`` column of ``index.parquet``) and every file a reader opens goes
through one function, :meth:`Location.member`: the reference must be a plain relative path (no
absolute path, URL, ``..``, empty or ``.`` part, backslash), and on a local disk the file it
resolves to (symbolic links followed) must lie under the store root and be a regular file, not
a device such as ``/dev/zero`` or a FIFO; on other filesystems it must be a file.

Failures of the storage itself (missing credentials, a refused connection, a full disk, a
read-only location) become one :class:`~pipeline.store.errors.StoreError` naming the file and
the cause (:func:`storage_errors`), not a library traceback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import posixpath
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store.errors import MissingFileError, StoreError, UnsafePathError

READ_BLOCK_SIZE = 1 << 20
"""Bytes per remote read. A shard of 256 clips holds about 1 MB per modality key and view
(2048 float16 values a row), so one block is about one HDF5 chunk: a slice of rows costs a few
requests, and a key read alone does not pull in the other keys' bytes."""
READ_CACHE_TYPE = "blockcache"  # h5py jumps between metadata and chunks: keep blocks, not a window
COPY_BLOCK_SIZE = 1 << 22


def redact_url(url: str | Path) -> str:
    """The URL without user info, query or fragment (where tokens and keys would sit).

    Chained URLs (``simplecache::s3://...``) are redacted link by link; local paths pass as is.
    """
    links = []
    for link in str(url).split("::"):
        if "://" not in link:
            links.append(link)
            continue
        parts = urlsplit(link)
        links.append(urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path,
                                 "", "")))
    return "::".join(links)


_DRIVE = re.compile(r"^[A-Za-z]:")
_CREDENTIAL_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError",
                                "CredentialRetrievalError", "DefaultCredentialsError",
                                "RefreshError"})
_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_relative(ref: object, where: str) -> str:
    """``ref`` as a file reference inside a store, or :class:`UnsafePathError`.

    Only the form is checked here (no filesystem access): a non-empty relative POSIX path
    without ``..``, ``.`` or empty parts, without a URL scheme, drive or backslash.

    Args:
        ref: a value read from ``store.json`` or ``index.parquet``.
        where: what holds it, for the message (``store.json shards[3].path``).
    """
    if not isinstance(ref, str) or not ref:
        raise UnsafePathError(f"{where}: {ref!r} is not a file name")
    reason = None
    if "\x00" in ref or "\\" in ref:
        reason = "holds a NUL byte or a backslash"
    elif ref.startswith("/") or _DRIVE.match(ref):
        reason = "is an absolute path"
    elif "://" in ref or "::" in ref:
        reason = "is a URL"
    elif any(part in ("", ".", "..") for part in ref.split("/")):
        reason = "has a '..', '.' or empty part"
    if reason:
        raise UnsafePathError(f"{where}: {ref!r} {reason}; a store reads only files under its "
                              "own root (refused)")
    return ref


def _scrub(text: str) -> str:
    """A library's error text without URL user info or query strings (tokens, signatures)."""
    return re.sub(r"\?[^\s'\"]*", "", re.sub(r"//[^/@\s'\"]+@", "//", text))


def describe_storage_error(where: str, action: str, err: BaseException) -> str:
    """One line for a storage failure: what, where, why, and what to do."""
    name = type(err).__name__
    text = " ".join(_scrub(str(err)).split()) or name
    if len(text) > 300:
        text = text[:297] + "..."
    if name in _CREDENTIAL_ERRORS:
        return (f"{where}: cannot {action} it: no credentials ({text}); give them the usual "
                "way (for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in "
                "~/.aws/credentials, an instance role) or as storage_options")
    if isinstance(err, OSError) and err.errno in _FULL:
        return (f"{where}: no space left on the device while writing it "
                f"({os.strerror(err.errno)}); free some space and run the same command again "
                "(finished work is kept)")
    if isinstance(err, PermissionError):
        return f"{where}: cannot {action} it: permission denied ({text})"
    if isinstance(err, OSError) and err.errno == errno.EROFS:
        return f"{where}: cannot {action} it: the file system is read-only"
    if isinstance(err, NotImplementedError):
        return f"{where}: cannot {action} it: this filesystem is read-only"
    return f"{where}: cannot {action} it: {text}"


@functools.cache
def _backend_errors() -> tuple[type[BaseException], ...]:
    """The exception types storage libraries raise for an unreachable or refused location
    (fsspec backends mostly raise OSError; botocore, aiohttp and google-auth have their own)."""
    found: list[type[BaseException]] = [OSError, NotImplementedError]
    for module, name in (("botocore.exceptions", "BotoCoreError"),
                         ("aiohttp", "ClientError"),
                         ("google.auth.exceptions", "GoogleAuthError")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(__import__(module, fromlist=[name]), name))
    return tuple(found)


@contextlib.contextmanager
def storage_errors(where: str, action: str = "read") -> Iterator[None]:
    """Turn a storage failure inside the block into one :class:`StoreError` naming ``where``.

    A missing file becomes :class:`MissingFileError`; errors that are already store errors
    pass unchanged; anything that is not a storage failure (a bug) keeps its traceback.
    """
    try:
        yield
    except StoreError:
        raise
    except FileNotFoundError as err:
        # fsspec's HTTP filesystem reports a refused connection as "not found": its cause says
        cause = err.__cause__
        if cause is not None and _unreachable(cause):
            raise StoreError(describe_storage_error(where, action, cause)) from err
        if action == "read":
            raise MissingFileError(f"{where}: missing") from err
        raise StoreError(describe_storage_error(where, action, err)) from err
    except _backend_errors() as err:
        raise StoreError(describe_storage_error(where, action, err)) from err


def _unreachable(cause: BaseException | None) -> bool:
    """Whether an exception is a failure to reach the storage (not a missing file)."""
    if cause is None or isinstance(cause, FileNotFoundError):
        return False
    return isinstance(cause, OSError) or any(
        c.__name__ == "ClientConnectionError" for c in type(cause).__mro__)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@dataclass
class Location:
    """A store's filesystem and root path; local folders and fsspec URLs alike.

    ``url`` is what was given (it can be re-parsed by a worker); show :attr:`display` instead.
    """

    url: str
    fs: fsspec.AbstractFileSystem = field(repr=False)
    root: str

    @classmethod
    def parse(cls, url: str | Path, storage_options: dict[str, Any] | None = None) -> Location:
        try:
            fs, root = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
        except (ImportError, ValueError) as err:
            # An unknown protocol or a missing backend package (s3fs, gcsfs, ...).
            raise StoreError(f"{redact_url(url)}: {_scrub(str(err))}") from err
        return cls(str(url), fs, root.rstrip("/"))

    def __repr__(self) -> str:
        return f"Location({self.display!r})"

    @property
    def display(self) -> str:
        return redact_url(self.url)

    def where(self, *parts: str) -> str:
        """``parts`` as shown in messages: the redacted URL joined with the relative path."""
        return posixpath.join(self.display, *parts) if parts else self.display

    @property
    def is_local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                          else (self.fs.protocol,))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def member(self, *parts: str) -> str:
        """The path to open for the store file ``parts``, checked to be inside the store.

        The one gate every read of a store file goes through (see the module docstring).

        Raises:
            UnsafePathError: the reference or the file it resolves to leaves the store, or is
                not a regular file.
            MissingFileError: no such file.
            StoreError: the storage cannot be reached (credentials, connection).
        """
        rel = posixpath.join(*parts)
        check_relative(rel, self.where(rel))
        path = self.path(rel)
        if not self.is_local:
            with storage_errors(self.where(rel)):
                info = self.fs.info(path)
            if info.get("type") != "file":
                raise UnsafePathError(f"{self.where(rel)}: not a file ({info.get('type')}); "
                                      "refused")
            return path
        root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise UnsafePathError(f"{self.where(rel)}: a symbolic link to {real}, outside the "
                                  "store; a store reads only files under its own root (refused)")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError as err:
            raise MissingFileError(f"{self.where(rel)}: missing") from err
        except OSError as err:
            raise StoreError(describe_storage_error(self.where(rel), "read", err)) from err
        if not stat.S_ISREG(mode):
            raise UnsafePathError(f"{self.where(rel)}: {_kind(mode)}, not a regular file; "
                                  "refused")
        return real

    def exists(self, *parts: str) -> bool:
        with storage_errors(self.where(*parts)):
            return bool(self.fs.exists(self.path(*parts)))

    def read_bytes(self, *parts: str) -> bytes:
        path = self.member(*parts)
        with storage_errors(self.where(*parts)), self.fs.open(path, "rb") as f:
            return bytes(f.read())

    def open_read(self, *parts: str, block_size: int = READ_BLOCK_SIZE) -> Any:
        """A seekable binary file that fetches ``block_size`` blocks on demand (remote)."""
        path = self.member(*parts)
        with storage_errors(self.where(*parts)):
            return self.fs.open(path, "rb", block_size=block_size, cache_type=READ_CACHE_TYPE)

    def size(self) -> int:
        """Bytes of every file under the root."""
        with storage_errors(self.where()):
            return int(self.fs.du(self.root, total=True))

    def _temporary(self, final: str) -> str:
        # A unique name: two writers of one file (a task orphaned by a killed driver and its
        # re-run) never write into the same temporary file.
        return f"{final}.{uuid.uuid4().hex[:12]}.tmp"

    def _discard(self, path: str) -> None:
        with contextlib.suppress(*_backend_errors()):
            self.fs.rm(path)

    def write_atomic(self, data: bytes, *parts: str) -> None:
        """Write to a temporary name, then move into place: readers never see half a file.

        Raises:
            StoreError: the write failed (full disk, read-only location, ...), naming the file;
                the temporary file is removed.
        """
        final = self.path(*parts)
        tmp = self._temporary(final)
        try:
            with storage_errors(self.where(*parts), "write"):
                self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
                with self.fs.open(tmp, "wb") as f:
                    f.write(data)
                self.fs.mv(tmp, final)
        except StoreError:
            self._discard(tmp)
            raise

    def put_atomic(self, local_file: str | Path, *parts: str) -> None:
        final = self.path(*parts)
        tmp = self._temporary(final)
        try:
            with storage_errors(self.where(*parts), "write"):
                self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
                self.fs.put_file(str(local_file), tmp)
                self.fs.mv(tmp, final)
        except StoreError:
            self._discard(tmp)
            raise

    def copy_atomic(self, src_fs: fsspec.AbstractFileSystem, src_path: str, *parts: str,
                    src_where: str | None = None) -> str:
        """Stream a file of any filesystem to ``parts`` here (temporary name, then moved).

        Args:
            src_fs, src_path: the source (a path :meth:`member` of its store returned).
            parts: the destination, relative to this root.
            src_where: the source as messages show it.

        Returns:
            The sha256 of the bytes copied.
        """
        final = self.path(*parts)
        tmp = self._temporary(final)
        source, dest = src_where or redact_url(src_path), self.where(*parts)
        digest = hashlib.sha256()
        try:
            with storage_errors(dest, "write"):
                self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            with storage_errors(source), src_fs.open(src_path, "rb") as src, \
                    storage_errors(dest, "write"), self.fs.open(tmp, "wb") as dst:
                while True:
                    with storage_errors(source):
                        chunk = src.read(COPY_BLOCK_SIZE)
                    if not chunk:
                        break
                    digest.update(chunk)
                    dst.write(chunk)
            with storage_errors(dest, "write"):
                self.fs.mv(tmp, final)
        except StoreError:
            self._discard(tmp)
            raise
        return digest.hexdigest()


def sha256_file(fs: fsspec.AbstractFileSystem, path: str, block: int = COPY_BLOCK_SIZE, *,
                where: str | None = None) -> str:
    """sha256 of a file (a path :meth:`Location.member` returned); ``where`` names it."""
    digest = hashlib.sha256()
    with storage_errors(where or redact_url(path)), fs.open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def table_to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def read_parquet(loc: Location, *parts: str) -> pa.Table:
    """A Parquet file of the store (through :meth:`Location.member`).

    Raises:
        MissingFileError: no such file.
        StoreError: not Parquet, or the storage cannot be read.
    """
    path = loc.member(*parts)
    with storage_errors(loc.where(*parts)), loc.fs.open(path, "rb") as f:
        try:
            return pq.read_table(f)
        except pa.ArrowException as err:
            raise StoreError(f"{loc.where(*parts)}: not a readable Parquet file ({err})") \
                from err
