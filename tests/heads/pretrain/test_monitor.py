"""The online monitor: k-NN (and linear) accuracy of the representations on a labelled store every
few epochs, in metrics.jsonl; a store of another feature space is refused naming both stores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from heads.checkpoint import load_checkpoint
from heads.metrics_log import read_metrics
from heads.pretrain.monitor import (MonitorError, MonitorSettings, knn_predict,
                                    linear_probe_accuracy)
from heads.pretrain.train import run_pretrain


def test_knn_votes_are_weighted_by_similarity() -> None:
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0],
                                                       [0.1, 0.9], [0.2, 0.8]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    assert knn_predict(bank, labels, queries, classes=2, k=2).tolist() == [0, 1]
    # all five vote: class 1 has three neighbours, but the two close ones of class 0 outweigh
    # them (exp(similarity / 0.07)); unweighted votes would say 1
    assert knn_predict(bank, labels, queries[:1], classes=2, k=5).tolist() == [0]
    assert knn_predict(bank, labels, queries[:1], classes=2, k=5,
                       temperature=1e6).tolist() == [1]


def test_the_linear_probe_separates_separable_classes() -> None:
    x = torch.nn.functional.normalize(torch.randn(64, 8, generator=torch.Generator()
                                                  .manual_seed(0)), dim=1)
    y = (x[:, 0] > 0).long()
    assert linear_probe_accuracy(x, y, x, y, classes=2) > 0.9


def test_the_monitor_logs_accuracy_every_n_epochs_without_changing_the_run(
        store_1view: str, cpu: dict, tmp_path: Path) -> None:
    kwargs = dict(overrides=cpu, modalities=["audio", "text"], epochs=3, device="cpu",
                  progress=False)
    plain = run_pretrain(store_1view, "multi_cont", tmp_path / "plain", **kwargs)
    watched = run_pretrain(store_1view, "multi_cont", tmp_path / "watched", **kwargs,
                           monitor=MonitorSettings(store_1view, every=2, linear=True))
    epochs = read_metrics(watched, "epoch")
    monitored = [r["epoch"] for r in epochs if "monitor/knn_accuracy" in r]
    assert monitored == [1, 2]  # every 2nd epoch, and the last
    for record in epochs[1:]:
        # 4 well-separated classes: far above chance (0.25)
        assert 0.5 < record["monitor/knn_accuracy"] <= 1
        assert 0.5 < record["monitor/linear_accuracy"] <= 1
        assert record["monitor/time_s"] > 0
    # no gradient, no draw from the run's generators: the same weights as without it
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt").model for r in (plain, watched))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_monitor_store_of_another_feature_space_is_refused_naming_both(
        store_1view: str, store_maker, tmp_path: Path) -> None:
    other = tmp_path / "other"
    store_maker(other, n=96, seed=5)  # its own content hash is its feature space
    with pytest.raises(MonitorError) as err:
        run_pretrain(store_1view, "multi_cont", tmp_path / "run", preset="cpu",
                     modalities=["audio", "text"], epochs=1, device="cpu", progress=False,
                     monitor=MonitorSettings(str(other)))
    message = str(err.value)
    assert str(other) in message and store_1view in message and "audio: " in message
    assert not (tmp_path / "run" / "metrics.jsonl").exists()

    result = CliRunner().invoke(app, [
        "pretrain", "--store", store_1view, "--out", str(tmp_path / "cli-run"),
        "--objective", "multi_cont", "--modalities", "audio,text", "--preset", "cpu",
        "--epochs", "1", "--device", "cpu", "--monitor-store", str(other)])
    assert result.exit_code == 2, result.output
    assert "--monitor-store" in result.output and "Traceback" not in result.output


def test_monitor_settings_are_checked() -> None:
    with pytest.raises(MonitorError, match="--monitor-every"):
        MonitorSettings("store", every=0)


def test_cli_pretrain_with_the_monitor(store_1view: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "pretrain", "--store", store_1view, "--out", str(tmp_path / "run"),
        "--objective", "multi_cont", "--modalities", "audio,text", "--preset", "cpu",
        "--epochs", "2", "--device", "cpu", "--monitor-store", store_1view,
        "--monitor-every", "1", "--monitor-linear"])
    assert result.exit_code == 0, result.output
    epochs = read_metrics(tmp_path / "run", "epoch")
    assert [sorted(k for k in r if k.startswith("monitor/")) for r in epochs] == [
        ["monitor/knn_accuracy", "monitor/linear_accuracy", "monitor/time_s"]] * 2
