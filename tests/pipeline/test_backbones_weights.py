"""Weights arguments and checkpoints: resolution, loading by path/URL/folder, key matching.

The checkpoints are written here with the parameter names of the original code bases (written
out by hand from ``dharwath/DAVEnet-pytorch``, ``wnhsu/ResDAVEnet-VQ`` and the Hara-style 3D
ResNets of ``alexandonian/pretorched-x``), so a renamed layer in this project's modules fails.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from pipeline.backbones import WeightsError, load_encoder
from pipeline.backbones.weights import resolve_weights

N_MELS = 40


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bn(prefix: str, channels: int, counter: bool = True) -> dict[str, list[int]]:
    shapes = {f"{prefix}.{p}": [channels] for p in
              ("weight", "bias", "running_mean", "running_var")}
    if counter:
        shapes[f"{prefix}.num_batches_tracked"] = []
    return shapes


def _davenet_shapes() -> dict[str, list[int]]:
    """DAVEnet's audio model (models/AudioModels.py ``Davenet``), pre-0.4.1 BatchNorm keys."""
    shapes = _bn("batchnorm1", 1, counter=False)
    convs = {"conv1": [128, 1, N_MELS, 1], "conv2": [256, 128, 1, 11],
             "conv3": [512, 256, 1, 17], "conv4": [512, 512, 1, 17],
             "conv5": [1024, 512, 1, 17]}
    for name, shape in convs.items():
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = shape, shape[:1]
    return shapes


def _resdavenet_shapes() -> dict[str, list[int]]:
    """ResDAVEnet-VQ's ``ResDavenet`` with the release's widths 128,256,256,512,1024."""
    widths = [128, 256, 256, 512, 1024]
    shapes = {**_bn("batchnorm1", 1), "conv1.weight": [128, 1, N_MELS, 1], **_bn("bn1", 128)}
    for i in range(1, 5):
        cin, cout = widths[i - 1], widths[i]
        for j in range(2):
            p = f"layer{i}.{j}"
            shapes[f"{p}.conv1.weight"] = [cout, cin if j == 0 else cout, 1, 9]
            shapes[f"{p}.conv2.weight"] = [cout, cout, 1, 9]
            shapes.update(_bn(f"{p}.bn1", cout) | _bn(f"{p}.bn2", cout))
        shapes[f"layer{i}.0.downsample.0.weight"] = [cout, cin, 1, 1]
        shapes.update(_bn(f"layer{i}.0.downsample.1", cout))
    return shapes


def _random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = 0.05 * torch.randn(shape, generator=gen)
    return state


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


WAVE = (0.1 * np.sin(np.linspace(0, 3000, 12000))).astype(np.float32)


# --------------------------------------------------------------------- resolution


def test_resolution_of_each_kind(tmp_path: Path) -> None:
    file = _save({"w": torch.zeros(1)}, tmp_path / "ckpt.pth")
    kw = {"backbone": "b", "key": "audio", "default": "NAMED",
          "named": {"NAMED": "https://x/n.pth"}}
    assert resolve_weights(None, **kw).location == "https://x/n.pth"
    assert resolve_weights("random", **kw).kind == "random"
    signed = resolve_weights("https://h/a.pth?token=secret", **kw)
    assert (signed.kind, signed.identifier) == ("url", "https://h/a.pth")
    assert signed.location.endswith("token=secret")
    src = resolve_weights(str(file), **kw)
    assert (src.kind, src.identifier, src.location) == ("file", "ckpt.pth", str(file))
    with pytest.raises(WeightsError, match="is a folder"):
        resolve_weights(str(tmp_path), **kw)
    with pytest.raises(WeightsError, match=r"not a known identifier \(known: NAMED\)"):
        resolve_weights("IMAGENET9K", **kw)


def test_no_default_weights_tells_what_to_pass() -> None:
    with pytest.raises(WeightsError) as err:
        load_encoder("davenet")
    message = str(err.value)
    assert "--weights audio=PATH" in message and "--weights audio=random" in message
    assert "audio_model.pth" in message


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "audio_model.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="audio_model.pth: cannot be read"):
        load_encoder("davenet", weights=str(bad))


# --------------------------------------------------------------------- audio checkpoints


def test_davenet_checkpoint_with_original_names_loads(tmp_path: Path) -> None:
    state = _random_state(_davenet_shapes())
    # saved from nn.DataParallel, as DAVEnet's training script does
    path = _save({f"module.{k}": v for k, v in state.items()}, tmp_path / "audio_model.pth")
    enc = load_encoder("davenet", weights=str(path))
    assert torch.equal(enc.model.conv5.weight, state["conv5.weight"])
    assert torch.equal(enc.model.batchnorm1.running_var, state["batchnorm1.running_var"])
    prov = enc.provenance()
    assert (prov["weights"], prov["weights_sha256"]) == ("audio_model.pth", _sha(path))
    random = load_encoder("davenet", weights="random").encode(WAVE)
    assert not np.allclose(enc.encode(WAVE), random)


def test_resdavenet_checkpoint_with_original_names_loads(tmp_path: Path) -> None:
    state = _random_state(_resdavenet_shapes())
    path = _save(state, tmp_path / "best_audio_model.pth")
    enc = load_encoder("resdavenet", weights=str(path))
    assert torch.equal(enc.model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    out = enc.encode(WAVE)
    assert out.shape == (1024,) and np.isfinite(out).all()


def test_quantised_resdavenet_is_refused(tmp_path: Path) -> None:
    state = _random_state(_resdavenet_shapes())
    state |= {"quant3._embedding.weight": torch.zeros(1024, 256),
              "quant3._ema_w": torch.zeros(1024, 256), "quant3._ema_cluster_size": torch.ones(1024)}
    path = _save(state, tmp_path / "rdvq.pth")
    with pytest.raises(WeightsError, match=r"vector-quantised .* \(codebooks quant3\)"):
        load_encoder("resdavenet", weights=str(path))


def test_missing_keys_name_the_file_and_the_keys(tmp_path: Path) -> None:
    state = _random_state(_davenet_shapes())
    del state["conv5.weight"], state["conv2.bias"]
    path = _save(state, tmp_path / "partial.pth")
    with pytest.raises(WeightsError) as err:
        load_encoder("davenet", weights=str(path))
    message = str(err.value)
    assert str(path) in message and "does not fit backbone 'davenet'" in message
    assert "missing keys: conv2.bias, conv5.weight" in message


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    state = _random_state(_davenet_shapes())
    state["conv1.weight"] = torch.zeros(128, 1, 128, 1)  # 128 mel bins instead of 40
    path = _save(state, tmp_path / "mel128.pth")
    with pytest.raises(WeightsError, match=r"conv1\.weight \(128, 1, 128, 1\) != "):
        load_encoder("davenet", weights=str(path))


def test_url_weights_load_through_the_hub_cache(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "audio_model.pth"
    cached.parent.mkdir(parents=True)
    _save(_random_state(_davenet_shapes()), cached)  # already downloaded: no network needed
    url = "https://example.org/davenet/audio_model.pth"
    prov = load_encoder("davenet", weights=url).provenance()
    assert (prov["weights"], prov["weights_sha256"]) == (url, _sha(cached))


# --------------------------------------------------------------------- video checkpoints

# Facts from the original 3D ResNet-101 (pretorched-x resnet3D.py, Bottleneck [3, 4, 23, 3]).
RESNET3D101_SHAPES = {
    "conv1.weight": [64, 3, 7, 7, 7], "bn1.running_mean": [64],
    "layer1.0.conv1.weight": [64, 64, 1, 1, 1], "layer1.0.conv2.weight": [64, 64, 3, 3, 3],
    "layer1.0.conv3.weight": [256, 64, 1, 1, 1],
    "layer1.0.downsample.0.weight": [256, 64, 1, 1, 1], "layer1.0.downsample.1.weight": [256],
    "layer2.3.conv2.weight": [128, 128, 3, 3, 3],
    "layer2.0.downsample.0.weight": [512, 256, 1, 1, 1],
    "layer3.22.conv3.weight": [1024, 256, 1, 1, 1],
    "layer4.0.downsample.0.weight": [2048, 1024, 1, 1, 1], "layer4.2.bn3.running_var": [2048],
}


@pytest.mark.slow
def test_resnet3d101_hara_checkpoint_loads(tmp_path: Path) -> None:
    from pipeline.backbones.resnet3d import ResNet3d

    state = {k: v.half() if v.is_floating_point() else v
             for k, v in ResNet3d().state_dict().items()}
    for key, shape in RESNET3D101_SHAPES.items():
        assert list(state[key].shape) == shape, key
    assert "layer3.23.conv1.weight" not in state
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], 2.0 ** -6)  # exact in fp16
    state |= {"fc.weight": torch.zeros(400, 2048), "fc.bias": torch.zeros(400)}
    # Hara et al.'s training script: DataParallel names inside a training checkpoint
    ckpt = {"epoch": 200, "arch": "resnet-101",
            "state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = _save(ckpt, tmp_path / "resnet3d101_kinetics-8d4c9d63.pth")
    enc = load_encoder("resnet3d101", weights=str(path))
    assert torch.all(enc.model.conv1.weight == 2.0 ** -6)
    prov = enc.provenance()
    assert prov["weights"] == path.name and prov["weights_sha256"] == _sha(path)
    assert prov["mean"] == [0.43216, 0.394666, 0.37645] and prov["image_size"] == 180


@pytest.mark.slow
def test_resnet152_state_dict_file_loads(tmp_path: Path) -> None:
    import torchvision

    state = {k: v.half() if v.is_floating_point() else v
             for k, v in torchvision.models.resnet152().state_dict().items()}
    assert "fc.weight" in state  # torchvision naming, classifier included
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], -(2.0 ** -5))
    path = _save(state, tmp_path / "resnet152.pth")
    enc = load_encoder("resnet152", weights=str(path))
    assert torch.all(enc.model.conv1.weight == -(2.0 ** -5))
    assert enc.provenance()["weights_sha256"] == _sha(path)
    del state["layer3.35.bn3.weight"]
    _save(state, path)
    with pytest.raises(WeightsError, match=r"missing keys: layer3\.35\.bn3\.weight"):
        load_encoder("resnet152", weights=str(path))


# --------------------------------------------------------------------- start-up cost


class Draws(TorchFunctionMode):
    """Counts the values random initialisers draw into real (not meta) tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.values = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func in (torch.Tensor.normal_, torch.Tensor.uniform_) and not args[0].is_meta:
            self.values += args[0].numel()
        return func(*args, **(kwargs or {}))


def test_loaded_weights_are_not_preceded_by_an_initialisation(tmp_path: Path) -> None:
    path = _save(_random_state(_davenet_shapes()), tmp_path / "audio_model.pth")
    before = torch.random.get_rng_state()
    with Draws() as draws:
        enc = load_encoder("davenet", weights=str(path))
    assert draws.values == 0 and torch.equal(torch.random.get_rng_state(), before)
    assert not any(t.is_meta for t in (*enc.model.parameters(), *enc.model.buffers()))


def test_random_weights_draw_only_what_the_scheme_keeps() -> None:
    with Draws() as draws:
        enc = load_encoder("davenet", weights="random")
    convs = [m for m in enc.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert draws.values == sum(m.weight.numel() for m in convs)  # no default init first


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_a_checkpoint_is_mapped_from_its_file_not_copied(tmp_path: Path) -> None:
    state = _random_state(_davenet_shapes())
    path = _save(state, tmp_path / "mapped_audio_model.pth")
    enc = load_encoder("davenet", weights=str(path))
    assert str(path) in Path("/proc/self/maps").read_text()
    assert torch.equal(enc.model.conv5.weight, state["conv5.weight"])


def test_legacy_and_half_precision_checkpoints_load_as_float32(tmp_path: Path) -> None:
    state = _random_state(_davenet_shapes())
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "legacy.pth"
    torch.save(half, path, _use_new_zipfile_serialization=False)  # before PyTorch 1.6: unmapped
    enc = load_encoder("davenet", weights=str(path))
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    assert torch.equal(enc.model.conv5.weight, half["conv5.weight"].float())
    assert enc.provenance()["weights_sha256"] == _sha(path)


# --------------------------------------------------------------------- text folders


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DistilBERT and its tokenizer, written with ``save_pretrained``."""
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    from pipeline.backbones.text import charpiece_vocab

    vocab = charpiece_vocab()
    folder = tmp_path_factory.mktemp("hf") / "tiny-distilbert"
    DistilBertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}).save_pretrained(folder)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=1, n_heads=2,
                              hidden_dim=64)
    torch.manual_seed(0)
    DistilBertModel(config).save_pretrained(folder)
    return folder


def test_text_loads_a_hugging_face_folder(hf_folder: Path) -> None:
    enc = load_encoder("distilbert-sst2", weights=str(hf_folder))
    assert enc.dim == 32
    out = enc.encode_batch(["hello there", "what?"])
    assert out.shape == (2, 32) and np.isfinite(out).all()
    prov = enc.provenance()
    assert prov["weights"] == prov["tokenizer"] == "tiny-distilbert"
    assert prov["weights_sha256"] == _sha(hf_folder / "model.safetensors")
    assert prov["dim"] == 32 and prov["architecture"] == "distilbert"
    by_name = load_encoder(f"dir:{hf_folder}")  # a folder is also a backbone, by its prefix
    np.testing.assert_allclose(by_name.encode("what?"), out[1], rtol=1e-5, atol=1e-6)


def test_text_folder_saved_in_half_precision_runs_in_float32(hf_folder: Path,
                                                             tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    half = tmp_path / "tiny-half"
    AutoTokenizer.from_pretrained(hf_folder).save_pretrained(half)
    AutoModel.from_pretrained(hf_folder).half().save_pretrained(half)
    enc = load_encoder("distilbert-sst2", weights=str(half))
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    assert enc.provenance()["compute_dtype"] == "float32"
    assert "init_scheme" not in enc.provenance()  # only random weights have a scheme


def test_text_refuses_a_state_dict_file(tmp_path: Path) -> None:
    path = _save({"w": torch.zeros(1)}, tmp_path / "text.pth")
    with pytest.raises(WeightsError, match="Hugging Face id or a save_pretrained folder"):
        load_encoder("distilbert-sst2", weights=str(path))
