"""Runs the study's rows: each run pretrained once, each evaluation once, both only when a
previous study in the same folder did not leave them up to date."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from heads.checkpoint import LAST, CheckpointError
from heads.config import resolve_config
from heads.eval_config import resolve_eval_config
from heads.evaluation.run import METRICS, eval_name, run_eval
from heads.metrics_log import read_metrics
from heads.outputs import write_json_atomic
from heads.pretrain.train import run_pretrain
from heads.study.plan import present_modalities, pretrain_modalities, run_name, skip_reason
from heads.study.types import Method, TableRow, Target
from pipeline.presets import Preset

log = logging.getLogger(__name__)

#: Pretraining epochs of ``quick`` studies (the ``cpu`` size of both configs' presets).
QUICK_EPOCHS = 3
#: Written into a run folder once its pretraining finished: what it was trained on and with.
PRETRAINED = "study-pretrained.json"


class StudyRunner:
    """Runs rows: each run pretrained once per call, each evaluation once, both only when a
    previous call did not leave them up to date."""

    def __init__(self, *, preset: Preset, device: str, seeds: int, progress: bool,
                 modality_keys: Mapping[str, Sequence[str]]) -> None:
        # the cpu size is a quick study: few pretraining epochs too
        self.quick, self.device, self.seeds = preset.size == "cpu", device, seeds
        self.progress, self.modality_keys = progress, modality_keys
        self.preset = preset
        self.steps: dict[Path, int] = {}  # run folder -> its checkpoint's step
        self.evaluations: dict[Path, dict[str, Any]] = {}

    def skip(self, method: Method, target: Target) -> str | None:
        """Why a row of the paper's protocols cannot run on ``target`` (None: it can)."""
        if target.store.classes_reason is not None:
            return target.store.classes_reason
        pretrain = present_modalities(target.pretrain.keys, self.modality_keys)
        contrast = (resolve_config(method.objective, preset=self.preset).data.contrast_views
                    if method.objective is not None else "augmented")
        return skip_reason(method, pretrain=pretrain, store_keys=target.store.keys,
                           views=target.pretrain.views, own=target.own,
                           contrast_views=contrast)

    def row(self, method: Method, target: Target) -> TableRow:
        pretrain = present_modalities(target.pretrain.keys, self.modality_keys)
        reason = self.skip(method, target)
        if reason:
            log.warning("study %s: %s skipped: %s", target.name, method.label, reason)
            return TableRow(method.key, method.label, None, reason)
        log.info("study %s: %s", target.name, method.label)
        if method.objective is None:
            present = present_modalities(target.store.keys, self.modality_keys)
            folder = target.folder / "eval" / "supervised"
            metrics = self.evaluate(target, folder, protocol="supervised", run=None,
                                    modalities=tuple(present))
        else:
            name = run_name(method, pretrain)
            run = self.pretrain(method, target, target.runs / name, pretrain)
            modalities = pretrain_modalities(method, pretrain)
            probe = method.probe if method.protocol == "linear" else None
            folder = (target.folder / "eval" / name /
                      eval_name(method.protocol, probe or modalities, modalities, "concat"))
            metrics = self.evaluate(target, folder, protocol=method.protocol, run=run,
                                    modalities=probe)
        return TableRow(method.key, method.label, metrics, None)

    def pretrain(self, method: Method, target: Target, run_dir: Path,
                 pretrain: Mapping[str, Sequence[str]]) -> Path:
        if run_dir in self.steps:
            return run_dir
        assert method.objective is not None
        modalities = pretrain_modalities(method, pretrain)
        epochs = QUICK_EPOCHS if self.quick else None
        cfg = resolve_config(method.objective, preset=self.preset, modalities=modalities,
                             epochs=epochs)
        # modality_keys: the run records the keys the store had, not the default ones
        request = {"store_id": target.pretrain.store_id,
                   "config": {k: v for k, v in cfg.to_dict().items() if k != "modality_keys"}}
        marker = run_dir / PRETRAINED
        if marker.is_file() and (run_dir / "checkpoints" / LAST).is_file():
            done = json.loads(marker.read_text(encoding="utf-8"))
            if {k: done.get(k) for k in request} == request:
                log.info("%s is up to date: not pretrained again", run_dir)
                self.steps[run_dir] = int(done["step"])
                return run_dir
        try:
            run_pretrain(target.pretrain.url, method.objective, run_dir, preset=self.preset,
                         modalities=list(modalities), epochs=epochs, device=self.device,
                         resume=(run_dir / "config.yaml").exists(), progress=self.progress)
        except CheckpointError as err:
            raise CheckpointError(f"study: {run_dir} holds a run that this study cannot "
                                  f"continue ({err}); remove that folder to pretrain it "
                                  "again, or choose another study folder") from None
        last = read_metrics(run_dir, "epoch")[-1]
        write_json_atomic(marker, {**request, "step": last["step"], "epochs": last["epoch"] + 1})
        self.steps[run_dir] = int(last["step"])
        return run_dir

    def evaluate(self, target: Target, folder: Path, *, protocol: str, run: Path | None,
                 modalities: Sequence[str] | None) -> dict[str, Any]:
        if folder in self.evaluations:
            return self.evaluations[folder]
        cfg = resolve_eval_config(target.store.dataset, preset=self.preset)
        checkpoint = (None if run is None else
                      {"store_id": target.pretrain.store_id, "step": self.steps[run]})
        metrics = up_to_date(folder / METRICS, protocol=protocol, store_id=target.store.store_id,
                             config=cfg.to_dict(),
                             seeds=list(range(cfg.seed, cfg.seed + self.seeds)),
                             checkpoint=checkpoint)
        if metrics is None:
            # Not up to date: this study's own evaluation of another config or checkpoint,
            # replaced (the tables point at exactly the evaluations they read).
            metrics = run_eval(target.store.url, run=run, protocol=protocol, out=folder,
                               modalities=modalities, preset=self.preset, seeds=self.seeds,
                               device=self.device, progress=self.progress, overwrite=True)
        self.evaluations[folder] = metrics
        return metrics


def up_to_date(path: Path, *, protocol: str, store_id: str, config: Mapping[str, Any],
               seeds: Sequence[int], checkpoint: Mapping[str, Any] | None
               ) -> dict[str, Any] | None:
    """The evaluation in ``path`` when a re-run would repeat it exactly, else None.

    It would when it evaluated the same downstream store (``store_id``) with the same protocol,
    resolved config and seeds, and (for a pretrained run) the heads of the same checkpoint: the
    same pretraining store and step.
    """
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    recorded = metrics.get("checkpoint")
    if (metrics.get("protocol") != protocol or metrics.get("store_id") != store_id
            or metrics.get("config") != dict(config) or metrics.get("seeds") != list(seeds)):
        return None
    if checkpoint is None and recorded is not None:
        return None
    if checkpoint is not None and (recorded is None or any(
            recorded.get(k) != v for k, v in checkpoint.items())):
        return None
    log.info("%s is up to date: not evaluated again", path.parent)
    return metrics
