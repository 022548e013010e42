"""The dataset manifests and default configs (``<name>.yaml``), shipped with the package.

This folder is the one source of the YAML files: in a source checkout (and an editable install)
they are read from here, and the wheel carries them as package data, so an installed
``conclugen`` finds them through :mod:`importlib.resources` wherever it was installed.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

__all__ = ["directory", "names", "path"]

_extracted = contextlib.ExitStack()  # files copied out of a zip import, removed at exit
atexit.register(_extracted.close)


def path(name: str) -> Path:
    """The file of the shipped YAML ``name`` (``"meld"`` or ``"meld.yaml"``).

    A real file path even when the package is imported from a zip (the file is then copied
    out for the life of the process). The file may not exist: callers check and name it.
    """
    if not name.endswith((".yaml", ".yml")):
        name = f"{name}.yaml"
    res = resources.files(__name__).joinpath(name)
    if isinstance(res, Path):
        return res
    if not res.is_file():
        return directory() / name
    return _extracted.enter_context(resources.as_file(res))


def directory() -> Path:
    """The folder holding the YAML files (in a zip import, a placeholder path beside it)."""
    root = resources.files(__name__)
    return root if isinstance(root, Path) else Path(str(root))


def names() -> list[str]:
    """The shipped YAML names without their suffix, sorted (datasets and configs alike)."""
    return sorted(Path(res.name).stem for res in resources.files(__name__).iterdir()
                  if res.name.endswith((".yaml", ".yml")))
