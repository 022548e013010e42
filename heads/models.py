"""The ConCluGen heads trained on fixed backbone features.

Per modality m (video = frames_2d ++ frames_3d, audio, text):

- F_m, the representation head: a gated embedding unit (Miech et al. 2018, as in the paper's
  reference code): ``Linear(E_m -> D), ReLU, x * sigmoid(W x + b), Linear(D -> D), ReLU``;
  no dropout, no normalisation. D = 4096 in the paper. Audio, as in the reference code, gets
  ``GEU(E -> E)`` followed by ``Linear(E -> D)`` (``audio_head: geu_linear``; ``geu`` gives it
  the same unit ``E -> D`` as the other modalities).
- J_m, the projection head: ``Linear(D -> D/8), BatchNorm1d, ReLU, Linear(D/8 -> P)``, a final
  ReLU as in the reference code (``projection_activation: relu``; ``none`` leaves it out), then
  L2 normalisation (P = 512). One per modality by default; ``shared_projection`` uses a single
  head for all modalities as the reference code does.
- G, the clustering head, shared: ``Linear(P -> K, no bias)``, on the projection before the L2
  normalisation as in the reference code (``cluster_input: projection``) or after it
  (``normalized``).
- Q_m, the decoder: ``Linear(D -> R), ReLU, Linear(R -> E_m)``. The reference ends with a ReLU,
  which cannot reconstruct signed features (text); it is left out (``decoder_activation:
  relu`` puts it back).

The defaults of these choices live in :class:`heads.config.ModelConfig` (``docs/CHOICES.md``);
the defaults of :class:`ModelSpec` are those of checkpoints written before the choices were
recorded, so an old checkpoint rebuilds the model it was trained with.

Only the heads an objective uses are built (:class:`ModelSpec`), and :meth:`ConCluGenHeads.
represent` gives the representations an evaluator probes. The spec is a plain mapping stored in
every checkpoint, so the model is rebuilt from the checkpoint alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


#: the valid values of ModelSpec's shape choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "projection_activation": ("relu", "none"),
    "cluster_input": ("projection", "normalized"),
    "audio_head": ("geu_linear", "geu"),
    "decoder_activation": ("none", "relu"),
}


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
        projection_activation: ``relu`` after the projection head's last Linear, or ``none``.
        cluster_input: the clustering head reads the projection before (``projection``) or after
            (``normalized``) its L2 normalisation.
        audio_head: ``geu_linear`` (GEU E -> E, Linear E -> D) or ``geu`` (GEU E -> D) for the
            modality named ``audio``.
        decoder_activation: ``relu`` after the decoders' last Linear, or ``none``.
    """

    input_dims: dict[str, int]
    representation_dim: int
    projection_dim: int | None = None
    clusters: int | None = None
    reconstruction_dim: int | None = None
    shared_projection: bool = False
    projection_activation: str = "none"
    cluster_input: str = "normalized"
    audio_head: str = "geu"
    decoder_activation: str = "none"

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
        for name, valid in CHOICES.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"ModelSpec: {name} {getattr(self, name)!r}; valid: {valid}")

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
    """``Linear(D -> D/8), BatchNorm1d, ReLU, Linear(D/8 -> P)`` [, ReLU], L2-normed:
    [N, D] -> [N, P].

    Args:
        in_dim: D.
        out_dim: P.
        activation: ``relu`` ends the head with a ReLU (the reference code), ``none`` does not.
    """

    def __init__(self, in_dim: int, out_dim: int, activation: str = "none") -> None:
        super().__init__()
        hidden = in_dim // 8
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                   nn.Linear(hidden, out_dim)]
        if activation == "relu":
            layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=1)


def decoder(in_dim: int, hidden: int, out_dim: int, activation: str = "none") -> nn.Sequential:
    """``Linear(D -> R), ReLU, Linear(R -> E)`` [, ReLU]: reconstructs the backbone features."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)]
    if activation == "relu":
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def representation_head(in_dim: int, out_dim: int, shape: str = "geu") -> nn.Module:
    """F_m: ``geu`` a gated embedding unit ``in -> out``; ``geu_linear`` a unit ``in -> in``
    followed by ``Linear(in -> out)`` (the reference code's audio head): [N, in] -> [N, out]."""
    if shape == "geu_linear":
        return nn.Sequential(GatedEmbeddingUnit(in_dim, in_dim), nn.Linear(in_dim, out_dim))
    return GatedEmbeddingUnit(in_dim, out_dim)


@dataclass
class HeadOutputs:
    """What one forward pass produced, per modality (empty dicts for heads not built).

    Attributes:
        representations: [N, D] outputs of F_m.
        projections: [N, P] L2-normalised outputs of J_m.
        cluster_logits: [N, K] outputs of G on the projections (before or after their
            normalisation, by ``ModelSpec.cluster_input``).
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
        self.encoders = nn.ModuleDict({
            m: representation_head(e, dim, spec.audio_head if m == "audio" else "geu")
            for m, e in spec.input_dims.items()})
        self.projectors = nn.ModuleDict()
        if spec.projection_dim is not None:
            names = ["shared"] if spec.shared_projection else list(spec.input_dims)
            self.projectors.update({n: ProjectionHead(dim, spec.projection_dim,
                                                      spec.projection_activation)
                                    for n in names})
        self.cluster_head = (nn.Linear(spec.projection_dim, spec.clusters, bias=False)
                             if spec.clusters is not None and spec.projection_dim else None)
        self.decoders = nn.ModuleDict()
        if spec.reconstruction_dim is not None:
            self.decoders.update({m: decoder(dim, spec.reconstruction_dim, e,
                                             spec.decoder_activation)
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
        return {m: F.normalize(p, dim=1) for m, p in self._project_raw(representations).items()}

    def _project_raw(self, representations: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per modality [N, D] -> [N, P] projections before the L2 normalisation."""
        if not self.projectors:
            raise RuntimeError("this model was built without projection heads")
        heads = {m: cast(ProjectionHead, self.projectors["shared" if self.spec.shared_projection
                                                         else m]) for m in representations}
        return {m: heads[m].net(r) for m, r in representations.items()}

    def forward(self, batch: Mapping[str, Tensor]) -> HeadOutputs:
        """Run F and every pretraining head that was built.

        Args:
            batch: per modality [N, E_m] backbone features.

        Returns:
            the per-modality outputs (see :class:`HeadOutputs`).
        """
        reps = self.represent(batch)
        out = HeadOutputs(representations=reps)
        raw: dict[str, Tensor] = {}
        if self.projectors:
            raw = self._project_raw(reps)
            out.projections = {m: F.normalize(p, dim=1) for m, p in raw.items()}
        if self.cluster_head is not None:
            inputs = raw if self.spec.cluster_input == "projection" else out.projections
            out.cluster_logits = {m: self.cluster_head(p) for m, p in inputs.items()}
        if self.decoders:
            out.reconstructions = {m: self.decoders[m](r) for m, r in reps.items()}
        return out
