"""Downstream evaluation: how good are the representations for facial expression recognition?

:func:`run_eval` trains a classifier on the train split of a labelled store, keeps the epoch
that is best on the validation split, and scores train, val and test with the paper's metrics
(accuracy, precision, recall, F1 weighted by support; macro-F1; per class; confusion matrix;
CMU-MOSEI's weighted accuracy for multi-label stores). Protocols (:data:`heads.evaluation.PROTOCOLS`):
``linear`` (frozen pretrained heads), ``finetune`` (pretrained heads trained too),
``supervised`` (the same architecture from scratch, no run), and the heads of two other
systems on the same features: ``clef`` (text prototypes of the label names; a run, when given,
adds a zero-shot row) and ``avce`` (valence/arousal regression on the store's continuous
targets, scored with RMSE, PCC, CCC and SAGR per target). ``seeds`` repeats the training
with seeds ``seed, seed+1, ...`` and reports mean and standard deviation. The settings are an
:class:`~heads.eval_config.EvalConfig` resolved from ``manifests/evaluate.yaml`` and the dataset's
manifest.

The store need not be the one the run was pretrained on: any store in the same feature space
(:func:`heads.checkpoint.check_feature_space`) is accepted. That is the paper's protocol: heads
pretrained on VoxCeleb2, evaluated on MELD, CAER and CMU-MOSEI extracted by others.

Outputs, in ``RUN/eval/<protocol>[-<modalities>][-mean]/`` (or ``out``)::

    metrics.json         every metric per split and seed, their mean/std, config, store_id
    confusion_<split>.png  row-normalised confusion matrix with counts (first seed; for a
                         regression, of the targets' signs)
    scatter_<split>.png  regression: predictions against targets, per target (first seed)
    embedding_test.png   t-SNE of the test representations coloured by label (first seed)
    classifier.pt        the first seed's classifier (plain tensors; used by heads.evaluation.predict)
    run.json             the run record (heads.run_record): command, config, stores, software,
                         host, device, wall-clock

The default folder belongs to the first evaluation written there: another one (another store,
``--set``, seeds or checkpoint) goes to ``RUN/eval/<name>-<id>`` beside it
(:mod:`heads.evaluation.records`); an ``out`` that holds an evaluation is refused without
``overwrite``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from heads.checkpoint import CLASSIFIER, check_feature_space, checkpoint_of, load_model, run_folder
from heads.classifier_file import save_classifier_file
from heads.data import DataError, assemble_modalities
from heads.eval_config import EvalConfig, resolve_eval_config
from heads.evaluation import get_protocol
from heads.evaluation.classification import ClassifierProtocol
from heads.evaluation.classifier import classifier_file
from heads.evaluation.probe import FUSIONS, LabelledSplit, ProbeSpec
from heads.evaluation.protocol import EvalSetup, Protocol, SeedResult, accepts_run
from heads.evaluation.records import (checkpoint_ref, choose_folder, eval_identity, eval_stores,
                                     refusal, write_eval_record)
from heads.evaluation.splits import check_splits, load_split
from heads.evaluation.targets import target_names
from heads.metrics import HEADLINE, REGRESSION_HEADLINE, json_safe, summarize
from heads.metrics_log import write_eval_scalars
from heads.outputs import check_not_running, claim_output, clear_output
from heads.run_record import one_warning, random_weights_of, start_clock, warn_random_weights
from heads.runtime import resolve_device
from pipeline.config import ConfigError
from pipeline.presets import Preset, parse_preset
from pipeline.store import FeatureStore, open_store
from pipeline.store.manifest import feature_space_id

log = logging.getLogger(__name__)

__all__ = ["EvalConfig", "METRICS", "eval_name", "load_split", "resolve_eval_config",
           "run_eval", "write_json"]

FORMAT = "conclugen-eval/1"
METRICS = "metrics.json"
SPLITS = ("train", "val", "test")
SELECTION = {"val_f1": "the epoch with the best val weighted F1 (ties: lower val loss)",
             "val_loss": "the epoch with the lowest val loss"}


def modality_order(requested: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """The modalities a probe uses: ``requested`` (checked against ``available``) or all."""
    if requested is None:
        return tuple(available)
    requested = tuple(requested)
    unknown = [m for m in requested if m not in available]
    if unknown or not requested or len(set(requested)) != len(requested):
        raise ConfigError(f"--modalities (modalities={list(requested)}): must be distinct "
                          "and among "
                          f"{list(available)}")
    return requested


# -------------------------------------------------------------------------------- evaluation

def eval_name(protocol: str, modalities: Sequence[str], all_modalities: Sequence[str],
              fusion: str) -> str:
    """``linear``, ``linear-video``, ``finetune-video-audio-mean``: the output folder's name."""
    name = protocol
    if tuple(modalities) != tuple(all_modalities):
        name += "-" + "-".join(modalities)
    return name if fusion == "concat" else f"{name}-{fusion}"


def run_eval(store: str, *, run: str | Path | None, protocol: str, out: Path | None = None,
             modalities: Sequence[str] | None = None, fusion: str = "concat",
             preset: str | Preset | None = None, overrides: dict | None = None, seeds: int = 1,
             device: str = "auto", progress: bool = True, overwrite: bool = False) -> dict:
    """Evaluate representations on a labelled store; write metrics, figures and the classifier.

    Args:
        store: the feature store (folder or fsspec URL) with train, val (and test) splits.
        run: the pretraining run folder (or a checkpoint file); None for ``supervised``,
            ``avce`` and ``clef`` (whose zero-shot row uses it when given).
        protocol: ``linear``, ``finetune``, ``supervised``, ``clef`` or ``avce``.
        out: the output folder (default ``RUN/eval/<name>``; required for ``supervised``
            without a run).
        modalities: the modalities the classifier sees (default: all the run's; for
            ``supervised`` all the store has). ``["video"]`` gives "ConCluGen (vision)".
        fusion: ``concat`` (the paper) or ``mean`` of the modality representations.
        preset: ``--preset`` (``"reference"``, ``"cpu"``, ``"reference,cpu"``): layers of
            ``manifests/evaluate.yaml``; recorded in ``metrics.json``.
        overrides: config values merged last (``{"epochs": 10, "optim.lr": 1e-3}``).
        seeds: how many seeds to train with (mean and std reported).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        progress: show a progress bar per seed.
        overwrite: replace an evaluation already in ``out`` (otherwise refused: one
            evaluation never silently replaces another).

    Returns:
        the content of ``metrics.json``; ``summary[split][metric]["mean"]`` holds the numbers
        of the paper's tables.

    Raises:
        ConfigError: bad protocol, fusion, modalities, preset or overrides.
        CheckpointError: no checkpoint, or a store in another feature space than the run's
            (the differing fields are named).
        DataError: the store lacks a train or val split, or labels (continuous targets for
            a regression protocol).
    """
    spec = get_protocol(protocol)
    parse_preset(preset)  # a malformed --preset is refused before the store is read
    if fusion not in FUSIONS:
        raise ConfigError(f"--fusion {fusion} (fusion={fusion!r}): unknown; valid: "
                          f"{list(FUSIONS)}")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} (seeds={seeds}): must be at least 1")
    if spec.needs_run and run is None:
        raise ConfigError(f"--protocol {protocol} evaluates a pretraining run: pass --run "
                          "(run=RUN)")
    clock = start_clock()
    with one_warning(), open_store(store) as fs:
        setup = _setup(fs, store, run=run, protocol=spec, modalities=modalities,
                       fusion=fusion, preset=preset, overrides=overrides, device=device)
        for ref in eval_stores(fs, setup):
            warn_random_weights(ref.url, ref.random_weights, command="eval")
        ident = eval_identity(fs, setup, seeds)
        if out is None:
            if run is None:
                raise ConfigError(f"--protocol {protocol} without --run needs --out "
                                  "(out=FOLDER)")
            all_modalities = (list(setup.payload.layout) if spec.needs_run and setup.payload
                              is not None else list(setup.spec.modalities))
            # another evaluation in the default folder stays: this one goes beside it
            out = choose_folder(run_folder(run) / "eval" / eval_name(
                protocol, setup.spec.modalities, all_modalities, fusion), ident)
        with claim_output(Path(out), "eval") as state:
            if state == "own":
                if not overwrite:
                    raise refusal(Path(out), ident)
                clear_output(Path(out), "eval")
            # the classification protocols train on augmented views (train_views)
            views = (setup.cfg.train_views == "augmented"
                     and isinstance(spec, ClassifierProtocol))
            data = {name: split for name in SPLITS
                    if (split := load_split(fs, setup.layout, name, setup.device,
                                            task=setup.task,
                                            views=views and name == "train")) is not None}
            check_splits(fs, data)
            result = _evaluate(fs, spec, setup, data, seeds=seeds, out=Path(out), run=run,
                               progress=progress)
            write_eval_record(Path(out), fs, setup, result, ident, clock)
    return result


def _setup(fs: FeatureStore, store: str, *, run: str | Path | None, protocol: Protocol,
           modalities: Sequence[str] | None, fusion: str, preset: str | Preset | None,
           overrides: dict | None, device: str) -> EvalSetup:
    cfg = resolve_eval_config(fs.dataset, preset=preset, overrides=overrides)
    dev = resolve_device(device)
    pretrained = payload = ckpt = None
    if run is not None and accepts_run(protocol):
        check_not_running(run_folder(run))
        ckpt = checkpoint_of(run)
        pretrained, payload = load_model(ckpt, device="cpu")
        check_feature_space(payload.feature_space, payload.store_id, payload.keys, fs.manifest,
                            checkpoint=ckpt, store=str(store))
        if payload.store_id != fs.store_id:
            log.info("%s: heads pretrained on another store (%s), same feature space",
                     fs.url, payload.store_url)
    if not protocol.needs_run:
        present = [m for m, keys in cfg.modality_keys.items() if set(keys) & set(fs.keys)]
        chooser = getattr(protocol, "default_modalities", None)  # AVCE leaves out the text
        if modalities is None and chooser is not None:
            present = chooser(cfg, present)
        mods = modality_order(modalities, present)
        layout = assemble_modalities(fs, cfg.modality_keys, mods)
        keys, dims, dim = dict(layout.keys), dict(layout.dims), cfg.representation_dim
    else:
        assert payload is not None
        mods = modality_order(modalities, list(payload.layout))
        keys = {m: payload.layout[m] for m in mods}
        dims = {m: payload.model_spec.input_dims[m] for m in mods}
        dim = payload.model_spec.representation_dim
    task = protocol.task
    names, multilabel = _outputs(fs, protocol.name, task)
    spec = ProbeSpec(tuple(mods), cast(Literal["concat", "mean"], fusion),  # ProbeSpec checks it
                     dim, len(names), cfg.dropout, multilabel)
    return EvalSetup(protocol.name, cfg, spec, {m: dims[m] for m in mods}, keys, names,
                     pretrained, payload, ckpt, dev, task=task,
                     target_names=names if task == "regression" else (), store=fs)


def _outputs(fs: FeatureStore, protocol: str, task: str) -> tuple[tuple[str, ...], bool]:
    """What the protocol predicts: the class (or label) names, or the continuous targets'
    names; and whether the labels are multi-label."""
    if task == "regression":
        names = target_names(fs)
        if not names:
            raise DataError(f"{fs.url}: protocol {protocol!r} regresses continuous targets "
                            f"(valence, arousal), and this {fs.dataset} store has none; stores "
                            "of CMU-MOSEI (sentiment as valence) and AFEW-VA have them")
        return names, False
    outputs = len(fs.label_names)
    if outputs < 2 and not fs.multilabel:
        raise DataError(f"{fs.url}: {outputs} class(es) {list(fs.label_names)}; a classifier "
                        "needs at least 2")
    return fs.label_names, fs.multilabel


def _evaluate(fs: FeatureStore, protocol: Protocol, setup: EvalSetup,
              data: dict[str, LabelledSplit], *, seeds: int, out: Path,
              run: str | Path | None, progress: bool) -> dict[str, Any]:
    runs, first = [], None
    for k in range(seeds):
        result = protocol.run_seed(setup, data, setup.cfg.seed + k, progress=progress)
        runs.append({"seed": result.seed, "best_epoch": result.best_epoch,
                     "seconds": round(result.seconds, 3), "history": result.history,
                     "splits": {n: m for n, (m, _) in result.scored.items()},
                     **({"details": result.details} if result.details else {})})
        first = first or result
    assert first is not None
    out.mkdir(parents=True, exist_ok=True)
    files = _figures(setup, first, data, out)
    files["classifier"] = CLASSIFIER
    _save_model(out / CLASSIFIER, fs, setup, first)
    metrics = _report(fs, setup, runs, weights=first.class_weights, run=run, files=files,
                      counts={n: len(s) for n, s in data.items()})
    metrics["details"] = first.details
    train = data["train"]
    metrics["train_views"] = (f"augmented: 1 of {next(iter(train.views.values())).shape[1]} "
                              "per clip, modality and epoch" if train.views is not None
                              else "clean")
    metrics["out"] = str(out)
    if write_eval_scalars(out, runs, metrics["summary"]):
        files["tensorboard"] = "tensorboard"
    write_json(out / METRICS, metrics)
    log.info("%s: test %s", out, _headline(metrics))
    return metrics


def _save_model(path: Path, fs: FeatureStore, setup: EvalSetup, first: SeedResult) -> None:
    """``classifier.pt``: the first seed's model as a
    :class:`~heads.classifier_file.ClassifierFile` (``cli predict`` reads it)."""
    space = {k: fs.manifest.feature_space[k] for ks in setup.layout.values() for k in ks}
    save_classifier_file(path, classifier_file(setup, first, store_id=fs.store_id,
                                               store_url=fs.url, feature_space=space))


def _figures(setup: EvalSetup, first: SeedResult, data: Mapping[str, LabelledSplit],
             out: Path) -> dict[str, Any]:
    # heads.plots imports matplotlib (about 2 s): only an evaluation that draws loads it
    from heads.plots import SMALL_SAMPLE, caveats, evaluation_figures, sign_strings

    scored = first.scored
    test, labels = None, None
    if "test" in scored:
        targets = data["test"].targets.cpu().numpy()
        test = (scored["test"][1], targets)
        if setup.task == "regression":
            labels = sign_strings(targets, setup.target_names)
    return evaluation_figures(out, confusions={n: m["confusion"] for n, (m, _) in scored.items()},
                              label_names=(setup.label_names if setup.task != "regression"
                                           else [f"{n} > 0" for n in setup.target_names]),
                              multilabel=setup.spec.multilabel or setup.task == "regression",
                              test=test, test_labels=labels,
                              scatter=first.predictions or None,
                              what=f"{setup.protocol} ({'+'.join(setup.spec.modalities)})",
                              seed=first.seed, max_points=setup.cfg.tsne_max_points,
                              note=caveats(setup.store.manifest.random_weights
                                           if setup.store is not None else (),
                                           small=f"{len(data['test'])} test clips"
                                           if "test" in data
                                           and len(data["test"]) < SMALL_SAMPLE else None))


def _report(fs: FeatureStore, setup: EvalSetup, runs: list[dict[str, Any]], *,
            weights: list[float], run: str | Path | None, files: dict[str, Any],
            counts: dict[str, int]) -> dict[str, Any]:
    payload = setup.payload
    splits = list(runs[0]["splits"])
    return {
        "format": FORMAT,
        "protocol": setup.protocol,
        "task": setup.task,
        "objective": payload.objective if payload is not None else setup.protocol,
        "modalities": list(setup.spec.modalities),
        "fusion": setup.spec.fusion,
        "dataset": fs.dataset,
        "label_names": list(setup.label_names),
        "multilabel": setup.spec.multilabel,
        "targets": list(setup.target_names),
        "store": fs.url,
        "store_id": fs.store_id,
        "feature_space": _space_id(fs, setup),
        # store url -> keys with random backbone weights (features for tests only)
        "random_weights": random_weights_of(eval_stores(fs, setup)),
        "pretrained_on": (None if payload is None else
                          {"store_id": payload.store_id, "store": payload.store_url,
                           "dataset": payload.dataset}),
        "run": str(run_folder(run)) if run is not None else None,
        "checkpoint": checkpoint_ref(setup),
        "config": setup.cfg.to_dict(),
        "preset": setup.cfg.preset,
        "selection": (runs[0].get("details", {}).get("selection")
                      or SELECTION[setup.cfg.selection]),
        "class_weights": _class_weights(setup, weights),
        "counts": counts,
        "seeds": [r["seed"] for r in runs],
        "summary": {s: summarize([r["splits"][s] for r in runs], summary_keys(setup))
                    for s in splits},
        "runs": runs,
        "files": files,
    }


def summary_keys(setup: EvalSetup) -> list[str]:
    """The scalar metrics ``metrics.json`` summarises over seeds."""
    if setup.task == "regression":
        return [*REGRESSION_HEADLINE, *(f"{key}_{name}" for name in setup.target_names
                                        for key in REGRESSION_HEADLINE)]
    return [*HEADLINE, *(("subset_accuracy", "weighted_accuracy") if setup.spec.multilabel
                         else ())]


def _class_weights(setup: EvalSetup, weights: list[float]) -> dict[str, Any]:
    if setup.task == "regression":
        return {"kind": "none", "meaning": "regression: no class weights", "values": []}
    return {"kind": setup.cfg.class_weights,
            "meaning": _WEIGHT_MEANING[setup.spec.multilabel][setup.cfg.class_weights],
            "values": weights}


#: What each class_weights mode means, for single-label (False) and multi-label (True) stores
#: (see heads.evaluation.fit.make_loss).
_WEIGHT_MEANING = {
    False: {"inverse": "cross-entropy weight n / (C * n_c) from the train split",
            "frequency": "cross-entropy weight n_c / n from the train split",
            "fixed": "cross-entropy weights given in the config (class_weight_values)",
            "none": "unweighted cross-entropy"},
    True: {"inverse": "BCE pos_weight = negatives / positives per label, from the train split",
           "frequency": "BCE pos_weight = positives / n per label, from the train split",
           "fixed": "BCE pos_weight given in the config (class_weight_values)",
           "none": "unweighted BCE"},
}


def _space_id(fs: FeatureStore, setup: EvalSetup) -> str:
    return feature_space_id(fs.manifest.feature_space,
                            [k for ks in setup.layout.values() for k in ks])


def _headline(metrics: Mapping[str, Any]) -> str:
    test = metrics["summary"].get("test") or metrics["summary"].get("val", {})
    keys = REGRESSION_HEADLINE if metrics.get("task") == "regression" else HEADLINE
    return ", ".join(f"{k} {v['mean']:.4f}" for k, v in test.items()
                     if k in keys and v["mean"] is not None)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write strict JSON (NaN as null) atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
