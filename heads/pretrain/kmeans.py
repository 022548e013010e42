"""Online cosine k-means on the device, for the ConCluGen clustering loss.

Differences from the paper's reference code, on purpose:

- the centroids persist between steps (warm start): each step runs a few Lloyd iterations from
  the previous centroids instead of refitting from a random start, so cluster identities stay
  stable from step to step and far fewer iterations are needed;
- the first fit is seeded with k-means++ from a seeded generator (reproducible and resumable);
- the queue of past batches is never zeroed: it holds the last ``batches`` batches across epoch
  boundaries, exactly as a FIFO should.

Everything here is a small stateful object with ``state_dict`` / ``load_state_dict`` of plain
tensors, so a checkpoint resumes clustering exactly.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class CosineKMeans:
    """k-means under cosine similarity: inputs and centroids live on the unit sphere.

    Args:
        clusters: number of centroids K.
        iterations: maximum Lloyd iterations per :meth:`fit`.
        tol: stop early once no centroid moves by more than ``tol`` in cosine distance.
        seed: seeds the generator of the k-means++ initialisation.

    Raises:
        ValueError: clusters < 1, iterations < 1 or tol < 0.
    """

    def __init__(self, clusters: int, *, iterations: int = 10, tol: float = 1e-4,
                 seed: int = 0) -> None:
        if clusters < 1 or iterations < 1 or tol < 0:
            raise ValueError(f"CosineKMeans: need clusters >= 1, iterations >= 1, tol >= 0; got "
                             f"clusters={clusters}, iterations={iterations}, tol={tol}")
        self.clusters = clusters
        self.iterations = iterations
        self.tol = tol
        # CPU generator: the same draws on any device, and its state fits in a checkpoint.
        self.generator = torch.Generator().manual_seed(seed)
        self.centroids: Tensor | None = None

    def fit(self, x: Tensor) -> Tensor:
        """Update the centroids on ``x`` (warm start) and assign every row.

        Args:
            x: [N, K] points (any norm; they are L2-normalised here), N >= clusters.

        Returns:
            [N] int64 index of each point's nearest centroid after the update.
        """
        x = self._check(x)
        c = self.centroids if self.centroids is not None else self._init_plus_plus(x)
        for _ in range(self.iterations):
            labels = (x @ c.T).argmax(dim=1)
            updated = self._update(x, labels, c)
            moved = (1 - (updated * c).sum(dim=1)).max()
            c = updated
            if moved <= self.tol:
                break
        self.centroids = c
        return (x @ c.T).argmax(dim=1)

    def predict(self, x: Tensor) -> Tensor:
        """Assign rows of ``x`` [N, K] to the current centroids; returns [N] int64."""
        if self.centroids is None:
            raise RuntimeError("CosineKMeans.predict before any fit")
        return (F.normalize(x.float(), dim=1) @ self.centroids.T).argmax(dim=1)

    def _check(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[0] < self.clusters:
            raise ValueError(f"CosineKMeans: expected [N >= {self.clusters}, K] points, "
                             f"got {tuple(x.shape)}")
        if self.centroids is not None and self.centroids.shape[1] != x.shape[1]:
            raise ValueError(f"CosineKMeans: points {tuple(x.shape)} do not match centroids "
                             f"{tuple(self.centroids.shape)}")
        return F.normalize(x.detach().float(), dim=1)

    def _init_plus_plus(self, x: Tensor) -> Tensor:
        """k-means++ seeding with cosine distance (Arthur & Vassilvitskii 2007)."""
        first = int(torch.randint(len(x), (1,), generator=self.generator))
        chosen = [first]
        best = x @ x[first]
        for _ in range(1, self.clusters):
            dist = (1 - best).clamp_min(0) ** 2
            if float(dist.sum()) <= 0:  # all points coincide with a centroid: pick any other
                dist = torch.ones_like(dist)
                dist[chosen] = 0
            nxt = int(torch.multinomial(dist.cpu(), 1, generator=self.generator))
            chosen.append(nxt)
            best = torch.maximum(best, x @ x[nxt])
        return x[chosen].clone()

    def _update(self, x: Tensor, labels: Tensor, previous: Tensor) -> Tensor:
        sums = torch.zeros_like(previous).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=self.clusters)
        empty = counts == 0
        if bool(empty.any()):
            # An empty cluster restarts at the points the current centroids fit worst: a
            # deterministic choice that puts it where it can take members next iteration.
            fit = (x @ previous.T).max(dim=1).values
            worst = fit.topk(int(empty.sum()), largest=False).indices
            sums[empty] = x[worst]
        return F.normalize(sums, dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"centroids": None if self.centroids is None else self.centroids.cpu(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        c = state["centroids"]
        self.centroids = None if c is None else c.to(device)
        self.generator.set_state(state["generator"])


class FeatureQueue:
    """FIFO of the last ``batches`` batches of detached features.

    Args:
        batches: how many past batches to keep (0 keeps none).
    """

    def __init__(self, batches: int) -> None:
        if batches < 0:
            raise ValueError(f"FeatureQueue: batches must be >= 0, got {batches}")
        self.batches = batches
        self._items: deque[Tensor] = deque(maxlen=batches or None)

    def __len__(self) -> int:
        return len(self._items)

    def with_batch(self, x: Tensor) -> Tensor:
        """[Q + N, K] the queued rows (oldest first) followed by ``x`` [N, K] (detached)."""
        return torch.cat([*self._items, x.detach()]) if self._items else x.detach()

    def push(self, x: Tensor) -> None:
        """Append ``x`` [N, K]; the oldest batch drops out once ``batches`` are held."""
        if self.batches:
            self._items.append(x.detach().clone())

    def state_dict(self) -> dict[str, Any]:
        return {"items": [t.cpu() for t in self._items]}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self._items.clear()
        for t in state["items"]:
            self._items.append(t.to(device))


class OnlineClustering:
    """k-means over the current batch plus a queue of past batches, once per training step.

    Args:
        clusters: number of centroids (8 in the paper's appendix).
        queue_batches: past batches clustered with the current one (4 in the appendix).
        iterations: Lloyd iterations per step (warm-started).
        seed: seeds the k-means++ initialisation.
    """

    def __init__(self, clusters: int, *, queue_batches: int, iterations: int = 10,
                 seed: int = 0) -> None:
        self.kmeans = CosineKMeans(clusters, iterations=iterations, seed=seed)
        self.queue = FeatureQueue(queue_batches)

    def step(self, fused: Tensor) -> tuple[Tensor, Tensor] | None:
        """Refine the centroids on queue + batch, assign the batch, then enqueue it.

        Args:
            fused: [N, K] the batch's modality-mean clustering-head outputs.

        Returns:
            centroids [C, K] (unit norm, no gradient) and the batch's assignments [N] int64;
            None while queue + batch still hold fewer points than clusters (tiny datasets:
            the batch is queued and the clustering loss waits for the next step).
        """
        points = self.queue.with_batch(fused)
        if self.kmeans.centroids is None and points.shape[0] < self.kmeans.clusters:
            self.queue.push(fused)
            return None
        labels = self.kmeans.fit(points)
        self.queue.push(fused)
        assert self.kmeans.centroids is not None
        return self.kmeans.centroids, labels[-fused.shape[0]:]

    def state_dict(self) -> dict[str, Any]:
        return {"kmeans": self.kmeans.state_dict(), "queue": self.queue.state_dict()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.kmeans.load_state_dict(state["kmeans"], device)
        self.queue.load_state_dict(state["queue"], device)


def occupancy(labels: Tensor, clusters: int) -> Tensor:
    """[C] fraction of ``labels`` [N] in each cluster (a collapse monitor: all mass in one)."""
    return torch.bincount(labels, minlength=clusters).float() / max(1, labels.numel())
