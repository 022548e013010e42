"""The optional libraries an extraction needs, found missing on the client before any work.

PyAV decodes every clip and facenet-pytorch detects the faces of a cropped dataset's video
keys; both are imported only where they run (inside Dask workers), so without this check a
missing one surfaced as a worker's traceback after the cluster had started.
"""

from __future__ import annotations

from importlib.util import find_spec

from pipeline.errors import UserError
from pipeline.faces import FACENET_MISSING

AV_MISSING = ("decoding video and audio needs PyAV, which is not installed; install it: "
              "pip install 'av>=14'")


class MissingDependency(UserError, ImportError):
    """An optional library the command needs is not installed; the message says how to."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without spec
        return False


def check_extraction_dependencies(*, crop_faces: bool) -> None:
    """Raise :class:`MissingDependency` naming the install command of the first library an
    extraction needs that is missing: PyAV always, facenet-pytorch when faces are cropped."""
    if not installed("av"):
        raise MissingDependency(AV_MISSING)
    if crop_faces and not installed("facenet_pytorch"):
        raise MissingDependency(FACENET_MISSING)
