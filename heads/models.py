"""The ConCluGen heads trained on fixed backbone features.

Per modality m (video = frames_2d ++ frames_3d, audio, text):

- F_m, the representation head: a gated embedding unit (Miech et al. 2018, as in the paper's
  reference code): ``Linear(E_m -> D), ReLU, x * sigmoid(W x + b), Linear(D -> D), ReLU``;
  no dropout, no normalisation. D = 4096 in the paper. The reference code gives audio an extra
  ``GEU(E -> E) + Linear(E -> D)``; here every modality uses the same unit ``E_m -> D``.
- J_m, the projection head: ``Linear(D -> D/8), BatchNorm1d, ReLU, Linear(D/8 -> P)``, then L2
  normalisation (P = 512). One per modality by default; ``shared_projection`` uses a single
  head for all modalities as the reference code does. (The reference also puts a ReLU before
  the normalisation, which confines projections to the positive orthant; it is left out.)
- G, the clustering head, shared: ``Linear(P -> K, no bias)`` on the normalised projections.
- Q_m, the decoder: ``Linear(D -> R), ReLU, Linear(R -> E_m)``. The reference ends with a ReLU,
  which cannot reconstruct text features (they are signed); it is left out.

Only the heads an objective uses are built (:class:`ModelSpec`), and :meth:`ConCluGenHeads.
represent` gives the representations an evaluator probes. The spec is a plain mapping stored in
every checkpoint, so the model is rebuilt from the checkpoint alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build the heads (stored in checkpoints as a plain dict).

    Attributes:
        input_dims: per modality (in order) the input feature dim E_m.
        representation_dim: D.
        projection_dim: P, or None when the objective needs no projection head.
        clusters: K, or None when there is no clustering head.
        reconstruction_dim: R, or None when there are no decoders.
        shared_projection: one projection head for all modalities (the reference code's choice).
    """

    input_dims: dict[str, int]
    representation_dim: int
    projection_dim: int | None = None
    clusters: int | None = None
    reconstruction_dim: int | None = None
    shared_projection: bool = False

    def __post_init__(self) -> None:
        if not self.input_dims:
            raise ValueError("ModelSpec: no modalities")
        dims = [self.representation_dim, *self.input_dims.values()]
        dims += [d for d in (self.projection_dim, self.clusters, self.reconstruction_dim) if d]
        if any(not isinstance(d, int) or d < 1 for d in dims):
            raise ValueError(f"ModelSpec: every dimension must be a positive int: {self}")
        if self.projection_dim is not None and self.representation_dim < 8:
            raise ValueError(f"ModelSpec: representation_dim {self.representation_dim} < 8 "
                             "leaves the projection head's D/8 hidden layer empty")
        if self.clusters is not None and self.projection_dim is None:
            raise ValueError("ModelSpec: the clustering head needs a projection head")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        return cls(**{**data, "input_dims": dict(data["input_dims"])})


class GatedEmbeddingUnit(nn.Module):
    """``Linear(in -> out), ReLU, gating, Linear(out -> out), ReLU``: [N, in] -> [N, out]."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.gate = nn.Linear(out_dim, out_dim)
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.fc1(x))
        h = h * torch.sigmoid(self.gate(h))  # context gating: a learned per-feature gate
        return torch.relu(self.fc2(h))


class ProjectionHead(nn.Module):
    """``Linear(D -> D/8), BatchNorm1d, ReLU, Linear(D/8 -> P)``, L2-normed: [N, D] -> [N, P]."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = in_dim // 8
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=1)


def decoder(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """``Linear(D -> R), ReLU, Linear(R -> E)``: reconstructs the backbone features."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


@dataclass
class HeadOutputs:
    """What one forward pass produced, per modality (empty dicts for heads not built).

    Attributes:
        representations: [N, D] outputs of F_m.
        projections: [N, P] L2-normalised outputs of J_m.
        cluster_logits: [N, K] outputs of G on the projections.
        reconstructions: [N, E_m] outputs of Q_m.
    """

    representations: dict[str, Tensor]
    projections: dict[str, Tensor] = field(default_factory=dict)
    cluster_logits: dict[str, Tensor] = field(default_factory=dict)
    reconstructions: dict[str, Tensor] = field(default_factory=dict)


class ConCluGenHeads(nn.Module):
    """Representation heads F plus the pretraining heads J, G and Q an objective needs.

    Args:
        spec: the dimensions and which heads to build.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        dim = spec.representation_dim
        self.encoders = nn.ModuleDict({m: GatedEmbeddingUnit(e, dim)
                                       for m, e in spec.input_dims.items()})
        self.projectors = nn.ModuleDict()
        if spec.projection_dim is not None:
            names = ["shared"] if spec.shared_projection else list(spec.input_dims)
            self.projectors.update({n: ProjectionHead(dim, spec.projection_dim) for n in names})
        self.cluster_head = (nn.Linear(spec.projection_dim, spec.clusters, bias=False)
                             if spec.clusters is not None and spec.projection_dim else None)
        self.decoders = nn.ModuleDict()
        if spec.reconstruction_dim is not None:
            self.decoders.update({m: decoder(dim, spec.reconstruction_dim, e)
                                  for m, e in spec.input_dims.items()})

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.spec.input_dims)

    def represent(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-modality representations, the features downstream probes train on.

        Args:
            batch: per modality [N, E_m] backbone features (any subset of the modalities).

        Returns:
            per modality [N, D].
        """
        unknown = sorted(set(batch) - set(self.encoders))
        if unknown:
            raise KeyError(f"no representation head for {unknown}; this model has "
                           f"{list(self.encoders)}")
        out = {}
        for m, x in batch.items():
            if x.ndim != 2 or x.shape[1] != self.spec.input_dims[m]:
                raise ValueError(f"{m}: expected [N, {self.spec.input_dims[m]}] features, "
                                 f"got {tuple(x.shape)}")
            out[m] = self.encoders[m](x)
        return out

    def project(self, representations: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per modality [N, D] -> [N, P] unit-norm projections."""
        if not self.projectors:
            raise RuntimeError("this model was built without projection heads")
        return {m: self.projectors["shared" if self.spec.shared_projection else m](r)
                for m, r in representations.items()}

    def forward(self, batch: Mapping[str, Tensor]) -> HeadOutputs:
        """Run F and every pretraining head that was built.

        Args:
            batch: per modality [N, E_m] backbone features.

        Returns:
            the per-modality outputs (see :class:`HeadOutputs`).
        """
        reps = self.represent(batch)
        out = HeadOutputs(representations=reps)
        if self.projectors:
            out.projections = self.project(reps)
        if self.cluster_head is not None:
            out.cluster_logits = {m: self.cluster_head(p) for m, p in out.projections.items()}
        if self.decoders:
            out.reconstructions = {m: self.decoders[m](r) for m, r in reps.items()}
        return out
