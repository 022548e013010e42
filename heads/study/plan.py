"""The study's plan, made before anything is trained: the systems chosen, what each store holds,
whether the downstream stores are in the pretraining store's feature space, which dataset goes
to which folder, and why a row cannot run."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from heads.config import resolve_config
from heads.data import DataError
from heads.evaluation.targets import read_targets
from heads.pretrain.objectives import OBJECTIVES
from heads.study.types import SYSTEMS, Method, StoreFacts, Target
from pipeline.config import ConfigError
from pipeline.store import open_store
from pipeline.store.manifest import (StoreError, feature_space_differences,
                                     format_differences)


def check_systems(systems: Sequence[str]) -> tuple[str, ...]:
    """The systems to run, in :data:`SYSTEMS` order.

    Raises:
        ConfigError: none, or one that is not in :data:`SYSTEMS` (the valid ones are named).
    """
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise ConfigError(f"--systems (systems={list(systems)}): choose one or more of "
                          f"{list(SYSTEMS)}")
    return tuple(s for s in SYSTEMS if s in systems)


def read_facts(store: str) -> StoreFacts:
    """Open ``store`` and note what the study checks and reports."""
    with open_store(store) as fs:
        rows, labelled, with_targets = {}, {}, {}
        targets = tuple(fs.manifest.dataset.targets)
        for split in fs.splits:
            positions = fs.positions(split)
            labels = fs.labels(positions)
            keep = np.isfinite(labels).all(axis=1) if fs.multilabel else labels >= 0
            rows[split], labelled[split] = len(labels), int(keep.sum())
            if targets:
                values = read_targets(fs, positions)
                with_targets[split] = int(np.isfinite(values).all(axis=1).sum())
        return StoreFacts(fs.url, fs.store_id, fs.dataset, frozenset(fs.keys), fs.views,
                          tuple(fs.splits), len(fs.label_names), fs.multilabel, rows, labelled,
                          tuple(fs.manifest.random_weights),
                          {k: dict(v) for k, v in fs.manifest.feature_space.items()},
                          targets, with_targets, fs.manifest.label_texts is not None)


def present_modalities(keys: Collection[str], modality_keys: Mapping[str, Sequence[str]]
                       ) -> dict[str, tuple[str, ...]]:
    """Per modality with at least one key in ``keys``, those keys (in config order)."""
    found = {m: tuple(k for k in ks if k in keys) for m, ks in modality_keys.items()}
    return {m: ks for m, ks in found.items() if ks}


def check_stores(pre: StoreFacts | None, downstream: Sequence[StoreFacts],
                 modality_keys: Mapping[str, Sequence[str]]) -> None:
    """Everything that would stop the study half-way, checked before anything is trained.

    Raises:
        StoreError: a downstream store in another feature space than the pretraining store,
            for any store key both hold (the fields are named per key).
        DataError: a downstream store without labels or a labelled train, val or test split;
            a pretraining store without train rows; the same store given twice.
    """
    problems = []
    ids = [s.store_id for s in downstream]
    for s in downstream:
        if ids.count(s.store_id) > 1:
            problems.append(f"{s.url}: given more than once as a downstream store")
        counted = s.labelled if s.classes_reason is None else s.with_targets
        if s.classes_reason is not None and not s.targets:
            problems.append(f"{s.url}: {s.classes} class(es) and no continuous targets; a "
                            "downstream store is labelled")
            continue
        empty = [split for split in ("train", "val", "test") if not counted.get(split)]
        if empty:
            what = "labelled rows" if s.classes_reason is None else "rows with targets"
            problems.append(f"{s.url}: no {what} in split(s) {empty} (it has "
                            f"{list(s.splits)}); the study trains on train, selects on val "
                            "and reports test")
    if pre is not None and not pre.rows.get("train"):
        problems.append(f"{pre.url}: no train split to pretrain on (it has {list(pre.splits)})")
    if problems:
        raise DataError("study: " + "; ".join(dict.fromkeys(problems)))
    if pre is None:
        return
    keys = [k for ks in present_modalities(pre.keys, modality_keys).values() for k in ks]
    spaces = []
    for s in downstream:
        shared = [k for k in keys if k in s.keys]
        diffs = feature_space_differences(pre.feature_space, s.feature_space, shared)
        if not shared:
            spaces.append(f"{s.url}: holds none of the pretraining store's keys {keys}")
        elif diffs:
            spaces.append(f"{s.url}: {format_differences(diffs)}")
    if spaces:
        raise StoreError(
            f"study: not in the feature space of the pretraining store {pre.url}, so heads "
            f"pretrained there cannot be evaluated on it; differing fields per store key: "
            f"{' | '.join(spaces)}. Nothing was trained. Extract the downstream stores with "
            "the same backbones, weights and preprocessing (`cli store diff` compares two)")


def plan_targets(pre: StoreFacts | None, downstream: Sequence[StoreFacts],
                 out: Path) -> list[Target]:
    """One target per downstream store, in the order given, named after its dataset."""
    targets: list[Target] = []
    for s in downstream:
        name = _folder_name(s.dataset)
        taken = {t.name for t in targets} | {"runs"}
        k = 2
        while name in taken:
            name, k = f"{_folder_name(s.dataset)}-{k}", k + 1
        folder = out / name
        targets.append(Target(name, s, pre or s, folder,
                              out / "runs" if pre is not None else folder / "runs",
                              own=pre is None))
    return targets


def _folder_name(dataset: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset).strip("._")
    return cleaned or "dataset"


def skip_reason(method: Method, *, pretrain: Mapping[str, Sequence[str]],
                store_keys: Collection[str], views: int, own: bool = True,
                contrast_views: str = "augmented") -> str | None:
    """Why a row cannot run, or None.

    Args:
        method: the row.
        pretrain: per modality the pretraining store's keys (:func:`present_modalities`).
        store_keys: the downstream store's keys.
        views: the pretraining store's views per sample.
        own: the pretraining store is the downstream store (wording only).
        contrast_views: the pretraining config's ``data.contrast_views``: two augmented views
            (``augmented``: views 1..V-1, so 3 stored views) or any two (``all``: 2).
    """
    where = "the store" if own else "the pretraining store"
    if method.objective is None:
        return None if set(store_keys) else "the store holds no features"
    spec = OBJECTIVES[method.objective]
    # the rule of heads.data.check_views, which the trainer applies (a test keeps them equal)
    need = 3 if contrast_views == "augmented" else 2
    if spec.needs_views and views < need:
        pair = "two augmented views" if need == 3 else "two views"
        return (f"{where} holds {views} view(s) per sample; {method.objective} contrasts "
                f"{pair} (extract it with --views {need} or more)")
    missing = [m for m in method.pretrain or () if m not in pretrain]
    if missing:
        return f"{where} has no {', '.join(missing)} features"
    if method.pretrain is not None and set(method.pretrain) == set(pretrain):
        return (f"{where} has only {'+'.join(pretrain)}: the same run as {method.objective} "
                "on all its modalities")
    modalities = pretrain_modalities(method, pretrain)
    if len(modalities) < spec.min_modalities:
        return (f"{method.objective} needs {spec.min_modalities} modalities, {where} has "
                f"{'+'.join(pretrain) or 'none'}")
    read = method.probe or modalities if method.protocol == "linear" else modalities
    absent = [m for m in read if m not in modalities]
    if absent:
        return f"the run has no {', '.join(absent)} representation ({where} lacks it)"
    lacking = [k for m in read for k in pretrain[m] if k not in store_keys]
    if lacking:
        return (f"the store has no {', '.join(lacking)} features, which the heads read "
                f"(pretrained on {'+'.join(k for m in read for k in pretrain[m])})")
    return None


def pretrain_modalities(method: Method, pretrain: Mapping[str, Sequence[str]]
                        ) -> tuple[str, ...]:
    """The run's modalities: the row's, or the objective's default ones the store has."""
    assert method.objective is not None
    if method.pretrain is not None:
        return method.pretrain
    return tuple(m for m in resolve_config(method.objective).modalities if m in pretrain)


def run_name(method: Method, pretrain: Mapping[str, Sequence[str]]) -> str:
    """The pretraining run's folder: ``conclugen``, ``multi_cont-video-audio``."""
    assert method.objective is not None
    modalities = pretrain_modalities(method, pretrain)
    if method.pretrain is None or set(modalities) == set(pretrain):
        return method.objective
    return "-".join((method.objective, *modalities))
