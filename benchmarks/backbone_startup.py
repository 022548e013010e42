"""Worker start-up: building the four default backbones against reading their weight files.

Prints, measured in one run on this machine:

1. the time to read the four weight files from disk (plain sequential reads, every byte once),
   cold (the files' pages evicted from the page cache first, as on a worker's first start) and
   warm (already cached);
2. the time a fresh process takes to build and load the four default backbones
   (``load_encoder`` for ``frames_2d``, ``frames_3d``, ``audio``, ``text``) from those files,
   cold and warm, with the ratio start-up / read (target <= 1.5); the imports (torch,
   torchvision, torchaudio, transformers and its DistilBERT modules), paid once per process
   before any build, are shown apart;
3. the same start-up with ``--weights random`` (seeded initialisation, no files), against the
   same read times.

Real weights cannot be downloaded here, so the files are written by this script: state dicts
with the real checkpoints' key names and shapes (classifier layers included, as released) and
random values, in the real formats (``torch.save`` zip files for the CNNs, a ``save_pretrained``
folder with ``model.safetensors`` and a 30,522-token tokenizer for DistilBERT). Loading them
takes the same path as loading the released files.

    python benchmarks/backbone_startup.py [--repeats 3] [--dir DIR] [--device cuda]

Each start-up runs in a new Python process (nothing cached in the interpreter); the best of
``--repeats`` is kept for every figure (shared machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULTS = {"frames_2d": "resnet152", "frames_3d": "resnet3d101", "audio": "davenet",
            "text": "distilbert-sst2"}
FILES = {"frames_2d": "resnet152-f82ba261.pth", "frames_3d": "resnet3d101_kinetics-8d4c9d63.pth",
         "audio": "audio_model.pth", "text": "distilbert-base-uncased-finetuned-sst-2-english"}


# ------------------------------------------------------------------------- the weight files

def write_weights(folder: Path, keys: list[str]) -> dict[str, Path]:
    """Weight files of the real shapes and key names, random values; ``{key: path}``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / FILES[key] for key in keys}
    g = torch.Generator().manual_seed(0)
    for key, path in paths.items():
        if path.exists():
            continue
        if key == "text":
            _write_text_folder(path, g)
        else:
            torch.save({k: _fill(v, g) for k, v in _cnn_state(key).items()}, path)
    return paths


def _cnn_state(key: str) -> dict[str, Any]:
    """Meta-device state dict (names, shapes, dtypes) of a released CNN checkpoint."""
    import torch
    import torchvision

    from pipeline.backbones.davenet import Davenet
    from pipeline.backbones.resnet3d import ResNet3d

    with torch.device("meta"):
        if key == "frames_2d":
            return torchvision.models.resnet152().state_dict()  # fc.* included, as released
        if key == "frames_3d":
            return {**ResNet3d().state_dict(), "last_linear.weight": torch.empty(400, 2048),
                    "last_linear.bias": torch.empty(400)}
        return Davenet().state_dict()


def _fill(meta: Any, g: Any) -> Any:
    import torch

    if meta.dtype.is_floating_point:
        return (torch.randn(meta.shape, generator=g) * 0.02).to(meta.dtype)
    return torch.zeros(meta.shape, dtype=meta.dtype)


def _write_text_folder(folder: Path, g: Any) -> None:
    """A ``save_pretrained`` folder like the SST-2 DistilBERT's: classifier, 30,522 tokens."""
    import torch
    from transformers import (DistilBertConfig, DistilBertForSequenceClassification,
                              DistilBertTokenizerFast)

    from pipeline.backbones.text import charpiece_vocab

    config = DistilBertConfig(num_labels=2)
    with torch.device("meta"):
        model = DistilBertForSequenceClassification(config)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(_fill(tensor, g))
    model.save_pretrained(folder)
    vocab = charpiece_vocab()
    vocab += [f"[unused{i}]" for i in range(config.vocab_size - len(vocab))]
    DistilBertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)},
                            do_lower_case=True).save_pretrained(folder)


def weight_files(paths: dict[str, Path]) -> list[Path]:
    """Every file of the weights (the text folder's files included)."""
    out: list[Path] = []
    for p in paths.values():
        out += sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    return out


def evict(files: list[Path]) -> None:
    """Drop the files' pages from the page cache (no privileges needed for clean pages)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_seconds(files: list[Path], *, cold: bool) -> float:
    """Seconds to read every byte of ``files`` once, sequentially, into memory."""
    if cold:
        evict(files)
    start = time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            data = fh.read()
        del data
    return time.perf_counter() - start


# ------------------------------------------------------------------------- the start-up

def child(weights: dict[str, str], device: str) -> dict[str, Any]:
    """In a fresh process: seconds for the imports, then for each backbone's build."""
    import logging

    logging.disable(logging.WARNING)  # the RANDOM WEIGHTS warnings
    start = time.perf_counter()
    import torch  # noqa: F401
    import torchaudio  # noqa: F401
    import torchvision  # noqa: F401
    # transformers imports its model modules lazily, on first use: count them as imports too.
    from transformers import AutoModel, AutoTokenizer, DistilBertModel  # noqa: F401

    from pipeline.backbones import load_encoder

    imports = time.perf_counter() - start
    builds, encoders = {}, {}
    start = time.perf_counter()
    if device.startswith("cuda"):
        torch.zeros(1, device=device)  # CUDA's own start-up is not the backbones'
    for key, path in weights.items():
        t0 = time.perf_counter()
        encoders[key] = load_encoder(DEFAULTS[key], weights=path, device=device)
        builds[key] = time.perf_counter() - t0
    # A worker is ready when it also has every encoder's provenance, whose weights sha256 is
    # computed in the background while the next backbones are built.
    t0 = time.perf_counter()
    for enc in encoders.values():
        enc.provenance()
    builds["provenance"] = time.perf_counter() - t0
    return {"imports": imports, "builds": builds, "startup": time.perf_counter() - start}


def startup(weights: dict[str, str], files: list[Path], *, cold: bool,
            device: str) -> dict[str, Any]:
    if cold:
        evict(files)
    cmd = [sys.executable, __file__, "--child", json.dumps({"weights": weights,
                                                            "device": device})]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: r["startup"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="keep the weight files here (reused)")
    parser.add_argument("--device", default="cpu", help="where the backbones go (cpu, cuda)")
    parser.add_argument("--keys", default=",".join(DEFAULTS),
                        help="the backbones (store keys) to start; --keys audio for a smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["weights"], spec["device"])))
        return
    keys = args.keys.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_weights(args.dir or Path(tmp) / "weights", keys)
        files = weight_files(paths)
        size = sum(f.stat().st_size for f in files)
        real = {k: str(p) for k, p in paths.items()}
        random = dict.fromkeys(keys, "random")
        results: dict[str, list[Any]] = {k: [] for k in ("read cold", "read warm", "real cold",
                                                          "real warm", "random")}
        for _ in range(args.repeats):  # alternate the measurements; keep each one's best
            results["read cold"].append(read_seconds(files, cold=True))
            results["real cold"].append(startup(real, files, cold=True, device=args.device))
            results["read warm"].append(read_seconds(files, cold=False))
            results["real warm"].append(startup(real, files, cold=False, device=args.device))
            results["random"].append(startup(random, files, cold=False, device=args.device))
    report(results, size, [DEFAULTS[k] for k in keys], args.device)


def report(results: dict[str, list[Any]], size: int, names: list[str], device: str) -> None:
    read = {t: min(results[f"read {t}"]) for t in ("cold", "warm")}
    print(f"weight files: {size / 1e6:.0f} MB for {', '.join(names)}; backbones to {device}")
    print(f"read from disk              cold {read['cold']:6.2f} s   warm {read['warm']:6.2f} s")
    for label, temp in (("real cold", "cold"), ("real warm", "warm"), ("random", "warm")):
        run = best(results[label])
        parts = ", ".join(f"{k} {v:.2f}" for k, v in run["builds"].items())
        name = f"start-up, {'random weights' if label == 'random' else label}"
        print(f"{name:<28}{run['startup']:6.2f} s   / read {temp} = "
              f"{run['startup'] / read[temp]:.2f}   ({parts}; imports before: "
              f"{run['imports']:.1f} s)")


if __name__ == "__main__":
    main()
