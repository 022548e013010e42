"""An evaluation's records: where it goes, what it read, and its ``run.json``.

One evaluation never replaces another without ``--overwrite``.

An evaluation is identified by what determines its numbers (:func:`identity`): the protocol,
the evaluated store, the modalities and fusion, the resolved config, the seeds and the
pretrained checkpoint (its store, step and epoch). The default folder ``RUN/eval/<name>``
belongs to the first evaluation written there; another one (a different ``--set``, store or
``--seeds``) goes to ``RUN/eval/<name>-<id>`` (:func:`choose_folder`, ``id`` the first 8 hex
digits of :func:`evaluation_id`), so both stay. An ``--out`` that already holds an evaluation,
the same or another, is refused without ``--overwrite`` (:func:`refusal`).

:func:`eval_stores` are the stores an evaluation read (the evaluated one and the one its heads
were pretrained on), with their random-weights keys; :func:`write_eval_record` writes its
``run.json`` (:mod:`heads.run_record`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from heads.evaluation.classifier import heads_ref
from heads.evaluation.protocol import EvalSetup
from heads.metrics import HEADLINE, REGRESSION_HEADLINE
from heads.outputs import OutputError
from heads.run_record import (Clock, StoreRecord, random_keys, store_record,
                              write_run_record)
from pipeline.store import FeatureStore
from pipeline.store.manifest import sha256_json
from pipeline.store.ops import flatten

log = logging.getLogger(__name__)

METRICS = "metrics.json"
#: The checkpoint fields that make two evaluations of a run's heads the same (the path is left
#: out: the same run named from another working directory is the same run).
CHECKPOINT_FIELDS = ("store_id", "step", "epoch")
SHOWN = 4


def identity(*, protocol: str, store_id: str, modalities: Sequence[str], fusion: str,
             config: Mapping[str, Any], seeds: Sequence[int],
             checkpoint: Mapping[str, Any] | None) -> dict[str, Any]:
    """What determines an evaluation's numbers, as plain JSON values."""
    return json.loads(json.dumps({
        "protocol": protocol, "store_id": store_id, "modalities": list(modalities),
        "fusion": fusion, "config": dict(config), "seeds": list(seeds),
        "checkpoint": None if checkpoint is None else {k: checkpoint.get(k)
                                                       for k in CHECKPOINT_FIELDS}}))


def identity_of(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of the evaluation a ``metrics.json`` records (also of earlier releases)."""
    return identity(protocol=metrics.get("protocol", ""), store_id=metrics.get("store_id", ""),
                    modalities=metrics.get("modalities") or [],
                    fusion=metrics.get("fusion", "concat"), config=metrics.get("config") or {},
                    seeds=metrics.get("seeds") or [], checkpoint=metrics.get("checkpoint"))


def evaluation_id(ident: Mapping[str, Any]) -> str:
    """sha256 of an evaluation's identity."""
    return sha256_json(dict(ident))


def recorded(folder: Path) -> dict[str, Any] | None:
    """The identity of the evaluation in ``folder`` (None: none finished there)."""
    path = folder / METRICS
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or not str(metrics.get("format", "")).startswith(
            "conclugen-eval/"):
        return None  # not an evaluation's metrics: nothing to compare
    return identity_of(metrics)


def choose_folder(default: Path, ident: Mapping[str, Any]) -> Path:
    """``default`` when it is free or holds this very evaluation; else the evaluation's own
    folder beside it, ``<default>-<id>``."""
    found = recorded(default)
    if found is None or evaluation_id(found) == evaluation_id(ident):
        return default
    own = default.with_name(f"{default.name}-{evaluation_id(ident)[:8]}")
    log.info("%s holds another evaluation (%s): this one goes to %s", default,
             _differences(found, ident), own)
    return own


def refusal(out: Path, ident: Mapping[str, Any]) -> OutputError:
    """The error for an ``out`` that holds an evaluation, without ``--overwrite``."""
    found = recorded(out)
    if found is not None and evaluation_id(found) == evaluation_id(ident):
        return OutputError(f"{out} already holds this evaluation (same store, config, seeds and "
                           "checkpoint); --overwrite repeats it (nothing was written)")
    what = ("an evaluation" if found is None else
            f"another evaluation (it differs in {_differences(found, ident)})")
    return OutputError(f"{out} already holds {what}; --overwrite replaces it, another --out "
                       "keeps both (nothing was written)")


def checkpoint_ref(setup: EvalSetup) -> dict[str, Any] | None:
    """The pretrained checkpoint an evaluation used, as ``metrics.json`` records it."""
    ref = heads_ref(setup)
    return None if ref is None else dataclasses.asdict(ref)


def eval_identity(fs: FeatureStore, setup: EvalSetup, seeds: int) -> dict[str, Any]:
    """The :func:`identity` of the evaluation ``setup`` describes, with ``seeds`` seeds."""
    return identity(protocol=setup.protocol, store_id=fs.store_id,
                    modalities=setup.spec.modalities, fusion=setup.spec.fusion,
                    config=setup.cfg.to_dict(),
                    seeds=[setup.cfg.seed + k for k in range(seeds)],
                    checkpoint=checkpoint_ref(setup))


def eval_stores(fs: FeatureStore, setup: EvalSetup) -> list[StoreRecord]:
    """The evaluated store and, for pretrained heads, the store they were pretrained on."""
    stores = [store_record("evaluated", fs.manifest, fs.url,
                           [k for ks in setup.layout.values() for k in ks])]
    payload = setup.payload
    if payload is not None:
        stores.append(StoreRecord("pretrained_on", payload.store_url, payload.store_id,
                                  payload.dataset, dict(payload.feature_space or {}),
                                  random_keys(payload.feature_space)))
    return stores


def write_eval_record(out: Path, fs: FeatureStore, setup: EvalSetup, metrics: Mapping[str, Any],
                      ident: Mapping[str, Any], clock: Clock) -> None:
    """``run.json`` beside ``metrics.json``: as its config the resolved EvalConfig with the
    protocol, modalities, fusion, seeds and checkpoint; the means of the headline metrics per
    split."""
    headline = {f"{split}/{name}": value.get("mean")
                for split, scores in metrics["summary"].items() for name, value in scores.items()
                if name in (*HEADLINE, *REGRESSION_HEADLINE) and isinstance(value, dict)}
    write_run_record(out, kind="eval", name=setup.protocol,
                     config={**{k: v for k, v in ident.items()
                                if k not in ("store_id", "config")}, **ident["config"]},
                     stores=eval_stores(fs, setup), device=str(setup.device), clock=clock,
                     metrics=headline)


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    fa, fb = flatten(dict(a)), flatten(dict(b))
    paths = sorted(p for p in fa.keys() | fb.keys() if fa.get(p) != fb.get(p))
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(f"{p}: {fa.get(p)!r} -> {fb.get(p)!r}" for p in paths[:SHOWN]) + more


__all__ = ["checkpoint_ref", "choose_folder", "eval_identity", "eval_stores", "evaluation_id",
           "identity", "identity_of", "recorded", "refusal", "write_eval_record"]
