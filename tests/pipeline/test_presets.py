"""``--preset``: two axes (fidelity paper|reference, size cpu), one name of each, and the
extraction preset's settings."""

from __future__ import annotations

import logging

import pytest

from pipeline.config import ConfigError
from pipeline.extract_config import DEFAULT_BACKBONES, load_extract_config
from pipeline.presets import (EXTRACT_NEEDS_FILE, EXTRACT_NOT_REPRODUCED, Preset, PresetError,
                              extract_settings, parse_preset, store_differences)


@pytest.mark.parametrize("text, fidelity, size, name", [
    (None, "paper", None, "paper"),
    ("", "paper", None, "paper"),
    ("cpu", "paper", "cpu", "paper,cpu"),
    ("reference", "reference", None, "reference"),
    ("cpu,reference", "reference", "cpu", "reference,cpu"),
    (" reference , cpu ", "reference", "cpu", "reference,cpu"),
])
def test_one_name_per_axis_in_any_order(text: str | None, fidelity: str, size: str | None,
                                        name: str) -> None:
    preset = parse_preset(text)
    assert (preset.fidelity, preset.size, preset.name) == (fidelity, size, name)
    assert preset.layers == tuple(n for n in (fidelity, size) if n)


@pytest.mark.parametrize("text, match", [
    ("paper,reference", "--preset 'paper,reference': 2 fidelity names"),
    ("cpu,cpu", "2 size names"),
    ("gpu", "unknown preset name.s. gpu; valid: one of paper.reference"),
])
def test_a_bad_preset_is_one_line_naming_the_option(text: str, match: str) -> None:
    with pytest.raises(PresetError, match=match) as err:
        parse_preset(text)
    assert isinstance(err.value, ConfigError) and "\n" not in str(err.value)


def test_the_reference_extraction_overrides_what_it_reproduces(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.presets"):
        chosen, settings = extract_settings("reference", {})
    cfg = load_extract_config(**settings)
    assert chosen == Preset("reference")
    assert cfg.choices.backbones["text"] == "emotion-distilroberta"
    assert cfg.choices.backbones["frames_2d"] == DEFAULT_BACKBONES["frames_2d"]
    assert (cfg.features.augment.jitter_p, cfg.features.augment.grayscale_p) == (0.2, 0.16)
    assert cfg.choices.preset == "reference"  # recorded among the store's choices
    # what it cannot reproduce is said, one warning each
    assert len([r for r in caplog.records if "not reproduced" in r.message]) == \
        len(EXTRACT_NOT_REPRODUCED)


def test_the_reference_extraction_asks_for_voxceleb2s_list(
        caplog: pytest.LogCaptureFixture) -> None:
    def said(**given: object) -> bool:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pipeline.presets"):
            extract_settings("reference", {}, **given)  # type: ignore[arg-type]
        return "pass --annotations LIST" in caplog.text

    assert said(dataset="voxceleb2")
    assert not said(dataset="voxceleb2", file_given=True)
    assert not said(dataset="meld")
    assert "534,616" in EXTRACT_NEEDS_FILE["voxceleb2"][1]


def test_the_paper_extraction_is_the_default_config_and_explicit_backbones_win() -> None:
    _, paper = extract_settings(None, {})
    chosen, default = load_extract_config(**paper), load_extract_config()
    assert chosen.features == default.features and chosen.run == default.run
    assert chosen.choices.backbones == default.choices.backbones
    assert chosen.choices.preset == "paper"
    _, explicit = extract_settings("reference", {"text": "distilbert-sst2"})
    assert load_extract_config(**explicit).choices.backbones["text"] == "distilbert-sst2"


def test_extraction_has_no_size() -> None:
    with pytest.raises(PresetError, match="'cpu' sizes the heads"):
        extract_settings("reference,cpu", {})


def test_store_differences_name_each_backbone_the_preset_did_not_choose() -> None:
    paper = dict(DEFAULT_BACKBONES)
    assert store_differences(Preset("paper"), paper) == []
    assert store_differences(Preset("reference", "cpu"), paper) == [
        "text backbone distilbert-sst2 (the reference preset: emotion-distilroberta)"]
    assert store_differences(Preset("paper"), {**paper, "text": "emotion-distilroberta"}) == [
        "text backbone emotion-distilroberta (the paper preset: distilbert-sst2)"]
