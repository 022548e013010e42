"""Prediction on a new video with a classifier that ``cli eval`` saved.

:func:`run_predict` turns one video into the classifier's output the way the evaluation data
was made: the same decoding, face cropping and backbones as the store the classifier was
trained on (:func:`pipeline.one_video.extract_like_store` repeats the store's extraction from
its ``store.json``), then the classifier :func:`heads.evaluation.run.run_eval` saved
(``RUN/eval/linear/classifier.pt`` by default), loaded by
:func:`heads.evaluation.classifier.load_predictor`:

- the paper's protocols (a run's representation heads and the probe) and CLEF's text
  prototypes: class probabilities and the predicted class (labels, for multi-label stores);
- AVCE: the continuous targets it regresses (valence, and arousal where the store has it).

CLEF's and AVCE's heads read the store features themselves, so they need no pretraining run.
The decoding libraries are imported inside the function, so :mod:`heads` stays importable
without them.

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

from heads.checkpoint import CLASSIFIER, check_feature_space, run_folder
from heads.classifier_file import ClassifierFile
from heads.evaluation.classifier import load_predictor
from heads.evaluation.fit import decide
from heads.run_record import warn_random_weights
from heads.runtime import resolve_device
from pipeline.errors import UserError
from pipeline.store import open_store

log = logging.getLogger(__name__)


class PredictError(UserError, ValueError):
    """The video cannot be classified with this run and store; the message says why."""


def run_predict(video: str | Path, *, run: str | Path | None = None, store: str | None = None,
                transcript: str | None = None, device: str = "auto",
                classifier: str | Path | None = None) -> dict[str, Any]:
    """Classify one video (or, with an AVCE classifier, estimate its valence and arousal).

    Args:
        video: the media file (any container PyAV decodes).
        run: the pretraining run folder (a linear probe's heads; default: the checkpoint the
            classifier recorded). Not needed with ``classifier``.
        store: a feature store in the classifier's feature space whose extraction is repeated
            (default: the store the classifier was trained on).
        transcript: what is said in the video (for classifiers that use text).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        classifier: a ``classifier.pt`` of any protocol (default
            ``RUN/eval/linear/classifier.pt``).

    Returns:
        ``task``, ``video``, ``modalities``, ``protocol``, ``classifier``, ``store_id``,
        ``random_weights`` (the store's url -> its keys with random weights; warned once), and
        for a classification ``probabilities`` (class name -> probability; softmax, summing to
        1, or per-label sigmoids for multi-label stores) and ``predicted`` (the class name, or
        the list of labels with probability >= 0.5); for a regression ``predictions`` (target
        name -> value, on the store's scale of the targets).

    Raises:
        PredictError: see the module docstring; neither ``run`` nor ``classifier`` given.
        CheckpointError: no classifier, a classifier of another step, or a store in another
            feature space.
    """
    # The extraction side of pipeline (one_video, and the decoding and backbone code it
    # reaches) is this function's alone: importing heads does not load it.
    from pipeline.frames_folder import is_frames_folder
    from pipeline.one_video import VideoError, extract_like_store

    video = Path(video)
    if not (video.is_file() or is_frames_folder(video)):
        raise PredictError(f"{video}: no such video file or folder of frames")
    if classifier is not None:
        path = Path(classifier)
    elif run is not None:
        path = run_folder(run) / "eval" / "linear" / CLASSIFIER
    else:
        raise PredictError("give --classifier (classifier=, a classifier.pt of `cli eval`) "
                           "or --run (run=), whose RUN/eval/linear/classifier.pt is used")
    dev = resolve_device(device)
    model, meta = load_predictor(path, run=run, device=dev)
    url = store or meta.store_url
    with open_store(url) as fs:
        check_feature_space(meta.feature_space, meta.store_id, meta.keys, fs.manifest,
                            checkpoint=path, store=url)
        manifest = fs.manifest
    warn_random_weights(url, manifest.random_weights, command="predict")
    try:
        features = extract_like_store(video, manifest, meta.keys, transcript=transcript,
                                      device=str(dev))
    except VideoError as err:
        raise PredictError(str(err)) from None
    batch = {m: torch.from_numpy(np.concatenate([features[k] for k in ks], axis=-1)).to(dev)
             for m, ks in meta.layout.items()}
    with torch.no_grad():
        output = model(batch).float().cpu()
    about = {"video": str(video), "task": meta.task, "modalities": list(meta.layout),
             "protocol": meta.protocol, "classifier": str(path), "store_id": meta.store_id,
             "random_weights": {url: manifest.random_weights} if manifest.random_weights else {}}
    return {**about, **outputs(output, meta)}


def outputs(output: torch.Tensor, meta: ClassifierFile) -> dict[str, Any]:
    """The first row of a classifier's output [N, C or T] as ``cli predict`` reports it
    (see :func:`run_predict`'s return value)."""
    names = meta.label_names
    if meta.task == "regression":
        return {"predictions": {n: float(v) for n, v in zip(names, output[0], strict=True)}}
    probs, decisions = decide(output, meta.multilabel)
    predicted: str | list[str] = ([n for n, d in zip(names, decisions[0], strict=True) if d]
                                  if meta.multilabel else names[int(decisions[0])])
    return {"predicted": predicted, "multilabel": meta.multilabel,
            "probabilities": {n: float(p) for n, p in zip(names, probs[0], strict=True)}}


__all__ = ["PredictError", "outputs", "run_predict"]
