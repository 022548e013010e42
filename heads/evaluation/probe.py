"""The downstream classifier on the heads' representations: :class:`ProbeModel`.

The classification protocols (:mod:`heads.evaluation.classification`) share one model,
:class:`ProbeModel` = representation heads F_m -> fusion -> ``Dropout(p) + Linear`` (the
paper's downstream head), trained by :mod:`heads.evaluation.fit`. Fusion is ``concat`` (the
paper: [N, M*D]) or ``mean`` ([N, D]). By default the classifier sees the raw representations,
as in the paper, and its Linear starts from Kaiming-normal weights (the reference code's init).
``standardize: true`` standardises the fused representation with the train split's per-feature
mean and std, fixed before training (and, for the supervised baseline, its input features): a
constant affine map, so the probe expresses the same classifiers, but the optimisation no longer
depends on the features' scale. Every choice is listed in ``docs/CHOICES.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from heads.config import ModelConfig
from heads.models import ConCluGenHeads, ModelSpec

FUSIONS = ("concat", "mean")


# ------------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class ProbeSpec:
    """The classifier on top of the heads (stored in ``classifier.pt`` as a plain dict)."""

    modalities: tuple[str, ...]
    fusion: Literal["concat", "mean"]
    representation_dim: int
    outputs: int
    dropout: float
    multilabel: bool

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r}; valid: {list(FUSIONS)}")
        if not self.modalities or self.outputs < 1:
            raise ValueError(f"a probe needs modalities and outputs, got {self}")

    @property
    def features(self) -> int:
        """Width of the fused representation: M * D (concat) or D (mean)."""
        return self.representation_dim * (len(self.modalities) if self.fusion == "concat" else 1)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "modalities": list(self.modalities)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeSpec:
        return cls(**{**data, "modalities": tuple(data["modalities"])})


class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics fixed by :meth:`fit` (identity before): [N, F].

    A constant affine map: a linear layer after it can express exactly the classifiers it could
    without it, but the optimisation no longer depends on the features' scale.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Per-feature mean and std of ``x`` [n, F]; constant features keep std 1."""
        x = x.float()
        std = x.std(0, unbiased=False)
        self.mean.copy_(x.mean(0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ProbeModel(nn.Module):
    """Representation heads, fusion, ``Dropout + Linear``: per modality [N, E_m] -> [N, C].

    The standardisation maps are identity unless fitted (:func:`fit_standardization`, with
    ``standardize: true``); they are kept in every probe so that any classifier file loads.

    Args:
        spec: modalities, fusion, sizes.
        heads: representation heads with an encoder for every modality of ``spec``.
    """

    def __init__(self, spec: ProbeSpec, heads: ConCluGenHeads) -> None:
        super().__init__()
        missing = sorted(set(spec.modalities) - set(heads.modalities))
        if missing:
            raise ValueError(f"the heads have no encoder for {missing} (they have "
                             f"{list(heads.modalities)})")
        self.spec = spec
        self.heads = heads
        #: fitted for the supervised baseline only: pretrained heads expect raw features.
        self.input_norm = nn.ModuleDict({m: Standardize(heads.spec.input_dims[m])
                                         for m in spec.modalities})
        self.feature_norm = Standardize(spec.features)
        self.dropout = nn.Dropout(spec.dropout)
        self.linear = nn.Linear(spec.features, spec.outputs)

    def fuse(self, representations: Mapping[str, Tensor]) -> Tensor:
        """Per modality [N, D] -> [N, M*D] (concat, in ``spec.modalities`` order) or [N, D]."""
        parts = [representations[m] for m in self.spec.modalities]
        return torch.cat(parts, dim=1) if self.spec.fusion == "concat" else \
            torch.stack(parts).mean(0)

    def represent(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per modality [N, E_m] features -> per modality [N, D] representations."""
        return self.heads.represent({m: self.input_norm[m](batch[m])
                                     for m in self.spec.modalities})

    @torch.no_grad()
    def init_classifier(self, scheme: str) -> None:
        """(Re)initialise the Linear: ``kaiming_normal`` (the reference code: weights drawn with
        std sqrt(2 / F), PyTorch's default bias) or ``pytorch`` (PyTorch's default)."""
        if scheme == "kaiming_normal":
            nn.init.kaiming_normal_(self.linear.weight)
        elif scheme != "pytorch":
            raise ValueError(f"classifier_init {scheme!r}; valid: kaiming_normal, pytorch")

    def classify(self, fused: Tensor) -> Tensor:
        """Fused representations [N, F] -> logits [N, C]."""
        return self.linear(self.dropout(self.feature_norm(fused)))

    def forward(self, batch: Mapping[str, Tensor], *, represented: bool = False) -> Tensor:
        """Logits [N, C] from features (or, ``represented``, from [N, D] representations)."""
        reps = batch if represented else self.represent(batch)
        return self.classify(self.fuse(reps))


def encoder_heads(input_dims: Mapping[str, int], representation_dim: int, *,
                  seed: int, pretrained: ConCluGenHeads | None = None,
                  audio_head: str | None = None) -> ConCluGenHeads:
    """Representation heads only (no projection, clustering or decoder heads).

    Args:
        input_dims: per modality E_m, in order.
        representation_dim: D.
        seed: seeds the random initialisation (the supervised baseline's weights).
        pretrained: copy each modality's encoder from these heads (linear / finetune); their
            audio head's shape is kept.
        audio_head: the audio head's shape without ``pretrained`` (default: the training
            config's, :class:`heads.config.ModelConfig`).
    """
    if pretrained is not None:
        audio_head = pretrained.spec.audio_head
    elif audio_head is None:
        audio_head = ModelConfig().audio_head
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = ConCluGenHeads(ModelSpec(dict(input_dims), representation_dim,
                                         audio_head=audio_head))
    if pretrained is not None:
        for m in input_dims:
            heads.encoders[m].load_state_dict(pretrained.encoders[m].state_dict())
    return heads


# -------------------------------------------------------------------------------------- data

@dataclass
class LabelledSplit:
    """One split's inputs and targets, on the evaluation device.

    Attributes:
        name: ``train``, ``val`` or ``test``.
        inputs: per modality [n, E_m] features (or [n, D] representations) of the clean view.
        targets: int64 [n] class indices, or float32 [n, L] in {0, 1}.
        sample_ids: the n sample ids, in order.
        views: the train split's augmented views to train on (``train_views: augmented``):
            per modality [n, V, E_m] (or [n, V, D]); None: train on ``inputs``.
    """

    name: str
    inputs: dict[str, Tensor]
    targets: Tensor
    sample_ids: list[str]
    views: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """float32 training inputs of rows ``idx``: the clean features, or with ``views`` one
        augmented view per row and modality drawn with ``generator`` (the reference code drew
        1 of its 10 views per sample, modality and epoch)."""
        if self.views is None:
            return {m: x[idx].float() for m, x in self.inputs.items()}
        out = {}
        for m, x in self.views.items():
            pick = torch.randint(x.shape[1], (len(idx),), generator=generator).to(x.device)
            out[m] = x[idx, pick].float()
        return out


def freeze_heads(model: ProbeModel) -> None:
    """The linear protocol: the heads do not learn."""
    model.heads.requires_grad_(False)
    model.heads.eval()
