"""docs/CHOICES.md cannot drift: every value of every row is the code's, every paper
attribution is in the project's notes of the paper, and the two presets' table is complete.

The main table's ``key`` column names where the defaults live (training, evaluation or
extraction config keys, or constants of the code); the default column's backticked values, one
per key in order, read as YAML, must equal what the keys resolve to. The paper column quotes
the statements of the row's paper in ``docs/PAPER-NOTES.md`` (CLEF's or AVCE's section for the
rows named so, ConCluGen's for the others) or the datasets' section, or says "not stated". The
presets' table holds every key whose ``paper`` and ``reference`` values differ, each checked
against both presets.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from heads.config import resolve_config
from heads.eval_config import resolve_eval_config
from pipeline.extract_config import load_extract_config
from pipeline.presets import extract_settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHOICES = DOCS / "CHOICES.md"
NOTES = DOCS / "PAPER-NOTES.md"
COLUMNS = ["choice", "paper", "reference code", "this project's default", "switch", "key"]
PRESET_COLUMNS = ["choice", "key", "`paper`", "`reference`"]
#: The other systems whose rows (a choice named "CLEF: ..." or "AVCE: ...") quote their own
#: paper's section of the notes; every other row quotes ConCluGen's.
OTHER_PAPERS = ("CLEF", "AVCE")
#: The notes' section every row may quote: facts of the datasets' releases.
DATASETS_NOTES = "The datasets"
#: The datasets whose evaluation configs the presets' completeness check resolves.
DATASETS = ("meld", "caer", "mosei")


def table(heading: str, columns: list[str], text: str | None = None) -> list[dict[str, str]]:
    """The rows of the table whose header row starts ``heading``, as column -> cell text."""
    lines = [line.strip() for line in (text or CHOICES.read_text(encoding="utf-8")).splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header == columns
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == len(columns), line
        rows.append(dict(zip(columns, cells, strict=True)))
    return rows


def keys_of(row: dict[str, str]) -> list[str]:
    """The row's keys: one or more backticked keys, comma-separated."""
    keys = [k.strip() for k in row["key"].split(",")]
    assert all(re.fullmatch(r"`[^`]+`", k) for k in keys), \
        f"the key cell must be backticked keys, comma-separated: {row['key']!r}"
    return [k.strip("`") for k in keys]


def _attr(obj: Any, path: list[str]) -> Any:
    for name in path:
        if callable(obj) and not isinstance(obj, type) and inspect.isfunction(obj):
            obj = inspect.signature(obj).parameters[name].default
        else:
            obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    return obj


def resolve(key: str, preset: str = "paper") -> Any:
    """What a key of the table resolves to under ``preset`` (constants: the same for both)."""
    kind, _, rest = key.partition(":")
    if kind == "train":
        objective, _, path = rest.partition(":")
        return _attr(resolve_config(objective, preset=preset), path.split("."))
    if kind == "eval":
        dataset, _, path = rest.partition(":")
        return _attr(resolve_eval_config(dataset, preset=preset), path.split("."))
    if kind == "extract":  # a flat setting name, as in the config file: found in its part
        cfg, path = load_extract_config(**extract_settings(preset, {})[1]), rest.split(".")
        part = next(p for p in (cfg.choices, cfg.features, cfg.run) if hasattr(p, path[0]))
        return _attr(part, path)
    if kind == "code":
        module, _, path = rest.partition(":")
        return _attr(importlib.import_module(module), path.split("."))
    raise ValueError(f"unknown key kind {kind!r} in {key!r}")


def _same(documented: Any, actual: Any) -> bool:
    if isinstance(actual, tuple):
        actual = list(actual)
    if isinstance(documented, list) and isinstance(actual, list):
        return len(documented) == len(actual) and all(map(_same, documented, actual))
    if isinstance(documented, (int, float)) and not isinstance(documented, bool) \
            and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return math.isclose(documented, actual, rel_tol=1e-9)
    return bool(documented == actual)


def quotes(cell: str) -> list[str]:
    """The quoted spans of a cell (text between double quotes)."""
    return re.findall(r'"([^"]+)"', cell)


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def preset_differences() -> set[str]:
    """Every config key (in the table's spelling) whose paper and reference values differ."""
    from heads.pretrain.objectives import OBJECTIVES

    configs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        f"train:{name}": (resolve_config(name, preset="paper").to_dict(),
                          resolve_config(name, preset="reference").to_dict())
        for name in OBJECTIVES}
    configs.update({f"eval:{d}": (resolve_eval_config(d, preset="paper").to_dict(),
                                  resolve_eval_config(d, preset="reference").to_dict())
                    for d in DATASETS})
    configs["extract"] = (_extract_dict("paper"), _extract_dict("reference"))
    differ = set()
    for prefix, (paper, reference) in configs.items():
        flat_paper, flat_reference = _flat(paper), _flat(reference)
        differ |= {f"{prefix}:{k}" for k in flat_paper
                   if k != "preset" and flat_paper[k] != flat_reference.get(k)}
    # one objective stands for the others where they resolve alike (the table's convention)
    return {_canonical(key) for key in differ}


def _extract_dict(preset: str) -> dict[str, Any]:
    import dataclasses

    # the table spells a setting by its flat name, as in the config file (found in its part);
    # the preset's own name is not a difference
    parts = dataclasses.asdict(load_extract_config(**extract_settings(preset, {})[1]))
    flat = {k: v for part in parts.values() for k, v in part.items()}
    flat.pop("preset")
    return flat


def _canonical(key: str) -> str:
    if key.startswith("train:"):
        return "train:conclugen:" + key.split(":", 2)[2]
    return key


ROWS = table("| choice |", COLUMNS)
PRESET_ROWS = table("| choice | key | `paper`", PRESET_COLUMNS)


def note_sections(text: str) -> dict[str, list[str]]:
    """The notes' ``## `` sections, heading -> the section's quoted spans (the statements), with
    their whitespace collapsed (a statement may wrap across lines in the notes)."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {heading: quotes(" ".join(body.split()))
            for heading, body in zip(parts[1::2], parts[2::2])}


NOTE_SECTIONS = note_sections(NOTES.read_text(encoding="utf-8"))


def paper_of(row: dict[str, str]) -> str:
    """The paper a row's attributions are to: CLEF or AVCE for rows named so, else ConCluGen."""
    prefix = row["choice"].split(":")[0]
    return prefix if prefix in OTHER_PAPERS else "ConCluGen"


def notes_for(paper: str) -> list[str]:
    """What a row of ``paper`` may quote: the statements of that paper's section and of the
    datasets' section (not the sections' prose, which also lists what is not stated)."""
    chosen = [spans for heading, spans in NOTE_SECTIONS.items()
              if heading.startswith((f"{paper} (", DATASETS_NOTES))]
    assert len(chosen) == 2, \
        f"docs/PAPER-NOTES.md needs one '## {paper} (...)' section and '## {DATASETS_NOTES}'"
    return [span for spans in chosen for span in spans]


def test_the_table_has_the_choices_the_issues_name() -> None:
    keys = {k for row in ROWS for k in keys_of(row)}
    for key in ("eval:meld:standardize", "train:conclugen:clustering.centroids",
                "train:instance_cont:loss.info_nce_temperature", "extract:augment.hue",
                "train:instance_cont:data.contrast_views",
                "train:conclugen:model.projection_activation",
                "code:pipeline.backbones.resnet3d:RESNET3D101.image_size",
                "eval:caer:class_weights", "eval:meld:class_weights", "eval:mosei:class_weights",
                "extract:empty_text", "extract:faces.min_face_size",
                "code:pipeline.faces:MTCNN_THRESHOLDS",
                # rows added with the presets: the probe's views, the views a store holds,
                # bf16, the schedule
                "eval:meld:train_views", "extract:views", "code:heads.runtime:AUTOCAST_DTYPE",
                "train:conclugen:optim.schedule", "train:conclugen:optim.warmup_epochs"):
        assert key in keys, key
    assert len(keys) == sum(len(keys_of(row)) for row in ROWS), "two rows name the same key"
    for row in ROWS:
        assert row["choice"] and row["paper"] and row["reference code"] and row["switch"], row


@pytest.mark.parametrize("row", ROWS, ids=[row["key"].strip("`") for row in ROWS])
def test_every_row_states_the_codes_defaults(row: dict[str, str]) -> None:
    keys = keys_of(row)
    values = re.findall(r"`([^`]+)`", row["this project's default"])
    assert len(values) >= len(keys), \
        f"{keys}: the default cell needs one backticked value per key, has {values}"
    for key, value in zip(keys, values, strict=False):
        documented, actual = yaml.safe_load(value), resolve(key)
        assert _same(documented, actual), \
            f"docs/CHOICES.md says {key} is {documented!r}, the code says {actual!r}"


@pytest.mark.parametrize("row", ROWS, ids=[row["key"].strip("`") for row in ROWS])
def test_every_paper_attribution_is_in_the_notes(row: dict[str, str]) -> None:
    key, paper = keys_of(row)[0], row["paper"]
    assert quotes(paper) or paper.startswith("not stated"), \
        f"{key}: the paper cell must quote docs/PAPER-NOTES.md or say 'not stated': {paper!r}"
    statements = notes_for(paper_of(row))
    for quoted in quotes(paper):
        assert any(quoted in statement for statement in statements), \
            (f"{key}: the paper cell quotes {quoted!r}, which the statements of "
             f"{paper_of(row)}'s section of docs/PAPER-NOTES.md (or the datasets') do not hold")
    if "(the paper" in row["this project's default"]:
        assert not paper.startswith("not stated"), \
            f"{key}: the default credits the paper, whose cell says 'not stated'"


def test_the_other_papers_rows_are_theirs() -> None:
    """CLEF's and AVCE's rows are found by their names, so their quotes are checked against
    their own papers' sections."""
    assert {paper_of(row) for row in ROWS} == {"ConCluGen", *OTHER_PAPERS}
    assert paper_of(next(r for r in ROWS if r["key"] == "`eval:meld:clef.lr`")) == "CLEF"
    assert paper_of(next(r for r in ROWS if r["key"] == "`eval:mosei:avce.lr`")) == "AVCE"


@pytest.mark.parametrize("row", PRESET_ROWS, ids=[row["key"].strip("`") for row in PRESET_ROWS])
def test_the_presets_table_states_both_presets(row: dict[str, str]) -> None:
    (key,) = keys_of(row)
    for preset in ("paper", "reference"):
        documented = yaml.safe_load(row[f"`{preset}`"].strip("`"))
        actual = resolve(key, preset)
        assert _same(documented, actual), \
            f"docs/CHOICES.md says {key} is {documented!r} in {preset}, the code {actual!r}"


def test_the_presets_table_lists_every_difference() -> None:
    listed = {keys_of(row)[0] for row in PRESET_ROWS}
    assert preset_differences() == listed


def test_a_changed_default_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.faces

    monkeypatch.setattr(pipeline.faces, "MTCNN_THRESHOLDS", (0.6, 0.7, 0.9))
    row = next(r for r in ROWS if r["key"] == "`code:pipeline.faces:MTCNN_THRESHOLDS`")
    with pytest.raises(AssertionError, match="the code says"):
        test_every_row_states_the_codes_defaults(row)


def test_a_later_value_of_a_row_is_checked_too() -> None:
    row = next(r for r in ROWS if "extract:augment.blur_kernel" in r["key"])
    wrong = {**row, "this project's default": row["this project's default"].replace(
        "kernel `0.1`", "kernel `0.2`")}
    with pytest.raises(AssertionError, match="extract:augment.blur_kernel is 0.2"):
        test_every_row_states_the_codes_defaults(wrong)


@pytest.mark.parametrize(("key", "paper"), [
    # the reference's value
    ("eval:meld:optim.weight_decay", 'appendix: "MELD: learning rate 9.67e-3, weight decay 4e-3"'),
    ("eval:meld:optim.weight_decay", "appendix: 4e-5"),  # an attribution without a quote
    ("eval:meld:optim.weight_decay", "0.001"),
    ("eval:meld:batch_size", '"batch size 64"'),  # CLEF's statement, not ConCluGen's
    ("eval:meld:clef.weight_decay", '"weight decay 0.05"'),  # a sentence the notes lack
    ("eval:meld:clef.batch_size", '"batch size 4096"'),  # ConCluGen's statement, not CLEF's
    ("eval:mosei:avce.mu", 'Eq. 4: "mu = 0.8"'),  # the reference code's value
    ("eval:mosei:avce.latent", '"z in R^32"'),  # the reference code's size, not the paper's
    ("eval:mosei:avce.batch_size", "256"),  # an attribution without a quote
])
def test_a_wrong_paper_attribution_fails(key: str, paper: str) -> None:
    row = next(r for r in ROWS if r["key"] == f"`{key}`")
    with pytest.raises(AssertionError, match="docs/PAPER-NOTES.md"):
        test_every_paper_attribution_is_in_the_notes({**row, "paper": paper})


def test_crediting_the_paper_for_an_unstated_choice_fails() -> None:
    row = next(r for r in ROWS if r["key"] == "`train:conclugen:loss.mms_margin`")
    with pytest.raises(AssertionError, match="credits the paper"):
        test_every_paper_attribution_is_in_the_notes(
            {**row, "this project's default": "`0.001` (the paper's)"})


def test_a_preset_difference_missing_from_the_table_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.presets

    monkeypatch.setitem(pipeline.presets.EXTRACT_REFERENCE, "augment",
                        {"jitter_p": 0.2, "grayscale_p": 0.16, "blur_p": 0.1})
    assert "extract:augment.blur_p" in preset_differences()
