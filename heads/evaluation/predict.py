"""Prediction on a new video with a pretrained run and its evaluated classifier.

:func:`run_predict` turns one video into class probabilities the way the evaluation data was
made: the same decoding, face cropping and backbones as the store the classifier was trained on
(:func:`pipeline.one_video.extract_like_store` repeats the store's extraction from its
``store.json``), then the run's representation heads and the classifier
:func:`heads.evaluation.run.run_eval` saved (``RUN/eval/linear/classifier.pt`` by default). The
decoding libraries are imported inside the function, so :mod:`heads` stays importable without
them.

What it refuses, with a message naming the cause:

- a store in another feature space than the classifier's (the differing fields are named);
- backbones or weights it cannot load here: a store of arrays (no backbone), weights that need
  a download and are not in the local cache, a local weights file that is gone or changed (its
  sha256 must equal the one the store recorded);
- a classifier that uses the text modality when no transcript is given and the store treated
  clips without transcript as failures (``empty_text: fail``). A classifier trained without
  text (``modalities=["video", "audio"]``) needs no transcript: only the modalities the
  classifier uses are extracted;
- a video the extraction fails on (no face, no audio stream, ...), with the failure's reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heads.checkpoint import (CLASSIFIER, check_feature_space, layout_keys, load_classifier,
                              run_folder)
from heads.evaluation.probe import decide
from heads.runtime import resolve_device
from pipeline.errors import UserError

log = logging.getLogger(__name__)


class PredictError(UserError, ValueError):
    """The video cannot be classified with this run and store; the message says why."""


def run_predict(video: str | Path, *, run: str | Path, store: str | None = None,
                transcript: str | None = None, device: str = "auto",
                classifier: str | Path | None = None) -> dict[str, Any]:
    """Classify one video.

    Args:
        video: the media file (any container PyAV decodes).
        run: the pretraining run folder.
        store: a feature store in the classifier's feature space whose extraction is repeated
            (default: the store the classifier was trained on).
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
        CheckpointError: no classifier, a classifier of another step, or a store in another
            feature space.
    """
    from pipeline.one_video import VideoError, extract_like_store
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
        check_feature_space(meta, fs.manifest, checkpoint=path, store=url)
        manifest = fs.manifest
    try:
        features = extract_like_store(video, manifest, layout_keys(meta), transcript=transcript,
                                      device=str(dev))
    except VideoError as err:
        raise PredictError(str(err)) from None
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


__all__ = ["PredictError", "run_predict"]
