"""The paper's study in one command: every objective and ablation, beside the paper's numbers.

:func:`run_study` follows the paper's protocol. Each objective (and each modality ablation) is
pretrained **once** on the pretraining store (VoxCeleb2 in the paper, unlabelled) and evaluated
on every downstream store (MELD, CAER, CMU-MOSEI) with the linear protocol; Table 2 adds the
supervised baseline (trained on the downstream store) and ConCluGen fine-tuned. Every downstream
store must be in the pretraining store's feature space: all are checked before anything is
trained. Without a pretraining store each downstream store pretrains its own heads, which is
not the paper's protocol, and every table says so. Rows, in the paper's order, with its
numbers (:mod:`heads.reporting.paper`) beside ours::

    OUT/results.md                every dataset's tables, with links to their files
    OUT/results.csv               every row of every dataset (percent)
    OUT/runs/<run>/               the runs pretrained on the pretraining store
    OUT/<dataset>/results.md      Table 2 and Tables 3-5 of this dataset: ours, paper, difference
    OUT/<dataset>/results.csv     the same rows with each evaluation's identity (percent)
    OUT/<dataset>/results.png     bars: ours; black ticks: the paper's
    OUT/<dataset>/eval/<run>/<protocol>[-<modalities>]/   the evaluations (metrics.json, ...)
    OUT/<dataset>/eval/supervised/                        the supervised baseline
    OUT/<dataset>/runs/<run>/     without a pretraining store: the runs pretrained on this one

Below the paper's tables, the heads of two other systems on the same downstream stores
(``systems``; :mod:`heads.reporting.study_systems`): CLEF's text prototypes, trained and
zero-shot, and AVCE's valence/arousal regression in a table of its own
(``OUT/<dataset>/results_regression.csv`` and ``OUT/results_regression.csv``). None of them has
numbers in the paper, so their rows show no paper value. A store with continuous targets and
no classes (AFEW-VA) is a downstream store too: its classification rows are skipped, its AVCE
row runs.

A row that cannot run (Instance-Cont without augmented views, a modality a store lacks) stays
in its table, marked skipped with the reason. A re-run with the same ``OUT`` pretrains and evaluates
only what changed: a run is kept while its store and config are the same, an evaluation while
its downstream store, config, seeds and the run's checkpoint (store and step) are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heads.checkpoint import LAST, CheckpointError
from heads.config import resolve_config, resolve_eval_config
from heads.data import DataError
from heads.evaluation.run import METRICS, eval_name, run_eval
from heads.evaluation.targets import read_targets
from heads.pretrain.objectives import OBJECTIVES
from heads.pretrain.train import run_pretrain
from heads.reporting.metrics_log import read_metrics
from heads.reporting.study_tables import TableRow, write_study
from pipeline.config import ConfigError
from pipeline.store.manifest import (StoreError, feature_space_differences,
                                     format_differences)

log = logging.getLogger(__name__)

#: Pretraining epochs of ``quick`` studies (with the ``cpu`` presets of both configs).
QUICK_EPOCHS = 3
#: Written into a run folder once its pretraining finished: what it was trained on and with.
PRETRAINED = "study-pretrained.json"
#: What a study can run: the paper's rows (ConCluGen, its objectives, ablations and
#: baselines), and the heads of two other systems on the same stores.
SYSTEMS = ("conclugen", "clef", "avce")


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


def run_study(stores: str | Sequence[str], out: str | Path, *,
              pretrain_store: str | None = None, quick: bool = False, device: str = "auto",
              seeds: int = 1, extras: bool = True, progress: bool = True,
              systems: Sequence[str] = SYSTEMS) -> Path:
    """Run the study and write its tables (see the module docstring for the layout).

    Args:
        stores: the labelled downstream stores (train, val and test splits).
        out: the study folder (created; a re-run reuses what is up to date).
        pretrain_store: the store every objective is pretrained on once (VoxCeleb2 in the
            paper). None: each downstream store pretrains its own runs (not the paper's
            protocol; the tables say so).
        quick: the ``cpu`` presets and :data:`QUICK_EPOCHS` pretraining epochs: the whole
            study on the sample datasets in minutes on two CPU cores (the numbers then only
            show that the pipeline works).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seeds: seeds per evaluation (mean and std reported); each run is pretrained once,
            with the pretraining config's seed.
        extras: also this project's rows below the paper's (:data:`EXTRA_ROWS`).
        progress: progress bars for each run.
        systems: which of :data:`SYSTEMS` to run (``conclugen``: the paper's tables; ``clef``,
            ``avce``: the other systems' rows); each where it applies.

    Returns:
        ``out``.

    Raises:
        StoreError: a downstream store is not in the pretraining store's feature space (the
            differing fields are named; nothing was trained).
        DataError: a downstream store without labels or a train, val or test split; a
            pretraining store without a train split.
        ConfigError: ``seeds`` below 1; an unknown or no system.
        CheckpointError: a run folder in ``out`` that this study cannot continue (another
            store or other settings).
    """
    stores = [stores] if isinstance(stores, str) else list(stores)
    if not stores:
        raise DataError("the study needs at least one downstream store")
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    chosen = check_systems(systems)
    out = Path(out)
    modality_keys = resolve_config("conclugen").modality_keys
    downstream = [read_facts(s) for s in stores]
    pre = read_facts(pretrain_store) if pretrain_store is not None else None
    check_stores(pre, downstream, modality_keys)
    targets = plan_targets(pre, downstream, out)
    out.mkdir(parents=True, exist_ok=True)
    study = StudyRunner(quick=quick, device=device, seeds=seeds, progress=progress,
                   modality_keys=modality_keys)
    results = {target.name: study.rows(target, chosen, extras=extras) for target in targets}
    write_study(out, targets, results, quick=quick, seeds=seeds, epochs=QUICK_EPOCHS)
    log.info("study written to %s", out)
    return out


# ------------------------------------------------------------------------------------ checks

def check_systems(systems: Sequence[str]) -> tuple[str, ...]:
    """The systems to run, in :data:`SYSTEMS` order.

    Raises:
        ConfigError: none, or one that is not in :data:`SYSTEMS` (the valid ones are named).
    """
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise ConfigError(f"systems {list(systems)}: choose one or more of {list(SYSTEMS)}")
    return tuple(s for s in SYSTEMS if s in systems)


def read_facts(store: str) -> StoreFacts:
    """Open ``store`` and note what the study checks and reports."""
    from pipeline.store import open_store

    with open_store(store) as fs:
        rows, labelled, with_targets = {}, {}, {}
        targets = tuple(fs.manifest.dataset.targets)
        for split in fs.splits:
            positions = fs.positions(split)
            labels = fs.labels(positions)
            keep = np.isfinite(labels).all(axis=1) if fs.multilabel else labels >= 0
            rows[split], labelled[split] = len(labels), int(keep.sum())
            if targets:
                values = read_targets(fs, positions)
                with_targets[split] = int(np.isfinite(values).all(axis=1).sum())
        return StoreFacts(fs.url, fs.store_id, fs.dataset, frozenset(fs.keys), fs.views,
                          tuple(fs.splits), len(fs.label_names), fs.multilabel, rows, labelled,
                          tuple(fs.manifest.random_weights),
                          {k: dict(v) for k, v in fs.manifest.feature_space.items()},
                          targets, with_targets, fs.manifest.label_texts is not None)


def present_modalities(keys: Collection[str], modality_keys: Mapping[str, Sequence[str]]
                       ) -> dict[str, tuple[str, ...]]:
    """Per modality with at least one key in ``keys``, those keys (in config order)."""
    found = {m: tuple(k for k in ks if k in keys) for m, ks in modality_keys.items()}
    return {m: ks for m, ks in found.items() if ks}


def check_stores(pre: StoreFacts | None, downstream: Sequence[StoreFacts],
                 modality_keys: Mapping[str, Sequence[str]]) -> None:
    """Everything that would stop the study half-way, checked before anything is trained.

    Raises:
        StoreError: a downstream store in another feature space than the pretraining store,
            for any store key both hold (the fields are named per key).
        DataError: a downstream store without labels or a labelled train, val or test split;
            a pretraining store without train rows; the same store given twice.
    """
    problems = []
    ids = [s.store_id for s in downstream]
    for s in downstream:
        if ids.count(s.store_id) > 1:
            problems.append(f"{s.url}: given more than once as a downstream store")
        counted = s.labelled if s.classes_reason is None else s.with_targets
        if s.classes_reason is not None and not s.targets:
            problems.append(f"{s.url}: {s.classes} class(es) and no continuous targets; a "
                            "downstream store is labelled")
            continue
        empty = [split for split in ("train", "val", "test") if not counted.get(split)]
        if empty:
            what = "labelled rows" if s.classes_reason is None else "rows with targets"
            problems.append(f"{s.url}: no {what} in split(s) {empty} (it has "
                            f"{list(s.splits)}); the study trains on train, selects on val "
                            "and reports test")
    if pre is not None and not pre.rows.get("train"):
        problems.append(f"{pre.url}: no train split to pretrain on (it has {list(pre.splits)})")
    if problems:
        raise DataError("study: " + "; ".join(dict.fromkeys(problems)))
    if pre is None:
        return
    keys = [k for ks in present_modalities(pre.keys, modality_keys).values() for k in ks]
    spaces = []
    for s in downstream:
        shared = [k for k in keys if k in s.keys]
        diffs = feature_space_differences(pre.feature_space, s.feature_space, shared)
        if not shared:
            spaces.append(f"{s.url}: holds none of the pretraining store's keys {keys}")
        elif diffs:
            spaces.append(f"{s.url}: {format_differences(diffs)}")
    if spaces:
        raise StoreError(
            f"study: not in the feature space of the pretraining store {pre.url}, so heads "
            f"pretrained there cannot be evaluated on it; differing fields per store key: "
            f"{' | '.join(spaces)}. Nothing was trained. Extract the downstream stores with "
            "the same backbones, weights and preprocessing (`cli store diff` compares two)")


def plan_targets(pre: StoreFacts | None, downstream: Sequence[StoreFacts],
                 out: Path) -> list[Target]:
    """One target per downstream store, in the order given, named after its dataset."""
    targets: list[Target] = []
    for s in downstream:
        name = _folder_name(s.dataset)
        taken = {t.name for t in targets} | {"runs"}
        k = 2
        while name in taken:
            name, k = f"{_folder_name(s.dataset)}-{k}", k + 1
        folder = out / name
        targets.append(Target(name, s, pre or s, folder,
                              out / "runs" if pre is not None else folder / "runs",
                              own=pre is None))
    return targets


def _folder_name(dataset: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset).strip("._")
    return cleaned or "dataset"


def skip_reason(method: Method, *, pretrain: Mapping[str, Sequence[str]],
                store_keys: Collection[str], views: int, own: bool = True,
                contrast_views: str = "augmented") -> str | None:
    """Why a row cannot run, or None.

    Args:
        method: the row.
        pretrain: per modality the pretraining store's keys (:func:`present_modalities`).
        store_keys: the downstream store's keys.
        views: the pretraining store's views per sample.
        own: the pretraining store is the downstream store (wording only).
        contrast_views: the pretraining config's ``data.contrast_views``: two augmented views
            (``augmented``: views 1..V-1, so 3 stored views) or any two (``all``: 2).
    """
    where = "the store" if own else "the pretraining store"
    if method.objective is None:
        return None if set(store_keys) else "the store holds no features"
    spec = OBJECTIVES[method.objective]
    # the rule of heads.data.check_views, which the trainer applies (a test keeps them equal)
    need = 3 if contrast_views == "augmented" else 2
    if spec.needs_views and views < need:
        pair = "two augmented views" if need == 3 else "two views"
        return (f"{where} holds {views} view(s) per sample; {method.objective} contrasts "
                f"{pair} (extract it with --views {need} or more)")
    missing = [m for m in method.pretrain or () if m not in pretrain]
    if missing:
        return f"{where} has no {', '.join(missing)} features"
    if method.pretrain is not None and set(method.pretrain) == set(pretrain):
        return (f"{where} has only {'+'.join(pretrain)}: the same run as {method.objective} "
                "on all its modalities")
    modalities = pretrain_modalities(method, pretrain)
    if len(modalities) < spec.min_modalities:
        return (f"{method.objective} needs {spec.min_modalities} modalities, {where} has "
                f"{'+'.join(pretrain) or 'none'}")
    read = method.probe or modalities if method.protocol == "linear" else modalities
    absent = [m for m in read if m not in modalities]
    if absent:
        return f"the run has no {', '.join(absent)} representation ({where} lacks it)"
    lacking = [k for m in read for k in pretrain[m] if k not in store_keys]
    if lacking:
        return (f"the store has no {', '.join(lacking)} features, which the heads read "
                f"(pretrained on {'+'.join(k for m in read for k in pretrain[m])})")
    return None


def pretrain_modalities(method: Method, pretrain: Mapping[str, Sequence[str]]
                        ) -> tuple[str, ...]:
    """The run's modalities: the row's, or the objective's default ones the store has."""
    assert method.objective is not None
    if method.pretrain is not None:
        return method.pretrain
    return tuple(m for m in resolve_config(method.objective).modalities if m in pretrain)


def run_name(method: Method, pretrain: Mapping[str, Sequence[str]]) -> str:
    """The pretraining run's folder: ``conclugen``, ``multi_cont-video-audio``."""
    assert method.objective is not None
    modalities = pretrain_modalities(method, pretrain)
    if method.pretrain is None or set(modalities) == set(pretrain):
        return method.objective
    return "-".join((method.objective, *modalities))


# ----------------------------------------------------------------------------------- running

class StudyRunner:
    """Runs rows: each run pretrained once per call, each evaluation once, both only when a
    previous call did not leave them up to date."""

    def __init__(self, *, quick: bool, device: str, seeds: int, progress: bool,
                 modality_keys: Mapping[str, Sequence[str]]) -> None:
        self.quick, self.device, self.seeds = quick, device, seeds
        self.progress, self.modality_keys = progress, modality_keys
        self.preset = "cpu" if quick else None
        self.steps: dict[Path, int] = {}  # run folder -> its checkpoint's step
        self.evaluations: dict[Path, dict[str, Any]] = {}

    def rows(self, target: Target, systems: Collection[str], *,
             extras: bool) -> dict[str, list[TableRow]]:
        """Every group of rows of one downstream store (see
        :data:`~heads.reporting.study_tables.GROUPS`); a system not chosen has none."""
        # imported here: the other systems' rows are built from this module's Method and runner
        from heads.reporting.study_systems import avce_row, clef_rows

        paper = "conclugen" in systems
        return {"baselines": [self.row(m, target) for m in BASELINE_ROWS if paper],
                "objectives": [self.row(m, target) for m in OBJECTIVE_ROWS if paper],
                "extras": [self.row(m, target) for m in EXTRA_ROWS if paper and extras],
                "systems": clef_rows(self, target) if "clef" in systems else [],
                "regression": [avce_row(self, target)] if "avce" in systems else []}

    def skip(self, method: Method, target: Target) -> str | None:
        """Why a row of the paper's protocols cannot run on ``target`` (None: it can)."""
        if target.store.classes_reason is not None:
            return target.store.classes_reason
        pretrain = present_modalities(target.pretrain.keys, self.modality_keys)
        contrast = (resolve_config(method.objective, preset=self.preset).data.contrast_views
                    if method.objective is not None else "augmented")
        return skip_reason(method, pretrain=pretrain, store_keys=target.store.keys,
                           views=target.pretrain.views, own=target.own,
                           contrast_views=contrast)

    def row(self, method: Method, target: Target) -> TableRow:
        pretrain = present_modalities(target.pretrain.keys, self.modality_keys)
        reason = self.skip(method, target)
        if reason:
            log.warning("study %s: %s skipped: %s", target.name, method.label, reason)
            return TableRow(method.key, method.label, None, reason)
        log.info("study %s: %s", target.name, method.label)
        if method.objective is None:
            present = present_modalities(target.store.keys, self.modality_keys)
            folder = target.folder / "eval" / "supervised"
            metrics = self.evaluate(target, folder, protocol="supervised", run=None,
                                    modalities=tuple(present))
        else:
            name = run_name(method, pretrain)
            run = self.pretrain(method, target, target.runs / name, pretrain)
            modalities = pretrain_modalities(method, pretrain)
            probe = method.probe if method.protocol == "linear" else None
            folder = (target.folder / "eval" / name /
                      eval_name(method.protocol, probe or modalities, modalities, "concat"))
            metrics = self.evaluate(target, folder, protocol=method.protocol, run=run,
                                    modalities=probe)
        return TableRow(method.key, method.label, metrics, None)

    def pretrain(self, method: Method, target: Target, run_dir: Path,
                 pretrain: Mapping[str, Sequence[str]]) -> Path:
        if run_dir in self.steps:
            return run_dir
        assert method.objective is not None
        modalities = pretrain_modalities(method, pretrain)
        epochs = QUICK_EPOCHS if self.quick else None
        cfg = resolve_config(method.objective, preset=self.preset, modalities=modalities,
                             epochs=epochs)
        # modality_keys: the run records the keys the store had, not the default ones
        request = {"store_id": target.pretrain.store_id,
                   "config": {k: v for k, v in cfg.to_dict().items() if k != "modality_keys"}}
        marker = run_dir / PRETRAINED
        if marker.is_file() and (run_dir / "checkpoints" / LAST).is_file():
            done = json.loads(marker.read_text(encoding="utf-8"))
            if {k: done.get(k) for k in request} == request:
                log.info("%s is up to date: not pretrained again", run_dir)
                self.steps[run_dir] = int(done["step"])
                return run_dir
        try:
            run_pretrain(target.pretrain.url, method.objective, run_dir, preset=self.preset,
                         modalities=list(modalities), epochs=epochs, device=self.device,
                         resume=(run_dir / "config.yaml").exists(), progress=self.progress)
        except CheckpointError as err:
            raise CheckpointError(f"study: {run_dir} holds a run that this study cannot "
                                  f"continue ({err}); remove that folder to pretrain it "
                                  "again, or choose another study folder") from None
        last = read_metrics(run_dir, "epoch")[-1]
        marker.write_text(json.dumps({**request, "step": last["step"],
                                      "epochs": last["epoch"] + 1}, indent=2) + "\n",
                          encoding="utf-8")
        self.steps[run_dir] = int(last["step"])
        return run_dir

    def evaluate(self, target: Target, folder: Path, *, protocol: str, run: Path | None,
                 modalities: Sequence[str] | None) -> dict[str, Any]:
        if folder in self.evaluations:
            return self.evaluations[folder]
        cfg = resolve_eval_config(target.store.dataset, preset=self.preset)
        checkpoint = (None if run is None else
                      {"store_id": target.pretrain.store_id, "step": self.steps[run]})
        metrics = up_to_date(folder / METRICS, protocol=protocol, store_id=target.store.store_id,
                             config=cfg.to_dict(),
                             seeds=list(range(cfg.seed, cfg.seed + self.seeds)),
                             checkpoint=checkpoint)
        if metrics is None:
            metrics = run_eval(target.store.url, run=run, protocol=protocol, out=folder,
                               modalities=modalities, preset=self.preset, seeds=self.seeds,
                               device=self.device, progress=self.progress)
        self.evaluations[folder] = metrics
        return metrics


def up_to_date(path: Path, *, protocol: str, store_id: str, config: Mapping[str, Any],
               seeds: Sequence[int], checkpoint: Mapping[str, Any] | None
               ) -> dict[str, Any] | None:
    """The evaluation in ``path`` when a re-run would repeat it exactly, else None.

    It would when it evaluated the same downstream store (``store_id``) with the same protocol,
    resolved config and seeds, and (for a pretrained run) the heads of the same checkpoint: the
    same pretraining store and step.
    """
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    recorded = metrics.get("checkpoint")
    if (metrics.get("protocol") != protocol or metrics.get("store_id") != store_id
            or metrics.get("config") != dict(config) or metrics.get("seeds") != list(seeds)):
        return None
    if checkpoint is None and recorded is not None:
        return None
    if checkpoint is not None and (recorded is None or any(
            recorded.get(k) != v for k, v in checkpoint.items())):
        return None
    log.info("%s is up to date: not evaluated again", path.parent)
    return metrics
