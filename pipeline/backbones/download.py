"""Fetching published checkpoints into a weights folder, and checking what is there.

The weights folder is ``$CONCLUGEN_WEIGHTS_DIR`` (``cli extract --weights-dir DIR`` sets it),
else ``~/.cache/conclugen/weights``. A checkpoint torchvision already downloaded into the torch
hub cache (``<torch hub dir>/checkpoints``) is found there too. For clusters whose nodes are
offline: ``cli weights fetch --to DIR`` on a login node, then ``--weights-dir DIR``.

Every download is written to a temporary name, checked (its length against the server's
``Content-Length``; its MD5, sha256 or sha256 prefix against the publisher's, when there is
one), unpacked when it is an archive (only the named member is kept) and renamed into place,
with a record beside it (``NAME.json``: the URL, what verified it, the sha256 and size of what
was kept). A file found later is checked against the publisher's checksum, or else against its
record, so a file damaged or replaced since it was fetched is caught.

``$CONCLUGEN_WEIGHTS_MIRROR`` (an ``http(s)://host[:port]`` base) rebases every catalogue URL
onto a mirror: ``https://example.org/a/b.pth`` is fetched from ``MIRROR/example.org/a/b.pth``
(with its query string), for sites that mirror the publishers, and for tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from pipeline.backbones.catalogue import WeightsEntry, WeightsFile
from pipeline.backbones.weights import WeightsError

log = logging.getLogger(__name__)

DIR_ENV = "CONCLUGEN_WEIGHTS_DIR"
MIRROR_ENV = "CONCLUGEN_WEIGHTS_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def weights_dir() -> Path:
    """The folder checkpoints are fetched into and looked up in first."""
    configured = os.environ.get(DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "conclugen" / "weights"


def use_weights_dir(folder: str | Path | None) -> None:
    """Make ``folder`` the weights folder of this process and of the workers it starts.

    Raises:
        WeightsError: ``folder`` is not an existing folder.
    """
    if folder is None:
        return
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise WeightsError(f"--weights-dir {folder}: no such folder")
    os.environ[DIR_ENV] = str(path)  # inherited by local workers and SLURM jobs


def _search_dirs() -> list[Path]:
    import torch.hub

    return [weights_dir(), Path(torch.hub.get_dir()) / "checkpoints"]


def mirrored(url: str) -> str:
    """``url`` rebased onto ``$CONCLUGEN_WEIGHTS_MIRROR`` when it is set."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    parts = urlparse(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}{query}"


@dataclass(frozen=True)
class Found:
    """Where a checkpoint is, or why it is not usable."""

    path: Path | None
    problem: str | None


def locate(entry: WeightsEntry, *, full_check: bool = True) -> Found:
    """Find ``entry`` in the weights folders and check it.

    Args:
        entry: the checkpoint.
        full_check: hash the file(s) (the client's check before a run); otherwise only
            compare sizes with the record (workers, after the client checked).

    Returns:
        The path with ``problem`` None; or the path of a bad copy (or None) with the problem.
    """
    for folder in _search_dirs():
        path = folder / entry.target
        if path.exists():
            return Found(path, check_copy(entry, path, full_check))
    return Found(None, f"not in the weights folder {weights_dir()}: it needs a download "
                       f"({entry.files[-1].url}); run `cli weights fetch` where there is "
                       f"internet, or give --weights-dir a folder holding {entry.target}")


def ensure(entry: WeightsEntry, *, download: bool, full_check: bool = True) -> Path:
    """The checked local path of ``entry``, fetched into :func:`weights_dir` when missing.

    Raises:
        WeightsError: missing (and ``download`` is False), unusable, or the download failed.
    """
    found = locate(entry, full_check=full_check)
    if found.path is not None and found.problem is None:
        return found.path
    if found.path is not None or not download:
        raise WeightsError(f"{found.path or entry.target}: {found.problem}")
    return fetch(entry, weights_dir())


def fetch(entry: WeightsEntry, dest: Path) -> Path:
    """Download ``entry`` into ``dest`` (replacing a bad copy), verified; return its path.

    Raises:
        WeightsError: the download failed, was cut short, is an HTML page, or its checksum
            differs from the publisher's; nothing is left at the target then.
    """
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / entry.target
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as scratch:
        staged = Path(scratch) / entry.target
        records = {}
        if entry.folder:
            staged.mkdir()
            for file in entry.files:
                name, records[name] = _download_file(file, staged)
        else:
            _, records[entry.files[0].name] = _download_file(entry.files[0], Path(scratch))
        record = Path(scratch) / "record.json"
        record.write_text(json.dumps({"identifier": entry.identifier,
                                      "revision": entry.revision, "files": records,
                                      "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime())}, indent=1))
        _remove(target)
        os.replace(staged, target)
        os.replace(record, _record_path(target))
    log.info("%s: %s verified (%s)", entry.identifier, target, entry.checksum_text())
    return target


def _download_file(file: WeightsFile, folder: Path) -> tuple[str, dict[str, Any]]:
    """Fetch one file into ``folder`` (trying its alternatives on a 404); its record."""
    names = (file.name, *file.alternatives)
    for i, name in enumerate(names):
        url = file.url.rsplit("/", 1)[0] + "/" + name if i else file.url
        try:
            return name, _download(url, file, folder / name)
        except urllib.error.HTTPError as err:
            if err.code != 404 or i == len(names) - 1:
                raise WeightsError(f"{mirrored(url)}: HTTP {err.code} {err.reason}") from None
    raise AssertionError("unreachable")


def _download(url: str, file: WeightsFile, out: Path) -> dict[str, Any]:
    source = mirrored(url)
    log.info("downloading %s (%s)", source,
             f"about {file.size_mb:.0f} MB" if file.size_mb else "size unknown")
    raw = out.with_name(out.name + ".download")
    try:
        with urllib.request.urlopen(source, timeout=_TIMEOUT_S) as response, \
                open(raw, "wb") as sink:
            digests = _copy(response, sink, source)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as err:
        raise WeightsError(f"{source}: download failed ({err}); download it by other means "
                           "into the weights folder, or pass the file as --weights") from None
    if file.check is not None:
        got = digests[file.check.kind]
        if not got.startswith(file.check.value):
            raise WeightsError(f"{source}: {file.check.kind} {got} does not match the "
                               f"published {file.check.value} ({file.check.published}); "
                               "the file is damaged or not the published one")
    verified = file.check.describe() if file.check else "unverified (no published checksum)"
    if file.member is not None:
        _extract_member(raw, file.member, out, source)
        raw.unlink()
        sha256, size = _sha256(out), out.stat().st_size
        verified += f" of the archive; member {file.member}"
    else:
        os.replace(raw, out)
        sha256, size = digests["sha256"], out.stat().st_size
    return {"url": url, "verified": verified, "sha256": sha256, "size": size}


def _copy(response: Any, sink: IO[bytes], source: str) -> dict[str, str]:
    """Stream ``response`` into ``sink``; its md5 and sha256; refuse short or HTML bodies."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    expected = response.headers.get("Content-Length")
    first = True
    total = 0
    while True:
        try:
            chunk = response.read(_CHUNK)
        except Exception as err:  # http.client.IncompleteRead and the like: a cut connection
            raise WeightsError(f"{source}: truncated download ({total} bytes read, "
                               f"{expected or 'unknown'} expected): {err}") from None
        if not chunk:
            break
        if first and chunk.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
            raise WeightsError(f"{source}: the server sent an HTML page instead of the file (a "
                               "sign-in, quota or confirmation page); download it in a browser "
                               "and put it into the weights folder")
        first = False
        md5.update(chunk)
        sha.update(chunk)
        sink.write(chunk)
        total += len(chunk)
    if expected is not None and total != int(expected):
        raise WeightsError(f"{source}: truncated download ({total} of {expected} bytes)")
    digest = sha.hexdigest()
    return {"md5": md5.hexdigest(), "sha256": digest, "sha256-prefix": digest}


def _extract_member(archive: Path, member: str, out: Path, source: str) -> None:
    """Copy the one archive member whose path ends with ``member`` to ``out``."""
    with _members(archive, source) as (names, open_member):
        matches = [n for n in names if n == member or n.endswith("/" + member)]
        if len(matches) != 1:
            raise WeightsError(f"{source}: the archive holds {len(matches)} files named "
                               f"{member} (expected one): {', '.join(matches) or 'none'}")
        with open_member(matches[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)


@contextmanager
def _members(archive: Path, source: str) -> Iterator[tuple[list[str], Any]]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield [i.filename for i in zf.infolist() if not i.is_dir()], zf.open
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            def open_member(name: str) -> IO[bytes]:
                extracted = tf.extractfile(name)
                if extracted is None:
                    raise WeightsError(f"{source}: archive member {name} is not a file")
                return extracted

            yield [m.name for m in tf.getmembers() if m.isfile()], open_member
        return
    raise WeightsError(f"{source}: expected a tar or zip archive")


def check_copy(entry: WeightsEntry, path: Path, full_check: bool) -> str | None:
    """Why the copy of ``entry`` at ``path`` cannot be used, or None."""
    record = _read_record(path)
    files = ([path / name for name in (record or {}).get("files", {})] if entry.folder
             else [path])
    if entry.folder and not files:
        return "fetched incompletely (no record of its files): run `cli weights fetch` again"
    single = entry.files[0]
    if not entry.folder and record is None:
        # No record (put there by hand, or by torchvision): only a checksum of the file itself
        # can vouch for it.
        if single.check is None or single.member is not None:
            return ("not fetched by `cli weights fetch` (no record beside it) and its own "
                    "checksum is not published: run `cli weights fetch`")
        if not full_check:
            return None
        got = _digest(path, single.check.kind)
        return None if got.startswith(single.check.value) else (
            f"{single.check.kind} {got} does not match the published {single.check.value}: "
            "damaged or another file; run `cli weights fetch` to replace it")
    for file in files:
        want = record["files"].get(file.name) if record else None
        if want is None or not file.is_file():
            return f"{file.name} is missing: run `cli weights fetch` again"
        if file.stat().st_size != want["size"]:
            return (f"{file.name} has {file.stat().st_size} bytes, {want['size']} when it was "
                    "fetched: run `cli weights fetch` to replace it")
        if full_check and _sha256(file) != want["sha256"]:
            return (f"{file.name} changed since it was fetched (sha256 differs from its "
                    "record): run `cli weights fetch` to replace it")
    return None


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def _read_record(target: Path) -> dict[str, Any] | None:
    path = _record_path(target)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _digest(path: Path, kind: str) -> str:
    hasher = hashlib.md5(usedforsecurity=False) if kind == "md5" else hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK * 8):
            hasher.update(chunk)
    return hasher.hexdigest()


def _sha256(path: Path) -> str:
    return _digest(path, "sha256")


def _remove(target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()


__all__ = ["DIR_ENV", "MIRROR_ENV", "Found", "check_copy", "ensure", "fetch", "locate", "mirrored",
           "use_weights_dir", "weights_dir"]
