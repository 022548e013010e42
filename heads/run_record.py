"""Run records: ``run.json`` in every pretraining run, evaluation and study folder.

A :class:`RunRecord` says what a command did and where: its command line, the resolved
config, every store it read (id, feature space of the keys it read, keys with random backbone
weights), software versions and git commit, host, device, start, end and wall-clock, and its
headline metrics; a study's record also lists the evaluation folders its tables read. It is
written atomically when the command finishes (:func:`write_run_record`) and read strictly
(:func:`read_run_record`: a missing, unknown or mistyped field is named), format
:data:`FORMAT`::

    format         "conclugen-run/1"
    kind           pretrain | eval | study
    name           the objective (pretrain), the protocol (eval) or "study"
    command        the command line (sys.argv)
    config         the resolved config (an evaluation's: protocol, modalities, fusion, seeds,
                   the EvalConfig and the pretrained checkpoint it used)
    stores         per store read: role, url, store_id, dataset, feature_space (of the keys
                   read), random_weights (keys whose backbone had random weights)
    software       package versions (torch, numpy, ...)
    git_commit     the project's commit when run from a checkout, else null
    host, device   where it ran
    start, end     ISO 8601 UTC; wall_clock_s the seconds between them
    metrics        headline numbers (an evaluation's test means, a run's last epoch losses)
    evaluations    a study's evaluation folders, relative to the study folder

Random backbone weights make features for tests only: :func:`warn_random_weights` says so once
per command (:func:`one_warning` makes a study's inner runs and evaluations share that once).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from heads.outputs import write_json_atomic
from pipeline.config import ConfigError, from_dict
from pipeline.errors import UserError
from pipeline.identity import software_versions
from pipeline.store.manifest import StoreManifest

log = logging.getLogger(__name__)

FORMAT = "conclugen-run/1"
RUN_JSON = "run.json"
Kind = Literal["pretrain", "eval", "study"]


class RunRecordError(UserError, ValueError):
    """A ``run.json`` that is missing, not JSON, of another format or with a bad field."""


@dataclass(frozen=True)
class StoreRecord:
    """A store a command read.

    Attributes:
        role: ``train`` (pretraining), ``evaluated``, ``pretrained_on`` (the store the
            evaluated heads were pretrained on), ``downstream`` or ``pretrain`` (the study's).
        url: where it was read.
        store_id: its id.
        dataset: its dataset (None where a checkpoint did not record it).
        feature_space: per store key read, its feature space.
        random_weights: the keys whose backbone had random weights.
    """

    role: str
    url: str
    store_id: str
    dataset: str | None
    feature_space: dict[str, dict[str, Any]]
    random_weights: tuple[str, ...]


@dataclass(frozen=True)
class RunRecord:
    """What one command did (see the module docstring for each field)."""

    kind: Kind
    name: str
    command: tuple[str, ...]
    config: dict[str, Any]
    stores: tuple[StoreRecord, ...]
    software: dict[str, str]
    git_commit: str | None
    host: str
    device: str
    start: str
    end: str
    wall_clock_s: float
    metrics: dict[str, float | None]
    evaluations: tuple[str, ...] = ()

    @property
    def random_weights(self) -> dict[str, list[str]]:
        """Store url -> its keys with random weights (stores without any left out)."""
        return random_weights_of(self.stores)

    def to_json(self) -> dict[str, Any]:
        """The JSON ``run.json`` holds (``format`` first)."""
        return {"format": FORMAT, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Clock:
    """When a command started: ISO time for the record, a monotonic time for the wall-clock."""

    start: str
    monotonic: float


def start_clock() -> Clock:
    """Note the start of a command (before any work)."""
    return Clock(_now(), time.monotonic())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def store_record(role: str, manifest: StoreManifest, url: str,
                 keys: Sequence[str] | None = None) -> StoreRecord:
    """The record of a store read through its manifest; ``keys``: those read (default: all)."""
    chosen = manifest.keys if keys is None else tuple(keys)
    return StoreRecord(role, url, manifest.store_id, manifest.dataset.name,
                       {k: dict(manifest.feature_space[k]) for k in chosen},
                       tuple(manifest.random_weights))


def random_keys(feature_space: Mapping[str, Mapping[str, Any]] | None) -> tuple[str, ...]:
    """The keys of a recorded feature space whose weights were random (a checkpoint records
    the feature space of the store it was pretrained on, not that store's manifest)."""
    return tuple(sorted(k for k, v in (feature_space or {}).items() if v.get("weights") == "random"))


def random_weights_of(stores: Sequence[StoreRecord]) -> dict[str, list[str]]:
    """Store url -> its keys with random weights, for the stores that have any."""
    out: dict[str, list[str]] = {}
    for s in stores:
        if s.random_weights:
            out[s.url] = sorted({*out.get(s.url, []), *s.random_weights})
    return out


def write_run_record(folder: Path, *, kind: Kind, name: str, config: Mapping[str, Any],
                     stores: Sequence[StoreRecord], device: str, clock: Clock,
                     metrics: Mapping[str, float | None],
                     evaluations: Sequence[str] = ()) -> RunRecord:
    """Write ``folder/run.json`` atomically (at the end of a command) and return its record."""
    software = software_versions()
    commit = software.pop("git_commit", "unknown")
    record = RunRecord(kind=kind, name=name, command=tuple(sys.argv), config=dict(config),
                       stores=tuple(stores), software=software,
                       git_commit=None if commit in ("", "unknown") else commit,
                       host=socket.gethostname(), device=device, start=clock.start, end=_now(),
                       wall_clock_s=round(time.monotonic() - clock.monotonic, 3),
                       metrics=dict(metrics), evaluations=tuple(evaluations))
    write_json_atomic(folder / RUN_JSON, json.loads(json.dumps(record.to_json(), default=str)))
    return record


def read_run_record(path: str | Path) -> RunRecord:
    """Read a ``run.json`` (or the one in folder ``path``) strictly.

    Raises:
        RunRecordError: missing, not JSON, another format, or a missing, unknown or mistyped
            field (named).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RUN_JSON
    if not path.is_file():
        raise RunRecordError(f"{path}: no run record (run.json) there; runs, evaluations and "
                             "studies of this release write one when they finish")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunRecordError(f"{path}: not JSON ({err})") from None
    found = data.get("format") if isinstance(data, dict) else type(data).__name__
    if found != FORMAT:
        raise RunRecordError(f"{path}: format {found!r}, expected {FORMAT!r}")
    try:
        return from_dict(RunRecord, {k: v for k, v in data.items() if k != "format"}, str(path))
    except ConfigError as err:
        raise RunRecordError(str(err)) from None


# --------------------------------------------------------------- random-weights warnings

# The stores already warned about in this command; None outside a command's one_warning().
_WARNED: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("warned", default=None)


@contextlib.contextmanager
def one_warning() -> Iterator[None]:
    """Within this block each store's random weights are warned about once, also by the
    commands it calls (a study's runs and evaluations); nested blocks share the outer one."""
    if _WARNED.get() is not None:
        yield
        return
    token = _WARNED.set(set())
    try:
        yield
    finally:
        _WARNED.reset(token)


def warn_random_weights(url: str, keys: Sequence[str], *, command: str) -> None:
    """Log one warning that ``keys`` of store ``url`` hold random backbone weights (nothing
    when there are none, or when this command already said so)."""
    if not keys:
        return
    seen = _WARNED.get()
    if seen is not None:
        if url in seen:
            return
        seen.add(url)
    log.warning("%s: RANDOM WEIGHTS in %s of %s: these features are for tests only; the %s "
                "numbers show that the pipeline runs, not what the methods achieve",
                command, ", ".join(keys), url, command)


__all__ = ["FORMAT", "RUN_JSON", "Clock", "RunRecord", "RunRecordError", "StoreRecord",
           "one_warning", "random_keys", "random_weights_of", "read_run_record", "start_clock",
           "store_record", "warn_random_weights", "write_run_record"]
