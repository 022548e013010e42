"""Wall-clock seconds of the study's pretraining runs and evaluations, for the tables.

The study times each run and evaluation it carries out and keeps the seconds in
``OUT/wall-clock.json`` (folder relative to ``OUT`` -> seconds, written atomically after each),
so a resumed study still reports the time of what an earlier call did. :meth:`WallClock.seconds`
is the one place the tables read a folder's time from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from heads.outputs import write_json_atomic

#: The study's record of wall-clock seconds, in its folder.
CLOCK = "wall-clock.json"


class WallClock:
    """Seconds per run or evaluation folder of one study folder."""

    def __init__(self, out: Path) -> None:
        self.out, self.path = out, out / CLOCK
        self._seconds: dict[str, float] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {})

    @contextmanager
    def timing(self, folder: Path) -> Iterator[None]:
        """Time the block that fills ``folder``; recorded only when it completes."""
        start = time.perf_counter()
        yield
        self._seconds[self._key(folder)] = round(time.perf_counter() - start, 3)
        write_json_atomic(self.path, self._seconds)

    def seconds(self, folder: Path) -> float | None:
        """The recorded seconds of ``folder`` (None: this study did not time it)."""
        return self._seconds.get(self._key(folder))

    def total(self, folders: Iterator[Path] | list[Path]) -> float | None:
        """The sum over ``folders`` (None when any is unknown)."""
        found = [self.seconds(f) for f in folders]
        if not found or any(s is None for s in found):
            return None
        return sum(s for s in found if s is not None)

    def _key(self, folder: Path) -> str:
        return Path(folder).relative_to(self.out).as_posix()
