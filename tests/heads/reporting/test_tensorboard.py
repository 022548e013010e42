"""A pretraining run writes its losses to TensorBoard: `tensorboard --logdir runs/` shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from heads.reporting.metrics_log import read_metrics
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
