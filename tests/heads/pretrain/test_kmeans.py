"""Cosine k-means: recovers clusters, seeds reproducibly, warm-starts, resumes from its state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from heads.pretrain.kmeans import CosineKMeans, FeatureQueue, OnlineClustering, occupancy


def _blobs(n_per: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three tight groups around orthogonal directions (norms vary: cosine must ignore them)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(3) * 5
    x = torch.cat([c + 0.3 * torch.randn(n_per, 3, generator=g) for c in centers])
    scale = 0.5 + torch.rand(len(x), 1, generator=g) * 3
    return x * scale, torch.arange(3).repeat_interleave(n_per)


def test_fit_recovers_well_separated_clusters() -> None:
    x, truth = _blobs()
    labels = CosineKMeans(3, seed=0).fit(x)
    # Each true group lands in exactly one cluster, and the clusters differ between groups.
    mapping = {int(t): set(labels[truth == t].tolist()) for t in range(3)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len(set.union(*mapping.values())) == 3


def test_centroids_are_the_plain_mean_of_their_members() -> None:
    # Eq. 9 of the paper: c_k = mean of the points assigned to k. Cosine decides the members,
    # but the centroid keeps the members' norms (here 5x larger in cluster 0).
    x = torch.tensor([[5.0, 0.1], [5.0, -0.1], [10.0, 0.0], [0.0, 1.0], [0.2, 1.0], [-0.2, 1.0]])
    km = CosineKMeans(2, seed=0)
    labels = km.fit(x)
    assert labels.tolist() in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    for k in range(2):
        assert torch.allclose(km.centroids[k], x[labels == k].mean(dim=0), atol=1e-6)
    assert sorted(km.centroids.norm(dim=1).tolist()) == pytest.approx([1.0, 20 / 3], abs=1e-5)


def test_normalized_centroids_are_unit_norm_and_seeding_is_reproducible() -> None:
    x, _ = _blobs()
    a, b = CosineKMeans(3, seed=7, centroids="normalized"), \
        CosineKMeans(3, seed=7, centroids="normalized")
    a.fit(x)
    b.fit(x)
    assert torch.equal(a.centroids, b.centroids)
    assert torch.allclose(a.centroids.norm(dim=1), torch.ones(3), atol=1e-6)
    c, d = CosineKMeans(3, seed=7), CosineKMeans(3, seed=7)
    assert torch.equal(c.fit(x), d.fit(x)) and torch.equal(c.centroids, d.centroids)
    # Both variants find the same partition of well-separated groups.
    assert torch.equal(c.fit(x), CosineKMeans(3, seed=7, centroids="normalized").fit(x))


def test_without_warm_start_every_fit_seeds_afresh() -> None:
    x, _ = _blobs()
    cold = CosineKMeans(3, iterations=1, seed=0, warm_start=False)
    warm = CosineKMeans(3, iterations=1, seed=0)
    cold.fit(x)
    warm.fit(x)
    assert torch.equal(cold.centroids, warm.centroids)
    twin = CosineKMeans(3, iterations=1, seed=0, warm_start=False)
    twin.generator.set_state(cold.generator.get_state())
    drawn = cold.generator.get_state()
    cold.fit(x)  # a new k-means++ draw (the reference code's refit), one Lloyd step from it
    twin.fit(x)
    assert torch.equal(cold.centroids, twin.centroids)
    assert not torch.equal(cold.generator.get_state(), drawn)
    seeded = warm.generator.get_state()
    warm.fit(x)  # continues from its centroids: no new draw
    assert torch.equal(warm.generator.get_state(), seeded)


def test_warm_start_continues_from_previous_centroids() -> None:
    x, _ = _blobs()
    km = CosineKMeans(3, iterations=50, seed=0)
    km.fit(x)
    before = km.centroids.clone()
    km.iterations = 1
    km.fit(x)  # converged centroids are a fixed point of one more Lloyd step
    assert torch.allclose(km.centroids, before, atol=1e-6)
    shifted = x + 0.05 * torch.randn_like(x)
    km.fit(shifted)
    assert torch.allclose(km.centroids, before, atol=0.05)  # stays near, not re-seeded


def test_empty_clusters_are_refilled_without_nan() -> None:
    x = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    km = CosineKMeans(3, seed=0)
    km.fit(x)
    assert torch.isfinite(km.centroids).all()
    assert km.predict(x).shape == (10,)


def test_errors() -> None:
    with pytest.raises(ValueError, match="clusters"):
        CosineKMeans(0)
    with pytest.raises(ValueError, match="centroids"):
        CosineKMeans(2, centroids="median")
    with pytest.raises(ValueError, match=r"\[N >= 4, K\].*\(3, 2\)"):
        CosineKMeans(4).fit(torch.randn(3, 2))
    with pytest.raises(RuntimeError, match="before any fit"):
        CosineKMeans(2).predict(torch.randn(3, 2))
    km = CosineKMeans(2)
    km.fit(torch.randn(5, 2))
    with pytest.raises(ValueError, match="do not match centroids"):
        km.fit(torch.randn(5, 3))


def test_queue_is_fifo_of_the_last_batches() -> None:
    q = FeatureQueue(2)
    for i in range(4):
        q.push(torch.full((2, 1), float(i)))
    out = q.with_batch(torch.full((2, 1), 9.0))
    assert out.squeeze(1).tolist() == [2, 2, 3, 3, 9, 9]
    empty = FeatureQueue(0)
    empty.push(torch.ones(2, 1))
    assert len(empty) == 0


def test_online_clustering_assigns_the_batch_and_resumes_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(16, 4, generator=g) for _ in range(6)]
    straight = OnlineClustering(3, queue_batches=2, iterations=3, seed=1)
    outs = [straight.step(b) for b in batches]
    assert outs[0][1].shape == (16,)
    assert len(straight.queue) == 2

    first = OnlineClustering(3, queue_batches=2, iterations=3, seed=1)
    for b in batches[:3]:
        first.step(b)
    resumed = OnlineClustering(3, queue_batches=2, iterations=3, seed=99)
    resumed.load_state_dict(first.state_dict())
    for b, (centroids, labels) in zip(batches[3:], outs[3:]):
        c, lab = resumed.step(b)
        assert torch.equal(c, centroids) and torch.equal(lab, labels)


def test_labels_agree_with_nearest_centroid() -> None:
    x, _ = _blobs(seed=3)
    km = CosineKMeans(3)
    labels = km.fit(x)
    sims = F.normalize(x, dim=1) @ F.normalize(km.centroids, dim=1).T
    assert torch.equal(labels, sims.argmax(dim=1))


def test_occupancy_is_a_distribution_over_clusters() -> None:
    occ = occupancy(torch.tensor([0, 0, 2, 2, 2, 1]), 4)
    assert occ.tolist() == pytest.approx([2 / 6, 1 / 6, 3 / 6, 0.0])


def test_online_clustering_waits_until_it_has_as_many_points_as_clusters() -> None:
    online = OnlineClustering(8, queue_batches=2)
    batch = F.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    assert online.step(batch) is None       # 3 points, 8 clusters: queued, nothing fitted
    assert online.step(batch + 0.01) is None  # 6 points
    fitted = online.step(batch - 0.01)      # 9 points
    assert fitted is not None
    centroids, labels = fitted
    assert centroids.shape == (8, 4) and labels.shape == (3,)


def test_reset_forgets_the_queue_and_the_centroids() -> None:
    online = OnlineClustering(2, queue_batches=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        online.step(torch.randn(4, 3, generator=g))
    assert len(online.queue) == 3 and online.kmeans.centroids is not None
    online.reset()
    assert len(online.queue) == 0 and online.kmeans.centroids is None


@pytest.mark.parametrize("centroids", ["mean", "normalized"])
def test_the_gpu_path_without_host_reads_gives_the_same_centroids(centroids: str) -> None:
    """On CUDA every Lloyd iteration runs and converged centroids are frozen on the device
    (no host read per iteration); the early-stopping CPU path gives bitwise the same."""
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(96, 6, generator=g) for _ in range(4)]
    batches.append(torch.randn(96, 6, generator=g) * 1e-3 + 5)  # one tight blob: empties
    waits, frees = (CosineKMeans(5, seed=1, centroids=centroids, sync=s) for s in (True, False))
    for x in batches:
        assert torch.equal(waits.fit(x), frees.fit(x))
        assert waits.centroids is not None and frees.centroids is not None
        assert torch.equal(waits.centroids, frees.centroids)
    assert CosineKMeans(2).sync is None  # by device: host reads on a CPU only


def test_an_empty_cluster_takes_the_worst_fitted_points_in_cluster_order() -> None:
    """Two empty clusters: the first (by index) restarts at the worst fitted point, the
    second at the next worst; the others are the means of their members."""
    km = CosineKMeans(4, iterations=1, seed=0)
    points = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.05],
                           [-0.7, -0.7]])
    previous = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, -1.0]])
    unit = torch.nn.functional.normalize(points, dim=1)
    labels = torch.tensor([0, 0, 1, 1, 0, 1])  # clusters 2 and 3 empty
    updated = km._update(points, unit, labels, previous)
    fit = (unit @ torch.nn.functional.normalize(previous, dim=1).T).max(dim=1).values
    first, second = fit.argsort()[:2].tolist()
    assert torch.equal(updated[2], points[first]) and torch.equal(updated[3], points[second])
    torch.testing.assert_close(updated[0], points[[0, 1, 4]].mean(0))
    torch.testing.assert_close(updated[1], points[[2, 3, 5]].mean(0))
