"""Runs the study's rows: each run pretrained once per pretraining seed, each evaluation once,
both only when a previous study in the same folder did not leave them up to date.

A row of the paper's tables pools its pretraining seeds: seed ``s`` of run ``<run>`` lives in
``runs/<run>`` for the config's seed (the folder of a study with one seed, so a study re-run with
more seeds keeps it) and in ``runs/<run>-seed<s>`` otherwise; its evaluations likewise in
``eval/<run>[-seed<s>]/``. CLEF's zero-shot prototypes use the first seed's ConCluGen run."""

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
from heads.pretrain.monitor import MonitorSettings
from heads.pretrain.train import run_pretrain
from heads.study.clock import WallClock
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
                 modality_keys: Mapping[str, Sequence[str]], clock: WallClock,
                 pretrain_seeds: int = 1, monitor: MonitorSettings | None = None) -> None:
        # the cpu size is a quick study: few pretraining epochs too
        self.quick, self.device, self.seeds = preset.size == "cpu", device, seeds
        self.progress, self.modality_keys = progress, modality_keys
        self.clock, self.pretrain_seeds, self.monitor = clock, pretrain_seeds, monitor
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
            return TableRow(method.key, method.label, metrics, None,
                            seconds=self.clock.total([folder]))
        modalities = pretrain_modalities(method, pretrain)
        probe = method.probe if method.protocol == "linear" else None
        evaluations, used = [], []
        for name, seed in self.seeded_names(method, run_name(method, pretrain)):
            run = self.pretrain(method, target, target.runs / name, pretrain, seed=seed)
            folder = (target.folder / "eval" / name /
                      eval_name(method.protocol, probe or modalities, modalities, "concat"))
            evaluations.append(self.evaluate(target, folder, protocol=method.protocol, run=run,
                                             modalities=probe))
            used += [run, folder]
        return TableRow(method.key, method.label, evaluations[0], None,
                        evaluations=tuple(evaluations), seconds=self.clock.total(used))

    def seeded_names(self, method: Method, name: str) -> list[tuple[str, int]]:
        """The run folders of ``name`` with their pretraining seeds: the config's seed ``s0`` in
        ``name``, the next ones ``s0 + k`` in ``name-seed<s0 + k>``."""
        assert method.objective is not None
        first = resolve_config(method.objective, preset=self.preset).seed
        return [(name, first)] + [(f"{name}-seed{first + k}", first + k)
                                  for k in range(1, self.pretrain_seeds)]

    def pretrain(self, method: Method, target: Target, run_dir: Path,
                 pretrain: Mapping[str, Sequence[str]], *, seed: int | None = None) -> Path:
        """Pretrain ``method``'s run in ``run_dir`` with ``seed`` (None: the config's), unless
        this call or an earlier one already did with the same store and config."""
        if run_dir in self.steps:
            return run_dir
        assert method.objective is not None
        modalities = pretrain_modalities(method, pretrain)
        epochs = QUICK_EPOCHS if self.quick else None
        cfg = resolve_config(method.objective, preset=self.preset, modalities=modalities,
                             epochs=epochs, seed=seed)
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
            with self.clock.timing(run_dir):
                run_pretrain(target.pretrain.url, method.objective, run_dir, preset=self.preset,
                             modalities=list(modalities), epochs=epochs, device=self.device,
                             resume=(run_dir / "config.yaml").exists(), seed=seed,
                             progress=self.progress, monitor=self.monitor)
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
            with self.clock.timing(folder):
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
