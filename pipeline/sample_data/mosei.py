"""CMU-MOSEI sample data: full videos of labelled segments, in the release's raw layout.

Each video is a real video id of the manifest's standard folds (so the adapter's fold lookup is
exercised unchanged) and holds 2 to 4 labelled segments, each rendered on its own with its own
emotions, voice and words and then joined into one file; half of the videos open with a short
unlabelled segment, which is in the transcript but not in the labels, as in the release. Written:

- ``Raw/Videos/Full/Combined/<video_id>.mp4``: the full videos;
- ``Raw/Transcript/Segmented/Combined/<video_id>.txt``: ``<id>___<k>___<start>___<end>___<text>``;
- ``CMU_MOSEI_Labels.csd``: the SDK's HDF5 computational sequence ``All Labels`` (features
  ``[n, 7]`` sentiment + six intensities, intervals ``[n, 2]``, string metadata).

On top of the ``clips`` usable intervals, two labelled videos exercise the adapter's failures:
``9cxlcpbmrH0`` (7 intervals, no video file: six ``missing_file``, and ``9cxlcpbmrH0_6`` is
``known_bad``) and ``-NFrJFQijFE`` (2 intervals, in no standard fold: left out with a warning).
"""

from __future__ import annotations

import itertools
import logging
import random
import tempfile
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np

from pipeline.datasets.mosei import LABEL_COLUMNS, SEPARATOR, fold_lookup
from pipeline.manifest import SPLITS, DatasetManifest, load_manifest
from pipeline.sample_data import render, signals, speech

log = logging.getLogger(__name__)

SIZES = ((320, 240), (480, 360), (640, 360))
SPLIT_SHARES = {"val": 0.2, "test": 0.2}  # train takes the rest
NO_FACE_EVERY = 12
SECOND_EMOTION_P = 0.25
INTRO_P = 0.5
FPS = render.FPS
# Labelled videos without a usable clip: (video id, intervals), see the module docstring.
MISSING_VIDEO = ("9cxlcpbmrH0", 7)
NO_FOLD_VIDEO = ("-NFrJFQijFE", 2)


@dataclass(frozen=True)
class Segment:
    """One stretch of a video, rendered with its own emotions and words; if labelled, a label
    row of the video in the label file."""

    frames: int
    emotions: tuple[tuple[str, float], ...]  # (label name, intensity > 0); () = no emotion
    transcript: str
    face: bool
    seed: int
    labelled: bool = True


@dataclass(frozen=True)
class Video:
    """One full video of the sample dataset."""

    video_id: str
    split: str | None  # None: in no standard fold
    size: tuple[int, int]
    segments: tuple[Segment, ...]

    def spans(self) -> list[tuple[float, float]]:
        """``(start, end)`` seconds of each segment; frame counts keep them on the frame grid."""
        edges = np.cumsum([0, *(s.frames for s in self.segments)]).tolist()
        return [(edges[i] / FPS, edges[i + 1] / FPS) for i in range(len(self.segments))]


def write(out: Path, *, clips: int, seed: int) -> None:
    """Write a CMU-MOSEI-layout sample dataset under ``out``.

    Args:
        out: an existing, empty folder; becomes the dataset root.
        clips: number of usable labelled intervals (about 60/20/20 over train/val/test, at
            least one per split from 3 on); intervals are grouped into videos of 2 to 4.
        seed: the only source of randomness; the same seed writes the same files.
    """
    manifest = load_manifest("mosei")
    rng = random.Random(seed)
    videos = plan_videos(manifest, split_counts(clips), rng)
    defects = [_defect(manifest, vid, n, rng) for vid, n in (MISSING_VIDEO, NO_FOLD_VIDEO)]
    with tempfile.TemporaryDirectory(prefix="mosei-segments-") as tmp:
        for video in videos:
            media = out / manifest.splits[str(video.split)].media
            media.mkdir(parents=True, exist_ok=True)
            render_video(video, media / f"{video.video_id}{manifest.media_ext}", Path(tmp))
    for video in videos + defects:
        write_transcript(out / str(manifest.transcripts) / f"{video.video_id}.txt", video)
    write_labels(out / str(manifest.label_file), videos + defects, rng)
    log.info("CMU-MOSEI sample data: %d videos, %d usable intervals, 2 defective videos in %s",
             len(videos), clips, out)


def split_counts(clips: int) -> dict[str, int]:
    """Usable intervals per split: about 60/20/20, at least one per split when ``clips >= 3``."""
    if clips < 3:
        return {"train": clips, "val": 0, "test": 0}
    counts = {split: max(1, round(clips * share)) for split, share in SPLIT_SHARES.items()}
    return {"train": clips - sum(counts.values()), **counts}


def plan_videos(manifest: DatasetManifest, counts: dict[str, int],
                rng: random.Random) -> list[Video]:
    """The usable videos, split by split, with the fold's real video ids.

    Within a split the labelled segments cycle through the manifest's labels plus "none"
    (index modulo len(labels) + 1), so every split shows every label once it is large enough;
    about one segment in four adds a second emotion, and one in 12 shows no face.
    """
    if not manifest.folds:
        raise ValueError(f"manifest {manifest.name!r} has no standard folds to draw video ids from")
    avoid = {MISSING_VIDEO[0], NO_FOLD_VIDEO[0], *(kb.sample_id.rsplit("_", 1)[0]
                                                  for kb in manifest.known_bad)}
    videos: list[Video] = []
    labelled = 0  # over all splits, for the no-face rate
    for split in SPLITS:
        sizes = _group_sizes(counts[split], rng)
        ids = rng.sample([v for v in manifest.folds[split] if v not in avoid], len(sizes))
        index = 0  # within the split, for the class cycle
        for video_id, n in zip(ids, sizes, strict=True):
            segments = [_intro(rng)] if rng.random() < INTRO_P else []
            for _ in range(n):
                face = labelled % NO_FACE_EVERY != NO_FACE_EVERY - 1
                segments.append(_segment(manifest, index, face, rng))
                index, labelled = index + 1, labelled + 1
            videos.append(Video(video_id, split, rng.choice(SIZES), tuple(segments)))
    return videos


def _group_sizes(total: int, rng: random.Random) -> list[int]:
    """Split ``total`` intervals into videos of 2 to 4 (a single interval only when total is 1)."""
    sizes = []
    while total > 0:
        n = total if total <= 4 else rng.randint(2, min(4, total - 2))
        sizes.append(n)
        total -= n
    return sizes


def _segment(manifest: DatasetManifest, index: int, face: bool, rng: random.Random) -> Segment:
    labels = manifest.labels
    slot = index % (len(labels) + 1)  # the last slot is "no emotion"
    chosen = [labels[slot]] if slot < len(labels) else []
    if chosen and rng.random() < SECOND_EMOTION_P:
        chosen.append(rng.choice([name for name in labels if name not in chosen]))
    # CMU-MOSEI intensities are means of three 0-3 ratings: multiples of 1/3
    emotions = tuple((name, rng.randint(1, 9) / 3) for name in chosen)
    return Segment(rng.randint(2 * FPS, 4 * FPS), emotions,
                   signals.transcript_for(chosen, rng), face, rng.randrange(2**31))


def _intro(rng: random.Random) -> Segment:
    return Segment(rng.randint(FPS, FPS + FPS // 2), (), signals.transcript_for((), rng, n_words=2),
                   True, rng.randrange(2**31), labelled=False)


def _defect(manifest: DatasetManifest, video_id: str, n: int, rng: random.Random) -> Video:
    """A labelled video that is never rendered (its split: its fold, or None)."""
    split = fold_lookup(manifest).get(video_id)
    segments = tuple(_segment(manifest, i, True, rng) for i in range(n))
    return Video(video_id, split, SIZES[0], segments)


def render_video(video: Video, path: Path, tmp: Path) -> None:
    """Render each segment's picture on its own, then encode the pictures and the segments'
    speech one after another into ``path`` (H.264 + AAC).

    Parts are rendered without sound into a fast intermediate (MPEG-4 Part 2 in AVI) and the
    speech is made here, so each frame and each sample is H.264/AAC-encoded once, not twice.
    """
    pictures, sound = [], []
    for i, segment in enumerate(video.segments):
        part = tmp / f"{video.video_id}-{i}.avi"
        emotions = tuple(name for name, _ in segment.emotions)
        render.render_clip(render.ClipRequest(part, emotions, segment.transcript,
                                              segment.frames / FPS, video.size,
                                              face=segment.face, audio=False, seed=segment.seed))
        pictures.append((part, segment.frames))
        sound.append(soundtrack(emotions, segment.transcript, segment.frames, segment.seed))
    _encode(path, pictures, np.concatenate(sound), video.size)
    log.debug("rendered %s (%d segments)", path, len(video.segments))


def soundtrack(emotions: tuple[str, ...], transcript: str, frames: int, seed: int) -> np.ndarray:
    """``[frames / FPS * AUDIO_RATE]`` float32 mono: the words spoken in the emotions' voice
    after a short pause, cut (with a 20 ms fade) or padded with silence to the segment."""
    signal = signals.signal_for(emotions)
    voice = speech.speak(transcript, pitch=signal.pitch, speed=signal.speed,
                         sample_rate=render.AUDIO_RATE)
    n = frames * render.AUDIO_RATE // FPS
    lead = min(n, round(np.random.default_rng(seed).uniform(0.1, 0.3) * render.AUDIO_RATE))
    take = min(voice.size, n - lead)
    track = np.zeros(n, dtype=np.float32)
    track[lead:lead + take] = voice[:take]
    if take < voice.size:  # cut mid-word: fade out so the cut does not click
        fade = min(take, render.AUDIO_RATE // 50)
        track[lead + take - fade:lead + take] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return track


def _encode(path: Path, parts: list[tuple[Path, int]], sound: np.ndarray,
            size: tuple[int, int]) -> None:
    """Encode ``frames`` pictures of each part, in order, and the ``[samples]`` sound."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1  # multi-threaded output depends on thread timing
        audio = out.add_stream("aac", rate=render.AUDIO_RATE, layout=render.AUDIO_LAYOUT)
        audio.codec_context.thread_count = 1
        pts = expected = 0
        for part, frames in parts:
            expected += frames
            with av.open(str(part)) as src:
                for picture in itertools.islice(src.decode(video=0), frames):
                    picture.pts, picture.time_base = pts, Fraction(1, FPS)
                    out.mux(video.encode(picture))
                    pts += 1
            # a short part would shift every later picture against its labels and sound
            if pts != expected:
                raise RuntimeError(f"{part}: fewer than {frames} frames decoded")
        out.mux(video.encode())
        channels = av.AudioLayout(render.AUDIO_LAYOUT).nb_channels
        chunk = av.AudioFrame.from_ndarray(np.repeat(sound[None], channels, axis=0),
                                           format="fltp", layout=render.AUDIO_LAYOUT)
        chunk.sample_rate, chunk.pts = render.AUDIO_RATE, 0
        out.mux(audio.encode(chunk))
        out.mux(audio.encode())


def write_transcript(path: Path, video: Video) -> None:
    """The segmented transcript: every segment, labelled or not, numbered from 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spans = zip(video.segments, video.spans(), strict=True)
    lines = [SEPARATOR.join((video.video_id, str(k), _seconds(start), _seconds(end), seg.transcript))
             for k, (seg, (start, end)) in enumerate(spans)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_labels(path: Path, videos: list[Video], rng: random.Random) -> None:
    """``CMU_MOSEI_Labels.csd`` in the SDK's layout, written with h5py."""
    with h5py.File(path, "w") as h5:
        root = h5.create_group("All Labels")
        data = root.create_group("data")
        for video in videos:
            rows = [(seg, span) for seg, span in zip(video.segments, video.spans(), strict=True)
                    if seg.labelled]
            group = data.create_group(video.video_id)
            group.create_dataset("features", data=np.array(
                [_features(seg) for seg, _ in rows], dtype=np.float32))
            group.create_dataset("intervals", data=np.array([span for _, span in rows]))
        meta = root.create_group("metadata")
        for key, value in _metadata(rng).items():
            meta.create_dataset(key, data=[value], dtype=h5py.string_dtype())


def _features(segment: Segment) -> list[float]:
    """Sentiment, then the six intensities in the label file's column order."""
    by_name = dict(segment.emotions)
    value = {name: by_name.get(name, 0.0) for name in LABEL_COLUMNS[1:]}
    negative = max(value["sad"], value["anger"], value["disgust"], value["fear"])
    sentiment = round(float(np.clip(value["happy"] - negative, -3, 3)) * 3) / 3
    return [sentiment, *value.values()]


def _metadata(rng: random.Random) -> dict[str, str]:
    return {
        "root name": "All Labels",
        "computational sequence description": "Synthetic sample labels in the layout of "
                                              "CMU_MOSEI_Labels.csd (not CMU-MOSEI data)",
        "computational sequence version": "1.0",
        "alignment compatible": "True",
        "dataset name": "CMU-MOSEI",
        "dataset version": "1.0",
        "creator": "conclugen sample data",
        "contact": "none",
        "featureset bib citation": "none",
        "dataset bib citation": (
            "Zadeh et al., Multimodal Language Analysis in the Wild: CMU-MOSEI Dataset and "
            "Interpretable Dynamic Fusion Graph, ACL 2018"),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
        "md5": "None",
    }


def _seconds(t: float) -> str:
    # as in the release: "0" for zero, otherwise the shortest decimal ("2.04")
    return f"{t:.3f}".rstrip("0").rstrip(".")
