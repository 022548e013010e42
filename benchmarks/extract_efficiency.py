"""How much of extraction is backbone work, and how well it scales over Dask workers.

Prints, measured in one run on this machine:

1. end-to-end clips/s (decode + face detection + crops + backbones + shard write, one process,
   one torch thread, models loaded) divided by backbone-only clips/s on the same clips (the
   backbones fed already-decoded, already-cropped inputs). Target on CPU: >= 0.85.
2. the same extraction as `cli extract` runs it (LocalCluster, start-up included) with 2 workers
   over 1 worker: the speed-up from the second core.

Usage: python benchmarks/extract_efficiency.py [--clips 16] [--device cpu]
Random backbone weights (no downloads here); the work per clip is the same as with real ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pipeline.datasets import scan
from pipeline.extract import Models, Timer, extract_clips, load_extract_config, prepare_clip
from pipeline.failures import ClipError, failures_table
from pipeline.manifest import load_manifest
from pipeline.run import ClusterOptions, _index_table, load_models, run_extract
from pipeline.sample_data import generate
from pipeline.store import Location, write_shard

MODALITIES = ("frames_2d", "frames_3d", "audio", "text")


def backbone_only(rows: list[dict], models: Models, cfg, policy) -> tuple[float, int]:
    """Seconds the backbones alone take on the clips' prepared inputs."""
    clips = []
    for row in rows:
        try:
            clips.append(prepare_clip(row, cfg, models.detector, policy))
        except ClipError:
            continue
    start = time.perf_counter()
    for i in range(0, len(clips), cfg.batch_clips):
        batch = clips[i:i + cfg.batch_clips]
        for key in cfg.modalities:
            models.encoders[key].encode_batch([getattr(c, key) for c in batch])
    return time.perf_counter() - start, len(clips)


def end_to_end(rows: list[dict], models: Models, cfg, policy, out: Path) -> tuple[float, int]:
    """Seconds for decode + faces + backbones + shard write of the same clips."""
    start = time.perf_counter()
    timer = Timer()
    kept, feats, failures = extract_clips(rows, cfg, models, policy, timer)
    write_shard(Location.parse(out), 0, store_id="bench", sample_ids=[r["sample_id"] for r in kept],
                features=feats, index=_index_table(kept, False), failures=failures_table(failures))
    seconds = time.perf_counter() - start
    backbone = sum(v for k, v in timer.seconds.items() if k.startswith("backbone:"))
    print("  stage seconds:", {k: round(v, 2) for k, v in sorted(timer.seconds.items())},
          f"backbone share of end-to-end: {backbone / seconds:.3f}")
    return seconds, len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_extract_config(weights={m: "random" for m in MODALITIES})
    manifest = load_manifest("meld")
    with tempfile.TemporaryDirectory() as tmp:
        root = generate("meld", Path(tmp) / "raw", clips=args.clips, seed=1)
        rows = scan("meld", root).samples.to_pylist()
        models = load_models(cfg, manifest.faces, args.device)
        # Alternate the two measurements and keep each one's best: a shared machine only ever
        # makes a run slower, so the minimum is the least noisy estimate of each.
        backbone_s = e2e_s = float("inf")
        for rep in range(args.repeats):
            b_s, n_b = backbone_only(rows, models, cfg, manifest.faces)
            e_s, n_e = end_to_end(rows, models, cfg, manifest.faces, Path(tmp) / f"one{rep}")
            assert n_b == n_e, (n_b, n_e)
            print(f"  repeat {rep}: backbone-only {b_s:.1f} s, end-to-end {e_s:.1f} s")
            backbone_s, e2e_s = min(backbone_s, b_s), min(e2e_s, e_s)
        print(f"backbone-only: {n_b / backbone_s:.3f} clips/s   end-to-end: {n_e / e2e_s:.3f} "
              f"clips/s   ratio end-to-end / backbone-only: {backbone_s / e2e_s:.3f}")
        walls = {}
        for workers in (1, 2):
            start = time.perf_counter()
            run_extract("meld", root, str(Path(tmp) / f"w{workers}"), cfg=cfg,
                        shard_size=max(1, len(rows) // 8), device=args.device,
                        cluster=ClusterOptions(workers=workers))
            walls[workers] = time.perf_counter() - start
            print(f"cli-style run, {workers} worker(s): {walls[workers]:.1f} s "
                  f"({len(rows) / walls[workers]:.3f} clips/s, start-up included)")
        print(f"speed-up 2 workers / 1 worker: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
