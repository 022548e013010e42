"""The paper's study in one command: every objective, the modality ablations, the baseline.

:func:`run_study` pretrains each objective on a store, evaluates each run with the linear
protocol (plus the "vision only" probe of ConCluGen), trains the supervised baseline, and
writes the comparison the paper's Tables 2-5 make::

    OUT/runs/<objective>[-<modalities>]/     pretraining runs (their eval/ folders inside)
    OUT/supervised/                          the supervised baseline's evaluation
    OUT/results.csv                          one row per method, test metrics (mean, std)
    OUT/results.md                           the table (percent) and notes on skipped rows
    OUT/results.png                          bar chart of the same numbers

A re-run with the same ``OUT`` resumes unfinished pretraining runs and evaluates again only
what changed (another store, config, seed count, or heads of a later step).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heads.evaluation.run import METRICS, eval_name, resolve_eval_config, run_eval
from heads.data import DataError
from heads.reporting.metrics_log import read_metrics
from heads.pretrain.objectives import OBJECTIVES
from heads.pretrain.train import run_pretrain

log = logging.getLogger(__name__)

#: Pretraining epochs of ``quick`` studies (with the ``cpu`` presets of both configs).
QUICK_EPOCHS = 3
#: Table columns: metric key -> header (test split, weighted by class support).
COLUMNS = {"accuracy": "Acc", "f1_weighted": "F1", "precision_weighted": "Prec",
           "recall_weighted": "Recall", "f1_macro": "Macro-F1"}


@dataclass(frozen=True)
class Method:
    """One row of the study.

    Attributes:
        label: the row's name in the tables.
        objective: the pretraining objective (None: the supervised baseline).
        pretrain: modalities of the pretraining run (None: the objective's default).
        probe: modalities the linear classifier sees (None: all of the run's).
    """

    label: str
    objective: str | None
    pretrain: tuple[str, ...] | None = None
    probe: tuple[str, ...] | None = None


METHODS: tuple[Method, ...] = (
    Method("Supervised", None),
    Method("Multi-Cont", "multi_cont"),
    Method("Instance-Cont", "instance_cont"),
    Method("Generative", "generative"),
    Method("ConClu", "conclu"),
    Method("ConGen", "congen"),
    Method("ConCluGen w/o text", "conclugen", pretrain=("video", "audio")),
    Method("ConCluGen w/o audio", "conclugen", pretrain=("video", "text")),
    Method("ConCluGen (vision)", "conclugen", probe=("video",)),
    Method("ConCluGen", "conclugen"),
)


def run_study(store: str, out: str | Path, *, quick: bool = False, device: str = "auto",
              seeds: int = 1, progress: bool = True) -> Path:
    """Run the whole study on ``store`` and write ``results.md``, ``.csv`` and ``.png``.

    Args:
        store: a labelled feature store with train, val and test splits.
        out: the study folder (created; reused by a re-run).
        quick: the ``cpu`` presets and 3 pretraining epochs: the whole study on the 48-clip
            MELD sample takes minutes on two CPU cores (the numbers then only show that the
            pipeline works).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seeds: seeds per evaluation (mean and std reported); each objective is pretrained
            once, with the pretraining config's seed.
        progress: progress bars for each run.

    Returns:
        ``out``.
    """
    from heads.config import resolve_config
    from pipeline.store import open_store

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open_store(store) as fs:
        keys, views, dataset, store_id = set(fs.keys), fs.views, fs.dataset, fs.store_id
        multilabel, url, test = fs.multilabel, fs.url, len(fs.positions("test"))
    modality_keys = resolve_config("conclugen").modality_keys
    present = tuple(m for m, ks in modality_keys.items() if set(ks) & keys)
    rows, notes, trained = [], [], set[Path]()
    for k, method in enumerate(METHODS, 1):
        reason = skip_reason(method, present, views)
        if reason:
            notes.append(f"{method.label}: skipped, {reason}")
            log.warning("study: %s skipped: %s", method.label, reason)
            continue
        log.info("study %d/%d: %s", k, len(METHODS), method.label)
        metrics = _run_method(method, store, out, quick=quick, device=device, seeds=seeds,
                              progress=progress, present=present, trained=trained,
                              store_id=store_id)
        rows.append(result_row(method, metrics))
    if not rows:
        raise DataError(f"{url}: no method of the study can run on this store ({notes})")
    if quick:
        notes.append(f"quick: the cpu presets and {QUICK_EPOCHS} pretraining epochs; the "
                     "numbers show that the pipeline runs, not what the methods achieve")
    columns = {**COLUMNS, **({"weighted_accuracy": "WA"} if multilabel else {})}
    write_csv(out / "results.csv", rows, columns)
    header = (f"# ConCluGen study: {dataset}\n\nStore `{url}`. Each objective's heads "
              "evaluated with a linear classifier (the supervised baseline trains the same "
              f"architecture from scratch); test split ({test} clips), metrics in percent "
              "weighted by class support as in the paper's Tables 2-5 (Macro-F1 unweighted), "
              f"mean over {seeds} seed(s){' +- std' if seeds > 1 else ''}.\n")
    write_markdown(out / "results.md", rows, columns, header=header, notes=notes)
    from heads.reporting.plots import plot_study

    plot_study([{c: r[c] for c in columns} for r in rows], [r["method"] for r in rows],
               columns, out / "results.png", title=f"{dataset}: test metrics")
    log.info("study written to %s", out)
    return out


def skip_reason(method: Method, present: Sequence[str], views: int) -> str | None:
    """Why a method cannot run on a store with these modalities and views, or None."""
    if method.objective is None:
        return None
    if OBJECTIVES[method.objective].needs_views and views < 2:
        return (f"the store holds {views} view per sample; {method.objective} contrasts two "
                "augmented views (extract with views >= 2)")
    needed = set(method.pretrain or ()) | set(method.probe or ())
    missing = sorted(needed - set(present))
    if missing:
        return f"the store has no {', '.join(missing)} features"
    if method.pretrain is not None and set(method.pretrain) == set(present):
        return ("the store has only these modalities, so this is the same run as "
                f"{method.objective} on all of them")
    usable = method.pretrain or [m for m in _default_modalities(method.objective)
                                 if m in present]
    if len(usable) < OBJECTIVES[method.objective].min_modalities:
        return (f"{method.objective} needs {OBJECTIVES[method.objective].min_modalities} "
                f"modalities, the store has {list(present)}")
    return None


def _default_modalities(objective: str) -> tuple[str, ...]:
    from heads.config import resolve_config

    return resolve_config(objective).modalities


def run_name(method: Method, present: Sequence[str]) -> str:
    """The pretraining run's folder: ``conclugen``, ``conclugen-video-audio``."""
    assert method.objective is not None
    if method.pretrain is None or tuple(method.pretrain) == tuple(present):
        return method.objective
    return "-".join((method.objective, *method.pretrain))


def _run_method(method: Method, store: str, out: Path, *, quick: bool, device: str,
                seeds: int, progress: bool, present: Sequence[str], trained: set[Path],
                store_id: str) -> dict[str, Any]:
    """Pretrain (once per run folder in this study; resuming a folder a previous call left)
    and evaluate one method (unless an up-to-date evaluation is there)."""
    preset = "cpu" if quick else None
    if method.objective is None:
        kept = up_to_date(out / "supervised" / METRICS, store_id=store_id, preset=preset,
                          seeds=seeds, run=None)
        return kept or run_eval(store, run=None, protocol="supervised", out=out / "supervised",
                                modalities=present, preset=preset, seeds=seeds, device=device,
                                progress=progress)
    run_dir = out / "runs" / run_name(method, present)
    # The objective's default modalities, less those the store lacks (skip_reason checked
    # that enough remain).
    modalities = method.pretrain or tuple(m for m in _default_modalities(method.objective)
                                          if m in present)
    if run_dir not in trained:
        run_pretrain(store, method.objective, run_dir, preset=preset,
                     modalities=list(modalities), epochs=QUICK_EPOCHS if quick else None,
                     device=device, resume=(run_dir / "config.yaml").exists(),
                     progress=progress)
        trained.add(run_dir)
    probe = list(method.probe) if method.probe else None
    name = eval_name("linear", probe or modalities, modalities, "concat")
    kept = up_to_date(run_dir / "eval" / name / METRICS, store_id=store_id, preset=preset,
                      seeds=seeds, run=run_dir)
    return kept or run_eval(store, run=run_dir, protocol="linear", modalities=probe,
                            preset=preset, seeds=seeds, device=device, progress=progress)


def up_to_date(path: Path, *, store_id: str, preset: str | None, seeds: int,
               run: Path | None) -> dict[str, Any] | None:
    """The evaluation in ``path`` when a re-run would repeat it exactly, else None.

    Same store, same resolved config and seeds, and (for a probe of a run) the heads of the
    run's last finished epoch.
    """
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    cfg = resolve_eval_config(metrics.get("dataset", ""), preset=preset)
    if (metrics.get("store_id") != store_id or metrics.get("config") != cfg.to_dict()
            or metrics.get("seeds") != list(range(cfg.seed, cfg.seed + seeds))):
        return None
    if run is not None:
        epochs = read_metrics(run, "epoch")
        step = epochs[-1]["step"] if epochs else None
        if (metrics.get("checkpoint") or {}).get("step") != step:
            return None
    log.info("%s is up to date: not evaluated again", path.parent)
    return metrics


def result_row(method: Method, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The study's row of one evaluation: test means and stds of the table's metrics."""
    test = metrics["summary"].get("test")
    if test is None:
        raise DataError(f"{method.label}: the store has no labelled test split to report")
    row: dict[str, Any] = {"method": method.label, "objective": metrics["objective"],
                           "protocol": metrics["protocol"],
                           "modalities": "+".join(metrics["modalities"]),
                           "run": metrics["run"] or "", "seeds": len(metrics["seeds"])}
    for key, summary in test.items():
        row[key] = summary["mean"]
        row[f"{key}_std"] = summary["std"]
    return row


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> None:
    """One line per method: identity columns, then each metric's mean and std (fractions)."""
    fields = ["method", "objective", "protocol", "modalities", "seeds",
              *[f for c in columns for f in (c, f"{c}_std")], "run"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_markdown(path: Path, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str],
                   *, header: str, notes: Sequence[str]) -> None:
    """The table in percent (``mean +- std`` with several seeds) and the notes."""
    lines = [header, "| Method | " + " | ".join(columns.values()) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in rows:
        cells = [_percent(row.get(c), row.get(f"{c}_std")) for c in columns]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _percent(mean: float | None, std: float | None) -> str:
    if mean is None or mean != mean:  # NaN: undefined on this split
        return "n/a"
    return f"{100 * mean:.2f}" + (f" +- {100 * std:.2f}" if std is not None else "")
