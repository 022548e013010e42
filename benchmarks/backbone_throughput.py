"""Encode throughput of each default backbone on one device, in units/s.

Units are what a backbone runs on: frames (``frames_2d``), 16-frame windows (``frames_3d``),
clips of audio, transcripts. Prints, measured in one run:

1. the model alone, on inputs already prepared on the device, in float32, under bf16 autocast
   and, for the CNNs, under bf16 autocast with ``channels_last`` weights and inputs (whether
   each helps is the point: extraction runs bf16 autocast on CUDA, contiguous tensors);
2. the encoder as extraction runs it: ``encode_batch`` on uint8 clips (or waveforms,
   transcripts) from the host, with its spec's batch size: transfer, normalisation, resize, the
   model and the pooling.

Random weights (the arithmetic per unit is that of the released ones; nothing to download).

    python benchmarks/backbone_throughput.py [--device cuda] [--seconds 3]
    python benchmarks/backbone_throughput.py --toy   # tiny inputs, a few seconds on a CPU
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pipeline.backbones import DEFAULT_BACKBONES, get_backbone

SENTENCE = "Oh my God, you are kidding me, I said what are you doing here tonight?"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Units per model call, image side, seconds of audio, clips per ``encode_batch`` call."""

    batch: dict[str, int]
    image: int | None  # None: the spec's own size
    audio_s: float
    clips: int


FULL = Sizes(batch={"frames_2d": 256, "frames_3d": 32, "audio": 64, "text": 256}, image=None,
             audio_s=8.0, clips=16)
TOY = Sizes(batch={"frames_2d": 2, "frames_3d": 1, "audio": 2, "text": 2}, image=32,
            audio_s=1.0, clips=2)


def build(key: str, device: str, sizes: Sizes) -> Any:
    backbone = get_backbone(DEFAULT_BACKBONES[key])
    spec = backbone.spec
    if sizes.image is not None and hasattr(spec, "image_size"):
        spec = dataclasses.replace(spec, image_size=sizes.image)
    return backbone.build(spec, "random", device)


def model_inputs(key: str, enc: Any, n: int, sizes: Sizes) -> tuple[Any, ...]:
    """Arguments of ``enc.model`` for ``n`` units, on the encoder's device."""
    dev = enc.device
    if key in ("frames_2d", "frames_3d"):
        side = enc.provenance()["image_size"]
        shape = (n, 3, side, side) if key == "frames_2d" else (n, 3, 16, side, side)
        return (torch.randn(shape, device=dev),)
    if key == "audio":
        mel = enc.log_mel(wave(sizes.audio_s))
        batch = mel.expand(n, *mel.shape).contiguous().to(dev)
        return batch, torch.full((n,), mel.shape[-1], device=dev)
    tokens = enc.tokenizer([SENTENCE] * n, padding=True, return_tensors="pt")
    return ({k: v.to(dev) for k, v in tokens.items()},)


def wave(seconds: float) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(3 * t))).astype(np.float32)


def rate(fn: Callable[[], Any], units: int, device: torch.device, seconds: float) -> float:
    """Units/s of ``fn`` (which processes ``units``), after one warm-up call."""
    fn()
    _sync(device)
    start, calls = time.perf_counter(), 0
    while True:
        fn()
        calls += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * units / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_variants(key: str, enc: Any, args: tuple[Any, ...],
                   ) -> dict[str, Callable[[], Any]]:
    """The ways to run the model alone: float32, bf16 autocast, + channels_last (CNNs)."""
    dev, model = enc.device, enc.model

    def run(m: torch.nn.Module, a: tuple[Any, ...], bf16: bool) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode(), torch.autocast(dev.type, torch.bfloat16, enabled=bf16):
                return m(**a[0]) if isinstance(a[0], dict) else m(*a)
        return call

    out = {"float32": run(model, args, False)}
    if dev.type == "cuda":
        out["bf16 autocast"] = run(model, args, True)
    if key in ("frames_2d", "frames_3d"):
        fmt = torch.channels_last if key == "frames_2d" else torch.channels_last_3d
        last = copy.deepcopy(model).to(memory_format=fmt)
        x = args[0].contiguous(memory_format=fmt)
        out["bf16 + channels_last" if dev.type == "cuda" else "channels_last"] = \
            run(last, (x,), dev.type == "cuda")
    return out


def encoder_clips(key: str, enc: Any, sizes: Sizes) -> tuple[list[Any], int]:
    """Clips for ``encode_batch`` and the units they hold (spec batch sizes apply)."""
    n = sizes.clips
    if key == "frames_2d":  # 8 frames a clip (8 s at 1 fps)
        side = enc.provenance()["image_size"]
        clips = [np.random.randint(0, 256, (8, side, side, 3), np.uint8) for _ in range(n)]
        return clips, 8 * n
    if key == "frames_3d":  # 64 frames a clip at 16 fps: 4 windows
        side = enc.provenance()["image_size"]
        clips = [np.random.randint(0, 256, (64, side, side, 3), np.uint8) for _ in range(n)]
        return clips, 4 * n
    if key == "audio":
        return [wave(sizes.audio_s) for _ in range(n)], n
    return [SENTENCE] * n, n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--toy", action="store_true", help="tiny inputs (a smoke run)")
    parser.add_argument("--keys", default=",".join(DEFAULT_BACKBONES))
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the RANDOM WEIGHTS warnings
    sizes = TOY if args.toy else FULL
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"encode throughput on {name} (units/s; random weights, default backbones)")
    for key in args.keys.split(","):
        enc = build(key, args.device, sizes)
        n = sizes.batch[key]
        inputs = model_inputs(key, enc, n, sizes)
        parts = [f"{label} {rate(fn, n, device, args.seconds):,.0f}"
                 for label, fn in model_variants(key, enc, inputs).items()]
        print(f"  {key:<9} {DEFAULT_BACKBONES[key]:<15} model alone, {n} units a call: "
              + ", ".join(parts))
        clips, units = encoder_clips(key, enc, sizes)
        encoded = rate(lambda: enc.encode_batch(clips), units, device, args.seconds)
        print(f"  {'':<9} {'':<15} encode_batch ({enc.provenance()['compute_dtype']}, "
              f"{units} units in {len(clips)} clips): {encoded:,.0f}")
        if device.type == "cuda":
            print(f"  {'':<9} {'':<15} peak GPU memory "
                  f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
            torch.cuda.reset_peak_memory_stats(device)
        del enc


if __name__ == "__main__":
    main()
