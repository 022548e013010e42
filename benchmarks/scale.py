"""Cost as the work grows: a VoxCeleb2-sized run simulated on one machine, without backbones.

At each size (default 11k, 110k and 1.1M clips; VoxCeleb2's dev set is about 1.09M) it builds
what such a run touches and measures every operation, each in a fresh process (its peak
resident memory, ``VmHWM``, is its own; ``--in-process`` runs them in this one, for tests):

- ``scan``: :func:`pipeline.datasets.scan` of a VoxCeleb2-layout tree of empty placeholder files
  (``dev/mp4/idNNNNN/<video>/NNNNN.mp4``, about 180 clips a speaker, 7 a video): the sample
  table and its failures, nothing decoded;
- ``extract``: the extraction driver as ``cli extract`` runs it (:func:`pipeline.run.run_extract`,
  a LocalCluster of ``--workers`` processes, shards of ``--shard-size`` clips) with the worker
  function replaced by a no-op that writes each shard with tiny features: planning, submitting
  and collecting one Dask task per shard, the final write. ``driver CPU`` is the driver
  process's CPU time (the in-process scheduler included, the workers not): its own cost;
- ``resume``: the same command again after ``store.json`` and the index are deleted: the resume
  check over every finished shard, no task, the final write;
- a store written from arrays with the real row counts (``--dims``: the paper's dims divided by
  16 unless ``--real-dims``): ``write`` (two halves, :func:`~pipeline.store.write_arrays`),
  ``merge`` of the halves (``store merge``), and on the merged store ``open``, ``info``,
  ``verify`` against ``sha256`` (hashing the same shard files with :mod:`hashlib` alone, one
  core), ``diff`` against a half, ``read`` (every feature of the ``train`` split);
- the trainer's data path over the merged store: ``loader``, one streamed epoch of
  :mod:`heads.data` (``placement: stream``, batch 4096, every batch drawn, no model), samples/s;
  and the trainer itself (``run_pretrain``, ``conclugen``, one epoch, D 64, batch 4096):
  ``stream`` (``placement: stream``) and ``memory`` (``placement: memory``), at the sizes up to
  ``--trainer-max`` rows (the heads' arithmetic on two shared CPU cores takes about 2 ms a
  sample, 40 minutes an epoch at 1.1M).

It prints a table per operation: seconds, peak memory above the process's start and its peak
resident memory, per size, and the growth exponent between consecutive sizes
(``log(t2/t1) / log(n2/n1)``: 1.0 is linear). Then the targets, and the projection of
VoxCeleb2's wall-clock on 1, 8 and 32 GPUs (:func:`projection`), which ``--project-from`` also
prints from a saved run (the GPU suite does, with its measured clips/s).

    python benchmarks/scale.py [--sizes 11000,110000,1100000] [--save results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VOXCELEB2_CLIPS = 1_092_009
"""VoxCeleb2's dev set (the paper pretrained on 534,616 of its clips)."""
REAL_DIMS = {"frames_2d": 2048, "frames_3d": 2048, "audio": 1024, "text": 768}
CLIPS_PER_VIDEO, VIDEOS_PER_SPEAKER = 7, 26  # VoxCeleb2 dev: 5,994 speakers, ~150k videos
TEST_SHARE = 0.033  # VoxCeleb2's test split next to its dev split
DRIVER_DIM = 4  # per key, in the no-op worker's shards
ASSUMED_GPU_CLIPS_PER_S = 10.0
ASSUMED_WORKER_START_S = 60.0


# ------------------------------------------------------------------------------------ memory

def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> int:
    """Reset this process's peak resident memory (``VmHWM``) to its current one; bytes now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def peak_bytes() -> int:
    return _status_kib("VmHWM") * 1024


# ------------------------------------------------------------------------------ the data

def speaker_layout(clips: int) -> list[tuple[str, str, int, int]]:
    """``(split folder, speaker, videos, clips)`` per speaker, ``clips`` in all, VoxCeleb2-like."""
    per_speaker = CLIPS_PER_VIDEO * VIDEOS_PER_SPEAKER
    speakers = max(2, math.ceil(clips / per_speaker))
    test = max(1, round(speakers * TEST_SHARE))
    out, left = [], clips
    for s in range(speakers):
        n = min(left, math.ceil(left / (speakers - s)))
        left -= n
        out.append(("test" if s < test else "dev", f"id{s:05d}",
                    max(1, math.ceil(n / CLIPS_PER_VIDEO)), n))
    return out


def build_tree(root: Path, clips: int) -> None:
    """VoxCeleb2's official layout with empty ``.mp4`` placeholders, and the transcript
    sidecar ``cli transcribe`` writes beside it (one short line a clip): extraction of text
    needs every transcript known, and reading the sidecar is part of a real scan's cost."""
    lines = ["sample_id,transcript\n"]
    for split, speaker, videos, n in speaker_layout(clips):
        for v in range(videos):
            folder = root / split / "mp4" / speaker / f"v{v:010d}"
            folder.mkdir(parents=True)
            for u in range(min(CLIPS_PER_VIDEO, n - v * CLIPS_PER_VIDEO)):
                os.close(os.open(folder / f"{u + 1:05d}.mp4", os.O_CREAT | os.O_WRONLY, 0o644))
                lines.append(f"{speaker}/v{v:010d}/{u + 1:05d},we talked about it\n")
    (root / "transcripts.csv").write_text("".join(lines), encoding="utf-8")


def sample_ids(clips: int) -> tuple[list[str], list[str]]:
    """VoxCeleb2-like ids and splits (train, test) for a store of ``clips`` rows."""
    ids, splits = [], []
    for split, speaker, videos, n in speaker_layout(clips):
        for i in range(n):
            ids.append(f"{speaker}/v{i // CLIPS_PER_VIDEO:010d}/{i % CLIPS_PER_VIDEO + 1:05d}")
            splits.append("test" if split == "test" else "train")
    return ids, splits


def write_half(url: str, ids: list[str], splits: list[str], dims: dict[str, int],
               shard_size: int, seed: int) -> None:
    from pipeline.store import write_arrays

    rng = np.random.default_rng(seed)
    n = len(ids)
    features = {k: rng.standard_normal((n, 1, d), dtype=np.float32).astype(np.float16)
                for k, d in dims.items()}
    write_arrays(url, dataset="voxceleb2-scale", sample_ids=ids, splits=splits,
                 features=features, labels=np.full(n, -1, np.int64), label_names=[],
                 shard_size=shard_size, feature_space="scale")


# ----------------------------------------------------------------------- the no-op worker

def noop_extract_shard(url: str, k: int, rows: list[dict[str, Any]], cfg: Any, policy: Any,
                       store_id: str, device: str, multilabel: bool,
                       threads: int = 1) -> Any:
    """Stands in for :func:`pipeline.run.extract_shard`: writes shard ``k`` with tiny features
    (every clip kept), through the real shard writer and index builder."""
    from pipeline import store as store_mod
    from pipeline.failures import FAILURE_SCHEMA
    from pipeline.run import _index_table

    loc = store_mod.Location.parse(url)
    keys = cfg.choices.modalities
    features = {key: np.zeros((len(rows), cfg.choices.views, DRIVER_DIM), np.float32)
                for key in keys}
    encoders = {key: {"dim": DRIVER_DIM, "weights_sha256": "noop"} for key in keys}
    with tempfile.TemporaryDirectory() as scratch:
        return store_mod.write_shard(
            loc, k, store_id=store_id, sample_ids=[r["sample_id"] for r in rows],
            features=features, index=_index_table(rows, multilabel),
            failures=FAILURE_SCHEMA.empty_table(), dtype=cfg.features.dtype, scratch=scratch,
            info={"encoders": encoders, "timings": {"noop": 0.0}, "clips": len(rows)})


def _timed(phases: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - start
    return wrapper


def run_driver(root: str, out: str, workers: int, shard_size: int) -> dict[str, float]:
    """The real driver (``run_extract``) with the no-op worker; seconds per phase."""
    import pipeline.run as run
    from pipeline import store as store_mod
    from pipeline.extract_config import load_extract_config

    phases: dict[str, float] = {}
    run.extract_shard = noop_extract_shard
    for name, attr in (("scan", "scan"), ("plan", "plan_shards"), ("resume check", "_completed"),
                       ("tasks", "_run_tasks")):
        if hasattr(run, attr):
            setattr(run, attr, _timed(phases, name, getattr(run, attr)))
    store_mod.finalize = _timed(phases, "final write", store_mod.finalize)
    cfg = load_extract_config(weights={k: "random" for k in REAL_DIMS})
    cpu = time.process_time()
    run.run_extract("voxceleb2", root, out, cfg=cfg, shard_size=shard_size, device="cpu",
                    cluster=run.ClusterOptions(workers=workers))
    phases["driver CPU"] = time.process_time() - cpu
    return phases


def unfinish(store: str) -> None:
    """Make a complete store an interrupted run: every shard stays, store.json goes."""
    for name in ("store.json", "index.parquet", "failures.parquet"):
        Path(store, name).unlink()


# ---------------------------------------------------------------------------------- steps

def trainer_overrides(placement: str) -> dict[str, Any]:
    return {"model": {"representation_dim": 64, "projection_dim": 16, "reconstruction_dim": 64},
            "clustering": {"start_epoch": 0},
            "data": {"batch_size": 4096, "placement": placement, "chunk_rows": 4096,
                     "shuffle_chunks": 2, "val_splits": []},
            "output": {"tensorboard": False}}


def _import_for(name: str) -> None:
    import pipeline.datasets
    import pipeline.run
    import pipeline.store.ops
    import pipeline.store.verify  # noqa: F401

    if name in ("stream", "memory"):
        import heads.pretrain.train  # noqa: F401
    if name == "loader":
        import heads.data  # noqa: F401


def step(name: str, size: int, work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Run one measured step at one size; ``seconds``, peak memory and step figures."""
    d = work / str(size)
    extra: dict[str, Any] = {}
    _import_for(name)  # outside the measurement: a fresh process imports once
    start_rss = reset_peak()
    start = time.perf_counter()
    if name == "scan":
        from pipeline.datasets import scan

        table = scan("voxceleb2", d / "tree")
        extra["rows"] = table.samples.num_rows
    elif name in ("extract", "resume"):
        if name == "resume":
            unfinish(str(d / "extracted"))
        extra.update(run_driver(str(d / "tree"), str(d / "extracted"), opts["workers"],
                                opts["shard_size"]))
    elif name == "write":
        ids, splits = sample_ids(size)
        half = size // 2
        write_half(str(d / "a"), ids[:half], splits[:half], opts["dims"], opts["shard_size"], 1)
        write_half(str(d / "b"), ids[half:], splits[half:], opts["dims"], opts["shard_size"], 2)
    elif name == "merge":
        from pipeline.store.merge import merge_stores

        merge_stores([str(d / "a"), str(d / "b")], str(d / "merged"))
    elif name == "open":
        from pipeline.store import open_store

        extra["rows"] = open_store(str(d / "merged")).index.num_rows
    elif name == "info":
        from pipeline.store.ops import store_info

        extra["size_bytes"] = store_info(str(d / "merged")).size_bytes
    elif name == "verify":
        from pipeline.store.verify import verify_store

        report = verify_store(str(d / "merged"))
        if not report.ok:
            raise SystemExit(f"verify found problems: {report.problems[:3]}")
        extra["bytes"] = report.bytes_hashed
    elif name == "sha256":
        total = 0
        for path in sorted((d / "merged" / "shards").glob("*.h5")):
            with path.open("rb") as f:
                hashlib.file_digest(f, "sha256")
            total += path.stat().st_size
        extra["bytes"] = total
    elif name == "diff":
        from pipeline.store.ops import diff_stores

        extra["both"] = diff_stores(str(d / "merged"), str(d / "a")).samples_both
    elif name == "read":
        from pipeline.store import open_store

        store = open_store(str(d / "merged"))
        pos = store.positions("train")
        extra["rows"] = len(pos)
        extra["bytes"] = sum(store.read(k, pos).nbytes for k in store.keys)
    elif name == "loader":
        extra["samples_per_s"] = streamed_epoch(str(d / "merged"))
    elif name in ("stream", "memory"):
        from heads.pretrain.train import run_pretrain

        out = d / f"run-{name}"
        shutil.rmtree(out, ignore_errors=True)
        run_pretrain(str(d / "merged"), "conclugen", str(out), epochs=1, device="cpu",
                     overrides=trainer_overrides(name), progress=False)
        extra["samples_per_s"] = size / (time.perf_counter() - start)
    else:
        raise ValueError(f"unknown step {name!r}")
    seconds = time.perf_counter() - start
    peak = peak_bytes()
    return {"seconds": seconds, "peak_bytes": peak, "extra_bytes": max(0, peak - start_rss),
            **extra}


def streamed_epoch(url: str) -> float:
    """Samples/s of one streamed epoch of the trainer's data path (no model)."""
    import torch

    from heads.config import resolve_config
    from heads.data import assemble_modalities, load_features
    from pipeline.store import open_store

    start = time.perf_counter()
    cfg = resolve_config("conclugen", overrides=trainer_overrides("stream"))
    store = open_store(url)
    layout = assemble_modalities(store, cfg.modality_keys, cfg.modalities)
    source = load_features(store, layout, ["train"], cfg.data, device=torch.device("cpu"),
                           pair_views=False)
    assert source is not None
    served = sum(len(batch["video"]) for batch in source.epoch(torch.Generator().manual_seed(0)))
    source.close()
    store.close()
    return served / (time.perf_counter() - start)


STEPS = ("scan", "extract", "resume", "write", "merge", "open", "info", "verify", "sha256",
         "diff", "read", "loader", "stream", "memory")
TRAINER_STEPS = ("stream", "memory")


def run_step(name: str, size: int, work: Path, opts: dict[str, Any],
             in_process: bool) -> dict[str, Any]:
    if in_process:
        return step(name, size, work, opts)
    payload = json.dumps({"step": name, "size": size, "work": str(work), "opts": opts})
    result = subprocess.run([sys.executable, __file__, "--child", payload], check=False,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"step {name} at {size} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------ the report

def exponent(n1: int, t1: float, n2: int, t2: float) -> float:
    """Growth exponent between two sizes: 1.0 is linear."""
    if t1 <= 0 or t2 <= 0:
        return float("nan")
    return math.log(t2 / t1) / math.log(n2 / n1)


def print_table(results: dict[str, dict[int, dict[str, Any]]], sizes: list[int]) -> None:
    head = " | ".join(f"{n:>9,d} clips" for n in sizes)
    grow = " | ".join(f"{a // 1000}k->{b // 1000}k" for a, b in zip(sizes, sizes[1:]))
    print(f"\n| operation | {head} | exponent (s) {grow} | exponent (memory) |")
    print("| --- |" + " --- |" * (len(sizes) + 2))
    for name, per in results.items():
        cells = [f"{per[n]['seconds']:8.2f} s, {per[n]['extra_bytes'] / 2**20:6.0f} MiB "
                 f"(peak {per[n]['peak_bytes'] / 2**20:.0f})" if n in per else "-"
                 for n in sizes]
        pairs = [(a, b) for a, b in zip(sizes, sizes[1:]) if a in per and b in per]
        time_exp = ", ".join(f"{exponent(a, per[a]['seconds'], b, per[b]['seconds']):.2f}"
                             for a, b in pairs)
        mem_exp = ", ".join(f"{exponent(a, per[a]['extra_bytes'], b, per[b]['extra_bytes']):.2f}"
                            for a, b in pairs)
        print(f"| {name} | {' | '.join(cells)} | {time_exp} | {mem_exp} |")
    for name in ("extract", "resume"):
        if name in results:
            print(f"\n{name}: seconds per phase")
            for n in sizes:
                phases = {k: v for k, v in results[name][n].items()
                          if k not in ("seconds", "peak_bytes", "extra_bytes")}
                print(f"  {n:>9,d} clips: " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
                      + f"; driver CPU {1e3 * phases['driver CPU'] / n:.3f} ms/clip")


def check_targets(results: dict[str, dict[int, dict[str, Any]]], sizes: list[int]) -> list[str]:
    """One line per target: the measured figure and whether it holds."""
    lines = []
    big = sizes[-1]
    for name, per in results.items():
        measured = [n for n in sizes if n in per]
        if len(measured) < 2:
            continue
        a, b = measured[-2:]
        e = exponent(a, per[a]["seconds"], b, per[b]["seconds"])
        lines.append(f"{'ok  ' if not e > 1.1 else 'FAIL'} {name}: exponent {e:.2f} between "
                     f"{a:,} and {b:,} clips (target <= 1.1)")
    if "extract" in results:
        ms = 1e3 * results["extract"][big]["driver CPU"] / big
        lines.append(f"{'ok  ' if ms < 1 else 'FAIL'} driver's own cost (CPU of the driver "
                     f"process): {ms:.3f} ms per clip at {big:,} clips (target < 1 ms)")
    if "open" in results:
        s = results["open"][big]["seconds"]
        lines.append(f"{'ok  ' if s < 2 else 'FAIL'} opening the {big:,}-row store: {s:.2f} s "
                     "(target < 2 s)")
    if "verify" in results and "sha256" in results:
        r = results["verify"][big]["seconds"] / results["sha256"][big]["seconds"]
        mb_s = results["sha256"][big]["bytes"] / results["sha256"][big]["seconds"] / 1e6
        lines.append(f"{'ok  ' if r <= 1.5 else 'FAIL'} store verify / sha256 alone: {r:.2f} at "
                     f"{big:,} clips (sha256 {mb_s:.0f} MB/s on one core; target <= 1.5)")
    for name, what in (("loader", "streamed epoch of the data path"),
                       ("stream", "streamed trainer epoch")):
        per = results.get(name, {})
        measured = [n for n in sizes if n in per]
        if len(measured) < 2:
            continue
        small, large = measured[0], measured[-1]
        r = per[large]["peak_bytes"] / per[small]["peak_bytes"]
        lines.append(f"{'ok  ' if r <= 1.2 else 'FAIL'} {what}'s peak memory, {large:,} / "
                     f"{small:,} rows: {r:.2f} (target <= 1.2)")
    for n in sizes:
        rates = {name: results[name][n]["samples_per_s"] for name in ("loader", *TRAINER_STEPS)
                 if n in results.get(name, {})}
        if rates:
            lines.append(f"     samples/s at {n:,} rows: "
                         + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    return lines


# ----------------------------------------------------------------------------- projection

def projection(saved: dict[str, Any], gpu_clips_per_s: float | None,
               worker_start_s: float | None, clips: int = VOXCELEB2_CLIPS) -> list[str]:
    """VoxCeleb2's projected wall-clock through Dask on 1, 8 and 32 GPUs.

    The driver's serial parts (scan, planning, final write) and its per-task cost (the driver
    process's CPU time, which overlaps the workers) come from the largest measured size,
    scaled linearly to ``clips``; the GPUs' clips/s and a worker's start-up are the GPU
    suite's when given, otherwise assumed (and said so).
    """
    results, sizes = saved["results"], [int(s) for s in saved["sizes"]]
    big = str(max(sizes))
    scale = clips / max(sizes)
    phases = results["extract"][big]
    serial = scale * sum(phases.get(p, 0.0) for p in ("scan", "plan", "resume check",
                                                       "final write"))
    driver = scale * phases["driver CPU"]
    rate_note = ("from the GPU suite, on its sample clips: VoxCeleb2's average about 8 s, so "
                 "scale by their length" if gpu_clips_per_s else "ASSUMED (no GPU measured)")
    rate = gpu_clips_per_s or ASSUMED_GPU_CLIPS_PER_S
    start_note = "measured" if worker_start_s is not None else "ASSUMED"
    start = ASSUMED_WORKER_START_S if worker_start_s is None else worker_start_s
    lines = [f"projection for VoxCeleb2's {clips:,} clips through Dask "
             f"(driver costs measured on {saved.get('machine', '?')} at {int(big):,} clips, "
             "scaled linearly):",
             f"  inputs: driver serial part {serial / 60:.1f} min (scan, planning, resume "
             f"check, final write: measured), driver per-task CPU {1e3 * driver / clips:.3f} ms/clip "
             f"(measured, overlaps the GPUs), {rate:g} clips/s per GPU ({rate_note}), "
             f"worker start-up {start:.0f} s ({start_note})"]
    for gpus in (1, 8, 32):
        gpu_s = clips / (gpus * rate)
        total = serial + start + max(gpu_s, driver)
        bound = "GPUs" if gpu_s >= driver else "driver"
        lines.append(f"  {gpus:2d} GPU(s): projected {total / 3600:7.1f} h ({bound}-bound)")
    needed = clips / (8 * (12 * 3600 - serial - start))
    lines.append(f"  12 h on 8 GPUs needs >= {needed:.2f} clips/s per GPU "
                 f"(target: projected <= 12 h on 8)")
    return lines


# ----------------------------------------------------------------------------------- main

def measure(sizes: list[int], work: Path, steps: list[str], opts: dict[str, Any],
            in_process: bool) -> dict[str, dict[int, dict[str, Any]]]:
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for size in sizes:
        (work / str(size)).mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if {"scan", "extract", "resume"} & set(steps):
            build_tree(work / str(size) / "tree", size)
            print(f"{size:,} clips: placeholder tree built in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        for name in steps:
            if name in TRAINER_STEPS and size > opts["trainer_max"]:
                continue
            results.setdefault(name, {})[size] = r = run_step(name, size, work, opts, in_process)
            print(f"  {name:8s} {r['seconds']:8.2f} s  peak +{r['extra_bytes'] / 2**20:.0f} MiB",
                  flush=True)
        shutil.rmtree(work / str(size))  # the largest size's files would not fit twice
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="11000,110000,1100000")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--trainer-max", type=int, default=110_000,
                        help="the largest size the trainer (stream, memory) runs at")
    parser.add_argument("--real-dims", action="store_true",
                        help="the store at the paper's dims (13 GB per 1.1M clips)")
    parser.add_argument("--dir", help="working folder (default: a temporary one)")
    parser.add_argument("--in-process", action="store_true",
                        help="every step in this process (memory figures then include earlier "
                             "steps' leftovers)")
    parser.add_argument("--save", help="write the results as JSON (for --project-from)")
    parser.add_argument("--machine", default="this machine", help="recorded with --save")
    parser.add_argument("--project-from", help="only print the projection from a saved run")
    parser.add_argument("--gpu-clips-per-s", type=float,
                        help="extraction clips/s per GPU, end to end (the GPU suite's)")
    parser.add_argument("--worker-start-s", type=float,
                        help="one GPU worker's start-up (the GPU suite's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(step(job["step"], job["size"], Path(job["work"]), job["opts"])))
        return
    if args.project_from:
        saved = json.loads(Path(args.project_from).read_text())
        print("\n".join(projection(saved, args.gpu_clips_per_s, args.worker_start_s)))
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; valid: {', '.join(STEPS)}")
    dims = REAL_DIMS if args.real_dims else {k: d // 16 for k, d in REAL_DIMS.items()}
    opts = {"workers": args.workers, "shard_size": args.shard_size, "dims": dims,
            "trainer_max": args.trainer_max}
    print(f"sizes {sizes}, store dims {dims}, shards of {args.shard_size} clips, "
          f"{args.workers} Dask workers, {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = measure(sizes, Path(tmp), steps, opts, args.in_process)
    print_table(results, sizes)
    print("\ntargets:")
    print("\n".join(check_targets(results, sizes)))
    saved = {"sizes": sizes, "dims": dims, "machine": args.machine,
             "date": time.strftime("%Y-%m-%d"), "results": {
                 name: {str(n): r for n, r in per.items()} for name, per in results.items()}}
    if args.save:
        Path(args.save).write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    if "extract" in results:
        print()
        print("\n".join(projection(saved, args.gpu_clips_per_s, args.worker_start_s)))


if __name__ == "__main__":
    main()
