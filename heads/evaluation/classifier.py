"""The classifier file of an evaluation: written from a seed's result, rebuilt for prediction.

:func:`classifier_file` turns what a protocol saved (:class:`~heads.evaluation.protocol.SavedModel`)
into a :class:`~heads.classifier_file.ClassifierFile`; :func:`load_predictor` reads one of any
format and hands it to the builder of its ``kind`` (:data:`BUILDERS`), which rebuilds the
model from the file's spec: the paper's probe here (its heads from the file, or for the linear
protocol from the run's checkpoint), CLEF's and AVCE's by their ``from_spec``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from heads.checkpoint import checkpoint_of, load_model
from heads.classifier_file import ClassifierFile, HeadsRef, read_classifier_file
from heads.evaluation.avce import AvceModel, AvceSpec
from heads.evaluation.clef import ClefModel, ClefSpec
from heads.evaluation.probe import ProbeModel, ProbeSpec, encoder_heads
from heads.evaluation.protocol import EvalSetup, SeedResult, parse_spec
from heads.files import CheckpointError
from heads.models import ConCluGenHeads, ModelSpec

#: kind -> the function that rebuilds its model from a classifier file (and, for a linear
#: probe, the run whose heads it sits on).
Builder = Callable[[ClassifierFile, "str | Path | None"], nn.Module]
S = TypeVar("S")


@dataclass(frozen=True)
class ProbeFileSpec:
    """A probe's spec in a classifier file: the classifier, the heads' sizes, and whether the
    heads are the run checkpoint's (the linear protocol: the file's state lacks them)."""

    probe: ProbeSpec
    heads: ModelSpec
    heads_from_checkpoint: bool


def classifier_file(setup: EvalSetup, result: SeedResult, *, store_id: str, store_url: str,
                    feature_space: Mapping[str, Mapping[str, Any]]) -> ClassifierFile:
    """The classifier file of ``result`` (one seed's model) evaluated with ``setup``."""
    return ClassifierFile(
        kind=result.saved.kind, protocol=setup.protocol, task=setup.task,
        spec=result.saved.spec, state=result.saved.state, checkpoint=heads_ref(setup),
        store_id=store_id, store_url=store_url,
        feature_space={k: dict(v) for k, v in feature_space.items()},
        layout={m: tuple(k) for m, k in setup.layout.items()},
        label_names=tuple(setup.label_names),
        multilabel=setup.spec.multilabel and setup.task != "regression",
        config=setup.cfg.to_dict(), seed=result.seed, best_epoch=result.best_epoch)


def heads_ref(setup: EvalSetup) -> HeadsRef | None:
    """The run checkpoint an evaluation used (None without a run)."""
    if setup.payload is None or setup.checkpoint is None:
        return None
    return HeadsRef(path=str(setup.checkpoint), step=setup.payload.step,
                    store_id=setup.payload.store_id, epoch=setup.payload.epoch,
                    store_url=setup.payload.store_url)


def load_predictor(path: str | Path, *, run: str | Path | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, ClassifierFile]:
    """Rebuild the classifier of any protocol that ``cli eval`` saved, in eval mode.

    Every model takes, per modality of the file's ``layout``, its concatenated store features
    [N, E_m]; its output is told apart by the file's ``task`` (logits, or the targets).

    Args:
        path: a ``classifier.pt`` of any format.
        run: the run folder (or checkpoint) whose heads a linear probe sits on (default: the
            checkpoint path recorded in the file).
        device: where the model goes.

    Raises:
        CheckpointError: not a classifier file, a field or size missing or mistyped (named),
            or (a linear probe) a run whose checkpoint is not the one the classifier was
            trained on.
    """
    classifier = read_classifier_file(path)
    model = BUILDERS[classifier.kind](classifier, run)
    return model.to(device).eval(), classifier


def load_classifier(path: str | Path, *, run: str | Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[ProbeModel, ClassifierFile]:
    """The paper's probe of a classifier file, in eval mode (see :func:`load_predictor`).

    Raises:
        CheckpointError: as :func:`load_predictor`; a classifier of another kind.
    """
    classifier = read_classifier_file(path)
    if classifier.kind != "probe":
        raise CheckpointError(f"{path}: a {classifier.kind} classifier, not the paper's probe")
    return probe_from_file(classifier, run).to(device).eval(), classifier


def probe_from_file(classifier: ClassifierFile, run: str | Path | None) -> ProbeModel:
    """The trained probe of a classifier file of kind ``probe``."""
    spec = parse_spec(ProbeFileSpec, classifier)
    if spec.heads_from_checkpoint:
        heads = _run_heads(classifier, spec.heads, run)
        state = {**{f"heads.{k}": v for k, v in heads.state_dict().items()},
                 **classifier.state}
    else:
        heads, state = ConCluGenHeads(spec.heads), classifier.state
    model = ProbeModel(spec.probe, heads)
    model.load_state_dict(state)
    return model


def _run_heads(classifier: ClassifierFile, spec: ModelSpec,
               run: str | Path | None) -> ConCluGenHeads:
    """A linear probe's heads: the run's, if they are those it was trained on."""
    ref = classifier.checkpoint
    if ref is None:
        raise CheckpointError(f"a linear probe of store {classifier.store_url} without the "
                              "checkpoint of its heads")
    ckpt = checkpoint_of(run) if run is not None else Path(ref.path)
    pretrained, found = load_model(ckpt, device="cpu")
    if found.store_id != ref.store_id:
        raise CheckpointError(f"{ckpt} was pretrained on store_id {found.store_id[:16]}..., "
                              f"but the classifier sits on heads pretrained on "
                              f"{ref.store_id[:16]}...: pass as --run (run=) the run the "
                              "classifier was trained on")
    if found.step != ref.step:
        raise CheckpointError(f"{ckpt} is at step {found.step}, but the classifier was trained "
                              f"on the heads of step {ref.step}: evaluate the run again")
    return encoder_heads(spec.input_dims, spec.representation_dim, seed=0,
                         pretrained=pretrained)


def rebuilt(from_spec: Callable[[S], nn.Module], spec: type[S]) -> Builder:
    """The builder of a model that ``from_spec`` makes from its ``spec`` dataclass alone."""
    def build(classifier: ClassifierFile, run: str | Path | None) -> nn.Module:
        model = from_spec(parse_spec(spec, classifier))
        model.load_state_dict(classifier.state)
        return model

    return build


BUILDERS: dict[str, Builder] = {"probe": probe_from_file,
                                "clef": rebuilt(ClefModel.from_spec, ClefSpec),
                                "avce": rebuilt(AvceModel.from_spec, AvceSpec)}

__all__ = ["BUILDERS", "ProbeFileSpec", "classifier_file", "heads_ref", "load_classifier",
           "load_predictor", "probe_from_file", "rebuilt"]
