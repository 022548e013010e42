"""The classifier file ``cli eval`` writes and ``cli predict`` reads: :class:`ClassifierFile`.

One format for every protocol, :data:`FORMAT`, plain tensors and values (:mod:`heads.files`;
loaded with ``weights_only=True``)::

    format         "conclugen-classifier/2"
    kind           probe (the paper's protocols), clef or avce: which model ``spec`` describes
    protocol       the protocol that trained it (linear, finetune, supervised, clef, avce)
    task           classification or regression
    spec           the model's sizes as plain data; the protocol of ``kind`` rebuilds the model
                   from it (heads.evaluation.classifier)
    state          the model's state dict; a probe on frozen pretrained heads (the linear
                   protocol) without them: they are ``checkpoint``'s
    checkpoint     the pretraining checkpoint whose heads it used: path, step, epoch, store_id,
                   store_url (null without a run)
    store_id, store_url  the store it was trained on
    feature_space  per store key of ``layout``, that store's feature space
    layout         modality -> store keys concatenated into its input
    label_names    the class names (regression: the targets' names), in output order
    multilabel     sigmoid per label instead of softmax
    config         the resolved EvalConfig as a mapping
    seed, best_epoch  the seed of the saved model and the epoch kept (1-based)

Earlier formats, read and upgraded by :func:`upgrade_classifier`: ``conclugen-classifier/1``
(the paper's probe: ``probe``, ``heads_spec``, ``probe_state`` and ``heads``, the latter null
for the linear protocol) and ``conclugen-eval-head/1`` (the other systems' heads: ``spec`` with
its ``kind``, ``state``; no ``multilabel`` field, nor ``checkpoint``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from heads.files import CheckpointError, format_of, load_plain, parse_fields, save_checkpoint

FORMAT = "conclugen-classifier/2"
#: Earlier formats: the paper's probe, and the other systems' heads.
PROBE_FORMAT_1 = "conclugen-classifier/1"
HEAD_FORMAT_1 = "conclugen-eval-head/1"
Kind = Literal["probe", "clef", "avce"]


@dataclass(frozen=True)
class HeadsRef:
    """The pretraining checkpoint a classifier's heads come from."""

    path: str
    step: int
    store_id: str
    epoch: int | None = None
    store_url: str | None = None


# eq=False: tensors have no truth value, so field-wise equality is meaningless
@dataclass(frozen=True, eq=False)
class ClassifierFile:
    """A trained classifier of any protocol (see the module docstring for each field)."""

    kind: Kind
    protocol: str
    task: Literal["classification", "regression"]
    spec: dict[str, Any]
    state: dict[str, Any]
    checkpoint: HeadsRef | None
    store_id: str
    store_url: str
    feature_space: dict[str, dict[str, Any]]
    layout: dict[str, tuple[str, ...]]
    label_names: tuple[str, ...]
    multilabel: bool
    config: dict[str, Any]
    seed: int
    best_epoch: int

    def to_payload(self) -> dict[str, Any]:
        """Plain tensors and values, as :func:`save_classifier_file` writes them."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"format": FORMAT, **fields,
                "checkpoint": (None if self.checkpoint is None
                               else dataclasses.asdict(self.checkpoint)),
                "layout": {m: list(k) for m, k in self.layout.items()},
                "label_names": list(self.label_names)}

    @property
    def keys(self) -> list[str]:
        """The store keys the classifier reads, in layout order."""
        return [k for keys in self.layout.values() for k in keys]


def save_classifier_file(path: Path, classifier: ClassifierFile) -> Path:
    """Write ``classifier`` to ``path`` atomically."""
    return save_checkpoint(path, classifier.to_payload())


def read_classifier_file(path: str | Path) -> ClassifierFile:
    """Read a classifier file of format 2, or upgrade one of an earlier format, strictly.

    Raises:
        CheckpointError: no such file, another format, or a field missing, unknown or of the
            wrong type (named).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no classifier; run the evaluation (linear protocol) first")
    payload = load_plain(path, map_location="cpu")
    found = format_of(path, payload, FORMAT)
    if found != FORMAT:
        payload = upgrade_classifier(path, payload)
    entries = {k: v for k, v in payload.items() if k != "format"}
    return parse_fields(ClassifierFile, entries, path, tensors=("state",))


def upgrade_classifier(path: Path, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An earlier format's entries as format 2.

    Raises:
        CheckpointError: a format this release does not know, or an entry the upgrade needs
            is missing (named).
    """
    found = payload.get("format")
    try:
        if found == PROBE_FORMAT_1:
            return _upgrade_probe(payload)
        if found == HEAD_FORMAT_1:
            return _upgrade_head(payload)
    except KeyError as err:
        raise CheckpointError(f"{path}: a {found} file without the entry {err}") from None
    raise CheckpointError(f"{path}: format {found!r}; a classifier is {FORMAT!r} (or the "
                          f"earlier {PROBE_FORMAT_1!r}, {HEAD_FORMAT_1!r})")


def _upgrade_probe(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``conclugen-classifier/1``: the probe's spec and heads' spec become one ``spec``, the
    probe's and the heads' states one ``state``."""
    heads = payload["heads"]
    state = {**payload["probe_state"],
             **{f"heads.{k}": v for k, v in (heads or {}).items()}}
    ref = payload["checkpoint"]
    checkpoint = None if ref is None else {
        "path": ref["path"], "step": ref["step"], "epoch": ref.get("epoch"),
        # a reference written before it recorded the store: the classifier's own
        "store_id": ref.get("store_id", payload["store_id"]), "store_url": ref.get("store_url")}
    return {"format": FORMAT, "kind": "probe", "protocol": payload["protocol"],
            "task": "classification",
            "spec": {"probe": payload["probe"], "heads": payload["heads_spec"],
                     "heads_from_checkpoint": heads is None},
            "state": state, "checkpoint": checkpoint, **_common(payload),
            "multilabel": payload["multilabel"]}


def _upgrade_head(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``conclugen-eval-head/1``: the kind leaves the spec; a file written before the spec
    recorded ``multilabel`` is single-label, and a regression never is."""
    spec = dict(payload["spec"])
    kind = spec.pop("kind", None)
    task = payload.get("task", "classification")
    multilabel = bool(spec.get("multilabel", False)) and task != "regression"
    if kind == "clef":
        spec["multilabel"] = multilabel
    return {"format": FORMAT, "kind": kind, "protocol": payload["protocol"], "task": task,
            "spec": spec, "state": payload["state"], "checkpoint": None, **_common(payload),
            "multilabel": multilabel}


def _common(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The entries every earlier format had under the same name."""
    names = ("store_id", "store_url", "feature_space", "layout", "label_names", "config",
             "seed", "best_epoch")
    return {name: payload[name] for name in names}


__all__ = ["FORMAT", "HEAD_FORMAT_1", "PROBE_FORMAT_1", "ClassifierFile", "HeadsRef", "Kind",
           "read_classifier_file", "save_classifier_file", "upgrade_classifier"]
