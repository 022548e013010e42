"""Prediction on a new video with a pretrained run and its evaluated classifier, and the
classifier file that connects the two (:func:`save_classifier`, :func:`load_classifier`).

:func:`run_predict` turns one video into class probabilities the way the training data was
made: the same decoding, face cropping and backbones as the store the run was trained on (read
from the store's ``store.json``: backbone names, weights identifiers, every extraction setting),
then the run's representation heads and the classifier :func:`heads.evaluate.run_eval` saved
(``RUN/eval/linear/classifier.pt`` by default). The decoding libraries are imported inside the
function, so :mod:`heads` stays importable without them.

What it refuses, with a message naming the cause:

- backbones or weights it cannot load here: a store of arrays (no backbone), weights that need
  a download and are not in the local cache, a local weights file that is gone or changed (its
  sha256 must equal the one the store recorded);
- a classifier that uses the text modality when no transcript is given and the store treated
  clips without transcript as failures (``empty_text: fail``). A classifier trained without
  text (``modalities=["video", "audio"]``) needs no transcript: only the modalities the
  classifier uses are extracted. A store made with ``empty_text: skip_text`` gets the zero
  text vector it used for such clips;
- a video the extraction fails on (no face, no audio stream, ...), with the failure's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from heads.checkpoint import LAST, CheckpointError, check_store, load_model, save_checkpoint
from heads.classifier import ProbeModel, ProbeSpec, decide, encoder_heads
from heads.models import ConCluGenHeads, ModelSpec
from heads.train import resolve_device
from pipeline.errors import UserError

log = logging.getLogger(__name__)

CLASSIFIER = "classifier.pt"
CLASSIFIER_FORMAT = "conclugen-classifier/1"


class PredictError(UserError, ValueError):
    """The video cannot be classified with this run and store; the message says why."""


def run_predict(video: str | Path, *, run: str | Path, store: str | None = None,
                transcript: str | None = None, device: str = "auto",
                classifier: str | Path | None = None) -> dict[str, Any]:
    """Classify one video.

    Args:
        video: the media file (any container PyAV decodes).
        run: the pretraining run folder.
        store: the feature store the run was trained on (default: the one recorded in the
            classifier; its store_id must match either way).
        transcript: what is said in the video (for classifiers that use text).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        classifier: a ``classifier.pt`` (default ``RUN/eval/linear/classifier.pt``).

    Returns:
        ``probabilities`` (class name -> probability; softmax, summing to 1, or per-label
        sigmoids for multi-label stores), ``predicted`` (the class name, or the list of labels
        with probability >= 0.5), ``video``, ``modalities``, ``protocol``, ``classifier``,
        ``store_id``.

    Raises:
        PredictError: see the module docstring.
        CheckpointError: no classifier, or a classifier of other features or another step.
    """
    from pipeline.store import open_store

    video = Path(video)
    if not video.is_file():
        raise PredictError(f"{video}: no such video file")
    dev = resolve_device(device)
    path = Path(classifier) if classifier is not None else \
        run_folder(run) / "eval" / "linear" / CLASSIFIER
    model, meta = load_classifier(path, run=run, device=dev)
    url = store or meta["store_url"]
    with open_store(url) as fs:
        check_store(meta, fs.store_id, checkpoint=path, store=url)
        provenance = fs.manifest
    keys = [k for ks in meta["layout"].values() for k in ks]
    features = extract_video(video, provenance, keys, transcript=transcript, device=str(dev))
    batch = {m: torch.from_numpy(np.concatenate([features[k] for k in ks], axis=-1)).to(dev)
             for m, ks in meta["layout"].items()}
    with torch.no_grad():
        logits = model(batch).float().cpu()
    probs, decisions = decide(logits, meta["multilabel"])
    names = meta["label_names"]
    predicted: str | list[str] = ([n for n, d in zip(names, decisions[0], strict=True) if d]
                                  if meta["multilabel"] else names[int(decisions[0])])
    return {"video": str(video), "predicted": predicted,
            "probabilities": {n: float(p) for n, p in zip(names, probs[0], strict=True)},
            "multilabel": bool(meta["multilabel"]), "modalities": list(meta["layout"]),
            "protocol": meta["protocol"], "classifier": str(path), "store_id": meta["store_id"]}


def extract_video(video: Path, provenance: Mapping[str, Any], keys: Sequence[str], *,
                  transcript: str | None, device: str) -> dict[str, np.ndarray]:
    """The store keys ``keys`` of one video, extracted as the store's were.

    Returns:
        per key float32 [1, dim], rounded through the store's dtype (the heads were trained on
        float16 features; the same rounding keeps the inputs identical).
    """
    from pipeline.extract import extract_clips
    from pipeline.run import load_models

    cfg, policy = extraction_config(provenance, keys)
    if "text" in keys and not (transcript or "").strip() and cfg.empty_text == "fail":
        raise PredictError("the classifier uses the text modality: pass a transcript, or use a "
                           "classifier evaluated without text (modalities video,audio); the "
                           "store treated clips without transcript as failures (empty_text: "
                           "fail)")
    for key in keys:
        problem = weights_problem(cfg.backbones[key], cfg.weights[key])
        if problem:
            raise PredictError(f"the store's {key} features were extracted with {problem}")
    models = load_models(cfg, policy, device)
    _check_same_weights(models.encoders, provenance)
    row = {"sample_id": video.stem, "split": "predict", "media_path": str(video.resolve()),
           "start_s": None, "end_s": None, "transcript": transcript}
    _, feats, failures = extract_clips([row], cfg, models, policy)
    if failures:
        f = failures[0]
        raise PredictError(f"{video}: extraction failed at stage {f.stage}: {f.reason}: "
                           f"{f.message}")
    dtype = np.dtype(cfg.dtype)
    return {k: feats[k][:, 0].astype(dtype).astype(np.float32) for k in keys}


def extraction_config(provenance: Mapping[str, Any], keys: Sequence[str]) -> tuple[Any, Any]:
    """The :class:`~pipeline.extract.ExtractConfig` (for ``keys`` only, one view) and the face
    policy that made a store, from its ``store.json`` identity.

    Raises:
        PredictError: the store records no backbone for a key (a store written from arrays).
    """
    from pipeline.config import ConfigError, from_dict
    from pipeline.extract import ExtractConfig
    from pipeline.manifest import FacePolicy

    identity = provenance["identity"]
    mods, extraction = identity["modalities"], identity.get("extraction")
    if extraction is None or any(mods[k].get("backbone") in (None, "arrays") for k in keys):
        raise PredictError(f"store {provenance['store_id'][:16]}... was not extracted from "
                           "videos by this project's backbones (its features were written "
                           "from arrays): there is no extraction to repeat")
    faces = dict(extraction["faces"])
    policy = FacePolicy(crop=faces.pop("crop"), no_face=faces.pop("no_face"))
    data = {"modalities": list(keys), "views": 1,
            "backbones": {k: mods[k]["backbone"] for k in keys},
            "weights": {k: mods[k]["weights"] for k in keys},
            "fps_2d": extraction["fps_2d"], "fps_3d": extraction["fps_3d"],
            "sample_rate": extraction["sample_rate"], "faces": faces,
            "empty_text": extraction["empty_text"], "dtype": extraction["dtype"],
            "seed": extraction["augment_seed"], "batch_clips": 1}
    try:
        return from_dict(ExtractConfig, data, "store.json identity"), policy
    except ConfigError as err:
        raise PredictError(f"the store's extraction settings cannot be repeated: {err}") from None


def weights_problem(backbone: str, weights: str) -> str | None:
    """Why ``weights`` of ``backbone`` cannot be loaded here without a download, or None.

    Random weights load anywhere (their initialisation is seeded); a local file or folder
    loads if it still exists (its sha256 is compared after loading); anything else must be in
    the torch hub cache (named torchvision / 3D-ResNet weights, URLs) or the Hugging Face cache
    (text model ids).
    """
    from pipeline.backbones import RANDOM, get_spec, resnet2d, resnet3d, text, video3d_tv

    if weights == RANDOM:
        return None
    if weights == "none":
        return f"backbone {backbone!r} without recorded weights"
    if Path(weights).expanduser().exists():
        return None
    spec = get_spec(backbone)
    if isinstance(spec, text.TextSpec):
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(weights, "config.json"), str):
            return None
        return (f"{backbone} weights {weights!r}, which are not in the Hugging Face cache and "
                "cannot be downloaded here; download them by other means (or extract a store "
                "with a local model folder)")
    url = weights if weights.startswith(("http://", "https://")) else None
    if isinstance(spec, resnet3d.Resnet3dSpec):
        url = url or resnet3d.KNOWN_WEIGHTS.get(weights)
    elif isinstance(spec, (resnet2d.Resnet2dSpec, video3d_tv.TorchvisionVideoSpec)):
        import torchvision

        named = {w.name: w.url for w in torchvision.models.get_model_weights(spec.arch)}
        url = url or named.get(weights)
    if url is None:
        return f"{backbone} weights {weights!r}, a file that no longer exists"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if cached.is_file():
        return None
    return (f"{backbone} weights {weights!r}, which need a download ({url}) and are not cached "
            f"at {cached}; download the file by other means and put it there")


def _check_same_weights(encoders: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
    """The loaded weights must be those that made the store (sha256 of the file read)."""
    for key, encoder in encoders.items():
        loaded = encoder.provenance().get("weights_sha256")
        recorded = provenance["modalities"][key].get("weights_sha256")
        if loaded != recorded:
            raise PredictError(f"{key}: the weights loaded now (sha256 {str(loaded)[:16]}...) "
                               f"are not those that made the store ({str(recorded)[:16]}...)")


# ------------------------------------------------------------------------- the classifier file

def checkpoint_of(run: str | Path) -> Path:
    """A run folder's ``checkpoints/last.pt``, or ``run`` itself when it is a file."""
    run = Path(run)
    return run if run.is_file() else run / "checkpoints" / LAST


def run_folder(run: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint file inside it."""
    run = Path(run)
    if run.is_file():
        return run.parent.parent if run.parent.name == "checkpoints" else run.parent
    return run


def save_classifier(path: Path, model: ProbeModel, *, protocol: str,
                    checkpoint: Mapping[str, Any] | None, store_id: str, store_url: str,
                    layout: Mapping[str, Sequence[str]], label_names: Sequence[str],
                    config: Mapping[str, Any], seed: int, best_epoch: int) -> Path:
    """Write ``classifier.pt``: plain tensors and values, everything needed to rebuild the
    probe (loaded weights-only).

    The linear protocol stores the linear layer and the standardisation only: its heads are
    the run's checkpoint, referenced by ``checkpoint`` (path and step). The other protocols
    trained their heads and store them too.
    """
    payload = {
        "format": CLASSIFIER_FORMAT,
        "protocol": protocol,
        "probe": model.spec.to_dict(),
        "heads_spec": model.heads.spec.to_dict(),
        # the linear layer and the standardisation statistics: everything but the heads
        "probe_state": {k: v.detach().cpu() for k, v in model.state_dict().items()
                        if not k.startswith("heads.")},
        "heads": (None if protocol == "linear" else
                  {k: v.detach().cpu() for k, v in model.heads.state_dict().items()}),
        "checkpoint": dict(checkpoint) if checkpoint is not None else None,
        "store_id": store_id,
        "store_url": store_url,
        "layout": {m: list(k) for m, k in layout.items()},
        "label_names": list(label_names),
        "multilabel": model.spec.multilabel,
        "config": dict(config),
        "seed": seed,
        "best_epoch": best_epoch,
    }
    return save_checkpoint(path, payload)


def load_classifier(path: str | Path, *, run: str | Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[ProbeModel, dict[str, Any]]:
    """Rebuild a probe written by :func:`save_classifier`, in eval mode.

    Args:
        path: a ``classifier.pt``.
        run: the run folder (or checkpoint) whose heads a linear probe sits on (default: the
            checkpoint path recorded in the classifier).
        device: where the model goes.

    Returns:
        the probe (per modality [N, E_m] features -> [N, C] logits) and the file's payload.

    Raises:
        CheckpointError: not a classifier file, or the run's checkpoint is not the one the
            classifier was trained on (other features or a later step).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no classifier; run the evaluation (linear protocol) first")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path}: not a classifier of format {CLASSIFIER_FORMAT!r}")
    spec = ModelSpec.from_dict(payload["heads_spec"])
    if payload["heads"] is not None:
        heads = ConCluGenHeads(spec)
        heads.load_state_dict(payload["heads"])
    else:
        heads = _run_heads(path, payload, spec, run)
    model = ProbeModel(ProbeSpec.from_dict(payload["probe"]), heads)
    model.load_state_dict({**{f"heads.{k}": v for k, v in heads.state_dict().items()},
                           **payload["probe_state"]})
    return model.to(device).eval(), payload


def _run_heads(path: Path, payload: Mapping[str, Any], spec: ModelSpec,
               run: str | Path | None) -> ConCluGenHeads:
    """A linear probe's heads: the run's, if they are those it was trained on."""
    ref = payload["checkpoint"]
    ckpt = checkpoint_of(run) if run is not None else Path(ref["path"])
    pretrained, meta = load_model(ckpt, device="cpu")
    check_store(meta, payload["store_id"], checkpoint=ckpt, store=payload["store_url"])
    if int(meta["step"]) != ref["step"]:
        raise CheckpointError(f"{ckpt} is at step {meta['step']}, but {path} was trained on "
                              f"the heads of step {ref['step']}: evaluate the run again")
    return encoder_heads(spec.input_dims, spec.representation_dim, seed=0,
                         pretrained=pretrained)
