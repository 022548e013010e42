"""The backbone registry and the encoder contract, with random weights on the CPU.

Every registered backbone is built once per module (ResNet-152 and the 3D ResNet-101 take a
few seconds to initialise) and checked against the same contract: output shape equals the
spec's dim, float32, finite; ``encode_batch`` equals stacked ``encode``; provenance is JSON
and says the weights are random, how they were made, and their sha256. The scale of random
features on realistic input is checked in ``test_backbones_random.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.backbones import (
    BACKBONES, DEFAULT_BACKBONES, BackboneError, Encoder, get_spec, load_encoder, resnet2d)
from pipeline.backbones.encoder import normaliser
from pipeline.backbones.random_init import AUDIO_CNN, RESIDUAL_CNN, TRANSFORMER, state_sha256
from pipeline.backbones.resnet3d import split_windows, window_bounds, window_encoder
from pipeline.devices import DeviceError
from pipeline.failures import ClipError, Reason

SLOW = {"resnet152", "resnet3d101", "r3d_18", "r2plus1d_18"}
SCHEMES = {RESIDUAL_CNN, AUDIO_CNN, TRANSFORMER}
ALL = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
       for name in BACKBONES]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def encoders() -> dict[str, Encoder]:
    """Random-weight encoders, built on first use and shared by the module's tests."""
    return {}


def _encoder(encoders: dict[str, Encoder], name: str) -> Encoder:
    if name not in encoders:
        encoders[name] = load_encoder(name, weights="random")
    return encoders[name]


def _clips(key: str, rng: np.random.Generator) -> list:
    """Three small clips of different sizes for a modality (cheap for the backbone)."""
    if key == "frames_2d":
        return [rng.integers(0, 256, (t, s, s, 3), dtype=np.uint8) for t, s in
                ((2, 180), (1, 180), (1, 96))]
    if key == "frames_3d":  # short clips: one window each, of 3, 2 and 2 frames
        return [rng.integers(0, 256, (t, s, s, 3), dtype=np.uint8) for t, s in
                ((3, 180), (2, 180), (2, 112))]
    if key == "audio":
        return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 5000, 300)]
    return ["Oh my God, you are kidding me!", "ok", "I said, WHAT are you doing here??"]


def test_registry_names_and_defaults() -> None:
    assert set(BACKBONES) == {"resnet152", "resnet3d101", "r3d_18", "r2plus1d_18", "davenet",
                              "resdavenet", "distilbert-sst2", "emotion-distilroberta"}
    assert DEFAULT_BACKBONES == {"frames_2d": "resnet152", "frames_3d": "resnet3d101",
                                 "audio": "resdavenet", "text": "distilbert-sst2"}
    for key, name in DEFAULT_BACKBONES.items():
        assert BACKBONES[name].key == key
    assert {BACKBONES[n].dim for n in DEFAULT_BACKBONES.values()} == {2048, 1024, 768}
    assert BACKBONES["distilbert-sst2"].default_weights == \
        "distilbert-base-uncased-finetuned-sst-2-english"
    assert BACKBONES["emotion-distilroberta"].default_weights == \
        "j-hartmann/emotion-english-distilroberta-base"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'") as err:
        load_encoder("resnet50")
    for name in BACKBONES:
        assert name in str(err.value)


def test_a_hugging_face_id_with_its_prefix_is_a_text_backbone(tmp_path: Path) -> None:
    spec = get_spec("hf:org/some-model")
    assert (spec.name, spec.key, spec.default_weights) == (
        "hf:org/some-model", "text", "org/some-model")
    folder = get_spec(f"dir:{tmp_path}")
    assert (folder.key, folder.default_weights) == ("text", str(tmp_path))


def test_a_bare_id_or_folder_is_refused_with_the_prefix_to_use(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="write 'hf:org/some-model'"):
        get_spec("org/some-model")
    with pytest.raises(BackboneError, match=f"write 'dir:{tmp_path}'"):
        get_spec(str(tmp_path))
    with pytest.raises(BackboneError, match="is not a folder"):
        get_spec(f"dir:{tmp_path / 'absent'}")


def test_cuda_without_a_gpu_is_an_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="this machine has no CUDA device"):
        load_encoder("davenet", weights="random", device="cuda")


@pytest.mark.parametrize("name", ALL)
def test_encoder_contract(encoders: dict[str, Encoder], name: str) -> None:
    spec = BACKBONES[name]
    enc = _encoder(encoders, name)
    assert isinstance(enc, Encoder)
    assert (enc.key, enc.dim) == (spec.key, spec.dim)
    clips = _clips(spec.key, np.random.default_rng(0))

    singles = np.stack([enc.encode(clip) for clip in clips])
    assert singles.shape == (len(clips), spec.dim)
    assert singles.dtype == np.float32 and np.isfinite(singles).all()
    assert not np.allclose(singles[0], singles[1])  # different clips, different vectors

    batch = enc.encode_batch(clips)
    assert batch.shape == singles.shape and batch.dtype == np.float32
    np.testing.assert_allclose(batch, singles, rtol=1e-4, atol=1e-5 * np.abs(singles).max())
    assert enc.encode_batch([]).shape == (0, spec.dim)

    prov = json.loads(json.dumps(enc.provenance()))
    assert prov["backbone"] == name and prov["dim"] == spec.dim
    assert prov["weights"] == "random" and prov["weights_sha256"] == state_sha256(enc.model)
    assert prov["init_scheme"] in SCHEMES and prov["init_seed"] == 0
    assert prov["dtype"] == "float32" and prov["pooling"]


@pytest.mark.gpu
@pytest.mark.parametrize("key", list(DEFAULT_BACKBONES))
def test_cuda_features_are_the_cpu_ones_in_bf16(encoders: dict[str, Encoder], key: str) -> None:
    """The default backbones on a GPU (bf16 autocast) give the CPU's features, and record the
    same random weights."""
    name = DEFAULT_BACKBONES[key]
    cpu = _encoder(encoders, name)
    cuda = load_encoder(name, weights="random", device="cuda")
    assert cuda.provenance()["weights_sha256"] == cpu.provenance()["weights_sha256"]
    assert cuda.provenance()["compute_dtype"] == "bfloat16-autocast"
    clips = _clips(get_spec(name).key, np.random.default_rng(0))
    expected, got = cpu.encode_batch(clips), cuda.encode_batch(clips)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    cosine = (expected * got).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got,
                                                                                       axis=1)
    assert cosine.min() > 0.99, cosine  # bf16 keeps 8 bits of mantissa


def test_random_weights_are_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        load_encoder("davenet", weights="random")
    assert "RANDOM WEIGHTS: features are meaningless" in caplog.text


def test_random_init_is_reproducible_and_leaves_global_rng_alone() -> None:
    wave = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)
    before = torch.random.get_rng_state()
    a = load_encoder("davenet", weights="random").encode(wave)
    assert torch.equal(torch.random.get_rng_state(), before)
    np.testing.assert_array_equal(a, load_encoder("davenet", weights="random").encode(wave))


def test_batch_size_does_not_change_features() -> None:
    waves = [np.cos(np.linspace(0, f, n)).astype(np.float32)
             for f, n in ((50, 9000), (300, 4000), (90, 12000))]
    a = load_encoder("resdavenet", weights="random").encode_batch(waves)
    b = load_encoder("resdavenet", weights="random", batch_size=1).encode_batch(waves)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        load_encoder("davenet", weights="random", batch_size=0)


# ------------------------------------------------------------------ 2D preprocessing


def test_2d_normalisation_is_imagenet_in_rgb_order() -> None:
    # The reference configs swapped mean and std; this pins the correct order.
    assert resnet2d.IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert resnet2d.IMAGENET_STD == (0.229, 0.224, 0.225)
    spec = BACKBONES["resnet152"]
    assert (spec.mean, spec.std, spec.image_size, spec.fps) == \
        (resnet2d.IMAGENET_MEAN, resnet2d.IMAGENET_STD, 180, 1.0)
    normalise = normaliser(spec.mean, spec.std, torch.device("cpu"))
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = [(1 - m) / s for m, s in zip(spec.mean, spec.std)]
    np.testing.assert_allclose(normalise(white)[0, :, 0, 0].numpy(), expected, rtol=1e-6)


@pytest.mark.slow
def test_2d_encoder_feeds_the_backbone_normalised_180px_frames(
        encoders: dict[str, Encoder]) -> None:
    enc = _encoder(encoders, "resnet152")
    prov = enc.provenance()
    assert prov["mean"] == [0.485, 0.456, 0.406] and prov["std"] == [0.229, 0.224, 0.225]
    frames = np.zeros((2, 90, 90, 3), np.uint8)
    frames[..., 0] = 124  # ~ 0.485 * 255: red channel at the ImageNet mean -> ~0
    x = enc._prepare(torch.from_numpy(frames))
    assert x.shape == (2, 3, 180, 180)
    assert abs(float(x[:, 0].mean())) < 0.01
    np.testing.assert_allclose(float(x[:, 1].mean()), -0.456 / 0.224, rtol=1e-5)


def test_frames_must_be_uint8_rgb_and_non_empty(encoders: dict[str, Encoder]) -> None:
    enc = _encoder(encoders, "r3d_18")
    with pytest.raises(ValueError, match=r"uint8 RGB frames \[T, H, W, 3\]"):
        enc.encode(np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(ClipError) as err:
        enc.validate(np.zeros((0, 32, 32, 3), np.uint8))
    assert err.value.reason is Reason.TOO_SHORT


# ------------------------------------------------------------------ 3D windowing


@pytest.mark.parametrize(("frames", "windows"), [(1, 1), (5, 1), (16, 1), (17, 1), (23, 1),
                                                 (24, 2), (32, 2), (39, 2), (40, 3)])
def test_3d_window_count(frames: int, windows: int) -> None:
    bounds = window_bounds(frames, window=16, min_tail=8)
    assert len(bounds) == windows
    assert bounds[0][0] == 0 and all(b - a <= 16 for a, b in bounds)
    assert all(prev[1] == nxt[0] for prev, nxt in zip(bounds, bounds[1:]))  # no overlap/gap


def test_3d_short_clip_is_one_shrunk_window_and_full_windows_are_views() -> None:
    assert window_bounds(5) == [(0, 5)]
    clip = np.zeros((40, 8, 8, 3), np.uint8)
    full, tail = split_windows(clip, 16, 8)
    assert full.shape == (2, 16, 8, 8, 3) and tail.shape == (1, 8, 8, 8, 3)
    assert np.shares_memory(full, clip)
    (only,) = split_windows(clip[:17], 16, 8)
    assert only.shape == (1, 16, 8, 8, 3)
    with pytest.raises(ValueError, match="at least one frame"):
        window_bounds(0)


class _ChannelMean(torch.nn.Module):
    """A stand-in 3D backbone: ``[N, 3, t, S, S]`` -> per-channel mean ``[N, 3]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


def test_3d_clip_vector_is_the_mean_of_its_windows() -> None:
    spec = dataclasses.replace(BACKBONES["r3d_18"], dim=3, image_size=8)
    enc = window_encoder(spec, _ChannelMean(), torch.device("cpu"), architecture="test",
                         weights="random", sha256="random")
    clip = np.zeros((43, 8, 8, 3), np.uint8)  # windows [0, 16), [16, 32), [32, 43)
    clip[:16], clip[16:32], clip[32:] = 10, 40, 100
    clip[42, ..., 1] = 255  # varies within the tail window
    per_window = [enc.encode(clip[a:b]) for a, b in window_bounds(43)]
    np.testing.assert_allclose(enc.encode(clip), np.mean(per_window, axis=0), rtol=1e-6)
    assert not np.allclose(per_window[0], per_window[2])
    # a 5-frame tail (< min_tail) is dropped: the clip equals its two full windows
    np.testing.assert_allclose(enc.encode(clip[:37]), np.mean(per_window[:2], axis=0),
                               rtol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_units_are_chunked_across_clips_without_mixing_them(batch_size: int) -> None:
    spec = dataclasses.replace(BACKBONES["r3d_18"], dim=3, image_size=4, window=2, min_tail=1,
                               batch_size=batch_size)
    enc = window_encoder(spec, _ChannelMean(), torch.device("cpu"), architecture="test",
                         weights="random", sha256="random")
    rng = np.random.default_rng(3)
    clips = [rng.integers(0, 256, (t, 4, 4, 3), dtype=np.uint8) for t in (9, 1, 4, 7, 2)]
    expected = np.stack([np.mean([_ChannelMean()(enc._prepare(torch.from_numpy(
        clip[None, a:b]))).numpy()[0] for a, b in window_bounds(len(clip), 2, 1)], axis=0)
        for clip in clips])
    np.testing.assert_allclose(enc.encode_batch(clips), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ text


def test_an_empty_transcript_is_encoded_and_none_is_a_clip_error(
        encoders: dict[str, Encoder]) -> None:
    enc = _encoder(encoders, "distilbert-sst2")
    for blank in ("", "   \n\t"):
        vector = enc.encode(blank)
        assert vector.shape == (enc.dim,) and np.isfinite(vector).all()
    assert not np.allclose(enc.encode(""), enc.encode("fine"))
    with pytest.raises(ClipError) as err:
        enc.encode(None)
    assert err.value.reason is Reason.EMPTY_TRANSCRIPT
    with pytest.raises(ClipError, match="clip 1 of the batch") as err:
        enc.encode_batch(["fine", None])
    assert err.value.reason is Reason.EMPTY_TRANSCRIPT


def test_random_text_encoder_is_offline_charpiece(encoders: dict[str, Encoder]) -> None:
    enc = _encoder(encoders, "distilbert-sst2")
    prov = enc.provenance()
    assert prov["tokenizer"] == "random-charpiece" and prov["max_tokens"] == 128
    ids = enc.tokenizer("hello zyxw")["input_ids"]
    assert enc.tokenizer.unk_token_id not in ids  # characters cover any lowercase word


def test_text_truncates_to_max_tokens(encoders: dict[str, Encoder]) -> None:
    enc = _encoder(encoders, "distilbert-sst2")
    long = "word " * 400
    np.testing.assert_allclose(enc.encode(long), enc.encode("word " * 126), rtol=1e-4,
                               atol=1e-5)
