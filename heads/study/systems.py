"""The study's rows of two other systems on the same downstream stores (``cli study
--systems``): none of them has numbers in the ConCluGen paper, so their rows have no paper
value.

- CLEF (Zhang et al., ICCV 2023; :mod:`heads.evaluation.clef`): one evaluation
  (``OUT/<dataset>/eval/clef/``) gives two rows, its text prototypes trained on the store, and
  its zero-shot score, the prototypes of the ConCluGen run's MMS text head untrained
  (:data:`ZERO_SHOT_RUN`, pretrained by the study as for the paper's rows). It needs a store with
  classes and label texts; without the run (a store it cannot be pretrained on) the trained row
  still runs.
- AVCE (Kim & Song, ECCV 2022; :mod:`heads.evaluation.avce`): valence/arousal regression on the
  store's continuous targets (``DatasetInfo.targets``: CMU-MOSEI's valence, AFEW-VA's valence
  and arousal; ``OUT/<dataset>/eval/avce/``), reported in a table of its own.

A row's label says where its evaluation departs from the paper's setting, as ``metrics.json``
records it: CLEF's stage 1 on the downstream sentiment sign (a fallback) or on another store's
labels; AVCE's valence-only variant (one target: its angle term degenerate) and text among its
inputs (:func:`caveats`).

A row that cannot run is returned skipped, with the reason the tables print.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from heads.study.plan import present_modalities, run_name
from heads.study.runner import StudyRunner
from heads.study.types import OBJECTIVE_ROWS, Method, StoreFacts, TableRow, Target

log = logging.getLogger(__name__)

#: CLEF's rows: one evaluation gives both (its ``details.zero_shot`` is the second).
CLEF_ROWS: tuple[Method, ...] = (
    Method("clef", "CLEF (text prototypes)", "conclugen", "clef"),
    Method("clef_zero_shot", "CLEF zero-shot (ConCluGen text head)", "conclugen", "clef"),
)
#: AVCE's row, in the regression table.
AVCE_ROW = Method("avce", "AVCE (valence/arousal regression)", None, "avce")
#: The run whose MMS text head gives CLEF's zero-shot prototypes: ConCluGen's.
ZERO_SHOT_RUN = OBJECTIVE_ROWS[0]


def clef_rows(runner: StudyRunner, target: Target) -> list[TableRow]:
    """CLEF's two rows on ``target``: the trained prototypes, and the zero-shot prototypes of
    the ConCluGen run (pretrained when its row can run; without it the zero-shot row is
    skipped with the reason)."""
    trained, zero = CLEF_ROWS
    reason = clef_skip_reason(target.store)
    if reason:
        log.warning("study %s: CLEF skipped: %s", target.name, reason)
        return [TableRow(m.key, m.label, None, reason) for m in CLEF_ROWS]
    no_run = runner.skip(ZERO_SHOT_RUN, target)
    run = None
    if no_run is None:
        pretrain = present_modalities(target.pretrain.keys, runner.modality_keys)
        run = runner.pretrain(ZERO_SHOT_RUN, target,
                              target.runs / run_name(ZERO_SHOT_RUN, pretrain), pretrain)
    log.info("study %s: %s", target.name, trained.label)
    folder = target.folder / "eval" / "clef"
    metrics = runner.evaluate(target, folder, protocol="clef", run=run, modalities=None)
    seconds = runner.clock.total([folder] if run is None else [run, folder])
    return [TableRow(trained.key, trained.label + caveats(metrics), metrics, None,
                     seconds=seconds),
            zero_shot_row(zero, metrics, no_run)]


def avce_row(runner: StudyRunner, target: Target) -> TableRow:
    """AVCE on the store's continuous targets, or why the store has none to regress."""
    reason = avce_skip_reason(target.store)
    if reason:
        log.warning("study %s: AVCE skipped: %s", target.name, reason)
        return TableRow(AVCE_ROW.key, AVCE_ROW.label, None, reason)
    log.info("study %s: %s", target.name, AVCE_ROW.label)
    folder = target.folder / "eval" / "avce"
    metrics = runner.evaluate(target, folder, protocol="avce", run=None, modalities=None)
    return TableRow(AVCE_ROW.key, AVCE_ROW.label + caveats(metrics), metrics, None,
                    seconds=runner.clock.total([folder]))


def caveats(metrics: Mapping[str, Any]) -> str:
    """What a CLEF or AVCE row's label adds from its ``metrics.json``: `` [stage 1: ...]``
    (CLEF's coarse labels when stage 1 ran), `` [valence only: angle term degenerate]``,
    `` [inputs include text]`` (AVCE); empty when the evaluation is the paper's setting."""
    details = metrics.get("details") or {}
    notes = []
    weak = details.get("weak") or {}
    if weak.get("source") == "sentiment_fallback":
        notes.append("stage 1: sentiment-sign fallback")
    elif weak.get("source") == "stage1_store":
        notes.append(f"stage 1: {weak.get('group')} labels")
    if details.get("variant") == "valence_only":
        notes.append("valence only: angle term degenerate")
    if "text" in (details.get("inputs") or ()):
        notes.append("inputs include text")
    return f" [{'; '.join(notes)}]" if notes else ""


def clef_skip_reason(store: StoreFacts) -> str | None:
    """Why CLEF cannot run on a store (None: it has classes and label texts)."""
    if store.classes_reason is not None:
        return store.classes_reason
    if not store.label_texts:
        return ("the store has no label texts; embed them with its text backbone: `cli store "
                f"add-label-texts {store.url}`")
    return None


def avce_skip_reason(store: StoreFacts) -> str | None:
    """Why AVCE cannot run on a store (None: it has continuous targets in every split)."""
    if not store.targets:
        return (f"the store has no continuous targets (dataset {store.dataset}); AVCE regresses "
                "valence/arousal: stores of CMU-MOSEI (valence) and AFEW-VA have them")
    empty = [s for s in ("train", "val", "test") if not store.with_targets.get(s)]
    if empty:
        return f"no rows with continuous targets in split(s) {empty}"
    return None


def zero_shot_row(method: Method, metrics: Mapping[str, Any], no_run: str | None) -> TableRow:
    """CLEF's zero-shot row from its evaluation's ``details.zero_shot`` (test split; one
    score, the prototypes are not trained: one run, no confusion matrix of its own), or why it
    did not run."""
    zero = (metrics.get("details") or {}).get("zero_shot") or {}
    if not zero.get("ran"):
        reason = (f"no ConCluGen run to take the text head from: {no_run}" if no_run
                  else str(zero.get("reason", "not run")))
        return TableRow(method.key, method.label, None, reason)
    test = (zero.get("splits") or {}).get("test") or {}
    summary = {"test": {k: {"mean": v, "std": None} for k, v in test.items()
                        if v is None or isinstance(v, int | float)}}
    seeds = list(metrics.get("seeds", []))[:1]
    return TableRow(method.key, method.label,
                    {**metrics, "summary": summary, "seeds": seeds, "files": {},
                     "runs": [{"seed": s, "splits": {"test": test}} for s in seeds]})


__all__ = ["AVCE_ROW", "CLEF_ROWS", "ZERO_SHOT_RUN", "avce_row", "avce_skip_reason", "caveats",
           "clef_rows", "clef_skip_reason", "zero_shot_row"]
