"""docs/CHOICES.md cannot drift: every row's default is the code's default.

The table's ``key`` column names where the default lives (a training, evaluation or extraction
config key, or a constant of the code); the first backticked value of the default column, read
as YAML, must equal what that key resolves to.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from heads.config import resolve_config
from heads.eval_config import resolve_eval_config
from pipeline.extract_config import load_extract_config

CHOICES = Path(__file__).resolve().parent.parent / "docs" / "CHOICES.md"
COLUMNS = ["choice", "paper", "reference code", "this project's default", "switch", "key"]


def table() -> list[dict[str, str]]:
    """The rows of the one table, as column -> cell text."""
    lines = [line.strip() for line in CHOICES.read_text(encoding="utf-8").splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("| choice |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header == COLUMNS
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def _attr(obj: Any, path: list[str]) -> Any:
    for name in path:
        if callable(obj) and not isinstance(obj, type) and inspect.isfunction(obj):
            obj = inspect.signature(obj).parameters[name].default
        else:
            obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    return obj


def resolve(key: str) -> Any:
    """The code's default for a key of the table."""
    kind, _, rest = key.partition(":")
    if kind == "train":
        objective, _, path = rest.partition(":")
        return _attr(resolve_config(objective), path.split("."))
    if kind == "eval":
        dataset, _, path = rest.partition(":")
        return _attr(resolve_eval_config(dataset), path.split("."))
    if kind == "extract":  # a flat setting name, as in the config file: found in its part
        cfg, path = load_extract_config(), rest.split(".")
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


ROWS = table()


def test_the_table_has_the_choices_the_issue_names() -> None:
    keys = {row["key"].strip("`") for row in ROWS}
    for key in ("eval:meld:standardize", "train:conclugen:clustering.centroids",
                "train:instance_cont:loss.info_nce_temperature", "extract:augment.hue",
                "train:instance_cont:data.contrast_views",
                "train:conclugen:model.projection_activation",
                "code:pipeline.backbones.resnet3d:RESNET3D101.image_size",
                "eval:caer:class_weights", "eval:meld:class_weights", "eval:mosei:class_weights",
                "extract:empty_text", "extract:faces.min_face_size",
                "code:pipeline.faces:MTCNN_THRESHOLDS"):
        assert key in keys, key
    assert len(keys) == len(ROWS), "two rows name the same key"
    for row in ROWS:
        assert row["choice"] and row["paper"] and row["reference code"] and row["switch"], row


@pytest.mark.parametrize("row", ROWS, ids=[row["key"].strip("`") for row in ROWS])
def test_every_row_states_the_codes_default(row: dict[str, str]) -> None:
    key = re.fullmatch(r"`([^`]+)`", row["key"])
    assert key, f"the key cell must be one backticked key: {row['key']!r}"
    value = re.match(r"`([^`]+)`", row["this project's default"])
    assert value, f"{key.group(1)}: the default cell must start with a backticked value"
    documented = yaml.safe_load(value.group(1))
    actual = resolve(key.group(1))
    assert _same(documented, actual), \
        f"docs/CHOICES.md says {key.group(1)} is {documented!r}, the code says {actual!r}"


def test_a_changed_default_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.faces

    monkeypatch.setattr(pipeline.faces, "MTCNN_THRESHOLDS", (0.6, 0.7, 0.9))
    row = next(r for r in ROWS if r["key"] == "`code:pipeline.faces:MTCNN_THRESHOLDS`")
    with pytest.raises(AssertionError, match="the code says"):
        test_every_row_states_the_codes_default(row)
