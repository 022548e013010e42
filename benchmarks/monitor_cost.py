"""The online monitor's cost beside a pretraining epoch's, and the study's cost with two
pretraining seeds beside one.

(1) Pretrains ConCluGen (``--preset cpu``) on a VoxCeleb2-like store with the monitor on a
MELD-like store every epoch, and prints the median seconds of one monitor evaluation (k-NN, and
k-NN + linear probe) against the median seconds of one training epoch, both from the run's
``metrics.jsonl`` (``monitor/time_s``, ``time_s``). Stores have the demo's shapes (frames_2d
2048, frames_3d 512 for r3d_18, audio 1024, text 384 for MiniLM, float16) at the demo's sizes
(24 VoxCeleb2 clips with 3 views, 48 MELD clips, ``--set data.batch_size=16`` as the demo) and
at a larger size (``--scale``, default 40x) where an epoch has real work.

(2) ``--study``: the demo's quick study (``cli study --quick``) on the demo-sized stores, with
one and with two pretraining seeds, each from an empty folder; prints the ratio of wall-clocks.

Usage: python benchmarks/monitor_cost.py [--epochs 6] [--scale 40] [--study]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from heads.metrics_log import read_metrics
from heads.pretrain.monitor import MonitorSettings
from heads.pretrain.train import run_pretrain
from pipeline.manifest import load_manifest
from pipeline.store import write_arrays

#: The demo's store keys and widths (r3d_18 for frames_3d, MiniLM for text).
DIMS = {"frames_2d": 2048, "frames_3d": 512, "audio": 1024, "text": 384}


def make_store(path: Path, *, dataset: str, n: int, views: int, labelled: bool) -> str:
    """Clips of 7 latent classes seen through fixed per-key maps (one feature space)."""
    maps = np.random.default_rng(0)
    weights = {k: maps.normal(size=(8, d)).astype(np.float32) / np.sqrt(8)
               for k, d in DIMS.items()}
    rng = np.random.default_rng(len(dataset) + n)
    y = rng.integers(0, 7, n)
    z = maps.normal(size=(7, 8))[y] * 2 + rng.normal(size=(n, 8))
    features = {k: np.stack([z @ w + 0.3 * rng.normal(size=(n, w.shape[1]))
                             for _ in range(views)], axis=1).astype(np.float16)
                for k, w in weights.items()}
    labels = list(load_manifest(dataset).labels) if labelled else []
    write_arrays(path, dataset=dataset, sample_ids=[f"{dataset}-{i}" for i in range(n)],
                 splits=[("train", "train", "train", "val", "test")[i % 5] for i in range(n)],
                 features=features, labels=y if labelled else np.full(n, -1),
                 label_names=labels, feature_space="demo-shapes")
    return str(path)


def monitor_cost(root: Path, *, scale: int, epochs: int) -> None:
    vox = make_store(root / f"vox-{scale}", dataset="voxceleb2", n=24 * scale, views=3,
                     labelled=False)
    meld = make_store(root / f"meld-{scale}", dataset="meld", n=48 * scale, views=1,
                      labelled=True)
    for linear in (False, True):
        run = run_pretrain(vox, "conclugen", root / f"run-{scale}-{linear}", preset="cpu",
                           epochs=epochs, device="cpu", progress=False,
                           overrides={"data": {"batch_size": 16 if scale == 1 else 64}},
                           monitor=MonitorSettings(meld, every=1, linear=linear))
        records = read_metrics(run, "epoch")[1:]  # the first epoch also warms up
        epoch = statistics.median(r["time_s"] for r in records)
        watch = statistics.median(r["monitor/time_s"] for r in records)
        what = "k-NN + linear" if linear else "k-NN"
        print(f"{24 * scale} VoxCeleb2 clips (bank {int(48 * scale * 0.6)}, queries "
              f"{int(48 * scale * 0.2)}), {what}: monitor {watch * 1000:.1f} ms, epoch "
              f"{epoch * 1000:.1f} ms: ratio monitor / epoch {watch / epoch:.3f}")


def study_cost(root: Path) -> None:
    from heads.study.run import run_study

    vox = make_store(root / "vox-study", dataset="voxceleb2", n=24, views=3, labelled=False)
    meld = make_store(root / "meld-study", dataset="meld", n=48, views=1, labelled=True)
    seconds = {}
    for seeds in (1, 2):
        start = time.perf_counter()
        run_study([meld], root / f"study-{seeds}", pretrain_store=vox, quick=True,
                  device="cpu", progress=False, pretrain_seeds=seeds, monitor=seeds == 2)
        seconds[seeds] = time.perf_counter() - start
        print(f"quick study, {seeds} pretraining seed(s){', monitor' if seeds == 2 else ''}: "
              f"{seconds[seeds]:.1f} s")
    print(f"ratio 2 seeds + monitor / 1 seed: {seconds[2] / seconds[1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--scale", type=int, default=40)
    parser.add_argument("--study", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, args.scale):
            monitor_cost(Path(tmp), scale=scale, epochs=args.epochs)
        if args.study:
            study_cost(Path(tmp))


if __name__ == "__main__":
    main()
