"""The paper's study in one command: every objective and ablation, beside the paper's numbers.

:func:`run_study` follows the paper's protocol. Each objective (and each modality ablation) is
pretrained once on the pretraining store (VoxCeleb2 in the paper, unlabelled; with
``pretrain_seeds`` N, N times with seeds ``s0 .. s0 + N - 1`` from the config's ``s0``, and
each row pools every pretraining x probe seed) and evaluated
on every downstream store (MELD, CAER, CMU-MOSEI) with the linear protocol; Table 2 adds the
supervised baseline (trained on the downstream store) and ConCluGen fine-tuned. Every downstream
store must be in the pretraining store's feature space: all are checked before anything is
trained. Without a pretraining store each downstream store pretrains its own heads, which is
not the paper's protocol, and every table says so. Rows, in the paper's order, with its
numbers (:mod:`heads.study.paper`) beside ours::

    OUT/results.md                every dataset's tables, with links to their files
    OUT/run.json                  the run record: command, request, stores, software, host,
                                  device, wall-clock, and the evaluation folders the tables read
    OUT/study.json                the study's request (stores, seeds, systems, monitor)
    OUT/wall-clock.json           seconds of each run and evaluation this study carried out
    OUT/results.csv               every row of every dataset (percent)
    OUT/runs/<run>/               the runs pretrained on the pretraining store
    OUT/runs/<run>-seed<s>/       the same run with pretraining seed s (pretrain_seeds > 1)
    OUT/<dataset>/results.md      Table 2 and Tables 3-5 of this dataset: ours, paper, difference
    OUT/<dataset>/results.csv     the same rows with each evaluation's identity (percent)
    OUT/<dataset>/results.png     bars: ours; black ticks: the paper's
    OUT/<dataset>/eval/<run>/<protocol>[-<modalities>]/   the evaluations (metrics.json, ...)
    OUT/<dataset>/eval/supervised/                        the supervised baseline
    OUT/<dataset>/runs/<run>/     without a pretraining store: the runs pretrained on this one

Below the paper's tables, the heads of two other systems on the same downstream stores
(``systems``; :mod:`heads.study.systems`): CLEF's text prototypes, trained and
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

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from heads.config import resolve_config
from heads.data import DataError
from heads.outputs import claim_output, write_json_atomic
from heads.pretrain.monitor import MonitorSettings
from heads.run_record import one_warning, start_clock
from heads.runtime import resolve_device
from heads.study.clock import WallClock
from heads.study.plan import check_stores, check_systems, plan_targets, read_facts
from heads.study.record import study_stores, warn_study_stores, write_study_record
from heads.study.runner import QUICK_EPOCHS, StudyRunner
from heads.study.systems import avce_row, clef_rows
from heads.study.tables import write_study
from heads.study.types import (BASELINE_ROWS, EXTRA_ROWS, OBJECTIVE_ROWS, SYSTEMS, StoreFacts,
                               TableRow, Target)
from pipeline.config import ConfigError
from pipeline.presets import Preset, parse_preset

log = logging.getLogger(__name__)


def run_study(stores: str | Sequence[str], out: str | Path, *,
              pretrain_store: str | None = None, quick: bool = False, device: str = "auto",
              seeds: int = 1, extras: bool = True, progress: bool = True,
              systems: Sequence[str] = SYSTEMS, pretrain_seeds: int = 1,
              monitor: bool = False, monitor_store: str | None = None,
              preset: str | Preset | None = None) -> Path:
    """Run the study and write its tables (see the module docstring for the layout).

    Args:
        stores: the labelled downstream stores (train, val and test splits).
        out: the study folder (created; a re-run reuses what is up to date).
        pretrain_store: the store every objective is pretrained on once (VoxCeleb2 in the
            paper). None: each downstream store pretrains its own runs (not the paper's
            protocol; the tables say so).
        quick: the ``cpu`` presets and :data:`QUICK_EPOCHS` pretraining epochs: the whole
            study on the sample datasets in minutes on two CPU cores (the numbers then only
            show that the pipeline works); the same as a ``preset`` with ``cpu``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seeds: seeds per evaluation (mean and std reported).
        pretrain_seeds: pretraining runs per objective, seeds ``s0 .. s0 + N - 1`` (``s0``: the
            pretraining config's seed); the tables pool every pretraining x probe seed.
        extras: also this project's rows below the paper's (:data:`EXTRA_ROWS`).
        progress: progress bars for each run.
        systems: which of :data:`SYSTEMS` to run (``conclugen``: the paper's tables; ``clef``,
            ``avce``: the other systems' rows); each where it applies.
        monitor: every pretraining run logs the online k-NN accuracy
            (:mod:`heads.pretrain.monitor`) on ``monitor_store``, or the first downstream store
            with classes.
        monitor_store: the labelled store the monitor uses (implies ``monitor``); it must be in
            the pretraining store's feature space (checked before anything is trained).
        preset: ``paper`` (default) or ``reference``, optionally with ``cpu``
            (:mod:`pipeline.presets`): the configs of every run and evaluation; the tables
            name it, and where the stores were extracted otherwise, what differs.

    Returns:
        ``out``.

    Raises:
        StoreError: a downstream store is not in the pretraining store's feature space (the
            differing fields are named; nothing was trained).
        DataError: a downstream store without labels or a train, val or test split; a
            pretraining store without a train split.
        ConfigError: ``seeds`` or ``pretrain_seeds`` below 1; an unknown or no system; a
            monitor without a downstream store with classes.
        CheckpointError: a run folder in ``out`` that this study cannot continue (another
            store or other settings).
    """
    chosen_preset = parse_preset(preset)
    if quick:
        chosen_preset = Preset(chosen_preset.fidelity, "cpu")
    quick = chosen_preset.size == "cpu"
    stores = [stores] if isinstance(stores, str) else list(stores)
    if not stores:
        raise DataError("the study needs at least one downstream store")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} (seeds={seeds}): must be at least 1")
    if pretrain_seeds < 1:
        raise ConfigError(f"--pretrain-seeds {pretrain_seeds} (pretrain_seeds={pretrain_seeds}): "
                          "must be at least 1")
    chosen = check_systems(systems)
    out = Path(out)
    modality_keys = resolve_config("conclugen").modality_keys
    downstream = [read_facts(s) for s in stores]
    pre = read_facts(pretrain_store) if pretrain_store is not None else None
    check_stores(pre, downstream, modality_keys)
    watch = _monitor(pre, downstream, monitor_store, modality_keys) if (
        monitor or monitor_store) else None
    targets = plan_targets(pre, downstream, out)
    clock, read = start_clock(), study_stores(pre, downstream)
    request = {"stores": stores, "pretrain_store": pretrain_store, "quick": quick,
               "preset": chosen_preset.name, "seeds": seeds, "pretrain_seeds": pretrain_seeds, "extras": extras,
               "systems": list(chosen), "monitor": None if watch is None else watch.store}
    # Never another's folder or a store, one study at a time; study.json marks the folder as a
    # study's from its first moment, so a study stopped early is continued, not refused.
    with one_warning(), claim_output(out, "study"):
        warn_study_stores(read)  # once here: the runs and evaluations below say nothing more
        write_json_atomic(out / STUDY_RECORD, request)
        runner = StudyRunner(preset=chosen_preset, device=device, seeds=seeds, progress=progress,
                             modality_keys=modality_keys, clock=WallClock(out),
                             pretrain_seeds=pretrain_seeds, monitor=watch)
        results = {target.name: target_rows(runner, target, chosen, extras=extras)
                   for target in targets}
        write_study(out, targets, results, quick=quick, seeds=seeds, epochs=QUICK_EPOCHS,
                    pretrain_seeds=pretrain_seeds, preset=chosen_preset)
        write_study_record(out, {**request, "device": device}, read, runner.evaluations,
                           device=str(resolve_device(device)), clock=clock)
    log.info("study written to %s", out)
    return out


#: The study's request, written first (atomically) into its folder.
STUDY_RECORD = "study.json"


def _monitor(pre: StoreFacts | None, downstream: Sequence[StoreFacts], store: str | None,
             modality_keys: Mapping[str, Sequence[str]]) -> MonitorSettings:
    """The monitor of every pretraining run: on ``store`` (checked like a downstream store,
    before anything is trained) or on the first downstream store with classes."""
    if store is not None:
        facts = read_facts(store)
        if facts.classes_reason is not None or facts.multilabel:
            raise ConfigError(f"--monitor-store {store}: the k-NN monitor needs a single-label "
                              f"store with classes ({facts.classes_reason or 'multi-label'})")
        check_stores(pre or downstream[0], [facts], modality_keys)
        return MonitorSettings(store)
    for facts in downstream:
        if facts.classes_reason is None and not facts.multilabel:
            return MonitorSettings(facts.url)
    raise ConfigError("--monitor: no downstream store has single-label classes to monitor "
                      "with; name one with --monitor-store")


def target_rows(runner: StudyRunner, target: Target, systems: Collection[str], *,
                extras: bool) -> dict[str, list[TableRow]]:
    """Every group of rows of one downstream store (see :data:`heads.study.tables.GROUPS`); a
    system not chosen has none."""
    paper = "conclugen" in systems
    return {"baselines": [runner.row(m, target) for m in BASELINE_ROWS if paper],
            "objectives": [runner.row(m, target) for m in OBJECTIVE_ROWS if paper],
            "extras": [runner.row(m, target) for m in EXTRA_ROWS if paper and extras],
            "systems": clef_rows(runner, target) if "clef" in systems else [],
            "regression": [avce_row(runner, target)] if "avce" in systems else []}
