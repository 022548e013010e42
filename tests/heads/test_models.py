"""The heads: every objective's model builds, runs forward with the right shapes, and rebuilds."""

from __future__ import annotations

import pytest
import torch

from heads.config import resolve_config
from heads.models import (ConCluGenHeads, GatedEmbeddingUnit, ModelSpec, ProjectionHead,
                          decoder)
from heads.pretrain.objectives import OBJECTIVES, model_spec

INPUTS = {"video": 12, "audio": 6, "text": 5}


def _batch(n: int = 8, dims: dict[str, int] = INPUTS) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(n, d, generator=g) for m, d in dims.items()}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_builds_the_heads_it_needs(name: str, cpu: dict) -> None:
    cfg = resolve_config(name, overrides=cpu, modalities=list(INPUTS))
    spec = model_spec(cfg, INPUTS)
    model = ConCluGenHeads(spec)
    out = model(_batch())
    parts = OBJECTIVES[name].parts
    d, p, k = 64, 16, cfg.clustering.clusters
    assert {m: tuple(r.shape) for m, r in out.representations.items()} == \
        {m: (8, d) for m in INPUTS}
    assert bool(out.projections) == ("mms" in parts or "info_nce" in parts)
    assert bool(out.cluster_logits) == ("clustering" in parts)
    assert bool(out.reconstructions) == ("reconstruction" in parts)
    for proj in out.projections.values():
        assert proj.shape == (8, p)
        assert torch.allclose(proj.norm(dim=1), torch.ones(8), atol=1e-5)
    for logits in out.cluster_logits.values():
        assert logits.shape == (8, k)
    for m, rec in out.reconstructions.items():
        assert rec.shape == (8, INPUTS[m])
    tensors = [*out.representations.values(), *out.projections.values(),
               *out.cluster_logits.values(), *out.reconstructions.values()]
    assert all(torch.isfinite(t).all() for t in tensors)


def test_gated_embedding_unit_gates_and_is_non_negative() -> None:
    geu = GatedEmbeddingUnit(5, 7)
    y = geu(torch.randn(4, 5))
    assert y.shape == (4, 7) and (y >= 0).all()
    with torch.no_grad():
        geu.gate.weight.zero_()
        geu.gate.bias.fill_(-1e4)  # a closed gate lets nothing through but fc2's bias
    y = geu(torch.randn(4, 5))
    assert torch.allclose(y, torch.relu(geu.fc2.bias).expand(4, 7))


def test_projection_and_decoder_layer_shapes() -> None:
    head = ProjectionHead(64, 16)
    assert [tuple(m.weight.shape) for m in head.net if hasattr(m, "weight")] == \
        [(8, 64), (8,), (16, 8)]
    dec = decoder(64, 32, 10)
    assert dec(torch.randn(3, 64)).shape == (3, 10)


def test_clustering_head_has_no_bias_and_projection_can_be_shared() -> None:
    spec = ModelSpec(INPUTS, 64, projection_dim=16, clusters=8, shared_projection=True)
    model = ConCluGenHeads(spec)
    assert model.cluster_head.bias is None
    assert list(model.projectors) == ["shared"]
    per_modality = ConCluGenHeads(ModelSpec(INPUTS, 64, projection_dim=16))
    assert list(per_modality.projectors) == list(INPUTS)


def test_represent_takes_any_subset_and_checks_inputs() -> None:
    model = ConCluGenHeads(ModelSpec(INPUTS, 32))
    reps = model.represent({"audio": torch.randn(3, 6)})
    assert list(reps) == ["audio"] and reps["audio"].shape == (3, 32)
    with pytest.raises(KeyError, match="no representation head for \\['depth'\\]"):
        model.represent({"depth": torch.randn(3, 6)})
    with pytest.raises(ValueError, match=r"audio: expected \[N, 6\].*\(3, 7\)"):
        model.represent({"audio": torch.randn(3, 7)})


def test_spec_round_trips_and_rebuilds_the_same_model() -> None:
    spec = ModelSpec(INPUTS, 32, projection_dim=8, clusters=4, reconstruction_dim=16)
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec
    a = ConCluGenHeads(spec)
    b = ConCluGenHeads(again)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    batch = _batch()
    assert torch.equal(a(batch).projections["video"], b(batch).projections["video"])


@pytest.mark.parametrize("kwargs, match", [
    ({"input_dims": {}}, "no modalities"),
    ({"representation_dim": 0}, "positive int"),
    ({"representation_dim": 4, "projection_dim": 2}, "D/8"),
    ({"clusters": 8}, "needs a projection head"),
])
def test_spec_errors(kwargs: dict, match: str) -> None:
    args = {"input_dims": INPUTS, "representation_dim": 32, **kwargs}
    with pytest.raises(ValueError, match=match):
        ModelSpec(**args)


# ------------------------------------------------------------------ choices (docs/CHOICES.md)

def test_default_heads_follow_the_reference_code(cpu: dict) -> None:
    cfg = resolve_config("conclugen", overrides=cpu)
    spec = model_spec(cfg, INPUTS)
    assert (spec.projection_activation, spec.cluster_input, spec.audio_head,
            spec.decoder_activation) == ("relu", "projection", "geu_linear", "none")
    model = ConCluGenHeads(spec)
    # The projection head ends with a ReLU before its L2 normalisation ...
    assert isinstance(model.projectors["video"].net[-1], torch.nn.ReLU)
    out = model(_batch())
    assert all((p >= 0).all() for p in out.projections.values())
    # ... and the clustering head reads the projection before that normalisation.
    raw = model.projectors["text"].net(out.representations["text"])
    assert torch.allclose(out.cluster_logits["text"], model.cluster_head(raw), atol=1e-6)
    # Audio: GEU(E -> E), then Linear(E -> D); the other modalities GEU(E -> D).
    audio = model.encoders["audio"]
    assert isinstance(audio, torch.nn.Sequential) and isinstance(audio[0], GatedEmbeddingUnit)
    assert tuple(audio[0].fc1.weight.shape) == (6, 6) and tuple(audio[1].weight.shape) == (64, 6)
    assert isinstance(model.encoders["video"], GatedEmbeddingUnit)
    # The decoders end without a ReLU: they can reconstruct signed (text) features.
    assert isinstance(model.decoders["text"][-1], torch.nn.Linear)


def test_the_switches_give_the_other_heads(cpu: dict) -> None:
    cfg = resolve_config("conclugen", overrides={
        **cpu, "model": {**cpu["model"], "projection_activation": "none",
                         "cluster_input": "normalized", "audio_head": "geu",
                         "decoder_activation": "relu"}})
    model = ConCluGenHeads(model_spec(cfg, INPUTS))
    out = model(_batch())
    assert isinstance(model.projectors["video"].net[-1], torch.nn.Linear)
    assert torch.allclose(out.cluster_logits["audio"], model.cluster_head(out.projections["audio"]),
                          atol=1e-6)
    assert isinstance(model.encoders["audio"], GatedEmbeddingUnit)
    assert isinstance(model.decoders["text"][-1], torch.nn.ReLU)
    assert (out.reconstructions["text"] >= 0).all()


def test_a_spec_without_the_choices_rebuilds_the_earlier_heads() -> None:
    # Checkpoints written before the choices were recorded hold none of these keys.
    spec = ModelSpec.from_dict({"input_dims": INPUTS, "representation_dim": 32,
                                "projection_dim": 8, "clusters": 4, "reconstruction_dim": 16,
                                "shared_projection": False})
    assert (spec.projection_activation, spec.cluster_input, spec.audio_head,
            spec.decoder_activation) == ("none", "normalized", "geu", "none")
    with pytest.raises(ValueError, match="audio_head"):
        ModelSpec(INPUTS, 32, audio_head="lstm")
