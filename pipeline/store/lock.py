"""One writer at a time per store: a lock marker with its owner and a heartbeat.

Two extractions (or merges) into one ``--out`` would write the same shard numbers from
different plans and race to write ``store.json``. The run holds a lock for as long as it
writes (one lock per purpose: ``extract``, ``merge``):

- **Markers**: ``STORE/<purpose>.lock.<generation>`` (``extract.lock.3``), JSON with the owner
  (host, process id and the process's start time, a random token), when it started, and its
  last heartbeat. The marker of the highest generation is the lock.
- **Taking it**: no marker, or the current one is stale: create the next generation's marker
  *if absent* (an exclusive hard link on a local or network disk; a conditional put,
  ``If-None-Match: *``, on S3 and fsspec's exclusive create elsewhere). Of two runs that race
  for one generation, one creates it and the other finds it held and refuses.
- **Stale**: the heartbeat is older than ``stale_after`` (a killed or frozen run on any host),
  or the owner is on this host and its process is gone (not running, a zombie, or another
  process that got the same id), so a run killed with ``kill -9`` is taken over at once on
  the same machine. Hosts judge each other by the heartbeat's wall-clock time: keep
  ``stale_after`` well above their clock skew.
- **Heartbeat**: a daemon thread rewrites the marker every ``interval`` seconds and notices a
  newer generation (this run was judged stale and taken over); :meth:`StoreLock.check` then
  raises, and the run stops before it writes ``store.json``.
- **Release**: the run's own marker is deleted; a killed run's marker stays until the next run
  takes it over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.store.errors import LockedError, MissingFileError, StoreError
from pipeline.store.filesystem import Location, storage_errors

log = logging.getLogger(__name__)

LOCK_PREFIX = "extract.lock."
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0
"""A lock without a heartbeat for this long is stale (12 missed heartbeats)."""


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock (the content of a marker)."""

    token: str
    host: str
    pid: int
    started: float
    heartbeat: float
    pid_start: str | None = None
    """The process's start time (Linux ``/proc``): a process that reuses the id differs."""
    pidns: str | None = None
    """The process-id namespace: containers on one host with one name do not share ids."""

    def describe(self, now: float | None = None) -> str:
        age = (time.time() if now is None else now) - self.heartbeat
        started = datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds")
        return (f"process {self.pid} on {self.host}, started {started}, last heartbeat "
                f"{age:.0f} s ago")


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from ``/proc`` (None without ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _pidns() -> str | None:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None


def this_process(token: str, started: float | None = None) -> LockOwner:
    now = time.time()
    stat = _proc_stat(os.getpid())
    return LockOwner(token=token, host=socket.gethostname(), pid=os.getpid(),
                     started=now if started is None else started, heartbeat=now,
                     pid_start=stat[1] if stat else None, pidns=_pidns())


def owner_gone(owner: LockOwner) -> bool:
    """Whether the owner is a process of this host (and namespace) that no longer runs."""
    if owner.host != socket.gethostname() or owner.pidns != _pidns():
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it runs
    stat = _proc_stat(owner.pid)
    if stat is None:
        return False
    state, start = stat
    return state == "Z" or (owner.pid_start is not None and start != owner.pid_start)


#: Per purpose, what a lock's messages say its holder is doing to the folder, and what a second
#: run would do (stores: ``extract``, ``merge``; run folders of the head trainer: ``pretrain``,
#: ``eval``, ``study``).
DOING = {"extract": ("extracted", "two runs into one store would mix their shards"),
         "merge": ("merged into", "two runs into one store would mix their shards"),
         "pretrain": ("trained into", "two runs into one folder would interleave their "
                                      "metrics and checkpoints"),
         "eval": ("evaluated into", "two evaluations into one folder would overwrite each "
                                    "other's results"),
         "study": ("written by a study", "two studies into one folder would train and write "
                                         "the same runs")}


class StoreLock:
    """The writing lock of a store (see the module docstring); a context manager.

    Args:
        loc: the store.
        stale_after: seconds without a heartbeat after which the lock is taken over.
        interval: seconds between heartbeats.
        purpose: a key of :data:`DOING`: the marker's name and the messages.
    """

    def __init__(self, loc: Location, *, stale_after: float = STALE_AFTER_S,
                 interval: float = HEARTBEAT_S, purpose: str = "extract") -> None:
        self.loc, self.stale_after, self.interval = loc, stale_after, interval
        self.prefix, (self.doing, self.clash) = f"{purpose}.lock.", DOING[purpose]
        self.what = {"extract": "extraction", "eval": "evaluation"}.get(purpose, purpose)
        self.token = uuid.uuid4().hex
        self.generation: int | None = None
        self.lost: LockOwner | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner: LockOwner | None = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ----------------------------------------------------------------------------- markers

    def _name(self, generation: int) -> str:
        return f"{self.prefix}{generation}"

    def _markers(self) -> dict[int, str]:
        with storage_errors(self.loc.where(), "read"):
            if self.loc.is_local:
                names = os.listdir(self.loc.root) if os.path.isdir(self.loc.root) else []
            else:
                self.loc.fs.invalidate_cache(self.loc.root)
                names = ([posixpath.basename(p.rstrip("/")) for p in
                          self.loc.fs.ls(self.loc.root, detail=False)]
                         if self.loc.fs.exists(self.loc.root) else [])
        start = len(self.prefix)
        return {int(n[start:]): n for n in names
                if n.startswith(self.prefix) and n[start:].isdigit()}

    def _read(self, name: str) -> LockOwner | None:
        """The owner a marker names; None when it holds no valid owner (stale by nature)."""
        if not self.loc.is_local:
            self.loc.fs.invalidate_cache(self.loc.root)
        data = self.loc.read_bytes(name)
        try:
            fields: dict[str, Any] = json.loads(data)
            return LockOwner(**fields)
        except (ValueError, TypeError):
            return None

    def _create(self, generation: int, owner: LockOwner) -> bool:
        """Create the marker of ``generation`` if absent; False when another run did first."""
        name = self._name(generation)
        final, data = self.loc.path(name), json.dumps(asdict(owner)).encode()
        with storage_errors(self.loc.where(name), "write"):
            self.loc.fs.makedirs(self.loc.root, exist_ok=True)
            if self.loc.is_local:
                return _link_exclusive(final, data, self.token)
            try:
                with self.loc.fs.open(final, "xb") as f:
                    f.write(data)
            except FileExistsError:
                return False
        return True

    def _write_own(self) -> None:
        assert self._owner is not None and self.generation is not None
        self._owner = LockOwner(**{**asdict(self._owner), "heartbeat": time.time()})
        name = self._name(self.generation)
        data = json.dumps(asdict(self._owner)).encode()
        if self.loc.is_local:
            tmp = f"{self.loc.path(name)}.{self.token[:12]}.tmp"
            with storage_errors(self.loc.where(name), "write"):
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.loc.path(name))
        else:
            with storage_errors(self.loc.where(name), "write"):
                self.loc.fs.pipe_file(self.loc.path(name), data)

    def _newer(self) -> LockOwner | None:
        """The owner of a newer generation than ours (we were taken over), if any."""
        assert self.generation is not None
        for generation, name in self._markers().items():
            if generation > self.generation:
                with contextlib.suppress(MissingFileError):
                    owner = self._read(name)
                    return owner or LockOwner("?", "?", 0, 0.0, 0.0)
        return None

    # ------------------------------------------------------------------------------- public

    def _latest(self) -> tuple[dict[int, str], LockOwner | None] | None:
        """The markers and the owner named by the newest (None: no marker, or it vanished)."""
        markers = self._markers()
        if not markers:
            return None
        try:
            return markers, self._read(markers[max(markers)])
        except MissingFileError:
            return None

    def clear_stale(self) -> bool:
        """Remove the marker a killed run left behind on a store that is complete anyway (it
        was killed after writing store.json). A live run's marker is left alone; nothing is
        written when there is no marker. Returns True when a marker was removed."""
        latest = self._latest()
        if latest is None or not self.stale(latest[1]):
            return False
        for name in latest[0].values():
            self._remove(name)
        log.info("%s: removed the %s lock of a run that is gone", self.loc.display, self.what)
        return True

    def holder(self) -> LockOwner | None:
        """The live run holding this lock, or None (no marker, or a stale one). Reads only."""
        latest = self._latest()
        return None if latest is None or self.stale(latest[1]) else latest[1]

    def stale(self, owner: LockOwner | None) -> bool:
        return (owner is None or time.time() - owner.heartbeat > self.stale_after
                or owner_gone(owner))

    def acquire(self) -> None:
        """Take the lock, taking over a stale one.

        Raises:
            LockedError: a live run holds it (its host, process and heartbeat are named).
            StoreError: the location cannot be written (a file, read-only, no credentials).
        """
        for _ in range(5):
            markers = self._markers()
            current = max(markers, default=-1)
            if current >= 0:
                try:
                    owner = self._read(markers[current])
                except MissingFileError:
                    continue  # released or taken over meanwhile: look again
                if not self.stale(owner):
                    assert owner is not None
                    raise LockedError(
                        f"{self.loc.display} is being {self.doing} by another run "
                        f"({owner.describe()}); {self.clash}. Wait for it to finish or stop "
                        "it (the lock of a killed run is taken over: its process gone on this "
                        f"host, or no heartbeat for {self.stale_after:.0f} s)")
                log.warning("%s: taking over the lock of a run that is gone (%s)",
                            self.loc.display, owner.describe() if owner else "unreadable")
            self._owner = this_process(self.token)
            if self._create(current + 1, self._owner):
                self.generation = current + 1
                for generation, name in markers.items():
                    if generation <= current:
                        self._remove(name)
                self._thread = threading.Thread(target=self._beat, daemon=True,
                                                name="store-lock-heartbeat")
                self._thread.start()
                return
        raise LockedError(f"{self.loc.display}: other runs keep taking the {self.what} lock; "
                          f"run one {self.what} into a store at a time")

    def check(self) -> None:
        """Raise if another run took the lock over (this run was judged stale).

        Raises:
            LockedError: naming the run that holds it now.
        """
        if self.generation is None:
            raise LockedError(f"{self.loc.display}: the {self.what} lock is not held")
        if self.lost is None:
            self.lost = self._newer()
        if self.lost is not None:
            raise LockedError(
                f"{self.loc.display}: another run took this run's lock over "
                f"({self.lost.describe()}) after this run's heartbeat stopped for "
                f"{self.stale_after:.0f} s; this run stops without writing store.json")

    def release(self) -> None:
        """Stop the heartbeat and delete this run's marker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        if self.generation is not None:
            with contextlib.suppress(StoreError):
                owner = self._read(self._name(self.generation))
                if owner is not None and owner.token == self.token:
                    self._remove(self._name(self.generation))
        self.generation = None

    def _remove(self, name: str) -> None:
        with contextlib.suppress(StoreError), storage_errors(self.loc.where(name), "write"):
            self.loc.fs.rm(self.loc.path(name))

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.lost = self._newer()
                if self.lost is not None:
                    log.error("%s: the %s lock was taken over by %s", self.loc.display, self.what,
                              self.lost.describe())
                    return
                self._write_own()
            except StoreError as err:  # a full disk or a network hiccup: try again
                log.warning("%s: could not refresh the %s lock: %s", self.loc.display, self.what,
                            err)


def _link_exclusive(final: str, data: bytes, token: str) -> bool:
    """Create ``final`` with ``data`` only if absent, atomically, content included: the data
    goes to a private file that is hard-linked to the final name (atomic on local and NFS
    disks); without hard links, an exclusive create."""
    tmp = f"{final}.{token[:12]}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except OSError:
        try:
            with open(final, "xb") as f:
                f.write(data)
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)


__all__ = ["HEARTBEAT_S", "LOCK_PREFIX", "STALE_AFTER_S", "LockOwner", "StoreLock",
           "owner_gone"]
