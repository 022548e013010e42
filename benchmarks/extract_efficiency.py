"""How much of extraction is backbone work, what prefetching buys, and how it scales.

Prints, measured in one run on this machine (or GPU):

1. end-to-end clips/s (decode + face detection + crops + backbones + shard write, one process,
   models loaded) divided by backbone-only clips/s on the same clips (the backbones fed
   already-decoded, already-cropped inputs). Target: >= 0.85 on a CPU (one torch thread); on a
   GPU it is the fraction of the backbones' own speed that extraction keeps.
2. the same end to end with the next batch prepared on a second thread (``prefetch``, the
   default) and without: the overlap's gain.
3. on CUDA: the GPU's busy fraction during the end-to-end phase (NVML's utilization, the share
   of time a kernel was running, sampled by ``nvidia-smi`` every 100 ms; target >= 0.85), peak
   GPU memory, and MELD's 13,708 clips projected from the measured clips/s.
4. unless ``--skip-cluster``: the same extraction as `cli extract` runs it (LocalCluster,
   start-up included) with 2 workers over 1 worker: the speed-up from the second core.

Usage: python benchmarks/extract_efficiency.py [--clips 16] [--device cpu|cuda] [--skip-cluster]
Random backbone weights (no downloads here); the work per clip is the same as with real ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

from pipeline.datasets import scan
from pipeline.extract import Timer, extract_clips, prepare_clip
from pipeline.extract_config import load_extract_config
from pipeline.models import Models
from pipeline.failures import ClipError, failures_table
from pipeline.manifest import load_manifest
from pipeline.models import load_models
from pipeline.run import ClusterOptions, _index_table, run_extract
from pipeline.sample_data import generate
from pipeline.store import Location, write_shard

MELD_CLIPS = 13_708
MODALITIES = ("frames_2d", "frames_3d", "audio", "text")
TOY = ("frames_3d", "audio", "text")


def backbone_only(rows: list[dict], models: Models, cfg, policy) -> tuple[float, int]:
    """Seconds the backbones alone take on the clips' prepared inputs."""
    clips = []
    for row in rows:
        try:
            clips.append(prepare_clip(row, cfg, models.detector, policy))
        except ClipError:
            continue
    size = cfg.run.clips_per_batch(models.device)
    synchronize(models.device)
    start = time.perf_counter()
    for i in range(0, len(clips), size):
        batch = clips[i:i + size]
        for key in cfg.choices.modalities:
            models.encoders[key].encode_batch([getattr(c, key) for c in batch])
    synchronize(models.device)
    return time.perf_counter() - start, len(clips)


def end_to_end(rows: list[dict], models: Models, cfg, policy, out: Path) -> tuple[float, int]:
    """Seconds for decode + faces + backbones + shard write of the same clips."""
    synchronize(models.device)
    start = time.perf_counter()
    timer = Timer()
    kept, feats, failures = extract_clips(rows, cfg, models, policy, timer)
    write_shard(Location.parse(out), 0, store_id="bench", sample_ids=[r["sample_id"] for r in kept],
                features=feats, index=_index_table(kept, False), failures=failures_table(failures))
    seconds = time.perf_counter() - start
    backbone = sum(v for k, v in timer.seconds.items() if k.startswith("backbone:"))
    print(f"  prefetch {'on ' if cfg.run.prefetch else 'off'}: stage seconds",
          {k: round(v, 2) for k, v in sorted(timer.seconds.items())},
          f"backbone share of end-to-end: {backbone / seconds:.3f}")
    return seconds, len(kept)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class GpuBusy:
    """The GPU's utilization (share of time a kernel ran) sampled by nvidia-smi every 100 ms
    while the ``with`` block runs; ``fraction`` is their mean (None without nvidia-smi)."""

    def __init__(self, device: str) -> None:
        self.device, self.samples = device, []  # type: str, list[float]
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        if self.device.startswith("cuda") and shutil.which("nvidia-smi"):
            index = self.device.partition(":")[2] or str(torch.cuda.current_device())
            self._proc = subprocess.Popen(
                ["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip()) / 100)
            except ValueError:
                continue

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)

    @property
    def fraction(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--batch-clips", type=int, default=None,
                        help="clips per backbone batch (default: the device's)")
    parser.add_argument("--skip-cluster", action="store_true",
                        help="leave out the LocalCluster comparison (4)")
    parser.add_argument("--toy", action="store_true",
                        help="a dry run: no frames_2d, r3d_18 for frames_3d")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    if args.toy:  # the same stages (decode, MTCNN, crops, a 3D backbone), small backbones
        cfg = load_extract_config(modalities=list(TOY), weights={m: "random" for m in TOY},
                                  backbones={"frames_3d": "r3d_18"}, views=args.views)
    else:
        cfg = load_extract_config(weights={m: "random" for m in MODALITIES}, views=args.views)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, batch_clips=args.batch_clips))
    manifest = load_manifest("meld")
    with tempfile.TemporaryDirectory() as tmp:
        root = generate("meld", Path(tmp) / "raw", clips=args.clips, seed=1)
        rows = scan("meld", root).samples.to_pylist()
        models = load_models(cfg, manifest.faces, args.device)
        print(f"{len(rows)} MELD sample clips on {args.device}, "
              f"{cfg.run.clips_per_batch(args.device)} clips per batch, "
              f"{cfg.choices.views} view(s)")
        # Alternate the measurements and keep each one's best: a shared machine only ever
        # makes a run slower, so the minimum is the least noisy estimate of each.
        best = {"backbone": float("inf"), "on": float("inf"), "off": float("inf")}
        busy: GpuBusy | None = None
        for rep in range(args.repeats):
            b_s, n_b = backbone_only(rows, models, cfg, manifest.faces)
            best["backbone"] = min(best["backbone"], b_s)
            for prefetch in (True, False):
                run_cfg = dataclasses.replace(
                    cfg, run=dataclasses.replace(cfg.run, prefetch=prefetch))
                with GpuBusy(args.device) as watch:
                    e_s, n_e = end_to_end(rows, models, run_cfg, manifest.faces,
                                          Path(tmp) / f"one{rep}{prefetch}")
                assert n_b == n_e, (n_b, n_e)
                key = "on" if prefetch else "off"
                if e_s < best[key]:
                    best[key] = e_s
                    busy = watch if prefetch else busy
            print(f"  repeat {rep}: backbone-only {b_s:.1f} s")
        on, off, backbone_s = best["on"], best["off"], best["backbone"]
        print(f"backbone-only: {n_b / backbone_s:.3f} clips/s   end-to-end: {n_e / on:.3f} "
              f"clips/s   ratio end-to-end / backbone-only: {backbone_s / on:.3f}")
        print(f"prefetch off: {n_e / off:.3f} clips/s (ratio {backbone_s / off:.3f}); "
              f"prefetch on / off: {off / on:.2f}x")
        if args.device.startswith("cuda"):
            fraction = busy.fraction if busy is not None else None
            print("GPU busy during end-to-end extraction: "
                  + (f"{fraction:.1%}" if fraction is not None else "not measured (no nvidia-smi)")
                  + f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        hours = MELD_CLIPS / (n_e / on) / 3600
        print(f"projected for MELD's {MELD_CLIPS} clips on one {args.device} worker: "
              f"{hours:.2f} h (clips/s of this sample; MELD's clips average about 3 s)")
        if args.skip_cluster:
            return
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
