"""How head files are written and read: atomically, as plain tensors and values, strictly.

Every file of the heads (a pretraining checkpoint, :mod:`heads.checkpoint`; a classifier,
:mod:`heads.classifier_file`) is a ``torch.save`` of a mapping of tensors and plain Python
values, with a ``format`` entry naming its version. Reading uses ``weights_only=True`` (no
pickled object can run code) and then :func:`parse_fields`, which builds the file's frozen
dataclass and names any missing, unknown or mistyped field.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from heads.outputs import disk_errors
from pipeline.config import ConfigError, from_dict
from pipeline.errors import UserError

T = TypeVar("T")


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, of another format, or belongs to other features or settings."""


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A run killed mid-write leaves the previous checkpoint intact, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with disk_errors(path):  # a full disk is one message naming the file
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(dict(payload), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def load_plain(path: Path, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of plain tensors and values only (no pickled objects).

    Raises:
        CheckpointError: the file holds a pickled object, or is no ``torch.save`` file.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        # torch's weights-only message is long and advises weights_only=False (unsafe here);
        # its "Unsupported global" line (a class) or "unsupported GLOBAL" line (a function,
        # e.g. os.mkdir) is the fact.
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "unsupported global" in ln.lower()),
                      lines[0] if lines else type(err).__name__)
        # keep the fact, not torch's advice on how to allow the class
        reason = reason.split(" was not an allowed global")[0].split(". ")[0]
        raise CheckpointError(f"{path}: not a readable file of plain tensors and values "
                              f"(pickled objects are refused): {reason}") from None


def format_of(path: Path, payload: Any, expected: str) -> str:
    """The ``format`` entry of a loaded file.

    Raises:
        CheckpointError: the file is not a mapping with a ``format`` string (names
            ``expected``, the format the caller reads).
    """
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if not isinstance(found, str):
        raise CheckpointError(f"{path}: format {found!r}, expected {expected!r}")
    return found


def parse_fields(cls: type[T], data: Mapping[str, Any], path: Path,
                 tensors: tuple[str, ...] = ()) -> T:
    """Build the frozen dataclass ``cls`` from a file's entries (without ``format``).

    Args:
        cls: the file's dataclass.
        data: the entries.
        path: the file, for the messages.
        tensors: fields that are mappings of tensors (a state dict): each value is checked.

    Raises:
        CheckpointError: a missing, unknown or mistyped field, named with the file.
    """
    try:
        parsed = from_dict(cls, dict(data), str(path))
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    for name in tensors:
        bad = [k for k, v in data[name].items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: {name}: {bad[:3]} are not tensors")
    return parsed


__all__ = ["CheckpointError", "format_of", "load_plain", "parse_fields", "save_checkpoint"]
