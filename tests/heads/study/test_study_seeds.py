"""Seed variance, the monitor and the readable results of the study: each objective pretrained
with several seeds, every row pooling pretraining x probe seeds (mean +- std, n), per-class F1,
wall-clock and confusion-matrix links in results.md, caveats in the chart's title, the online
monitor on the first labelled store, and a re-run that trains nothing."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import app
from heads import plots
from heads.metrics_log import read_metrics
from heads.study import run as study_run
from heads.study import runner
from heads.study.details import confusion_links, per_class_f1
from heads.study.run import run_study
from heads.study.types import BASELINE_ROWS, OBJECTIVE_ROWS, TableRow
from pipeline.config import ConfigError
from pipeline.store.manifest import StoreError
from tests.heads.study.test_study import labelled, synthetic_store


def evaluation(out: str, accuracies: list[float], f1: list[dict[str, float]]) -> dict:
    """An evaluation's metrics.json as the tables read it: one run per probe seed."""
    return {"out": out, "seeds": list(range(len(accuracies))), "label_names": list(f1[0]),
            "files": {"confusion": {"test": "confusion_test.png"}},
            "summary": {"test": {"accuracy": {"mean": statistics.fmean(accuracies),
                                              "std": None}}},
            "runs": [{"seed": k, "splits": {"test": {
                "accuracy": a, "per_class": {n: {"f1": v} for n, v in scores.items()}}}}
                for k, (a, scores) in enumerate(zip(accuracies, f1, strict=True))]}


def test_a_row_pools_every_pretraining_and_probe_seed(tmp_path: Path) -> None:
    first = evaluation(str(tmp_path / "eval/conclugen/linear"), [0.5, 0.6],
                       [{"joy": 0.2, "anger": 1.0}, {"joy": 0.4, "anger": 0.5}])
    second = evaluation(str(tmp_path / "eval/conclugen-seed1/linear"), [0.3, 0.4],
                        [{"joy": 0.0, "anger": 0.5}, {"joy": 0.2, "anger": 1.0}])
    row = TableRow("conclugen", "ConCluGen", first, evaluations=(first, second))
    assert row.runs == 4
    mean, std = row.ours("accuracy")
    assert mean == pytest.approx(45.0)
    assert std == pytest.approx(100 * statistics.stdev([0.5, 0.6, 0.3, 0.4]))
    assert per_class_f1(row) == pytest.approx({"joy": 0.2, "anger": 0.75})
    assert confusion_links(row, tmp_path) == (
        "[1](eval/conclugen/linear/confusion_test.png) "
        "[2](eval/conclugen-seed1/linear/confusion_test.png)")
    # one evaluation: its own summary, as before
    assert TableRow("x", "X", first).ours("accuracy") == (pytest.approx(55.0), None)


def test_a_class_absent_from_the_test_split_has_no_f1_not_zero(tmp_path: Path) -> None:
    metrics = evaluation(str(tmp_path / "eval/supervised"), [1.0], [{"joy": 0.0, "anger": 1.0}])
    metrics["runs"][0]["splits"]["test"]["per_class"] = {
        "joy": {"f1": 0.0, "support": 0}, "anger": {"f1": 1.0, "support": 3}}
    assert per_class_f1(TableRow("supervised", "Supervised", metrics)) == {
        "joy": None, "anger": 1.0}


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, any pretraining or evaluation fails the test."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained or evaluated where nothing should be")

    monkeypatch.setattr(runner, "run_pretrain", refuse)
    monkeypatch.setattr(runner, "run_eval", refuse)


@pytest.fixture
def few_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervised baseline, ConCluGen linear and ConCluGen: the seeds' machinery in
    seconds (every row goes through the same code)."""
    monkeypatch.setattr(study_run, "BASELINE_ROWS", BASELINE_ROWS[:2])
    monkeypatch.setattr(study_run, "OBJECTIVE_ROWS", OBJECTIVE_ROWS[:1])


@pytest.mark.slow
def test_pretraining_seeds_monitor_and_readable_results(tmp_path: Path, few_rows: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    vox = synthetic_store(tmp_path / "vox", dataset="voxceleb2", labels=None, n=120, seed=1)
    meld = synthetic_store(tmp_path / "meld", dataset="meld", labels=labelled("meld"), n=100,
                           seed=2)
    out = tmp_path / "out"
    titles: list[str] = []
    real_plot_study = plots.plot_study

    def plot_study(*args: Any, title: str = "", **kwargs: Any) -> Path:
        titles.append(title)
        return real_plot_study(*args, title=title, **kwargs)

    monkeypatch.setattr(plots, "plot_study", plot_study)
    run_study([meld.url], out, pretrain_store=vox.url, quick=True, device="cpu",
              progress=False, systems=["conclugen"], pretrain_seeds=2, seeds=2, monitor=True)
    assert titles == ["meld: test, ours (bars) and the paper's (ticks)\nquick: cpu preset; "
                      "n=2-4 classifiers per row, 20 test clips: shows the pipeline runs, not "
                      "what methods achieve"]
    assert (out / "meld" / "results.png").is_file()

    # each objective pretrained twice, with seeds 0 and 1, each monitored on MELD
    for name, seed in (("conclugen", 0), ("conclugen-seed1", 1)):
        config = (out / "runs" / name / "config.yaml").read_text()
        assert re.search(rf"^seed: {seed}$", config, re.M), name
        last = read_metrics(out / "runs" / name, "epoch")[-1]
        assert 0 <= last["monitor/knn_accuracy"] <= 1
    assert json.loads((out / "study.json").read_text())["monitor"] == meld.url

    evals = [json.loads((out / "meld" / "eval" / name / "linear" / "metrics.json").read_text())
             for name in ("conclugen", "conclugen-seed1")]
    values = [r["splits"]["test"]["accuracy"] for m in evals for r in m["runs"]]
    assert len(values) == 4
    md = (out / "meld" / "results.md").read_text()
    tables, details = md.split("Per row:")
    (line,) = [ln for ln in tables.splitlines() if ln.startswith("| ConCluGen (linear eval.) |")]
    cell = line.split("|")[2].strip()
    assert cell == (f"{100 * statistics.fmean(values):.2f} +- "
                    f"{100 * statistics.stdev(values):.2f} (n=4)")

    # the per-row table: n, wall-clock, per-class F1, links that resolve to the images
    (detail,) = [ln for ln in details.splitlines()
                 if ln.startswith("| ConCluGen (linear eval.) |")]
    cells = [c.strip() for c in detail.strip("|").split("|")]
    assert cells[1] == "4" and float(cells[2]) > 0
    assert len(cells) == 3 + len(labelled("meld")) + 1
    links = re.findall(r"\]\(([^)]+)\)", cells[-1])
    assert len(links) == 2 and all((out / "meld" / link).is_file() for link in links)
    top = (out / "results.md").read_text()
    assert all((out / link).is_file() for link in
               re.findall(r"\]\((meld/eval/[^)]+confusion_test\.png)\)", top))

    # a re-run (even without the monitor) trains and evaluates nothing, same tables
    forbid_training(monkeypatch)
    before = (out / "results.csv").read_text()
    run_study([meld.url], out, pretrain_store=vox.url, quick=True, device="cpu",
              progress=False, systems=["conclugen"], pretrain_seeds=2, seeds=2)
    assert (out / "results.csv").read_text() == before


def test_figure_titles_carry_the_caveats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    note = plots.caveats(["frames_2d", "audio"], preset="quick: cpu", small="n=2 classifiers")
    assert note == ("RANDOM backbone weights (audio, frames_2d); quick: cpu preset; n=2 "
                    "classifiers: shows the pipeline runs, not what methods achieve")
    assert plots.caveats(small="28 test clips") == "28 test clips"
    assert plots.with_caveats("meld", note) == f"meld\n{note}"
    assert plots.caveats() == "" and plots.with_caveats("meld", "") == "meld"

    titles: list[str] = []
    monkeypatch.setattr(plots, "plot_confusion", lambda *a, title, **k: titles.append(title)
                        or tmp_path / "c.png")
    plots.evaluation_figures(tmp_path, confusions={"test": [[1, 0], [0, 1]]},
                             label_names=["a", "b"], multilabel=False, test=None,
                             what="linear (video)", seed=0, max_points=10, note=note)
    assert titles == [f"linear (video), test\n{note}"]


def test_a_monitor_store_of_another_feature_space_is_refused_before_any_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_training(monkeypatch)
    vox, meld, other = (synthetic_store(tmp_path / name, dataset=name, labels=labels, n=40,
                                        seed=seed, space=space)
                        for name, labels, seed, space in (
                            ("voxceleb2", None, 1, "synthetic-v1"),
                            ("meld", labelled("meld"), 2, "synthetic-v1"),
                            ("caer", labelled("caer"), 3, "synthetic-v2")))
    with pytest.raises(StoreError, match="synthetic-v1 -> synthetic-v2"):
        run_study([meld.url], tmp_path / "out", pretrain_store=vox.url, quick=True,
                  device="cpu", progress=False, monitor_store=other.url)
    with pytest.raises(ConfigError, match="--pretrain-seeds 0 .*must be at least 1"):
        run_study([meld.url], tmp_path / "out", pretrain_store=vox.url, pretrain_seeds=0)
    assert not (tmp_path / "out").exists()

    result = CliRunner().invoke(app, ["study", "--pretrain-store", vox.url, "--store", meld.url,
                                      "--out", str(tmp_path / "out"), "--quick",
                                      "--monitor-store", other.url, "--pretrain-seeds", "2"])
    assert result.exit_code == 2, result.output
    assert other.url in " ".join(result.output.split()) and "Traceback" not in result.output
