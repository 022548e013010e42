"""The paper's study in one command: every objective and ablation, beside the paper's numbers.

:func:`run_study` follows the paper's protocol. Each objective (and each modality ablation) is
pretrained **once** on the pretraining store (VoxCeleb2 in the paper, unlabelled) and evaluated
on every downstream store (MELD, CAER, CMU-MOSEI) with the linear protocol; Table 2 adds the
supervised baseline (trained on the downstream store) and ConCluGen fine-tuned. Every downstream
store must be in the pretraining store's feature space: all are checked before anything is
trained. Without a pretraining store each downstream store pretrains its own heads, which is
not the paper's protocol, and every table says so. Rows, in the paper's order, with its
numbers (:mod:`heads.study.paper`) beside ours::

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
from collections.abc import Collection, Sequence
from pathlib import Path

from heads.config import resolve_config
from heads.data import DataError
from heads.outputs import claim_output, write_json_atomic
from heads.study.plan import check_stores, check_systems, plan_targets, read_facts
from heads.study.runner import QUICK_EPOCHS, StudyRunner
from heads.study.systems import avce_row, clef_rows
from heads.study.tables import write_study
from heads.study.types import BASELINE_ROWS, EXTRA_ROWS, OBJECTIVE_ROWS, SYSTEMS, TableRow, Target
from pipeline.config import ConfigError

log = logging.getLogger(__name__)


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
        raise ConfigError(f"--seeds {seeds} (seeds={seeds}): must be at least 1")
    chosen = check_systems(systems)
    out = Path(out)
    modality_keys = resolve_config("conclugen").modality_keys
    downstream = [read_facts(s) for s in stores]
    pre = read_facts(pretrain_store) if pretrain_store is not None else None
    check_stores(pre, downstream, modality_keys)
    targets = plan_targets(pre, downstream, out)
    # Never another's folder or a store, one study at a time; study.json marks the folder as a
    # study's from its first moment, so a study stopped early is continued, not refused.
    with claim_output(out, "study"):
        write_json_atomic(out / STUDY_RECORD, {
            "stores": stores, "pretrain_store": pretrain_store, "quick": quick,
            "seeds": seeds, "extras": extras, "systems": list(chosen)})
        runner = StudyRunner(quick=quick, device=device, seeds=seeds, progress=progress,
                             modality_keys=modality_keys)
        results = {target.name: target_rows(runner, target, chosen, extras=extras)
                   for target in targets}
        write_study(out, targets, results, quick=quick, seeds=seeds, epochs=QUICK_EPOCHS)
    log.info("study written to %s", out)
    return out


#: The study's request, written first (atomically) into its folder.
STUDY_RECORD = "study.json"


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
