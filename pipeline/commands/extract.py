"""``cli extract``: a raw dataset into a feature store, with progress and a summary."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pipeline.cluster import ClusterOptions
from pipeline.commands.console import console
from pipeline.commands.logs import library_log, log_file_beside
from pipeline.datasets import dataset_source
from pipeline.datasets.modalities import follow_dataset
from pipeline.dependencies import check_extraction_dependencies
from pipeline.extract_config import load_extract_config
from pipeline.presets import extract_settings
from pipeline.progress import Progress, failures_text
from pipeline.store import StoreManifest, open_store, redact_url


def run_extract_cli(dataset: str, root: Path | None, out: str, *, config: str | None,
                    modalities: list[str] | None, weights: dict[str, str],
                    backbones: dict[str, str], views: int | None, detect_fps: float | None,
                    shard_size: int,
                    limit: int | None, device: str, annotations: Path | None,
                    transcripts: Path | None, cluster: ClusterOptions,
                    list_file: Path | None = None,
                    faces: str | None = None, preset: str | None = None) -> StoreManifest:
    """Extract with progress (a bar in a terminal, log lines elsewhere); returns the store's
    manifest. Without ``modalities``, the config's that the dataset has are extracted."""
    root, dataset_manifest = dataset_source(dataset, root, list_file=list_file, faces=faces,
                                            transcripts=transcripts, annotations=annotations)
    _, settings = extract_settings(preset, backbones, dataset=dataset,
                                   file_given=annotations is not None)
    cfg = load_extract_config(config, modalities=modalities, weights=weights or None,
                              views=views, detect_fps=detect_fps, **settings)
    if modalities is None:
        cfg = follow_dataset(cfg, dataset_manifest)
    check_extraction_dependencies(
        crop_faces=dataset_manifest.faces.crop and cfg.choices.needs_video)
    from pipeline.run import run_extract  # here: it imports PyAV, checked just above

    bars: list[Progress] = []

    def on_plan(total: int, done: int) -> None:
        bars.append(Progress("extract", total, "clips", initial=done, failed="0", workers=0))

    def on_progress(done: int, failed: Counter[str], workers: int) -> None:
        bars[0].update(done, failed=failures_text(failed), workers=workers)

    log_file = log_file_beside(out, ".extract.log")
    try:
        with library_log(log_file):
            manifest = run_extract(dataset, root, out, cfg=cfg, annotations=annotations,
                                   transcripts=transcripts, limit=limit, shard_size=shard_size,
                                   device=device, cluster=cluster, manifest=dataset_manifest,
                                   on_plan=on_plan,
                                   on_progress=on_progress)
    finally:
        for bar in bars:
            bar.close()
    print_extract_summary(out, manifest)
    if log_file.is_file():
        console.print(f"Dask's messages: {log_file}", soft_wrap=True, highlight=False)
    return manifest


def print_extract_summary(out: str, manifest: StoreManifest) -> None:
    """The store's id and counts, failures by reason and seconds per stage."""
    counts = manifest.counts
    console.print(f"[bold green]store complete[/]: {redact_url(out)}  "
                  f"store_id {manifest.store_id[:12]}"
                  f"  samples {counts.samples}  failures {counts.failures}", soft_wrap=True)
    with open_store(out) as store:
        failures = store.failures.to_pandas()
    if len(failures):
        console.print("failures by reason: " + ", ".join(
            f"{r} {n}" for r, n in failures["reason"].value_counts().items()), soft_wrap=True)
    timings = manifest.timings
    if timings:
        console.print("seconds per stage (summed over workers): " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(timings.items(), key=lambda kv: -kv[1])),
            soft_wrap=True)  # a batch log's line stays whole
