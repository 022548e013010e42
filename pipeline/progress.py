"""Progress of long work, visible where there is no terminal too.

In a terminal, a rich progress bar. Elsewhere (a SLURM job's log, CI, ``nohup``), a log line
every ``interval_s`` seconds and one at the end: done/total, rate, elapsed time, ETA and the
extra fields (failures, loss), so a batch job's log says how far it got.

Extraction's progress moves per clip: each worker reports the clips of its shard as batches
finish (:func:`report_clips`, a Dask event), and the driver's :class:`ClipTally` adds them to
the shards already finished, so a shard of 256 clips on a CPU is no longer hours of silence.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("progress")


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Report ``done`` of ``total`` units of work.

    Args:
        what: a name for the work (``extract``, ``pretrain``).
        total: units of work expected.
        unit: the unit's name (``clips``, ``steps``).
        terminal: show a bar (default: when stderr is a terminal).
        interval_s: seconds between log lines when there is no terminal.
        fields: extra numbers shown with the rate (``failed=0``, ``loss=nan``), updated by
            :meth:`update`.
    """

    def __init__(self, what: str, total: int, unit: str, *, terminal: bool | None = None,
                 interval_s: float = 30.0, initial: int = 0, **fields: Any) -> None:
        self.what, self.total, self.unit, self.interval_s = what, total, unit, interval_s
        self.done, self.initial, self.fields = initial, initial, dict(fields)
        self.started = self._last = time.perf_counter()
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar: Any = None
        if self.terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from rich.progress import Progress as Bar

            extra = " · ".join(f"{k} {{task.fields[{k}]}}" for k in self.fields)
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn(f"{unit} · {{task.fields[rate]}} {unit}/s"
                                       + (f" · {extra}" if extra else "")),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
            self._task = self._bar.add_task(what, total=total, completed=initial, rate="-",
                                            **self._shown())
            self._bar.start()

    @property
    def rate(self) -> float:
        """Units per second since the start (work done before a resume not counted)."""
        return (self.done - self.initial) / max(1e-9, time.perf_counter() - self.started)

    def _shown(self) -> dict[str, str]:
        return {k: (f"{v:.4f}" if isinstance(v, float) else str(v))
                for k, v in self.fields.items()}

    def update(self, done: int | None = None, *, advance: int = 0, description: str | None = None,
               **fields: Any) -> None:
        """Set ``done`` (or add ``advance``) and any of the extra fields."""
        self.done = done if done is not None else self.done + advance
        self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=f"{self.rate:.2f}",
                             description=description or self.what, **self._shown())
        elif time.perf_counter() - self._last >= self.interval_s:
            self._log()

    def _log(self) -> None:
        self._last = time.perf_counter()
        left = (self.total - self.done) / self.rate if self.rate > 0 else float("nan")
        eta = _duration(left) if left == left else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        extra = "".join(f", {k} {v}" for k, v in self._shown().items())
        log.info("%s: %d/%d %s (%.1f %%), %.2f %s/s, elapsed %s, ETA %s%s", self.what,
                 self.done, self.total, self.unit, pct, self.rate, self.unit,
                 _duration(self._last - self.started), eta, extra)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        else:
            self._log()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CLIPS_TOPIC = "conclugen-clips"
"""The Dask event topic of per-clip progress."""


def report_clips(shard: int, attempt: str, done: int, reasons: Mapping[str, int]) -> None:
    """On a Dask worker: ``done`` clips of ``shard`` are through in this ``attempt`` (a token
    per run of the task, so a shard rerun after a worker died starts again from 0), with
    ``reasons`` counting the failed ones. Outside a worker, nothing."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(CLIPS_TOPIC, {"shard": shard, "attempt": attempt, "done": done,
                                   "reasons": dict(reasons)})


@dataclass
class ClipTally:
    """The driver's count of clips: the finished shards' (exact, from their results) plus what
    the running shards' workers reported. Events arrive on Dask's event-loop thread.

    Args:
        initial: clips of the shards finished before this run.
    """

    initial: int = 0
    _finished: set[int] = field(default_factory=set)
    _done: int = 0
    _failed: Counter[str] = field(default_factory=Counter)
    _running: dict[int, tuple[str, int, Counter[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: tuple[float, Any]) -> None:
        """A worker's :func:`report_clips` (``client.subscribe_topic`` calls this)."""
        msg = event[1]
        with self._lock:
            k = int(msg["shard"])
            if k not in self._finished:
                self._running[k] = (str(msg["attempt"]), int(msg["done"]),
                                    Counter({str(r): int(n) for r, n in msg["reasons"].items()}))

    def shard_done(self, k: int, clips: int, reasons: Mapping[str, int]) -> None:
        """Shard ``k`` finished with ``clips`` clips, ``reasons`` counting its failures."""
        with self._lock:
            self._finished.add(k)
            self._running.pop(k, None)
            self._done += clips
            self._failed.update(reasons)

    def counts(self) -> tuple[int, Counter[str]]:
        """``(clips done, failures by reason)`` so far."""
        with self._lock:
            failed = Counter(self._failed)
            done = self.initial + self._done
            for _, clips, reasons in self._running.values():
                done += clips
                failed.update(reasons)
            return done, failed


def failures_text(reasons: Mapping[str, int]) -> str:
    """``3 (no_face 2, corrupt_media 1)``: the total, then each reason, most frequent first."""
    total = sum(reasons.values())
    if not total:
        return "0"
    parts = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return f"{total} ({parts})"


__all__ = ["CLIPS_TOPIC", "ClipTally", "Progress", "failures_text", "report_clips"]
