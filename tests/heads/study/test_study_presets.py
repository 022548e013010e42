"""``cli study --preset``: the paper's and the reference code's pipelines both run (with the
cpu size), every run and evaluation is resolved with the preset, and the tables name it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from heads.study.presets import preset_lines
from heads.study.run import run_study
from heads.study.types import StoreFacts, Target
from pipeline.presets import Preset
from tests.heads.study.test_study import labelled, synthetic_store


@pytest.mark.slow
def test_the_reference_preset_runs_and_its_tables_name_it(tmp_path: Path) -> None:
    vox = synthetic_store(tmp_path / "vox", dataset="voxceleb2", labels=None, n=96, seed=1,
                          views=3)
    meld = synthetic_store(tmp_path / "meld", dataset="meld", labels=labelled("meld"), n=100,
                           seed=2, views=3)
    out = run_study(meld.url, tmp_path / "out", pretrain_store=vox.url, preset="reference,cpu",
                    systems=["conclugen"], extras=False, device="cpu", progress=False)
    assert json.loads((out / "study.json").read_text())["preset"] == "reference,cpu"
    text = (out / "meld" / "results.md").read_text()
    assert "Preset: `reference,cpu` (the reference column of docs/CHOICES.md)" in text
    assert "Quick: the cpu presets" in text
    # the pretraining and probe views, against the reference code's 10
    assert "The downstream store holds 2 augmented view(s) per clip" in text
    assert "Instance-Cont pairs two of them per clip and epoch; the reference code drew " \
           "from 10" in text
    # the synthetic stores' backbones are not the reference's: the caption names each
    assert "text backbone arrays (the reference preset: emotion-distilroberta)" in text
    config = yaml.safe_load((out / "runs" / "conclugen" / "config.yaml").read_text())
    assert config["preset"] == "reference,cpu"
    assert config["optim"]["schedule"] == "exponential" and config["loss"]["combine"] == "mean"
    assert config["model"]["representation_dim"] == 64  # the cpu size
    probe = json.loads(next((out / "meld" / "eval" / "conclugen").glob("*/metrics.json"))
                       .read_text())
    assert probe["preset"] == "reference,cpu"
    assert probe["config"]["optim"]["weight_decay"] == pytest.approx(4e-3)  # MELD's reference
    assert probe["train_views"].startswith("augmented: 1 of 2")


def test_two_names_of_one_axis_are_refused_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["study", "--store", str(tmp_path / "none"),
                                      "--out", str(tmp_path / "out"),
                                      "--preset", "paper,reference"])
    assert result.exit_code == 2, result.output
    assert "--preset 'paper,reference': 2 fidelity names" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def _facts(views: int, text: str) -> StoreFacts:
    return StoreFacts("s", "0" * 64, "meld", frozenset({"audio", "text"}), views, ("train",), 7,
                      False, {}, {}, (), {"audio": {"backbone": "resdavenet"},
                                          "text": {"backbone": text}})


def test_the_caption_names_the_preset_the_views_and_what_the_stores_differ_in() -> None:
    paper_stores = Target("meld", _facts(1, "distilbert-sst2"), _facts(11, "distilbert-sst2"),
                          Path("o"), Path("r"), own=False)
    (paper,) = preset_lines(Preset("paper"), paper_stores)
    assert paper.startswith("Preset: `paper` (the paper column of docs/CHOICES.md).")
    assert "The downstream store holds no augmented views (clean features only)." in paper
    assert "The pretraining store holds 10 augmented view(s) per clip" in paper
    assert "differ" not in paper  # the stores are the paper preset's
    (reference,) = preset_lines(Preset("reference", "cpu"), paper_stores)
    assert reference.startswith("Preset: `reference,cpu`")
    assert reference.endswith("Where the stores differ from the preset's extraction: text "
                              "backbone distilbert-sst2 (the reference preset: "
                              "emotion-distilroberta).")
