"""Typed failures: why a clip could not be extracted, at which stage.

A failure is data, not an exception that escapes: adapters and extraction turn every clip that
cannot be used into one :class:`Failure` row, and the store keeps them in ``failures.parquet``.
Inside extraction, code raises :class:`ClipError`; the per-clip driver catches exactly that type.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa


class Stage(StrEnum):
    """Where in the pipeline a clip failed."""

    ADAPTER = "adapter"
    DECODE = "decode"
    FACES = "faces"
    BACKBONE = "backbone"
    WRITE = "write"


class Reason(StrEnum):
    """The closed set of reasons a clip is not in the store."""

    MISSING_FILE = "missing_file"
    CORRUPT_MEDIA = "corrupt_media"
    NO_VIDEO_STREAM = "no_video_stream"
    NO_AUDIO_STREAM = "no_audio_stream"
    TOO_SHORT = "too_short"
    NO_FACE = "no_face"
    EMPTY_TRANSCRIPT = "empty_transcript"
    KNOWN_BAD = "known_bad"
    BACKBONE_ERROR = "backbone_error"


@dataclass(frozen=True)
class Failure:
    """One clip that could not be extracted."""

    sample_id: str
    split: str
    stage: Stage
    reason: Reason
    message: str


class ClipError(Exception):
    """Raised inside per-clip extraction; carries the typed reason for ``failures.parquet``."""

    def __init__(self, stage: Stage, reason: Reason, message: str) -> None:
        super().__init__(f"{stage}/{reason}: {message}")
        self.stage = Stage(stage)
        self.reason = Reason(reason)
        self.message = message

    def to_failure(self, sample_id: str, split: str) -> Failure:
        return Failure(sample_id, split, self.stage, self.reason, self.message)


FAILURE_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)


def failures_table(failures: list[Failure]) -> pa.Table:
    """Rows of ``failures.parquet`` (an empty table with the schema when there are none)."""
    rows = [{"sample_id": f.sample_id, "split": f.split, "stage": str(f.stage),
             "reason": str(f.reason), "message": f.message} for f in failures]
    return pa.Table.from_pylist(rows, schema=FAILURE_SCHEMA)
