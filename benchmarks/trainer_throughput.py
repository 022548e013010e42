"""Throughput of the head trainer's data path; prints ratios measured in one run (no asserts).

(a) training samples/s with batches from a feature store (``open_store`` + ``heads.data``, in
    memory and streamed) divided by samples/s of the same model fed batches already sliced on
    the device: how much the data path costs (target >= 0.9).
(b) samples/s of ``heads.data`` against a loader of the paper's reference kind: one ``.npy``
    file per sample per store key, a ``torch.utils.data.DataLoader`` with default collate
    (target >= 20x). Each loader serves whole epochs (a streamed epoch reads its store once).
(c) on CUDA (elsewhere with ``--paper``): samples/s of ``conclugen`` at the paper's sizes (D 4096,
    batch 4096), eager and with ``--compile`` under ``torch.compile``, the fraction of the GPU's
    dense bf16 peak (FLOPs counted from the layer shapes) and the peak GPU memory.
(d) peak host memory (``VmHWM``, else ``ru_maxrss``) of a streamed pretraining run
    (``run_pretrain``, one epoch, ``placement: stream``) in a fresh process, over a store of 10x
    the rows divided by the same over ``--rows`` rows (target < 1.2: streaming holds two
    buffers, whatever the store's size).

The store has the paper's dims (frames_2d 2048, frames_3d 2048, audio 1024, text 768). On CPU the
heads are shrunk (``--dim``) so that it runs in about a minute; a smaller model makes ratio (a)
stricter, since the data path is then a larger share of each step.

    python benchmarks/trainer_throughput.py [--rows 8192] [--batch 1024] [--dim 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from heads.config import TrainConfig, resolve_config
from heads.data import Batch, assemble_modalities, load_features
from heads.models import ConCluGenHeads
from heads.pretrain.objectives import Objective, model_spec
from heads.pretrain.train import resolve_device, run_pretrain, train_step
from pipeline.store import FeatureStore, open_store, write_arrays

DIMS = {"frames_2d": 2048, "frames_3d": 2048, "audio": 1024, "text": 768}
# Dense bf16 peaks (FLOP/s) of common training GPUs, by a substring of the device name.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def write_store(path: Path, rows: int, seed: int = 0) -> FeatureStore:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows, 16)).astype(np.float32)
    features = {k: (latent @ rng.normal(size=(16, d)).astype(np.float32) / 4)[:, None]
                .astype(np.float16) for k, d in DIMS.items()}
    return write_arrays(path, dataset="benchmark", sample_ids=[f"s{i}" for i in range(rows)],
                        splits=["train"] * rows, features=features,
                        labels=np.zeros(rows, np.int64), label_names=["x"], shard_size=2048)


def overrides(dim: int, batch: int, placement: str) -> dict:
    return {"model": {"representation_dim": dim, "projection_dim": max(16, dim // 8),
                      "reconstruction_dim": dim},
            "clustering": {"start_epoch": 0},
            "data": {"batch_size": batch, "placement": placement, "chunk_rows": 2048,
                     "shuffle_chunks": 2, "val_splits": []},
            "output": {"tensorboard": False}}


def config(dim: int, batch: int, placement: str) -> TrainConfig:
    return resolve_config("conclugen", overrides=overrides(dim, batch, placement))


def timed_training(cfg: TrainConfig, dims: dict[str, int], batches: Callable[[], Iterator[Batch]],
                   device: torch.device, steps: int, compile_model: bool = False) -> float:
    """Samples/s over ``steps`` training steps (after two warm-up steps)."""
    torch.manual_seed(0)
    model = ConCluGenHeads(model_spec(cfg, dims)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    objective = Objective(cfg)
    if compile_model:
        model = torch.compile(model)  # type: ignore[assignment]
    it, seen, start = batches(), 0, 0.0
    for k in range(steps + 2):
        batch = next(it, None)
        if batch is None:
            it = batches()
            batch = next(it)
        if k == 2:
            _sync(device)
            start, seen = time.perf_counter(), 0
        train_step(model, objective, optimizer, batch, step=k + 1, epoch=1, lr=1e-4)
        seen += len(batch["video"])
    _sync(device)
    return seen / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ratio_a(store: FeatureStore, dim: int, batch: int, steps: int, rounds: int,
            device: torch.device) -> None:
    cfg = config(dim, batch, "memory")
    layout = assemble_modalities(store, cfg.modality_keys, cfg.modalities)
    memory = load_features(store, layout, ["train"], cfg.data, device=device, pair_views=False)
    stream = load_features(store, layout, ["train"], config(dim, batch, "stream").data,
                           device=device, pair_views=False)
    # The ideal: float32 batches already cut on the device, nothing to index or convert.
    ready = [{m: t[i:i + batch].float() for m, t in memory.tensors.items()}
             for i in range(0, memory.rows - batch + 1, batch)]
    g = torch.Generator().manual_seed(0)
    sources = {"ready": lambda: iter(ready), "memory": lambda: memory.epoch(g),
               "stream": lambda: stream.epoch(g)}
    # Shared machines are noisy: alternate the variants for some rounds, keep each one's best.
    best = dict.fromkeys(sources, 0.0)
    for _ in range(rounds):
        for name, source in sources.items():
            best[name] = max(best[name], timed_training(cfg, layout.dims, source, device, steps))
    base, mem, streamed = best["ready"], best["memory"], best["stream"]
    stream.close()
    print(f"(a) training samples/s, D={dim}, batch {batch}, best of {rounds} rounds of {steps} "
          f"steps on {device}:")
    print(f"    batches ready on the device  {base:10.0f}")
    print(f"    store, features in memory    {mem:10.0f}   ratio {mem / base:.2f}")
    print(f"    store, streamed from shards  {streamed:10.0f}   ratio {streamed / base:.2f}")


class PerSampleFiles(torch.utils.data.Dataset):
    """The reference's layout: one .npy per sample and key, read and concatenated per item."""

    def __init__(self, folder: Path, rows: int) -> None:
        self.folder, self.rows = folder, rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        f = {k: np.load(self.folder / k / f"{i}.npy") for k in DIMS}
        video = np.concatenate([f["frames_2d"], f["frames_3d"]])
        return {"video": torch.from_numpy(video).float(),
                "audio": torch.from_numpy(f["audio"]).float(),
                "text": torch.from_numpy(f["text"]).float()}


def loader_rate(batches: Callable[[], Iterator[Batch]], epochs: int = 2) -> float:
    """Samples/s over whole epochs (best of ``epochs``; a streamed epoch reads its store once)."""
    best = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for batch in batches():
            seen += len(batch["video"])
        best = max(best, seen / (time.perf_counter() - start))
    return best


def ratio_b(store: FeatureStore, tmp: Path, rows: int, batch: int, device: torch.device) -> None:
    pos = np.arange(rows)
    for key in DIMS:
        (tmp / key).mkdir()
        for i, row in enumerate(store.read(key, pos, view=0)):
            np.save(tmp / key / f"{i}.npy", row)
    files = torch.utils.data.DataLoader(PerSampleFiles(tmp, rows), batch_size=batch,
                                        shuffle=True)
    reference = loader_rate(lambda: iter(files))
    cfg = config(64, batch, "memory")
    layout = assemble_modalities(store, cfg.modality_keys, cfg.modalities)
    g = torch.Generator().manual_seed(0)
    memory = load_features(store, layout, ["train"], cfg.data, device=device, pair_views=False)
    stream = load_features(store, layout, ["train"], config(64, batch, "stream").data,
                           device=device, pair_views=False)
    mem = loader_rate(lambda: memory.epoch(g), 3)
    streamed = loader_rate(lambda: stream.epoch(g), 3)
    stream.close()
    print(f"(b) loader samples/s, batch {batch} ({rows} files, {memory.rows} store rows):")
    print(f"    one .npy per sample and key  {reference:10.0f}")
    print(f"    heads.data, in memory        {mem:10.0f}   ratio {mem / reference:.0f}x")
    print(f"    heads.data, streamed         {streamed:10.0f}   ratio {streamed / reference:.0f}x")


def peak_memory(store_url: str, out: Path, dim: int, batch: int) -> dict[str, float]:
    """In a fresh process: one streamed epoch of pretraining; its peak RSS and seconds."""
    cmd = [sys.executable, __file__, "--memory-child", json.dumps(
        {"store": store_url, "out": str(out), "dim": dim, "batch": batch})]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_child(args: dict) -> None:
    start = time.perf_counter()
    run_pretrain(args["store"], "conclugen", args["out"], epochs=1, device="cpu",
                 overrides=overrides(args["dim"], args["batch"], "stream"), progress=False)
    print(json.dumps({"peak_bytes": peak_rss(), "seconds": time.perf_counter() - start}))


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``exec``, so a child started by a
    parent that held more (here: the parent that just wrote a store of 10x the rows) reports
    the parent's peak, not its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def ratio_d(tmp: Path, rows: int, dim: int, batch: int) -> None:
    runs = {}
    for n in (rows, 10 * rows):
        store = write_store(tmp / f"store-{n}", n)
        runs[n] = peak_memory(store.url, tmp / f"run-{n}", dim, batch)
    small, large = runs[rows], runs[10 * rows]
    print(f"(d) peak host memory of a streamed pretraining epoch (fresh process, D={dim}):")
    for n, run in runs.items():
        print(f"    {n:7d} rows {run['peak_bytes'] / 2**20:10.0f} MiB   "
              f"({run['seconds']:.0f} s)")
    print(f"    10x the rows: ratio {large['peak_bytes'] / small['peak_bytes']:.2f}")


def flops_per_step(model: ConCluGenHeads, batch: int, cfg: TrainConfig) -> float:
    """Forward + backward (3x forward) of every Linear layer, plus the MMS similarity matrices."""
    linear = sum(2 * m.in_features * m.out_features for m in model.modules()
                 if isinstance(m, torch.nn.Linear))
    pairs = len(cfg.modalities) * (len(cfg.modalities) - 1) // 2
    similarities = pairs * 2 * batch * batch * cfg.model.projection_dim
    return 3 * (linear * batch + similarities)


def paper_scale(store: FeatureStore, steps: int, device: torch.device, *, dim: int, batch: int,
                compile_model: bool) -> None:
    """(c) ``conclugen`` at D ``dim`` and batch ``batch`` (the paper's: 4096 and 4096)."""
    cfg = resolve_config("conclugen", overrides={
        "model": {"representation_dim": dim}, "clustering": {"start_epoch": 0},
        "data": {"batch_size": batch, "val_splits": []}})
    layout = assemble_modalities(store, cfg.modality_keys, cfg.modalities)
    data = load_features(store, layout, ["train"], cfg.data, device=device, pair_views=False)
    g = torch.Generator().manual_seed(0)
    flops = flops_per_step(ConCluGenHeads(model_spec(cfg, layout.dims)), batch, cfg) / batch
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    print(f"(c) conclugen at D={dim}, batch {batch} on {name}, features in memory:")
    for label, compiled in (("eager", False), ("torch.compile", True)):
        if compiled and not compile_model:
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            rate = timed_training(cfg, layout.dims, lambda: data.epoch(g), device, steps,
                                  compile_model=compiled)
        except Exception as err:  # noqa: BLE001 - a compiler missing here is a result too
            print(f"    {label:<14} failed: {type(err).__name__}: {str(err)[:200]}")
            continue
        used = (f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
                if device.type == "cuda" else "")
        share = f" = {flops * rate / peak:.1%} of the bf16 peak" if peak else ""
        print(f"    {label:<14} {rate:10.0f} samples/s, {flops * rate / 1e12:.2f} TFLOP/s"
              f"{share}{used}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=128, help="D of the heads in (a) and (d)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file-rows", type=int, default=4096, help="rows in (b)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--paper", action="store_true",
                        help="run (c) also off CUDA (at --paper-dim and --paper-batch)")
    parser.add_argument("--paper-dim", type=int, default=4096)
    parser.add_argument("--paper-batch", type=int, default=4096)
    parser.add_argument("--compile", action="store_true", help="(c) with torch.compile too")
    parser.add_argument("--skip-memory", action="store_true", help="leave (d) out")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(json.loads(args.memory_child))
        return
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        rows = max(args.rows, 16384) if device.type == "cuda" else args.rows
        store = write_store(Path(tmp) / "store", rows)
        store = open_store(store.url)
        ratio_a(store, args.dim, args.batch, args.steps, args.rounds, device)
        files = Path(tmp) / "files"
        files.mkdir()
        ratio_b(store, files, min(args.file_rows, rows), args.batch, device)
        if device.type == "cuda" or args.paper:
            paper_scale(store, args.steps, device, dim=args.paper_dim, batch=args.paper_batch,
                        compile_model=args.compile)
        store.close()
        if not args.skip_memory:
            ratio_d(Path(tmp), args.rows, args.dim, args.batch)


if __name__ == "__main__":
    main()
