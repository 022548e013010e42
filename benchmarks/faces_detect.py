"""Face detection cost and the effect of the detection rate on the crops.

Prints, on one thread of the CPU (and on CUDA when there is one):

1. milliseconds per frame (and frames/s) of batched ``FaceDetector.detect`` for 640x360 and
   1280x720 frames, over batch sizes and ``min_face_size`` values (does the face survive each
   setting?);
2. how well the crop boxes follow a moving face when faces are detected at 1, 4 or 25 fps and
   interpolated to the 16-fps crop times (IoU with the true box), for several smoothings.

Usage: python benchmarks/faces_detect.py [--repeats 3] [--seconds 6] [--device cuda]
       [--batches 1,32,128] [--skip-rate]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from skimage import data

from pipeline.faces import FaceDetector, FaceSpec, track

VIDEO_FPS = 25
CROP_FPS = 16


def head(side: int) -> np.ndarray:
    """The astronaut's head and shoulders, ``side`` pixels square."""
    patch = data.astronaut()[6:226, 114:334]
    return np.asarray(Image.fromarray(patch).resize((side, side), Image.Resampling.BILINEAR))


def frame_with_head(x: float, y: float, side: int, size: tuple[int, int] = (360, 640)
                    ) -> np.ndarray:
    frame = np.full((*size, 3), 110, np.uint8)
    x0, y0 = int(round(x)), int(round(y))
    frame[y0:y0 + side, x0:x0 + side] = head(side)
    return frame


def time_detect(detector: FaceDetector, frames: list[np.ndarray], repeats: int) -> float:
    """Milliseconds per frame, best of ``repeats`` (the machine is shared and noisy)."""
    detector.detect(frames[:1])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(frames)
        if detector.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(frames)


def speed_table(device: str, repeats: int, batches: list[int], min_faces: list[int]) -> None:
    print(f"\n== MTCNN.detect on {device}, {torch.get_num_threads()} thread(s) ==")
    print(f"{'frame':>10} {'min_face':>8} {'batch':>5} {'ms/frame':>9} {'frames/s':>9} "
          f"{'face p':>8}")
    for size, side in (((360, 640), 180), ((720, 1280), 360)):
        frame = frame_with_head(size[1] * 0.55, size[0] * 0.25, side, size)
        for min_face in min_faces:
            detector = FaceDetector(FaceSpec(min_face_size=min_face), device=device,
                                    batch_size=max(batches))
            for batch in batches:
                ms = time_detect(detector, [frame] * batch, repeats)
                found = detector.detect([frame])[0]
                prob = f"{found[0, 4]:.4f}" if found is not None else "lost"
                print(f"{size[1]}x{size[0]:<4} {min_face:>8} {batch:>5} {ms:>9.1f} "
                      f"{1000 / ms:>9.1f} {prob:>8}")


def moving_path(t: np.ndarray, amplitude: float, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Head position over time: a sway left-right with a slower bob up-down."""
    x = 240 + amplitude * np.sin(2 * np.pi * t / period)
    y = 80 + 0.3 * amplitude * np.sin(np.pi * t / period)
    return x, y


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``[N, 4]`` row by row."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def true_boxes(detector: FaceDetector, xs: np.ndarray, ys: np.ndarray, side: int,
               spec: FaceSpec) -> np.ndarray:
    """Where the square crop box should be: the still head's box moved along the path."""
    still = detector.detect([frame_with_head(0, 0, side)])[0]
    assert still is not None, "the still head was not found"
    x1, y1, x2, y2 = still[0, :4]
    half = max(x2 - x1, y2 - y1) * (1 + spec.margin) / 2
    cx, cy = (x1 + x2) / 2 + xs, (y1 + y2) / 2 + ys
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


def rate_table(seconds: float) -> None:
    print("\n== crop boxes vs the true box at the 16-fps crop times: mean / min IoU ==")
    print("(head 180 px, face ~70 px, swaying on a 640x360 frame; detection at 1, 4, 25 fps)")
    detector = FaceDetector(FaceSpec())
    video_times = np.arange(int(seconds * VIDEO_FPS)) / VIDEO_FPS
    crop_times = np.arange(int(seconds * CROP_FPS)) / CROP_FPS
    rates = {1: 25, 4: 6, 25: 1}  # detections per second -> every n-th video frame
    print(f"{'motion':>14} {'smoothing':>9} " + " ".join(f"{f'{r} fps':>13}" for r in rates))
    for amplitude, period in ((15.0, 4.0), (40.0, 4.0), (40.0, 2.0)):
        xs, ys = moving_path(video_times, amplitude, period)
        frames = [frame_with_head(x, y, 180) for x, y in zip(xs, ys, strict=True)]
        dets = {r: detector.detect(frames[::every]) for r, every in rates.items()}
        for smoothing in (0.0, 0.25, 0.5):
            spec = FaceSpec(smoothing=smoothing)
            truth = true_boxes(detector, *moving_path(crop_times, amplitude, period), 180, spec)
            cells = []
            for r, every in rates.items():
                result = track(video_times[::every], dets[r], spec, frames[0].shape[1::-1])
                assert result is not None, "the face was lost"
                overlap = iou(np.stack([result.box_at(t) for t in crop_times]), truth)
                cells.append(f"{overlap.mean():.3f}/{overlap.min():.3f}")
            label = f"+-{amplitude:.0f}px/{period:.0f}s"
            print(f"{label:>14} {smoothing:>9} " + " ".join(f"{c:>13}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--skip-speed", action="store_true", help="only the detection-rate table")
    parser.add_argument("--skip-rate", action="store_true", help="only the speed table")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="speed table on the CPU, on CUDA, or both (CUDA when there is one)")
    parser.add_argument("--batches", default="1,8",
                        help="frames per detect call, comma-separated (the GPU suite: 1,32,128)")
    parser.add_argument("--min-faces", default="20,40,60", help="min_face_size values")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batches.split(",")]
    min_faces = [int(m) for m in args.min_faces.split(",")]
    if not args.skip_speed:
        if args.device in ("all", "cpu"):
            speed_table("cpu", args.repeats, batches, min_faces)
        if args.device == "cuda" or (args.device == "all" and torch.cuda.is_available()):
            speed_table("cuda", args.repeats, batches, min_faces)
    if not args.skip_rate:
        rate_table(args.seconds)


if __name__ == "__main__":
    main()
