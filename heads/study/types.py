"""What the study's modules share: its rows (:class:`Method` and the paper's tables in order),
what it knows of a store (:class:`StoreFacts`), a downstream dataset with its folders
(:class:`Target`) and one row of results (:class:`TableRow`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.presets import Preset

#: What a study can run: the paper's rows (ConCluGen, its objectives, ablations and
#: baselines), and the heads of two other systems on the same stores.
SYSTEMS = ("conclugen", "clef", "avce")


#: The paper's columns: metric key -> header (test split, weighted by class support).
SHOWN = {"accuracy": "Acc", "f1_weighted": "F1", "precision_weighted": "Prec",
         "recall_weighted": "Rec"}
#: The groups of classification rows of one dataset, in order: which of the paper's tables
#: each comes from (``systems``: the other systems' classifiers, CLEF).
GROUPS = {"baselines": "Table 2", "objectives": "Tables 3-5", "extras": "not in the paper",
          "systems": "other systems"}
@dataclass(frozen=True)
class Method:
    """One row of the study.

    Attributes:
        key: the row's key in ``paper_results.yaml`` (or this project's, for extra rows).
        label: the row's name in the tables (the paper's, for its rows).
        objective: the pretraining objective (None: the supervised baseline, AVCE).
        protocol: ``linear``, ``finetune``, ``supervised``, ``clef`` or ``avce``.
        pretrain: modalities of the pretraining run (None: the objective's default).
        probe: modalities the linear classifier sees (None: all of the run's).
    """

    key: str
    label: str
    objective: str | None
    protocol: str = "linear"
    pretrain: tuple[str, ...] | None = None
    probe: tuple[str, ...] | None = None


#: The paper's Table 2, in its order.
BASELINE_ROWS: tuple[Method, ...] = (
    Method("supervised", "Supervised baseline", None, "supervised"),
    Method("conclugen_linear", "ConCluGen (linear eval.)", "conclugen"),
    Method("conclugen_finetuned", "ConCluGen (finetuned)", "conclugen", "finetune"),
)
#: The paper's Tables 3-5, in their order: the ablations are of Multi-Cont; the vision-only row
#: is ConCluGen probed with its video representation only.
OBJECTIVE_ROWS: tuple[Method, ...] = (
    Method("conclugen", "ConCluGen", "conclugen"),
    Method("conclu", "ConClu", "conclu"),
    Method("congen", "ConGen", "congen"),
    Method("multi_cont", "Multi-Cont", "multi_cont"),
    Method("instance_cont", "Instance-Cont", "instance_cont"),
    Method("generative", "Generative", "generative"),
    Method("conclugen_vision", "ConCluGen (vision only)", "conclugen", probe=("video",)),
    Method("multi_cont_no_text", "Multi-Cont without text", "multi_cont",
           pretrain=("video", "audio")),
    Method("multi_cont_no_audio", "Multi-Cont without audio", "multi_cont",
           pretrain=("video", "text")),
)
#: Rows of this project, below the paper's: the ablations applied to ConCluGen itself.
EXTRA_ROWS: tuple[Method, ...] = (
    Method("conclugen_no_text", "ConCluGen without text", "conclugen",
           pretrain=("video", "audio")),
    Method("conclugen_no_audio", "ConCluGen without audio", "conclugen",
           pretrain=("video", "text")),
)


@dataclass(frozen=True)
class StoreFacts:
    """What the study needs to know of a store, read once before anything runs.

    ``targets``: the continuous targets' names; ``with_targets``: per split, the rows with
    every target; ``label_texts``: the store has embedded label texts (CLEF).
    """

    url: str
    store_id: str
    dataset: str
    keys: frozenset[str]
    views: int
    splits: tuple[str, ...]
    classes: int
    multilabel: bool
    rows: dict[str, int]  # split -> rows
    labelled: dict[str, int]  # split -> labelled rows
    random_weights: tuple[str, ...]
    feature_space: dict[str, Any]
    targets: tuple[str, ...] = ()
    with_targets: dict[str, int] = field(default_factory=dict)
    label_texts: bool = False

    @property
    def classes_reason(self) -> str | None:
        """Why no classifier can be trained on the store (None: it has classes)."""
        if self.classes >= 2 or self.multilabel:
            return None
        return (f"the store has {self.classes} class(es) (dataset {self.dataset}"
                + (f", continuous targets {list(self.targets)} only)" if self.targets else ")"))


@dataclass(frozen=True)
class Target:
    """One downstream dataset of the study and where its outputs go.

    Attributes:
        name: its folder under the study (the dataset name, made unique).
        store: the downstream store.
        pretrain: the store its runs are pretrained on (``store`` itself when ``own``).
        folder: ``OUT/<name>``.
        runs: the folder of its pretraining runs (shared by all targets of one pretraining
            store).
        own: pretrained on the downstream store itself (no pretraining store was given).
    """

    name: str
    store: StoreFacts
    pretrain: StoreFacts
    folder: Path
    runs: Path
    own: bool


@dataclass(frozen=True)
class StudySettings:
    """How the study ran, for captions and figure titles."""

    quick: bool
    seeds: int
    epochs: int
    pretrain_seeds: int = 1
    preset: Preset = Preset()


@dataclass(frozen=True)
class TableRow:
    """One row: its evaluation's ``metrics.json`` content, or why it was skipped.

    With several pretraining seeds a row pools several evaluations (one per pretrained run):
    ``metrics`` is the first one's, ``evaluations`` all of them, and the row's numbers are the
    mean and std over every pretraining x probe seed. ``seconds``: the wall-clock of the runs
    and evaluations the row used (None: not recorded).
    """

    key: str
    label: str
    metrics: Mapping[str, Any] | None
    reason: str | None = None
    evaluations: tuple[Mapping[str, Any], ...] = ()
    seconds: float | None = None

    @property
    def pooled(self) -> tuple[Mapping[str, Any], ...]:
        """The evaluations whose seeds the row's numbers pool (none when skipped)."""
        if self.metrics is None:
            return ()
        return self.evaluations or (self.metrics,)

    @property
    def runs(self) -> int:
        """How many trained classifiers the numbers are over (pretraining x probe seeds)."""
        return sum(len(m.get("seeds", [])) for m in self.pooled)

    def ours(self, metric: str) -> tuple[float | None, float | None]:
        """Test mean and std in percent (None: skipped, not computed or undefined)."""
        mean, std = self.raw(metric)
        return (None if mean is None else 100 * mean), (None if std is None else 100 * std)

    def raw(self, metric: str) -> tuple[float | None, float | None]:
        """Test mean and std as the evaluation wrote them, or pooled over every seed of every
        evaluation (None: skipped, not computed or undefined)."""
        if len(self.pooled) > 1:
            return pooled_test(self.pooled, metric)
        test = (self.metrics or {}).get("summary", {}).get("test") or {}
        found = test.get(metric)
        if found is None or found["mean"] is None or math.isnan(found["mean"]):
            return None, None
        std = found.get("std")
        return found["mean"], std


def pooled_test(evaluations: Sequence[Mapping[str, Any]], metric: str
                ) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof 1, as each evaluation's summary) of ``metric`` on the test
    split over every seed of every evaluation (None: a seed did not compute it)."""
    values = [(run.get("splits", {}).get("test") or {}).get(metric)
              for m in evaluations for run in m.get("runs", [])]
    numbers = [float(v) for v in values if isinstance(v, int | float) and not math.isnan(v)]
    if not numbers or len(numbers) < len(values):
        return None, None
    return statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None
