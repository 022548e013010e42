"""Where the head trainer writes: runs as safe as stores.

Every command that writes a folder (``pretrain``, ``eval``, ``study``) claims its ``--out``
first (:func:`claim_output`):

- **Never clobber.** A new or empty folder is taken; a folder holding the command's own
  output (a pretraining run, an evaluation, a study) is the command's to continue or refuse as
  it decides; a feature store, or a folder of anything else, is refused before any work,
  naming what is there. No command writes into a feature store.
- **Never race.** The folder's lock (:class:`~pipeline.store.lock.StoreLock`, purpose
  ``pretrain``, ``eval`` or ``study``) is held while it writes: a second run into it is refused,
  naming the first; a killed run's lock is taken over.
- **Records that a kill or a full disk cannot break.** JSON files are written atomically
  (:func:`write_json_atomic`); ``metrics.jsonl`` is read tolerantly (:func:`read_jsonl`: a torn
  last line, what a kill leaves, is dropped with a note); temporary files of killed writes are
  removed when the folder is claimed again (:func:`remove_temporaries`); a full disk is one
  message naming the file (:func:`disk_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import UserError
from pipeline.store import Location
from pipeline.store.lock import StoreLock

log = logging.getLogger(__name__)

Kind = Literal["pretrain", "eval", "study"]

#: Files (any one suffices) that mark a folder as a command's own output.
OWN = {"pretrain": ("config.yaml", "checkpoints", "metrics.jsonl"),
       "eval": ("metrics.json", "classifier.pt"),
       "study": ("study.json", "results.md", "results.csv")}
#: Files a feature store always has: such a folder is never a run's output.
STORE_FILES = ("store.json", "shards", "index.parquet")
#: Temporary files this package's atomic writers use (``name.<random>.tmp``, ``name.tmp``).
_TEMPORARY = re.compile(r"^.+\.(tmp|link\.tmp)$")
SHOWN = 5


class OutputError(UserError, ValueError):
    """An ``--out`` a command must not write into; the message says what is there."""


def output_state(out: Path, kind: Kind) -> Literal["new", "own"]:
    """What ``out`` is for a ``kind`` command: ``new`` (missing or empty) or ``own`` (it holds
    that command's output). Reads only.

    Raises:
        OutputError: a file, a feature store, or a folder of other files (named).
    """
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder: --out names the folder to write")
    names = sorted(n for n in os.listdir(out) if not n.startswith(f"{kind}.lock."))
    if not names:
        return "new"
    if any(n in names for n in STORE_FILES):
        raise OutputError(f"{out} is a feature store (it holds "
                          f"{', '.join(n for n in names if n in STORE_FILES)}): a {kind} run "
                          "never writes into a store; choose another --out")
    if any(n in names for n in OWN[kind]):
        return "own"
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    raise OutputError(f"{out} is not empty and holds no {kind} output ({', '.join(names[:SHOWN])}"
                      f"{more}); choose a new or empty --out (nothing was written)")


@contextlib.contextmanager
def claim_output(out: Path, kind: Kind) -> Iterator[Literal["new", "own"]]:
    """Hold ``out`` for a ``kind`` command: checked (:func:`output_state`), then locked for as
    long as the ``with`` block runs; yields the state found. Temporary files of killed writes
    are removed once the lock is held. A folder this call created is removed again when the
    block fails before writing anything into it.

    Raises:
        OutputError: see :func:`output_state`.
        LockedError: another run holds the folder.
    """
    state = output_state(out, kind)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with StoreLock(Location.parse(str(out)), purpose=kind):
            state = output_state(out, kind)  # what it is now that no other run writes
            remove_temporaries(out)
            yield state
    except BaseException:
        # a command refused before it wrote anything (a bad --set, a wrong store) leaves no
        # empty folder behind it, so "nothing was written" holds for the folder too
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def clear_output(out: Path, kind: Kind) -> None:
    """Empty a claimed folder of ``kind``'s output before it is written again (``--overwrite``):
    no file of the replaced output survives beside the new one. Its lock stays."""
    for path in out.iterdir():
        if path.name.startswith(f"{kind}.lock."):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def check_not_running(run: Path) -> None:
    """Refuse to read a pretraining run while another process is still training it (its
    checkpoints are from the middle of the run, and change under the reader).

    Raises:
        OutputError: naming the process that holds the run.
    """
    if not run.is_dir():
        return
    owner = StoreLock(Location.parse(str(run)), purpose="pretrain").holder()
    if owner is not None:
        raise OutputError(f"{run} is still being trained ({owner.describe()}); evaluate it "
                          "when that run has finished")


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files killed atomic writes left under ``folder`` (a checkpoint's
    ``epoch-0003.pt.<random>.tmp`` is tens of megabytes); returns them."""
    removed = [p for p in folder.rglob("*.tmp") if p.is_file() and _TEMPORARY.match(p.name)]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        log.info("%s: removed %d temporary file(s) of an interrupted write", folder, len(removed))
    return removed


def write_json_atomic(path: Path, data: Mapping[str, Any] | list[Any]) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it: a reader sees the old
    file or the new one, never half of one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with disk_errors(path):
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file. A last line cut short (what a kill mid-write leaves)
    is dropped with a note; a bad line before it is an error naming the line.

    Raises:
        OutputError: a line other than the last does not parse.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                log.warning("%s: dropped its last line, cut short (%d bytes: a run stopped "
                            "while writing it)", path, len(line))
                break
            raise OutputError(f"{path} line {number}: not JSON ({err.msg})") from None
    return records


def _disk_full(err: BaseException) -> bool:
    """An OSError of a full disk or quota, also inside what a library wrapped it in (torch's
    writer reports it as a RuntimeError naming the errno)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(seen) or "Disk quota exceeded" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """A full disk (or quota) while writing ``path`` as one message, not a traceback."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if _disk_full(err):
            raise OutputError(f"{path}: no space left on the device; free some and run the "
                              "same command again (what was written before is kept)") from None
        raise


__all__ = ["OWN", "OutputError", "check_not_running", "claim_output", "clear_output",
           "disk_errors", "output_state", "read_jsonl",
           "remove_temporaries", "write_json_atomic"]
