"""Render one sample clip: a real face photo moving over a real background, with spoken words.

The emotion classes show as the frame tint, the face's size and zoom, its pan direction and
speed (see :mod:`pipeline.sample_data.signals`), the voice's pitch and speed and the words said.
The seed varies what a class does not fix (which face and background photo, where the face
starts, a small shake, overall brightness), so the clips of one class differ from each other.

Everything is built from photos shipped with scikit-image and matplotlib and from espeak-ng, so
no download is needed, and encoders run single-threaded so the same request gives the same bytes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import numpy as np
import skimage.data
from PIL import Image

from pipeline.sample_data import signals, speech

log = logging.getLogger(__name__)

FPS = 25
AUDIO_RATE = 48000
AUDIO_LAYOUT = "stereo"
_SAMPLES_PER_FRAME = AUDIO_RATE // FPS
# face height / frame height at zoom 1; at the smallest zoom (sadness, 0.85**1.25) a 240-px
# frame still shows a 62-px face, which MTCNN finds reliably
FACE_FRACTION = 0.32
_MARGIN_PX = 4
_SHAKE_PX = 0.7

# path suffix -> (muxer, video codec, video options, audio codec); all in the stock PyAV wheel
_CONTAINERS: dict[str, tuple[str, str, dict[str, str], str]] = {
    ".mp4": ("mp4", "libx264", {"preset": "veryfast", "crf": "23"}, "aac"),
    ".avi": ("avi", "mpeg4", {"qscale": "4"}, "libmp3lame"),
}


@dataclass(frozen=True)
class ClipRequest:
    """One clip to render.

    Attributes:
        path: output file; ``.mp4`` gives H.264 + AAC, ``.avi`` gives MPEG-4 Part 2 + MP3.
        emotions: emotion names or dataset aliases; ``()`` is neutral / unlabeled, several
            blend (multi-label datasets).
        transcript: the words spoken with the emotions' pitch and speed.
        duration_s: clip length; the speech is padded with silence or cut to it.
        size: frame (width, height), both even.
        face: False shows a real photo without a face instead of a portrait.
        audio: False writes no audio stream at all.
        seed: source of the per-clip variation.
    """

    path: Path
    emotions: tuple[str, ...]
    transcript: str
    duration_s: float
    size: tuple[int, int]
    face: bool = True
    audio: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        # normalise list/str inputs so equal requests compare and hash equal
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "emotions", tuple(self.emotions))
        object.__setattr__(self, "size", tuple(self.size))
        if self.path.suffix.lower() not in _CONTAINERS:
            raise ValueError(f"{self.path}: suffix must be one of {sorted(_CONTAINERS)}")
        for name in self.emotions:
            signals.canonical(name)
        if self.duration_s < 1.0 / FPS:
            raise ValueError(
                f"{self.path}: duration_s must be at least one frame (1/{FPS} s), "
                f"got {self.duration_s}"
            )
        width, height = self.size
        if min(width, height) < 32 or width % 2 or height % 2:
            raise ValueError(f"{self.path}: size must be two even numbers >= 32, got {self.size}")


@dataclass(frozen=True)
class _Photo:
    """A region of a real photo and the face (or stand-in box) inside it, in photo pixels."""

    name: str  # a scikit-image sample (skimage.data.<name>) or a key of _PHOTOS
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1
    face: tuple[int, int, int, int]  # x0, y0, x1, y1


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook  # only the sample-data lookup; no plotting backend

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.asarray(Image.open(path).convert("RGB"))


# real photos shipped with other installed packages than scikit-image
_PHOTOS: dict[str, Callable[[], np.ndarray]] = {"grace_hopper": _grace_hopper}
# Face boxes as MTCNN finds them on the full photos (p >= 0.9998); crops keep head and shoulders.
_PORTRAITS = (
    _Photo("astronaut", crop=(104, 0, 344, 260), face=(181, 62, 268, 172)),
    _Photo("grace_hopper", crop=(45, 0, 485, 500), face=(174, 120, 356, 340)),
)
# Photos in which MTCNN finds no face (checked on the photos and in the tests); the "face" box
# is the central object, placed like a face would be.
_OBJECTS = (
    _Photo("coffee", crop=(60, 0, 540, 400), face=(170, 60, 430, 340)),
    _Photo("rocket", crop=(150, 0, 510, 427), face=(250, 60, 410, 360)),
)
_BACKGROUNDS = ("brick", "hubble_deep_field", "moon", "page", "retina")


def render_clip(req: ClipRequest) -> None:
    """Write the clip ``req`` describes to ``req.path`` (parent folders are created).

    The clip is written under a temporary name and renamed when complete, so an interrupted
    run never leaves a half-written clip that looks like a corrupt one.

    Raises:
        RuntimeError: espeak-ng fails on the transcript.
        av.FFmpegError: the encoder or muxer fails.
    """
    signal = signals.signal_for(req.emotions)
    rng = np.random.default_rng(req.seed)
    n_frames = max(1, round(req.duration_s * FPS))
    frames = _frames(req, signal, rng, n_frames)
    sound = _soundtrack(req, signal, rng, n_frames) if req.audio else None
    req.path.parent.mkdir(parents=True, exist_ok=True)
    partial = req.path.with_name(f".{req.path.name}.part")
    try:
        _encode(partial, req.path.suffix.lower(), frames, sound, req.size)
        partial.replace(req.path)
    finally:
        partial.unlink(missing_ok=True)
    log.debug("rendered %s (%s, %d frames)", req.path, req.emotions or ("neutral",), n_frames)


def write_corrupt(path: Path, seed: int = 0) -> None:
    """Write a file that starts like a real clip of its container but cannot be decoded.

    A real clip is rendered to ``path`` (``.mp4`` or ``.avi``) and everything after its first
    kilobyte is replaced by random bytes, as in a damaged download: the file keeps its size and
    signature, but the index and the coded frames are garbage. PyAV cannot open the ``.mp4``
    (``av.InvalidDataError``); it opens the ``.avi``, lists its video stream and decodes no frame.

    Raises:
        ValueError: ``path`` has another suffix.
    """
    path = Path(path)
    req = ClipRequest(path, ("neutral",), "This file is broken.", 1.0, (160, 120), seed=seed)
    render_clip(req)
    data = path.read_bytes()
    keep = min(1024, len(data) // 4)
    noise = np.random.default_rng(seed).integers(0, 256, len(data) - keep, dtype=np.uint8)
    path.write_bytes(data[:keep] + noise.tobytes())


# ---- video --------------------------------------------------------------------------------


def _frames(
    req: ClipRequest, signal: signals.Signal, rng: np.random.Generator, n_frames: int
) -> Iterator[np.ndarray]:
    """Yield ``[H, W, 3]`` uint8 RGB frames of the subject moving over the background."""
    width, height = req.size
    photos = _PORTRAITS if req.face else _OBJECTS
    photo = photos[rng.integers(len(photos))]
    gain = np.asarray(signal.tint) * rng.uniform(0.93, 1.07)
    background = _tinted(_background(rng, width, height), gain)
    t = np.arange(n_frames) / FPS
    zoom = signal.scale ** (0.75 + 0.5 * t / max(t[-1], 1e-9))
    face_h = FACE_FRACTION * height * zoom  # [n_frames] face height in frame pixels
    centres = _face_path(rng, signal.motion, face_h, photo, req.size, t)
    subject, mask = _subject(photo, gain, face_h.max())
    scaled = _scaler(subject, mask)
    for centre, shrink in zip(centres, face_h / face_h.max()):
        frame = background.copy()
        _paste(frame, scaled, subject.size, photo, centre, shrink)
        yield np.asarray(frame)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A random ``width`` x ``height`` crop of a random real photo without faces."""
    photo = _load(_BACKGROUNDS[rng.integers(len(_BACKGROUNDS))])
    cover = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.4)
    w, h = max(width, round(photo.width * cover)), max(height, round(photo.height * cover))
    x0, y0 = int(rng.integers(w - width + 1)), int(rng.integers(h - height + 1))
    big = photo.resize((w, h), Image.Resampling.LANCZOS)
    return big.crop((x0, y0, x0 + width, y0 + height))


def _face_path(
    rng: np.random.Generator,
    motion: tuple[float, float],
    face_h: np.ndarray,
    photo: _Photo,
    size: tuple[int, int],
    t: np.ndarray,
) -> np.ndarray:
    """``[n_frames, 2]`` face centres (x, y): off-centre start, class pan, small shake.

    The start is drawn so the whole face stays inside the frame for the whole clip; a pan too
    long for the frame is shortened rather than pushing the face out.
    """
    fx0, fy0, fx1, fy1 = photo.face
    half = np.array([(fx1 - fx0) / (fy1 - fy0), 1.0]) * face_h.max() / 2 + _MARGIN_PX
    lo, hi = half, np.asarray(size, dtype=float) - half
    travel = np.asarray(motion) * size[1] * t[-1]
    travel = np.clip(travel, -(hi - lo), hi - lo)
    start_lo, start_hi = lo - np.minimum(travel, 0), hi - np.maximum(travel, 0)
    # stay in the outer 40% of the allowed range on a random side: never centred
    offset = rng.uniform(0.0, 0.4, size=2) * (start_hi - start_lo)
    side = rng.integers(2, size=2).astype(bool)
    start = np.where(side, start_hi - offset, start_lo + offset)
    path = start + np.outer(t / max(t[-1], 1e-9), travel)
    shake = rng.normal(0.0, _SHAKE_PX, size=path.shape)
    return np.clip(path + shake, lo, hi)


def _subject(
    photo: _Photo, gain: np.ndarray, max_face_h: float
) -> tuple[Image.Image, Image.Image]:
    """The tinted crop at its largest size in the clip, and its soft oval mask ("L")."""
    x0, y0, x1, y1 = photo.crop
    px_per_src = max_face_h / (photo.face[3] - photo.face[1])
    w, h = max(2, round((x1 - x0) * px_per_src)), max(2, round((y1 - y0) * px_per_src))
    crop = _load(photo.name).crop(photo.crop).resize((w, h), Image.Resampling.LANCZOS)
    yy, xx = np.mgrid[0:h, 0:w]
    radius = np.hypot((yy + 0.5) / h * 2 - 1, (xx + 0.5) / w * 2 - 1)
    # an oval that fades out over its outer 15% so the photo blends into the background
    mask = np.clip((1.0 - radius) / 0.15 * 255 + 0.5, 0, 255).astype(np.uint8)
    return _tinted(crop, gain), Image.fromarray(mask, mode="L")


def _paste(
    frame: Image.Image,
    scaled: Callable[[tuple[int, int]], tuple[Image.Image, Image.Image]],
    full_size: tuple[int, int],
    photo: _Photo,
    centre: np.ndarray,
    shrink: float,
) -> None:
    """Blend the subject scaled by ``shrink`` (<= 1) into ``frame``, its face at ``centre``.

    ``scaled(size)`` gives the subject and its mask at ``size``; ``full_size`` is shrink 1.
    """
    size = (max(1, round(full_size[0] * shrink)), max(1, round(full_size[1] * shrink)))
    subject, mask = scaled(size)
    x0, y0, x1, y1 = photo.crop
    fx0, fy0, fx1, fy1 = photo.face
    left = round(centre[0] - ((fx0 + fx1) / 2 - x0) * size[0] / (x1 - x0))
    top = round(centre[1] - ((fy0 + fy1) / 2 - y0) * size[1] / (y1 - y0))
    frame.paste(subject, (left, top), mask)  # Pillow clips what falls outside the frame


def _scaler(
    subject: Image.Image, mask: Image.Image
) -> Callable[[tuple[int, int]], tuple[Image.Image, Image.Image]]:
    """``size -> (subject, mask)`` at that size, each size resized once per clip."""

    @functools.cache
    def scaled(size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
        if size == subject.size:
            return subject, mask
        # bilinear is enough: the subject was anti-aliased at its largest size in the clip
        bilinear = Image.Resampling.BILINEAR
        return subject.resize(size, bilinear), mask.resize(size, bilinear)

    return scaled


def _tinted(image: Image.Image, gain: np.ndarray) -> Image.Image:
    """``image`` with each RGB channel multiplied by ``gain`` [3], saturating at 255."""
    pixels = np.asarray(image, dtype=np.float32) * gain.astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), mode="RGB")


@functools.cache
def _load(name: str) -> Image.Image:
    """A sample photo by name (see :data:`_PHOTOS`) as an RGB image; grey photos are repeated."""
    pixels = _PHOTOS[name]() if name in _PHOTOS else getattr(skimage.data, name)()
    return Image.fromarray(pixels).convert("RGB")


# ---- audio --------------------------------------------------------------------------------


def _soundtrack(
    req: ClipRequest, signal: signals.Signal, rng: np.random.Generator, n_frames: int
) -> np.ndarray:
    """``[channels, samples]`` float32: the transcript after a short pause, as long as the video."""
    voice = speech.speak(
        req.transcript, pitch=signal.pitch, speed=signal.speed, sample_rate=AUDIO_RATE
    )
    n = n_frames * _SAMPLES_PER_FRAME
    lead = min(n, round(rng.uniform(0.1, 0.3) * AUDIO_RATE))
    track = np.zeros(n, dtype=np.float32)
    take = min(voice.size, n - lead)
    track[lead : lead + take] = voice[:take]
    if take < voice.size:  # cut mid-word: fade the last 20 ms so the cut does not click
        fade = min(take, AUDIO_RATE // 50)
        track[lead + take - fade : lead + take] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    channels = av.AudioLayout(AUDIO_LAYOUT).nb_channels
    return np.repeat(track[None], channels, axis=0)


# ---- encoding -----------------------------------------------------------------------------


def _encode(
    path: Path,
    suffix: str,
    frames: Iterator[np.ndarray],
    sound: np.ndarray | None,
    size: tuple[int, int],
) -> None:
    """Mux ``[H, W, 3]`` uint8 frames and ``[channels, samples]`` float32 sound into ``path``
    in the container that ``suffix`` names.

    Each video frame is followed by its 1/25 s of sound, so the streams are interleaved the
    way a camera or a converter writes them.
    """
    muxer, video_codec, options, audio_codec = _CONTAINERS[suffix]
    with av.open(str(path), "w", format=muxer) as container:
        # the codec names come from a table, so PyAV cannot tell the stream kinds apart
        video = cast(av.VideoStream,
                     container.add_stream(video_codec, rate=FPS, options=options))
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        # one encoder thread: multi-threaded x264/mpeg4 output depends on thread timing
        video.codec_context.thread_count = 1
        audio: av.AudioStream | None = None
        if sound is not None:
            audio = cast(av.AudioStream, container.add_stream(audio_codec, rate=AUDIO_RATE,
                                                              layout=AUDIO_LAYOUT))
            audio.codec_context.thread_count = 1
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            if audio is not None and sound is not None:
                container.mux(audio.encode(_audio_frame(sound, i)))
        container.mux(video.encode())
        if audio is not None:
            container.mux(audio.encode())


def _audio_frame(sound: np.ndarray, index: int) -> av.AudioFrame:
    """The ``[channels, samples]`` sound of video frame ``index`` as a PyAV frame."""
    start = index * _SAMPLES_PER_FRAME
    chunk = np.ascontiguousarray(sound[:, start : start + _SAMPLES_PER_FRAME])
    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=AUDIO_LAYOUT)
    frame.sample_rate = AUDIO_RATE
    frame.pts = start
    return frame
