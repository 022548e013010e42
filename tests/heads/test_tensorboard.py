"""A pretraining run writes its losses to TensorBoard: `tensorboard --logdir runs/` shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from heads.metrics_log import TRAIN_AND_VAL, read_metrics
from heads.pretrain.train import run_pretrain


def test_pretraining_event_files_hold_the_losses(tmp_path: Path, store_maker) -> None:
    store = tmp_path / "store"
    store_maker(store, n=160, keys=("frames_2d", "audio", "text"))
    runs = tmp_path / "runs"
    # The cpu preset as it is shipped: TensorBoard is on without being asked for.
    run = run_pretrain(str(store), "conclugen", runs / "conclugen", preset="cpu", epochs=2,
                       device="cpu", progress=False)

    # What `tensorboard --logdir runs/` does: every folder of event files under runs/ is a run.
    logs = EventMultiplexer().AddRunsFromDirectory(str(runs)).Reload()
    assert list(logs.Runs()) == ["conclugen/tensorboard"]
    scalars = logs.Runs()["conclugen/tensorboard"]["scalars"]

    steps = read_metrics(run, "step")
    epochs = read_metrics(run, "epoch")
    assert len(epochs) == 2 and steps
    for kind, records in (("step", steps), ("epoch", epochs)):
        for part in ("loss", "mms/video-audio", "mms/video-text", "mms/audio-text",
                     "reconstruction/video"):
            tag = f"{kind}/{part}"
            assert tag in scalars, f"{tag} not in {sorted(scalars)}"
            events = logs.Scalars("conclugen/tensorboard", tag)
            assert [e.step for e in events] == [r["step"] for r in records]
            assert [e.value for e in events] == pytest.approx([r[part] for r in records],
                                                              rel=1e-6)
    assert "step/lr" in scalars and "epoch/val/loss" in scalars


def test_an_evaluation_writes_its_epochs_and_metrics(tmp_path: Path, store_maker) -> None:
    from heads.evaluation.run import run_eval

    store = tmp_path / "store"
    store_maker(store, n=160, keys=("audio", "text"))
    metrics = run_eval(str(store), run=None, protocol="supervised", out=tmp_path / "eval",
                       preset="cpu", overrides={"epochs": 3}, seeds=2, device="cpu",
                       progress=False)
    assert metrics["files"]["tensorboard"] == "tensorboard"
    logs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "eval")).Reload()
    (name,) = logs.Runs()
    scalars = logs.Runs()[name]["scalars"]
    for seed, run in zip(metrics["seeds"], metrics["runs"], strict=True):
        events = logs.Scalars(name, f"seed{seed}/val_f1")
        assert [e.value for e in events] == pytest.approx([h["val_f1"] for h in run["history"]])
    (event,) = logs.Scalars(name, "val/accuracy")
    assert event.value == pytest.approx(metrics["summary"]["val"]["accuracy"]["mean"])
    assert "train/f1_weighted" in scalars


def train_val_charts(logs: EventMultiplexer, run: str) -> dict[str, list[str]]:
    """The Custom Scalars charts of ``run``'s "train and val" section: title -> tag regexes."""
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    (event,) = logs.Tensors(run, metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    (section,) = [c for c in layout.category if c.title == TRAIN_AND_VAL]
    return {chart.title: list(chart.multiline.tag) for chart in section.chart}


def test_train_and_val_losses_share_one_chart(tmp_path: Path, store_maker) -> None:
    import re

    from heads.evaluation.run import run_eval

    store = tmp_path / "store"
    store_maker(store, n=160, keys=("audio", "text"))
    run = run_pretrain(str(store), "multi_cont", tmp_path / "run", preset="cpu", epochs=1,
                       modalities=["audio", "text"],
                       device="cpu", progress=False)
    logs = EventMultiplexer().AddRunsFromDirectory(str(run)).Reload()
    (name,) = logs.Runs()
    charts = train_val_charts(logs, name)
    scalars = logs.Runs()[name]["scalars"]
    # each chart's two curves are tags the run wrote: the train part and its val part
    assert set(charts) >= {"loss", "mms", "mms/audio-text"}
    for part, patterns in charts.items():
        matched = [[t for t in scalars if re.fullmatch(p, t)] for p in patterns]
        assert matched == [[f"epoch/{part}"], [f"epoch/val/{part}"]], part

    metrics = run_eval(str(store), run=None, protocol="supervised", out=tmp_path / "eval",
                       preset="cpu", overrides={"epochs": 2}, seeds=2, device="cpu",
                       progress=False)
    logs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "eval")).Reload()
    (name,) = logs.Runs()
    charts = train_val_charts(logs, name)
    assert sorted(charts) == [f"seed{s} loss" for s in metrics["seeds"]]
    for seed in metrics["seeds"]:
        assert [t for t in logs.Runs()[name]["scalars"]
                if any(re.fullmatch(p, t) for p in charts[f"seed{seed} loss"])] == [
            f"seed{seed}/train_loss", f"seed{seed}/val_loss"]
