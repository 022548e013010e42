"""Online cosine k-means on the device, for the ConCluGen clustering loss.

Cosine similarity decides the assignments; a centroid is the plain mean of its members (Eq. 9
of the paper, and what the reference code's k-means computes), so its norm carries how tightly
its members agree, and the clustering loss sees that. ``centroids="normalized"`` keeps the
centroids on the unit sphere instead (spherical k-means).

Differences from the paper's reference code, on purpose (each a switch, ``docs/CHOICES.md``):

- the centroids persist between steps (``warm_start``): each step runs a few Lloyd iterations
  from the previous centroids instead of refitting from a random start, so cluster identities
  stay stable from step to step and far fewer iterations are needed;
- every fresh start is seeded with k-means++ from a seeded generator (reproducible, resumable);
- the queue of past batches is not zeroed at each epoch (the objective's ``reset_each_epoch``):
  it holds the last ``batches`` batches across epoch boundaries, as a FIFO should.

Everything here is a small stateful object with ``state_dict`` / ``load_state_dict`` of plain
tensors, so a checkpoint resumes clustering exactly.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


CENTROIDS = ("mean", "normalized")


class CosineKMeans:
    """k-means whose assignments follow cosine similarity.

    Args:
        clusters: number of centroids K.
        iterations: maximum Lloyd iterations per :meth:`fit`.
        tol: stop early once no centroid moves by more than ``tol`` in cosine distance.
        seed: seeds the generator of the k-means++ initialisation.
        centroids: ``mean`` (the plain mean of a cluster's member points, Eq. 9) or
            ``normalized`` (that mean's direction, unit norm; the points are L2-normalised
            first).
        warm_start: each :meth:`fit` starts from the previous centroids; ``False`` seeds afresh
            every time (the reference code's refit).
        sync: read the convergence test on the host and stop early (None: on a CPU, not on
            CUDA, where the converged centroids are frozen on the device instead). The
            centroids are the same either way.

    Raises:
        ValueError: clusters < 1, iterations < 1, tol < 0 or an unknown ``centroids``.
    """

    def __init__(self, clusters: int, *, iterations: int = 10, tol: float = 1e-4,
                 seed: int = 0, centroids: str = "mean", warm_start: bool = True,
                 sync: bool | None = None) -> None:
        if clusters < 1 or iterations < 1 or tol < 0 or centroids not in CENTROIDS:
            raise ValueError(f"CosineKMeans: need clusters >= 1, iterations >= 1, tol >= 0, "
                             f"centroids in {CENTROIDS}; got clusters={clusters}, "
                             f"iterations={iterations}, tol={tol}, centroids={centroids!r}")
        self.clusters = clusters
        self.iterations = iterations
        self.tol = tol
        self.mode = centroids
        self.warm_start = warm_start
        self.sync = sync
        # CPU generator: the same draws on any device, and its state fits in a checkpoint.
        self.generator = torch.Generator().manual_seed(seed)
        self.centroids: Tensor | None = None

    def fit(self, x: Tensor) -> Tensor:
        """Update the centroids on ``x`` and assign every row.

        Args:
            x: [N, K] points, N >= clusters.

        Returns:
            [N] int64 index of each point's nearest centroid (cosine) after the update.
        """
        points, unit = self._check(x)
        start = self.centroids if self.warm_start else None
        c = start if start is not None else self._init_plus_plus(points, unit)
        # On a GPU the early stop would read ``moved`` on the host every iteration (a
        # synchronisation that stalls the step): there every iteration runs and the centroids
        # stop changing once converged, which gives the same centroids as stopping.
        wait = x.device.type != "cuda" if self.sync is None else self.sync
        converged = torch.zeros((), dtype=torch.bool, device=c.device)
        for _ in range(self.iterations):
            labels = self._assign(unit, c)
            updated = self._update(points, unit, labels, c)
            moved = (1 - (F.normalize(updated, dim=1) * F.normalize(c, dim=1)).sum(dim=1)).max()
            c = torch.where(converged, c, updated)
            converged = converged | (moved <= self.tol)
            if wait and bool(converged):
                break
        self.centroids = c
        return self._assign(unit, c)

    def predict(self, x: Tensor) -> Tensor:
        """Assign rows of ``x`` [N, K] to the current centroids (cosine); returns [N] int64."""
        if self.centroids is None:
            raise RuntimeError("CosineKMeans.predict before any fit")
        return self._assign(F.normalize(x.detach().float(), dim=1), self.centroids)

    @staticmethod
    def _assign(unit: Tensor, c: Tensor) -> Tensor:
        """Nearest centroid by cosine similarity: ``unit`` [N, K] rows of norm 1."""
        return (unit @ F.normalize(c, dim=1).T).argmax(dim=1)

    def _check(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The points the centroids average (raw for ``mean``) and their unit-norm rows."""
        if x.ndim != 2 or x.shape[0] < self.clusters:
            raise ValueError(f"CosineKMeans: expected [N >= {self.clusters}, K] points, "
                             f"got {tuple(x.shape)}")
        if self.centroids is not None and self.centroids.shape[1] != x.shape[1]:
            raise ValueError(f"CosineKMeans: points {tuple(x.shape)} do not match centroids "
                             f"{tuple(self.centroids.shape)}")
        x = x.detach().float()
        unit = F.normalize(x, dim=1)
        return (x if self.mode == "mean" else unit), unit

    def _init_plus_plus(self, points: Tensor, unit: Tensor) -> Tensor:
        """k-means++ seeding with cosine distance (Arthur & Vassilvitskii 2007): K of the points."""
        first = int(torch.randint(len(unit), (1,), generator=self.generator))
        chosen = [first]
        best = unit @ unit[first]
        for _ in range(1, self.clusters):
            dist = (1 - best).clamp_min(0) ** 2
            if float(dist.sum()) <= 0:  # all points coincide with a centroid: pick any other
                dist = torch.ones_like(dist)
                dist[chosen] = 0
            nxt = int(torch.multinomial(dist.cpu(), 1, generator=self.generator))
            chosen.append(nxt)
            best = torch.maximum(best, unit @ unit[nxt])
        return points[chosen].clone()

    def _update(self, points: Tensor, unit: Tensor, labels: Tensor, previous: Tensor) -> Tensor:
        """Each centroid the mean of its members (``normalized``: that mean's direction)."""
        sums = torch.zeros_like(previous).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=self.clusters)
        empty = counts == 0
        # An empty cluster restarts at the points the current centroids fit worst: the i-th
        # empty cluster (in index order) takes the i-th worst point, a deterministic choice
        # that puts it where it can take members next iteration. Computed whether or not a
        # cluster is empty, so that nothing is read on the host.
        fit = (unit @ F.normalize(previous, dim=1).T).max(dim=1).values
        worst = fit.topk(self.clusters, largest=False).indices
        rank = (empty.cumsum(0) - 1).clamp_min(0)
        sums = torch.where(empty.unsqueeze(1), points[worst[rank]], sums)
        counts = torch.where(empty, torch.ones_like(counts), counts)
        if self.mode == "normalized":
            return F.normalize(sums, dim=1)
        return sums / counts.unsqueeze(1).to(sums.dtype)

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

    def clear(self) -> None:
        """Drop every queued batch."""
        self._items.clear()

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
        iterations: Lloyd iterations per step.
        seed: seeds the k-means++ initialisation.
        centroids: ``mean`` or ``normalized`` (see :class:`CosineKMeans`).
        warm_start: start each step's k-means from the previous centroids.
    """

    def __init__(self, clusters: int, *, queue_batches: int, iterations: int = 10,
                 seed: int = 0, centroids: str = "mean", warm_start: bool = True) -> None:
        self.kmeans = CosineKMeans(clusters, iterations=iterations, seed=seed,
                                   centroids=centroids, warm_start=warm_start)
        self.queue = FeatureQueue(queue_batches)

    def reset(self) -> None:
        """Forget the queue and the centroids (the reference code does this at every epoch)."""
        self.queue.clear()
        self.kmeans.centroids = None

    def step(self, fused: Tensor) -> tuple[Tensor, Tensor] | None:
        """Refine the centroids on queue + batch, assign the batch, then enqueue it.

        Args:
            fused: [N, K] the batch's modality-mean clustering-head outputs.

        Returns:
            centroids [C, K] (no gradient) and the batch's assignments [N] int64;
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
