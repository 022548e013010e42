"""Resolution of the pretraining config: paper defaults, layers, strictness, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from heads.config import (ConfigError, config_from_dict, deep_merge, expand_dotted,
                          resolve_config)
from heads.pretrain.objectives import OBJECTIVES


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_resolves_to_the_paper_appendix_defaults(name: str) -> None:
    cfg = resolve_config(name)
    assert cfg.objective == name
    assert cfg.data.batch_size == 4096
    assert cfg.model.representation_dim == 4096 and cfg.model.projection_dim == 512
    assert (cfg.clustering.clusters, cfg.clustering.queue_batches,
            cfg.clustering.start_epoch) == (8, 4, 12)
    assert cfg.optim.weight_decay == pytest.approx(3.2e-4)
    assert cfg.loss.mms_margin == pytest.approx(0.001)
    expected_lr = 9e-5 if name in ("conclugen", "conclu") else 3.6e-4
    assert cfg.optim.lr == pytest.approx(expected_lr)
    expected = ("video",) if name == "instance_cont" else ("video", "audio", "text")
    assert cfg.modalities == expected


def test_layers_apply_in_order() -> None:
    cfg = resolve_config("conclu", preset="cpu", overrides={"model.projection_dim": 8,
                                                            "optim": {"lr": 0.5}},
                         modalities=["video", "text"], epochs=3, seed=11)
    assert cfg.model.representation_dim == 64  # the preset
    assert cfg.model.projection_dim == 8  # a dotted override beats the preset
    assert cfg.optim.lr == 0.5 and cfg.optim.weight_decay == pytest.approx(3.2e-4)
    assert (cfg.modalities, cfg.epochs, cfg.seed) == (("video", "text"), 3, 11)


def test_partial_and_layered_config_files(tmp_path: Path) -> None:
    partial = tmp_path / "small.yaml"
    partial.write_text("epochs: 2\nmodel: {representation_dim: 32}\n")
    cfg = resolve_config("multi_cont", config=partial)
    assert cfg.epochs == 2 and cfg.model.representation_dim == 32
    assert cfg.model.projection_dim == 512

    layered = tmp_path / "layered.yaml"
    layered.write_text(yaml.safe_dump({"defaults": {"epochs": 7},
                                       "objectives": {"generative": {"modalities": ["audio"]}}}))
    cfg = resolve_config("generative", config=layered)
    assert cfg.epochs == 7 and cfg.modalities == ("audio",)
    assert cfg.data.batch_size == 4096  # dataclass defaults fill what the file leaves out


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = resolve_config("conclugen", preset="cpu")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert config_from_dict(yaml.safe_load(path.read_text())) == cfg
    assert resolve_config("conclugen", config=path) == cfg


@pytest.mark.parametrize("overrides, match", [
    ({"model.representaton_dim": 3}, "unknown key.*representaton_dim"),
    ({"data": {"batch_size": "big"}}, "batch_size: expected int"),
    ({"data.placement": "gpu"}, "'gpu' is not one of"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"loss.weights": {"contrast": 1.0}}, "unknown part"),
    ({"modalities": ["video", "depth"]}, "no entry in modality_keys"),
])
def test_strictness(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_config("multi_cont", overrides=overrides)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="--preset 'gpu': unknown preset name.s. gpu; valid: "
                                          "one of paper.reference, optionally with one of cpu"):
        resolve_config("conclu", preset="gpu")


@pytest.mark.parametrize("preset, match", [
    ("paper,reference", "2 fidelity names .paper, reference."),
    ("cpu,cpu", "2 size names"),
    ("reference,gpu", "unknown preset name.s. gpu"),
])
def test_two_presets_of_one_axis_or_an_unknown_name_are_one_line(preset: str,
                                                                  match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        resolve_config("conclu", preset=preset)
    assert "\n" not in str(err.value)


def test_presets_combine_one_per_axis() -> None:
    paper, cpu = resolve_config("conclugen"), resolve_config("conclugen", preset="cpu")
    reference = resolve_config("conclugen", preset="reference")
    both = resolve_config("conclugen", preset="cpu,reference")
    assert resolve_config("conclugen", preset="paper,cpu") == cpu
    assert (paper.preset, cpu.preset, both.preset) == ("paper", "paper,cpu", "reference,cpu")
    # the reference's schedule and choices, with the cpu preset's sizes
    assert (reference.optim.schedule, reference.optim.warmup_epochs, reference.optim.decay) == \
        ("exponential", 5.0, 0.75)
    assert (paper.optim.schedule, paper.optim.warmup_epochs) == ("cosine_restarts", 0.0)
    assert reference.loss.combine == "mean" and reference.model.shared_projection
    assert both.optim.schedule == "exponential" and both.loss.combine == "mean"
    assert both.model.representation_dim == cpu.model.representation_dim == 64
    assert both.optim.lr == cpu.optim.lr


def test_a_run_config_for_another_objective_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(resolve_config("conclu").to_dict()))
    with pytest.raises(ConfigError, match="written for objective 'conclu', not 'congen'"):
        resolve_config("congen", config=path)


def test_merge_helpers() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert expand_dotted({"a.b": 1, "a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
