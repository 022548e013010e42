"""The objective registry: named parts, weights, clustering schedule, modality subsets, errors."""

from __future__ import annotations

import pytest
import torch

from heads.config import resolve_config
from heads.losses import mms_loss
from heads.models import ConCluGenHeads
from heads.pretrain.objectives import (OBJECTIVES, Objective, get_objective, model_spec,
                                      resolve_objective_config)
from pipeline.config import ConfigError

DIMS = {"video": 12, "audio": 6, "text": 5}
PARTS = {
    "conclugen": {"mms", "clustering", "reconstruction"},
    "conclu": {"mms", "clustering"},
    "congen": {"mms", "reconstruction"},
    "multi_cont": {"mms"},
    "generative": {"reconstruction"},
    "instance_cont": {"info_nce"},
}


def _setup(name: str, cpu: dict, modalities: list[str] | None = None, **extra: dict
           ) -> tuple[Objective, ConCluGenHeads, dict[str, torch.Tensor]]:
    overrides = {**cpu, **extra}
    cfg = resolve_config(name, overrides=overrides, modalities=modalities)
    dims = {m: DIMS[m] for m in cfg.modalities}
    torch.manual_seed(0)
    model = ConCluGenHeads(model_spec(cfg, dims))
    g = torch.Generator().manual_seed(1)
    shape = (lambda d: (32, 2, d)) if OBJECTIVES[name].needs_views else (lambda d: (32, d))
    batch = {m: torch.randn(*shape(d), generator=g) for m, d in dims.items()}
    return Objective(cfg), model, batch


def test_an_unknown_objective_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown objective 'contrastive'; valid: \\['conclugen'"):
        resolve_objective_config("contrastive")
    assert resolve_objective_config("conclu", preset="cpu") == resolve_config("conclu",
                                                                               preset="cpu")


def test_registry_holds_the_six_objectives() -> None:
    assert {n: set(s.parts) for n, s in OBJECTIVES.items()} == PARTS
    with pytest.raises(KeyError, match="valid: \\['conclugen', 'conclu', 'congen'"):
        get_objective("simclr")


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_returns_loss_and_every_named_part(name: str, cpu: dict) -> None:
    objective, model, batch = _setup(name, cpu)
    out = objective(model, batch, epoch=5)
    top = {k for k in out if "/" not in k} - {"loss"}
    assert top == PARTS[name]
    assert out["loss"].item() == pytest.approx(sum(out[p].item() for p in top), rel=1e-5)
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    if "mms" in top:
        assert {k for k in out if k.startswith("mms/")} == \
            {"mms/video-audio", "mms/video-text", "mms/audio-text"}
    if "reconstruction" in top:
        assert {k for k in out if k.startswith("reconstruction/")} == \
            {f"reconstruction/{m}" for m in objective.cfg.modalities}


def test_mms_part_is_the_sum_of_mms_loss_over_pairs(cpu: dict) -> None:
    objective, model, batch = _setup("multi_cont", cpu)
    out = objective(model, batch, epoch=0)
    proj = model(batch).projections
    expected = sum(mms_loss(proj[a], proj[b]).item()
                   for a, b in [("video", "audio"), ("video", "text"), ("audio", "text")])
    assert out["mms"].item() == pytest.approx(expected, rel=1e-5)


def test_weights_and_mean_combination(cpu: dict) -> None:
    weights = {"mms": 2.0, "reconstruction": 0.5}
    objective, model, batch = _setup("congen", cpu, loss={"weights": weights})
    out = objective(model, batch, epoch=0)
    assert out["loss"].item() == pytest.approx(2 * out["mms"].item()
                                               + 0.5 * out["reconstruction"].item(), rel=1e-5)
    objective, model, batch = _setup("congen", cpu, loss={"weights": weights, "combine": "mean"})
    out = objective(model, batch, epoch=0)
    assert out["loss"].item() == pytest.approx((2 * out["mms"].item()
                                                + 0.5 * out["reconstruction"].item()) / 2,
                                               rel=1e-5)


def test_clustering_starts_at_its_epoch_and_reports_occupancy(cpu: dict) -> None:
    objective, model, batch = _setup("conclu", cpu, clustering={"start_epoch": 3})
    before = objective(model, batch, epoch=2)
    assert "clustering" not in before and "occupancy" not in objective.monitors
    assert set(objective.monitors) == {"std/video", "std/audio", "std/text"}
    after = objective(model, batch, epoch=3)
    assert "clustering" in after
    occ = objective.monitors["occupancy"]
    assert occ.shape == (8,) and occ.sum().item() == pytest.approx(1.0)


def test_individual_clustering_mode_has_a_piece_per_modality(cpu: dict) -> None:
    objective, model, batch = _setup("conclu", cpu, clustering={"start_epoch": 0,
                                                                "mode": "individual"})
    out = objective(model, batch, epoch=0)
    pieces = [out[f"clustering/{m}"].item() for m in ("video", "audio", "text")]
    assert out["clustering"].item() == pytest.approx(sum(pieces), rel=1e-5)


def test_evaluation_leaves_the_kmeans_state_alone(cpu: dict) -> None:
    objective, model, batch = _setup("conclugen", cpu, clustering={"start_epoch": 0})
    assert "clustering" not in objective(model, batch, epoch=0, train=False)  # nothing fit yet
    objective(model, batch, epoch=0)
    state = objective.state_dict()["clustering"]
    centroids, queued = state["kmeans"]["centroids"].clone(), len(state["queue"]["items"])
    out = objective(model, batch, epoch=0, train=False)
    assert "clustering" in out
    state = objective.state_dict()["clustering"]
    assert torch.equal(state["kmeans"]["centroids"], centroids)
    assert len(state["queue"]["items"]) == queued


def test_clustering_uses_the_mean_centroids_and_keeps_its_queue_across_epochs(cpu: dict
                                                                            ) -> None:
    objective, model, batch = _setup("conclu", cpu, clustering={"start_epoch": 0})
    out = objective(model, batch, epoch=0)
    objective(model, batch, epoch=1)  # a new epoch: the queue keeps the last batches
    clustering = objective.clustering
    assert clustering is not None and len(clustering.queue) == 2
    centroids = clustering.kmeans.centroids
    fused = torch.stack([g.float() for g in model(batch).cluster_logits.values()]).mean(0)
    labels = clustering.kmeans.predict(fused)
    # Eq. 9: a centroid that has members of this batch only is their plain mean; here the
    # queue holds the same batch twice, so every centroid is the mean of its batch members.
    for k in labels.unique():
        assert torch.allclose(centroids[k], fused[labels == k].mean(0), atol=1e-4)
    assert "clustering" in out


def test_reset_each_epoch_zeroes_the_queue_as_the_reference_code(cpu: dict) -> None:
    objective, model, batch = _setup("conclu", cpu, clustering={"start_epoch": 0,
                                                                "reset_each_epoch": True})
    objective(model, batch, epoch=0)
    objective(model, batch, epoch=0)
    assert objective.clustering is not None and len(objective.clustering.queue) == 2
    objective(model, batch, epoch=1)
    assert len(objective.clustering.queue) == 1  # zeroed, then this batch queued


def test_modality_subsets_give_the_paper_ablations(cpu: dict) -> None:
    objective, model, batch = _setup("conclugen", cpu, ["video", "audio"],
                                     clustering={"start_epoch": 0})
    out = objective(model, batch, epoch=0)
    assert [k for k in out if k.startswith("mms/")] == ["mms/video-audio"]
    assert "reconstruction/text" not in out
    objective, model, batch = _setup("generative", cpu, ["text"])
    assert set(objective(model, batch, epoch=0)) == {"loss", "reconstruction",
                                                     "reconstruction/text"}


def test_too_few_modalities_is_an_error(cpu: dict) -> None:
    cfg = resolve_config("multi_cont", overrides=cpu, modalities=["video"])
    with pytest.raises(ValueError, match="at least 2 modalities"):
        Objective(cfg)


def test_instance_cont_needs_two_views_per_sample(cpu: dict) -> None:
    objective, model, batch = _setup("instance_cont", cpu)
    with pytest.raises(ValueError, match=r"\[N, 2, E\].*\(32, 12\)"):
        objective(model, {"video": batch["video"][:, 0]}, epoch=0)
    several = _setup("instance_cont", cpu, ["video", "audio"])
    out = several[0](several[1], several[2], epoch=0)
    assert set(out) == {"loss", "info_nce", "info_nce/video", "info_nce/audio"}


def test_losses_run_in_float32_under_bf16_autocast(cpu: dict) -> None:
    objective, model, batch = _setup("multi_cont", cpu)
    model.eval()  # same BatchNorm statistics for both forward passes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = objective(model, batch, epoch=0)
        proj = model(batch).projections
    assert proj["video"].dtype == torch.bfloat16  # the heads do run in bf16
    expected = mms_loss(proj["video"].float(), proj["audio"].float())
    assert out["mms/video-audio"].dtype == torch.float32
    assert out["mms/video-audio"].item() == expected.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = mms_loss(proj["video"].float(), proj["audio"].float())
    assert in_bf16.item() != expected.item()  # what the margin would suffer without the guard
