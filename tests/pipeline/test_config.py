"""Strict YAML -> dataclass loading, and the dataset manifests that use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pipeline.config import ConfigError, from_dict, load_yaml
from pipeline.extract_config import load_extract_config
from pipeline.extract_config import ExtractConfig
from pipeline.manifest import DatasetManifest, load_manifest


@dataclass(frozen=True)
class Inner:
    size: int
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    rate: float
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=lambda: Inner(1))
    extra: dict[str, int] | None = None


def test_nested_values_are_converted() -> None:
    cfg = from_dict(Outer, {"name": "x", "rate": 1, "tags": ["a"], "inner": {"size": 3,
                                                                            "mode": "b"}}, "f")
    assert cfg == Outer("x", 1.0, ("a",), Inner(3, "b"))
    assert isinstance(cfg.rate, float)


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "rate": 1, "colour": 2}, "f: unknown key(s) ['colour']"),
    ({"rate": 1}, "f: missing required key 'name'"),
    ({"name": "x", "rate": "fast"}, "f: rate: expected float"),
    ({"name": "x", "rate": 1, "inner": {"size": True}}, "f: inner: size: expected int"),
    ({"name": "x", "rate": 1, "inner": {"size": 1, "mode": "c"}}, "'c' is not one of"),
    ({"name": "x", "rate": 1, "tags": "a"}, "tags: expected a list"),
])
def test_errors_name_the_file_and_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, data, "f")
    assert message in str(err.value)


def test_load_yaml_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_yaml(tmp_path / "list.yaml")


@pytest.mark.parametrize("name", ["meld", "caer", "mosei", "voxceleb2"])
def test_every_shipped_manifest_loads(name: str) -> None:
    manifest = load_manifest(name)
    assert isinstance(manifest, DatasetManifest)
    assert manifest.name == name and len(manifest.sha256) == 64
    assert set(manifest.splits) <= {"train", "val", "test"}


def test_manifest_label_orders_follow_the_official_releases() -> None:
    assert load_manifest("meld").labels == ("neutral", "surprise", "fear", "sadness", "joy",
                                            "disgust", "anger")
    assert load_manifest("caer").labels == ("Anger", "Disgust", "Fear", "Happy", "Neutral",
                                            "Sad", "Surprise")
    assert load_manifest("mosei").labels == ("happy", "sad", "anger", "surprise", "disgust",
                                             "fear")
    assert load_manifest("mosei").multilabel
    assert not load_manifest("voxceleb2").faces.crop


def test_manifest_rejects_unknown_split(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("name: x\ntitle: X\nlabels: [a]\nmultilabel: false\nmedia_ext: mp4\n"
                    "splits: {training: {media: t}}\n")
    with pytest.raises(ConfigError, match="unknown split"):
        load_manifest(path)


def test_extraction_defaults_follow_the_paper() -> None:
    # docs/CHOICES.md: every clip kept (an empty transcript is encoded and flagged), MTCNN's
    # detection defaults relative to the original frame, the reference code's augmentation.
    shipped, coded = load_extract_config(), ExtractConfig()
    assert shipped == coded
    assert coded.features.empty_text == "keep"
    assert (coded.features.faces.min_face_size, coded.features.faces.min_prob) == (20, 0.7)
    augment = coded.features.augment
    assert augment.crop_scale == (0.3, 1.0) and augment.hue == 0.2
    for policy in ("fail", "skip_text"):
        assert load_extract_config(empty_text=policy).features.empty_text == policy


def test_extraction_config_refuses_bad_augment_and_face_values() -> None:
    with pytest.raises(ConfigError, match="empty_text"):
        load_extract_config(empty_text="drop")
    with pytest.raises(ConfigError, match="jitter_p"):
        load_extract_config(augment={"jitter_p": 1.5})
    with pytest.raises(ConfigError, match="min_face_size"):
        load_extract_config(faces={"min_face_size": 8})


def test_each_extraction_setting_lands_in_one_part_and_an_unknown_one_is_named() -> None:
    cfg = load_extract_config(views=3, fps_2d=2.0, batch_clips=4, preset="reference")
    assert (cfg.choices.views, cfg.choices.preset) == (3, "reference")
    assert (cfg.features.fps_2d, cfg.run.batch_clips) == (2.0, 4)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['fps_4d'\]"):
        load_extract_config(fps_4d=1.0)
    with pytest.raises(ConfigError, match="batch_clips must be at least 1"):
        load_extract_config(batch_clips=0)


def test_dataset_manifests_carry_their_class_weights() -> None:
    meld, mosei, caer = (load_manifest(n).eval for n in ("meld", "mosei", "caer"))
    assert meld is not None and meld.class_weights == "fixed"
    assert meld.class_weight_values == (4.0, 15.0, 15.0, 3.0, 1.0, 6.0, 3.0)
    assert mosei is not None and mosei.class_weight_values is not None
    assert len(mosei.class_weight_values) == len(load_manifest("mosei").labels)
    assert caer is not None and caer.class_weights == "inverse"
    assert load_manifest("voxceleb2").eval is None
