"""Training metrics: one JSON object per line in ``RUN/metrics.jsonl``, TensorBoard, progress.

Every record has ``kind`` (``"step"`` or ``"epoch"``), ``epoch`` and ``step`` (optimizer steps
done); the rest are numbers (loss parts, lr, samples/s, feature std) or lists of numbers
(cluster occupancy). TensorBoard event files go to ``RUN/tensorboard`` when the ``tensorboard``
package is importable; the JSON lines are always written and are the source of truth. Each loss
part's train and val epoch means share one chart (TensorBoard's Custom Scalars tab, section
:data:`TRAIN_AND_VAL`), as do an evaluation's train and val losses per seed.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from heads.outputs import read_jsonl

from pipeline.progress import Progress

log = logging.getLogger(__name__)

FILE = "metrics.jsonl"
#: The Custom Scalars section whose charts hold a train curve and its val curve together.
TRAIN_AND_VAL = "train and val"


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (of one ``kind`` if given), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    records = read_jsonl(path)  # a torn last line (a killed run) is dropped with a note
    return [r for r in records if kind is None or r.get("kind") == kind]


class MetricsLog:
    """Appends metric records; on resume, drops what came after the checkpoint.

    Args:
        run_dir: the run folder.
        tensorboard: also write TensorBoard scalars (if the package is installed).
        resume_step: keep only records with ``step <= resume_step`` (None: start empty).
    """

    def __init__(self, run_dir: Path, *, tensorboard: bool, resume_step: int | None) -> None:
        self.path = run_dir / FILE
        kept = []
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = _tensorboard_writer(run_dir) if tensorboard else None
        self._layout_written = False

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record (flushed at once: a killed run keeps what it logged)."""
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            self._write_scalars(record)

    def _write_scalars(self, record: Mapping[str, Any]) -> None:
        tb = self._tb
        if tb is None:
            return
        prefix = f"{record.get('kind', 'step')}/"
        if prefix == "epoch/" and not self._layout_written:
            # the parts are known from the first epoch's record: one chart per part with val
            charts = {k: (prefix + k, f"{prefix}val/{k}") for k in record if f"val/{k}" in record}
            add_train_val_layout(tb, charts)
            self._layout_written = True
        for key, value in record.items():
            if key in ("kind", "step", "epoch"):
                continue
            if isinstance(value, list):
                for i, v in enumerate(value):
                    tb.add_scalar(f"{prefix}{key}/{i}", v, record["step"])
            elif isinstance(value, (int, float)) and math.isfinite(value):
                tb.add_scalar(prefix + key, value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def write_eval_scalars(out: Path, runs: Sequence[Mapping[str, Any]],
                       summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> bool:
    """An evaluation's TensorBoard events in ``OUT/tensorboard``: each seed's epochs
    (``seed<k>/train_loss``, ``val_loss``, ``val_f1``, ``lr``) and the kept epoch's metric means
    per split (``<split>/<metric>``). Returns False when tensorboard is not installed."""
    tb = _tensorboard_writer(out)
    if tb is None:
        return False
    try:
        add_train_val_layout(tb, {f"seed{run['seed']} loss": (f"seed{run['seed']}/train_loss",
                                                              f"seed{run['seed']}/val_loss")
                                  for run in runs})
        for run in runs:
            for record in run.get("history", []):
                for key, value in record.items():
                    if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                        tb.add_scalar(f"seed{run['seed']}/{key}", value, int(record["epoch"]))
        for split, metrics in summary.items():
            for name, stats in metrics.items():
                mean = stats.get("mean") if isinstance(stats, Mapping) else None
                if isinstance(mean, (int, float)) and math.isfinite(mean):
                    tb.add_scalar(f"{split}/{name}", mean, 0)
    finally:
        tb.close()
    return True


def add_train_val_layout(tb: Any, charts: Mapping[str, tuple[str, str]]) -> None:
    """Custom Scalars charts, each drawing a train tag and its val tag together.

    Args:
        tb: a ``SummaryWriter``.
        charts: chart title -> (train tag, val tag).
    """
    if charts:
        tb.add_custom_scalars({TRAIN_AND_VAL: {
            title: ["Multiline", [f"^{re.escape(tag)}$" for tag in tags]]
            for title, tags in charts.items()}})


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: metrics go to %s only", run_dir / FILE)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


class ProgressBar:
    """Training steps with samples/s and the loss: a bar in a terminal, log lines elsewhere,
    or nothing (``enabled=False``)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar = Progress("pretrain", total, "steps", loss=math.nan,
                             samples_per_s=0) if enabled else None

    def advance(self, epoch: int, rate: float, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(advance=1, description=f"epoch {epoch}", loss=loss,
                             samples_per_s=round(rate))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
