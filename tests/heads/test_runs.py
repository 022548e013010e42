"""Run records through the command line, on a store whose keys hold random weights: pretrain
and eval write ``run.json`` and say once which keys are random (also in ``metrics.jsonl`` and
``metrics.json``); an evaluation never replaces another (the same one is refused without
``--overwrite``, another config goes to its own folder); ``runs list`` and ``runs diff`` read
the records."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from heads.metrics_log import read_metrics
from heads.run_record import read_run_record
from heads.runs import diff_runs, list_runs
from pipeline.store import open_store, write_arrays

runner = CliRunner()
TRAINER = ["--preset", "cpu", "--device", "cpu", "--set", "data.batch_size=16",
           "--set", "model.representation_dim=16", "--set", "model.projection_dim=8",
           "--set", "model.reconstruction_dim=8"]
SMALL = [*TRAINER, "--set", "output.tensorboard=false"]
RANDOM = ["audio", "text"]


@pytest.fixture(scope="module")
def random_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """48 labelled clips whose two keys store.json marks as random weights (what an
    extraction with ``--weights random`` records: ``StoreManifest.random_weights``)."""
    rng = np.random.default_rng(0)
    n = 48
    path = tmp_path_factory.mktemp("random") / "store"
    store = write_arrays(path, dataset="toy", sample_ids=[f"c{i}" for i in range(n)],
                         splits=["train"] * 32 + ["val"] * 8 + ["test"] * 8,
                         labels=np.arange(n) % 3, label_names=["a", "b", "c"],
                         feature_space="random", shard_size=16,
                         features={"audio": rng.standard_normal((n, 1, 16)).astype(np.float32),
                                   "text": rng.standard_normal((n, 1, 8)).astype(np.float32)})
    assert store.manifest.random_weights == RANDOM
    return store.url


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "RANDOM WEIGHTS" in r.getMessage()]


@pytest.fixture(scope="module")
def pretrained(random_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    result = runner.invoke(app, ["pretrain", "--store", random_store, "--out", str(run),
                                 "--objective", "multi_cont", "--modalities", "audio,text",
                                 "--epochs", "2", *SMALL])
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_pretrain_records_the_run_and_its_random_weights(random_store: str,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, ["pretrain", "--store", random_store, "--out", str(run),
                                     "--objective", "multi_cont", "--modalities", "audio,text",
                                     "--epochs", "2", *TRAINER])  # TensorBoard on
    assert result.exit_code == 0, result.output
    assert (run / "tensorboard").is_dir()
    (warning,) = _warnings(caplog)
    assert "audio, text of " + random_store in warning
    record = read_run_record(run)
    assert (record.kind, record.name, record.config["epochs"]) == ("pretrain", "multi_cont", 2)
    assert record.device == "cpu" and record.host and record.command
    (store,) = record.stores
    assert store.store_id == open_store(random_store).store_id
    assert set(store.feature_space) == {"audio", "text"}
    assert record.random_weights == {random_store: RANDOM}
    assert record.metrics["loss"] == read_metrics(run, "epoch")[-1]["loss"]
    header = read_metrics(run)[0]
    assert header["kind"] == "run" and header["random_weights"] == {random_store: RANDOM}


@pytest.mark.slow
def test_an_evaluation_never_replaces_another(random_store: str, pretrained: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    args = ["eval", "--store", random_store, "--run", str(pretrained), "--protocol", "linear",
            "--preset", "cpu", "--device", "cpu", "--set", "epochs=2"]
    with caplog.at_level(logging.WARNING):
        first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert len(_warnings(caplog)) == 1  # the evaluated store is also the pretraining one
    folder = pretrained / "eval" / "linear"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["random_weights"] == {random_store: RANDOM}
    record = read_run_record(folder)
    assert (record.kind, record.name, record.config["epochs"]) == ("eval", "linear", 2)
    assert [s.role for s in record.stores] == ["evaluated", "pretrained_on"]
    assert record.metrics["test/f1_weighted"] == metrics["summary"]["test"]["f1_weighted"]["mean"]
    before = (folder / "metrics.json").read_bytes()

    again = runner.invoke(app, args)
    assert again.exit_code == 2
    said = " ".join(again.output.split())
    assert "already holds this evaluation" in said and "--overwrite" in said

    other = runner.invoke(app, [*args, "--set", "epochs=3"])
    assert other.exit_code == 0, other.output
    (own,) = [p for p in (pretrained / "eval").iterdir() if p.name.startswith("linear-")]
    assert read_run_record(own).config["epochs"] == 3
    assert (folder / "metrics.json").read_bytes() == before  # the first one stays

    into = runner.invoke(app, [*args, "--set", "epochs=3", "--out", str(folder)])
    assert into.exit_code == 2
    said = " ".join(into.output.split())
    assert "holds another evaluation" in said and "config.epochs: 2 -> 3" in said
    assert "--overwrite" in said and (folder / "metrics.json").read_bytes() == before

    replaced = runner.invoke(app, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


@pytest.mark.slow
def test_runs_list_and_diff(random_store: str, pretrained: Path, tmp_path: Path) -> None:
    evals = {}
    for epochs in (2, 3):
        out = tmp_path / f"e{epochs}"
        result = runner.invoke(app, ["eval", "--store", random_store, "--run", str(pretrained),
                                     "--protocol", "linear", "--preset", "cpu", "--device",
                                     "cpu", "--set", f"epochs={epochs}", "--out", str(out)])
        assert result.exit_code == 0, result.output
        evals[epochs] = out
    rows = list_runs(tmp_path)
    assert [(r.folder, r.kind, r.name) for r in rows] == [(evals[2], "eval", "linear"),
                                                          (evals[3], "eval", "linear")]
    assert all(r.headline.startswith("test/f1_weighted ") and r.random_weights for r in rows)
    listed = runner.invoke(app, ["runs", "list", str(tmp_path)])
    assert listed.exit_code == 0 and "e3" in listed.output and "linear" in listed.output

    diff = diff_runs(evals[2], evals[3])
    paths = {d.path: (d.a, d.b) for d in diff.differences}
    assert paths["config.epochs"] == (2, 3) and diff.same_stores
    assert all(p.split(".")[0] in ("config", "metrics") for p in paths)
    shown = runner.invoke(app, ["runs", "diff", str(evals[2]), str(evals[3])])
    assert shown.exit_code == 0 and "config.epochs" in shown.output
    against_run = diff_runs(evals[2], pretrained)
    assert {"kind", "name"} <= {d.path for d in against_run.differences}

    missing = runner.invoke(app, ["runs", "diff", str(evals[2]), str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no run record" in missing.output
