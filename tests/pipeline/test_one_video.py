"""One video extracted as a store's clips were: the config comes from the typed manifest
whole (non-default settings included), the refusals, and parity with the stored features."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.extract_config import load_extract_config
from pipeline.manifest import load_manifest
from pipeline.one_video import VideoError, extract_like_store, extraction_settings
from pipeline.identity import feature_identity
from pipeline.run import ClusterOptions, run_extract
from pipeline.store import open_store
from pipeline.store.manifest import (Counts, ModalityInfo, StoreManifest, build_manifest,
                                     parse_manifest, to_json)

ALL = ("frames_2d", "frames_3d", "audio", "text")


def _manifest(**overrides: object) -> StoreManifest:
    """The manifest an extraction of MELD with random weights writes (no shards needed)."""
    cfg = load_extract_config(weights={k: "random" for k in ALL}, **overrides)
    identity = feature_identity(cfg, load_manifest("meld"))
    mods = {k: ModalityInfo(dim=int(c.spec["dim"]), weights_sha256="random")
            for k, c in identity.modalities.items()}
    return build_manifest(identity=identity, modalities=mods, shards=[], counts=Counts(0, 0),
                          created="", config=cfg)


def test_extract_config_round_trips_through_the_manifest_for_every_field() -> None:
    cfg = load_extract_config(weights={"audio": "random", "text": "random"},
                              modalities=["audio", "text"], detect_fps=4.0, fps_2d=2.0,
                              views=3, batch_clips=5, seed=7, empty_text="skip_text",
                              faces={"size": 160, "min_prob": 0.8, "smoothing": 0.5})
    identity = feature_identity(cfg, load_manifest("meld"))
    manifest = build_manifest(identity=identity, shards=[], counts=Counts(0, 0), created="",
                              modalities={k: ModalityInfo(dim=4) for k in cfg.choices.modalities},
                              config=cfg)
    import json

    back = parse_manifest(json.loads(json.dumps(to_json(manifest)))).extract_config()
    for f in dataclasses.fields(cfg):
        assert getattr(back, f.name) == getattr(cfg, f.name), f.name
    assert back == cfg


def test_settings_repeat_the_store_including_the_detection_rate() -> None:
    manifest = _manifest(detect_fps=4.0, faces={"size": 150, "margin": 0.3})
    cfg, policy = extraction_settings(manifest, ["frames_3d", "frames_2d"])
    assert cfg.choices.modalities == ("frames_2d", "frames_3d") and cfg.choices.views == 1
    assert cfg.choices.weights == {"frames_2d": "random", "frames_3d": "random"}
    assert cfg.choices.backbones == {"frames_2d": "resnet152", "frames_3d": "resnet3d101"}
    features = cfg.features
    assert (features.detect_fps, features.faces.size, features.faces.margin) == (4.0, 150, 0.3)
    assert policy.crop is True


def test_text_without_transcript_is_refused(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(VideoError, match="pass a transcript"):
        extract_like_store(video, _manifest(empty_text="fail"), ["text"], transcript="  ",
                           device="cpu")


def test_a_store_written_from_arrays_cannot_be_repeated(tmp_path: Path) -> None:
    from pipeline.store import write_arrays

    store = write_arrays(tmp_path / "s", dataset="toy", sample_ids=["a"], splits=["train"],
                         features={"audio": np.zeros((1, 1, 4), np.float32)},
                         labels=np.array([0]), label_names=["x", "y"])
    with pytest.raises(VideoError, match="arrays"):
        extraction_settings(store.manifest, ["audio"])


def test_weights_that_need_a_download_are_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.backbones.registry import weights_problem

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    assert weights_problem("resnet152", "random") is None
    local = tmp_path / "audio_model.pth"
    local.write_bytes(b"weights")
    assert weights_problem("davenet", str(local)) is None
    assert "does not exist" in weights_problem("davenet", str(tmp_path / "gone.pth"))
    assert "without recorded weights" in weights_problem("davenet", "none")
    from torchvision.models import ResNet152_Weights

    name = Path(ResNet152_Weights.IMAGENET1K_V2.url).name
    monkeypatch.setenv("CONCLUGEN_WEIGHTS_DIR", str(tmp_path / "weights"))
    problem = weights_problem("resnet152", "IMAGENET1K_V2")
    assert "needs a download" in problem and name in problem
    cached = tmp_path / "hub" / "checkpoints"
    cached.mkdir(parents=True)
    (cached / name).write_bytes(b"cached")
    assert weights_problem("resnet152", "IMAGENET1K_V2") is None
    assert "Hugging Face cache" in weights_problem("distilbert-sst2", "nobody/no-such-model")


def test_other_weights_than_the_stores_are_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.models

    encoder = SimpleNamespace(provenance=lambda: {"weights_sha256": "b" * 64})
    monkeypatch.setattr(pipeline.models, "load_models",
                        lambda *a, **k: SimpleNamespace(encoders={"audio": encoder}))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(VideoError, match="not those that made the store"):
        extract_like_store(video, _manifest(), ["audio"], transcript=None, device="cpu")


@pytest.mark.slow
def test_a_clip_extracted_again_equals_the_store_with_non_default_settings(
        meld_sample: Path, tmp_path: Path) -> None:
    """The store is made with 4-fps face detection, a wider face margin and a small 3D
    backbone; extracting one of its clips again gives the stored vectors (the detection rate
    used to be dropped here)."""
    cfg = load_extract_config(modalities=["frames_3d", "audio"],
                              backbones={"frames_3d": "r3d_18"},
                              weights={"frames_3d": "random", "audio": "random"},
                              detect_fps=4.0, faces={"margin": 0.35})
    out = tmp_path / "store"
    run_extract("meld", meld_sample, str(out), cfg=cfg, limit=3, shard_size=3, device="cpu",
                cluster=ClusterOptions(workers=1))
    store = open_store(out)
    assert store.manifest.extract_config() == cfg
    from pipeline.datasets import scan

    rows = {r["sample_id"]: r for r in scan("meld", meld_sample).samples.to_pylist()}
    sample_id = store.index.column("sample_id")[0].as_py()
    again = extract_like_store(rows[sample_id]["media_path"], store.manifest,
                               ["frames_3d", "audio"], transcript=None, device="cpu")
    for key in ("frames_3d", "audio"):
        stored = store.read(key, np.array([0]), view=0).astype(np.float32)
        np.testing.assert_allclose(again[key], stored, rtol=0, atol=1e-3)
    again_cfg, policy = extraction_settings(store.manifest, ["frames_3d"])
    again = again_cfg.features
    assert (again.detect_fps, again.faces.margin, policy.crop) == (4.0, 0.35, True)


def test_a_rate_the_backbone_is_not_made_for_is_refused() -> None:
    from pipeline.config import ConfigError

    for overrides, message in [({"fps_3d": 8.0}, "fps_3d is 8.0, but backbone 'resnet3d101'"),
                               ({"fps_2d": 2.0}, "fps_2d is 2.0, but backbone 'resnet152'"),
                               ({"sample_rate": 8000}, "sample_rate is 8000, but backbone")]:
        with pytest.raises(ConfigError, match=message):
            _manifest(**overrides)


def test_local_weights_are_identified_by_content_not_path(tmp_path: Path) -> None:
    """Two people with the same checkpoint at different paths extract the same store; a
    changed checkpoint at the same path is another store."""
    def identity(path: Path):
        cfg = load_extract_config(modalities=["audio"], weights={"audio": str(path)})
        return feature_identity(cfg, load_manifest("meld"))

    (tmp_path / "alice").mkdir()
    (tmp_path / "bob").mkdir()
    for who in ("alice", "bob"):
        (tmp_path / who / "audio_model.pth").write_bytes(b"the same bytes")
    alice, bob = identity(tmp_path / "alice" / "audio_model.pth"), \
        identity(tmp_path / "bob" / "audio_model.pth")
    assert alice == bob and alice.modalities["audio"].weights == "file:audio_model.pth"
    (tmp_path / "bob" / "audio_model.pth").write_bytes(b"other bytes")
    assert identity(tmp_path / "bob" / "audio_model.pth") != alice


def test_augmentation_strength_is_part_of_the_identity_of_augmented_stores() -> None:
    def identity(**overrides: object):
        cfg = load_extract_config(modalities=["audio"], weights={"audio": "random"}, **overrides)
        return feature_identity(cfg, load_manifest("meld"))

    assert identity(views=3) != identity(views=3, augment={"jitter_p": 0.2})
    assert identity(views=1) == identity(views=1, augment={"jitter_p": 0.2})
    assert identity(views=3).extraction.augment.jitter_p != 0.2


def test_a_local_weights_file_is_compared_before_it_is_loaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """store.json names a local file; if that path now holds other bytes (or any file a
    tampered store.json points to), prediction refuses it by its sha256 and never loads it."""
    import pipeline.models

    weights = tmp_path / "audio.pt"
    torch.save({"w": torch.zeros(2)}, weights)
    cfg = load_extract_config(weights={**{k: "random" for k in ALL}, "audio": str(weights)})
    identity = feature_identity(cfg, load_manifest("meld"))
    mods = {k: ModalityInfo(dim=int(c.spec["dim"]), weights_sha256="x")
            for k, c in identity.modalities.items()}
    manifest = build_manifest(identity=identity, modalities=mods, shards=[],
                              counts=Counts(0, 0), created="", config=cfg)
    weights.write_text("other content now")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was loaded before its sha256 was compared")

    monkeypatch.setattr(pipeline.models, "load_models", never)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(VideoError, match="whose content is not what made the store"):
        extract_like_store(video, manifest, ["audio"], transcript=None, device="cpu")
