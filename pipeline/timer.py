"""Seconds per extraction stage, summed over a run's clips (recorded in the store)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Timer:
    """Seconds spent per stage, summed (decode, faces, backbone:<key>, write, and
    ``prefetch_wait``: the time the backbones waited for the next batch's inputs).

    Thread-safe: with prefetching, decode and faces run on another thread while the backbones
    encode, so the stages' seconds may add up to more than the wall time.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[stage] += elapsed


__all__ = ["Timer"]
