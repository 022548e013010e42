"""``cli weights list`` / ``fetch``, ``--weights-dir``, and the README's first extraction command
with the default backbones, their checkpoints served by a loopback server in the publishers'
place (``CONCLUGEN_WEIGHTS_MIRROR``)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from pipeline.backbones import catalogue
from pipeline.backbones.catalogue import Checksum, WeightsEntry
from pipeline.backbones.registry import DEFAULT_BACKBONES, REGISTRY, check_weights
from tests.pipeline.test_backbones_download import Site, _rdvq_archive, _rdvq_state, site

runner = CliRunner()
__all__ = ["site"]  # the loopback server fixture, shared


def _serve(site: Site, monkeypatch: pytest.MonkeyPatch, backbone: str,
           bodies: dict[str, bytes]) -> None:
    """Serve ``bodies`` (file name -> bytes) at ``backbone``'s published URLs and publish
    their checksums (of the kind the real entry has) in its catalogue entry."""
    entry = REGISTRY[backbone].downloads[0]
    files = []
    for file in entry.files:
        body = bodies[file.name]
        parts = urlparse(file.url)
        query = f"?{parts.query}" if parts.query else ""
        site.files[f"/{parts.netloc}{parts.path}{query}"] = (body, "ok")
        if file.check is not None:
            digest = (hashlib.md5(body).hexdigest() if file.check.kind == "md5"
                      else hashlib.sha256(body).hexdigest())
            value = digest[:8] if file.check.kind == "sha256-prefix" else digest
            file = dataclasses.replace(file, check=Checksum(file.check.kind, value, "test"))
        files.append(file)
    patched: WeightsEntry = dataclasses.replace(entry, files=tuple(files))
    monkeypatch.setitem(REGISTRY, backbone, dataclasses.replace(
        REGISTRY[backbone], downloads=(patched, *REGISTRY[backbone].downloads[1:])))


def _state_file(model: torch.nn.Module, extra: dict[str, torch.Tensor] | None = None) -> bytes:
    """A checkpoint with ``model``'s key names and shapes (small constant values)."""
    state = {k: torch.full(v.shape, 0.01) if v.is_floating_point() else
             torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()}
    state |= {k: torch.ones(v.shape) for k, v in model.state_dict().items()
              if k.endswith("running_var")}
    buf = io.BytesIO()
    torch.save(state | (extra or {}), buf)
    return buf.getvalue()


def _text_files(folder: Path) -> dict[str, bytes]:
    """A tiny random DistilBERT in the published repository's files (config.json,
    model.safetensors, vocab.txt, tokenizer_config.json)."""
    from transformers import DistilBertConfig, DistilBertModel

    from pipeline.backbones.text import charpiece_vocab

    vocab = charpiece_vocab()
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=1, n_heads=2,
                                     hidden_dim=64)).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_weights_list_shows_every_backbone_and_its_checksum() -> None:
    result = runner.invoke(app, ["weights", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for name in REGISTRY:
        assert f"\n{name} (" in out
    assert "resdavenet (audio, default): RDVQ_00000" in out
    assert "md5 e3f94990c72ce9742c252b2e04f134e4" in out
    assert "sha256-prefix f82ba261" in out
    assert "unverified (no published checksum)" in out  # the 3D ResNet-101
    assert "the files pinned by revision 714eb0f" in out
    assert "no published checkpoint" in out  # plain DAVEnet
    assert "fetched   no" in out and "BSD-3-Clause" in out


def test_fetch_to_a_folder_then_extract_with_weights_dir_checks_before_any_worker(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(site, monkeypatch, "r3d_18", {"r3d_18-b3b3357e.pth": b"r3d weights" * 100})
    folder = tmp_path / "offline"
    fetched = runner.invoke(app, ["weights", "fetch", "--to", str(folder),
                                  "--backbone", "r3d_18"])
    assert fetched.exit_code == 0, fetched.output
    assert f"KINETICS400_V1: fetched and verified: {folder / 'r3d_18-b3b3357e.pth'}" in \
        " ".join(fetched.output.split())
    listed = runner.invoke(app, ["weights", "list"], env={"CONCLUGEN_WEIGHTS_DIR": str(folder),
                                                          "COLUMNS": "200"})
    assert f"fetched   yes ({folder / 'r3d_18-b3b3357e.pth'})" in listed.output
    # The folder's checkpoint passes the check; the missing audio one is refused, exit 2.
    site.files.clear()
    result = runner.invoke(app, [
        "extract", "--dataset", "meld", "--root", str(tmp_path / "raw"), "--out",
        str(tmp_path / "store"), "--modalities", "frames_3d,audio", "--backbone",
        "frames_3d=r3d_18", "--backbone", "audio=davenet", "--weights-dir", str(folder)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "1 backbone checkpoint(s) missing or wrong (checked before starting any worker;" \
        in message
    assert "audio: davenet, which has no published checkpoint" in message
    assert "frames_3d" not in message.split("worker;")[1]
    assert not (tmp_path / "store").exists()


def test_weights_dir_must_be_a_folder(tmp_path: Path) -> None:
    for command in (["predict", str(tmp_path / "clip.mp4")],
                    ["extract", "--dataset", "meld", "--root", str(tmp_path), "--out",
                     str(tmp_path / "store")]):
        result = runner.invoke(app, [*command, "--weights-dir", str(tmp_path / "absent")])
        assert result.exit_code == 2, result.output
        assert "--weights-dir" in result.output and "no such folder" in result.output


@pytest.mark.slow
def test_the_readme_first_extraction_command_with_the_default_weights(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meld_sample: Path) -> None:
    """``cli extract --dataset meld --root RAW --out STORE`` with nothing but the defaults:
    every default checkpoint fetched from the (loopback) publishers, verified, and loaded."""
    import torchvision

    from pipeline.backbones.resnet3d import ResNet3d

    with torch.device("meta"):
        resnet152, resnet3d = torchvision.models.resnet152(), ResNet3d()
    classifier = {"fc.weight": torch.zeros(400, 2048), "fc.bias": torch.zeros(400)}
    archive = _rdvq_archive(_rdvq_state())
    _serve(site, monkeypatch, "resnet152", {"resnet152-f82ba261.pth": _state_file(resnet152)})
    _serve(site, monkeypatch, "resnet3d101", {
        "resnet3d101_kinetics-8d4c9d63.pth": _state_file(resnet3d, classifier)})
    _serve(site, monkeypatch, "resdavenet", {"RDVQ_00000-best_audio_model.pth": archive})
    _serve(site, monkeypatch, "distilbert-sst2", _text_files(tmp_path / "tiny"))
    out = tmp_path / "store"
    result = runner.invoke(app, ["extract", "--dataset", "meld", "--root", str(meld_sample),
                                 "--out", str(out), "--limit", "1", "--workers", "1",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    store = json.loads((out / "store.json").read_text())
    weights = {k: (m["backbone"], m["weights"])
               for k, m in store["identity"]["modalities"].items()}
    assert weights == {"frames_2d": ("resnet152", "IMAGENET1K_V2"),
                       "frames_3d": ("resnet3d101", "resnet3d101_kinetics-8d4c9d63"),
                       "audio": ("resdavenet", "RDVQ_00000"),
                       "text": ("distilbert-sst2",
                                "distilbert-base-uncased-finetuned-sst-2-english")}
    folder = tmp_path / "weights"
    kept = folder / "RDVQ_00000-best_audio_model.pth"
    assert store["modalities"]["audio"]["weights_sha256"] == \
        hashlib.sha256(kept.read_bytes()).hexdigest()
    assert store["modalities"]["text"]["encoder"]["revision"] == \
        catalogue.DISTILBERT_SST2_REVISION
    assert store["counts"]["samples"] == 1
    served = len(site.requests)
    check_weights(DEFAULT_BACKBONES, {})  # found in the weights folder and verified again
    assert len(site.requests) == served  # fetched once
