"""The training program end to end on CPU: every objective learns, resume is exact, failures
are named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from heads.checkpoint import CheckpointError, load_checkpoint
from heads.config import config_from_dict
from heads.data import DataError, InMemoryFeatures
from heads.metrics_log import read_metrics
from heads.pretrain.objectives import OBJECTIVES
from heads.pretrain.train import NonFiniteLossError, lr_at, run_pretrain
from pipeline.store import open_store


def _run(store: str, objective: str, out: Path, cpu: dict, **kw) -> Path:
    kw.setdefault("progress", False)
    return run_pretrain(store, objective, out, overrides=kw.pop("overrides", cpu),
                        device="cpu", **kw)


# ------------------------------------------------------------------------------ learning rate

def test_lr_schedule_warms_up_then_anneals_with_warm_restarts() -> None:
    kw = {"base_lr": 1.0, "steps_per_epoch": 10, "restart_epochs": 2, "restart_mult": 2,
          "min_lr": 0.0}
    assert lr_at(0, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(0.5)  # half way through the first 2-epoch period
    assert lr_at(19, **kw) < 0.01
    assert lr_at(20, **kw) == pytest.approx(1.0)  # restart; the next period lasts 4 epochs
    assert lr_at(40, **kw) == pytest.approx(0.5)
    assert lr_at(60, **kw) == pytest.approx(1.0)
    warm = lr_at(1, **kw, warmup_steps=4)
    assert warm == pytest.approx(0.5) and lr_at(4, **kw, warmup_steps=4) == pytest.approx(1.0)
    assert [lr_at(s, **kw) for s in range(50)] == [lr_at(s, **kw) for s in range(50)]


def test_the_reference_schedule_warms_up_then_decays_by_epoch() -> None:
    """The reference code's pretraining: LinearLR over 5 epochs, then ExponentialLR(0.75)
    stepped per epoch (``--preset reference``)."""
    kw = {"base_lr": 1.0, "steps_per_epoch": 10, "restart_epochs": 2, "restart_mult": 2,
          "min_lr": 0.0, "warmup_steps": 50, "schedule": "exponential", "decay": 0.75}
    assert lr_at(24, **kw) == pytest.approx(0.5)  # half way through the warm-up
    assert lr_at(50, **kw) == lr_at(59, **kw) == pytest.approx(1.0)  # the first whole epoch
    assert lr_at(60, **kw) == pytest.approx(0.75)
    assert lr_at(50 + 10 * 7 + 3, **kw) == pytest.approx(0.75 ** 7)  # no restart, no floor


# ----------------------------------------------------------------------------- every objective

@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_learns_on_a_synthetic_store(name: str, store_views: str, cpu: dict,
                                                     tmp_path: Path) -> None:
    cpu["clustering"]["start_epoch"] = 0  # so the first epoch has the same parts as the last
    run = _run(store_views, name, tmp_path / name, cpu, epochs=5)
    epochs = read_metrics(run, "epoch")
    assert len(epochs) == 5
    assert epochs[-1]["loss"] < epochs[0]["loss"], [e["loss"] for e in epochs]
    steps = read_metrics(run, "step")
    assert len(steps) == 5 * 4  # 288 train rows, batch 64, drop_last
    for part in OBJECTIVES[name].parts:
        assert all(math.isfinite(s[part]) for s in steps)
    assert {"lr", "samples_per_s", "std/video"} <= set(steps[-1])
    assert "val/loss" in epochs[-1]
    if "clustering" in OBJECTIVES[name].parts:
        assert len(steps[-1]["occupancy"]) == 8
        assert sum(steps[-1]["occupancy"]) == pytest.approx(1.0)


def test_modality_subsets_train(store_1view: str, cpu: dict, tmp_path: Path) -> None:
    run = _run(store_1view, "conclugen", tmp_path / "no_text", cpu, epochs=2,
               modalities=["video", "audio"])
    step = read_metrics(run, "step")[-1]
    assert [k for k in step if k.startswith(("mms/", "reconstruction/"))] == \
        ["mms/video-audio", "reconstruction/video", "reconstruction/audio"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["modalities"] == ["video", "audio"]


def test_instance_cont_refuses_a_store_with_one_view(store_1view: str, cpu: dict,
                                                     tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"1 view\(s\) per sample.*--views 3"):
        _run(store_1view, "instance_cont", tmp_path / "run", cpu, epochs=1)


def test_a_store_without_frames_3d_trains_on_frames_2d(store_no3d: str, cpu: dict,
                                                       tmp_path: Path) -> None:
    run = _run(store_no3d, "multi_cont", tmp_path / "run", cpu, epochs=1)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["modality_keys"]["video"] == ["frames_2d"]
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload.model_spec.input_dims == {"video": 64, "audio": 32, "text": 24}


# ------------------------------------------------------------------------------------- resume

@pytest.mark.parametrize("objective, placement", [("conclugen", "memory"),
                                                  ("conclu", "stream")])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(objective: str, placement: str,
                                                              store_1view: str, cpu: dict,
                                                              tmp_path: Path) -> None:
    cpu["data"]["placement"] = placement  # clustering starts at epoch 1: before and after the cut
    straight = _run(store_1view, objective, tmp_path / "straight", cpu, epochs=4)
    _run(store_1view, objective, tmp_path / "split", cpu, epochs=2)
    with (tmp_path / "split" / "metrics.jsonl").open("a") as f:  # logged after the checkpoint
        f.write(json.dumps({"kind": "step", "epoch": 2, "step": 9, "loss": 1.0}) + "\n")
    split = run_pretrain(store_1view, objective, tmp_path / "split", epochs=4, resume=True,
                         device="cpu", progress=False)
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert (a.step, a.epoch) == (b.step, b.epoch) == (16, 4)
    assert a.model.keys() == b.model.keys()
    for key in a.model:
        assert torch.equal(a.model[key], b.model[key]), key
    for i, state in a.optimizer["state"].items():
        assert torch.equal(state["exp_avg"], b.optimizer["state"][i]["exp_avg"])
    centroids = a.objective_state["clustering"]["kmeans"]["centroids"]
    assert torch.equal(centroids, b.objective_state["clustering"]["kmeans"]["centroids"])
    assert read_metrics(straight, "step") != []
    strip = [{k: v for k, v in r.items() if k not in ("samples_per_s", "time_s")}
             for r in read_metrics(straight)]
    assert strip == [{k: v for k, v in r.items() if k not in ("samples_per_s", "time_s")}
                     for r in read_metrics(split)]


def test_resume_refuses_other_features(store_1view: str, store_maker, cpu: dict,
                                       tmp_path: Path) -> None:
    run = _run(store_1view, "multi_cont", tmp_path / "run", cpu, epochs=1)
    other = store_maker(tmp_path / "other", seed=1, n=200, keys=("frames_2d", "audio", "text"))
    with pytest.raises(CheckpointError, match="trained on store_id .* has store_id"):
        run_pretrain(str(other.url), "multi_cont", run, epochs=2, resume=True, device="cpu",
                     progress=False)


def test_resume_refuses_changed_settings_and_runs_never_overwrite(store_1view: str, cpu: dict,
                                                                  tmp_path: Path) -> None:
    run = _run(store_1view, "multi_cont", tmp_path / "run", cpu, epochs=1)
    with pytest.raises(CheckpointError, match="already holds a run"):
        _run(store_1view, "multi_cont", run, cpu, epochs=1)
    changed = {**cpu, "optim": {"lr": 0.5}}
    with pytest.raises(CheckpointError, match="optim.lr: 0.001 -> 0.5"):
        run_pretrain(store_1view, "multi_cont", run, overrides=changed, resume=True,
                     device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="trained 'multi_cont', not 'congen'"):
        run_pretrain(store_1view, "congen", run, resume=True, device="cpu", progress=False)


# ---------------------------------------------------------------------------- what is written

def test_run_folder_holds_config_metrics_and_checkpoints(store_1view: str, cpu: dict,
                                                         tmp_path: Path) -> None:
    cpu["output"]["keep_checkpoints"] = 2
    run = _run(store_1view, "congen", tmp_path / "run", cpu, epochs=3, progress=True)
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert files == ["epoch-0002.pt", "epoch-0003.pt", "last.pt"]
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload.store_id == open_store(store_1view).store_id
    assert config_from_dict(payload.config) == cfg
    assert cfg.objective == "congen" and cfg.epochs == 3
    assert payload.layout == {"video": ("frames_2d", "frames_3d"), "audio": ("audio",),
                              "text": ("text",)}
    assert payload.model and payload.optimizer["state"] and payload.rng["generator"] is not None
    kinds = [r["kind"] for r in read_metrics(run)]
    assert kinds == ["run"] + ["step"] * 4 + ["epoch"] + ["step"] * 4 + ["epoch"] + ["step"] * 4 + \
        ["epoch"]


# ------------------------------------------------------------------------------ non-finite loss

def test_a_nan_feature_stops_the_run_naming_step_part_and_checkpoint(
        store_1view: str, cpu: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = InMemoryFeatures.epoch
    calls = []

    def poisoned(self: InMemoryFeatures, generator: torch.Generator):
        calls.append(1)
        for i, batch in enumerate(original(self, generator)):
            if len(calls) == 2 and i == 1:
                batch["audio"][0, 0] = float("nan")
            yield batch

    monkeypatch.setattr(InMemoryFeatures, "epoch", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        _run(store_1view, "multi_cont", run, cpu, epochs=3)
    message = str(info.value)
    assert "step 6 (epoch 1)" in message  # 4 steps per epoch: the second of epoch 1
    assert "mms/video-audio=nan" in message and "mms/audio-text=nan" in message
    assert "mms/video-text" not in message
    assert str(run / "checkpoints" / "last.pt") in message
    assert info.value.step == 6 and "mms/video-audio" in info.value.parts
    assert load_checkpoint(run / "checkpoints" / "last.pt").step == 4  # untouched


def test_a_diverging_lr_is_caught_before_the_weights_are_updated(store_1view: str, cpu: dict,
                                                                 tmp_path: Path) -> None:
    cpu["optim"]["lr"] = 1e30
    with pytest.raises(NonFiniteLossError, match="reconstruction.*last good checkpoint: none"):
        _run(store_1view, "generative", tmp_path / "run", cpu, epochs=2)
