"""Where a feature store lives: a local folder or any fsspec URL, read and written safely.

:class:`Location` pairs a filesystem with a root path. Writes go to a temporary name and are
moved into place, so a reader never sees half a file. Remote reads go through fsspec's block
cache, so h5py reading a few rows of a shard fetches a few blocks, not the shard. Credentials
come from the usual fsspec / cloud configuration (environment, ``~/.aws``, ``storage_options``)
and are never written or logged: messages show :attr:`Location.display`, the URL without user
info or query.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

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
        fs, root = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
        return cls(str(url), fs, root.rstrip("/"))

    def __repr__(self) -> str:
        return f"Location({self.display!r})"

    @property
    def display(self) -> str:
        return redact_url(self.url)

    @property
    def is_local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                          else (self.fs.protocol,))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.path(*parts)))

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open(self.path(*parts), "rb") as f:
            return f.read()

    def open_read(self, *parts: str, block_size: int = READ_BLOCK_SIZE) -> Any:
        """A seekable binary file that fetches ``block_size`` blocks on demand (remote)."""
        return self.fs.open(self.path(*parts), "rb", block_size=block_size,
                            cache_type=READ_CACHE_TYPE)

    def size(self) -> int:
        """Bytes of every file under the root."""
        return int(self.fs.du(self.root, total=True))

    def write_atomic(self, data: bytes, *parts: str) -> None:
        """Write to a temporary name, then move into place: readers never see half a file."""
        final = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = final + ".tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, final)

    def put_atomic(self, local_file: str | Path, *parts: str) -> None:
        final = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = final + ".tmp"
        self.fs.put_file(str(local_file), tmp)
        self.fs.mv(tmp, final)

    def copy_atomic(self, src_fs: fsspec.AbstractFileSystem, src_path: str, *parts: str) -> str:
        """Stream a file of any filesystem to ``parts`` here (temporary name, then moved).

        Returns:
            The sha256 of the bytes copied.
        """
        final = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = final + ".tmp"
        digest = hashlib.sha256()
        with src_fs.open(src_path, "rb") as src, self.fs.open(tmp, "wb") as dst:
            while chunk := src.read(COPY_BLOCK_SIZE):
                digest.update(chunk)
                dst.write(chunk)
        self.fs.mv(tmp, final)
        return digest.hexdigest()


def sha256_file(fs: fsspec.AbstractFileSystem, path: str, block: int = COPY_BLOCK_SIZE) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def table_to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def read_parquet(loc: Location, *parts: str) -> pa.Table:
    with loc.fs.open(loc.path(*parts), "rb") as f:
        return pq.read_table(f)
