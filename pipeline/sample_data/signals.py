"""How each emotion class shows in the sample data: face tint, scale and motion, voice, words.

Every class gets a signal that is clearly distinct in each modality on its own, so a pipeline
that extracts and trains correctly can learn the labels from video, audio or text alone, and a
pipeline that mixes up samples, modalities or labels cannot.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

EMOTIONS: tuple[str, ...] = ("neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise")

# Label spellings of the supported datasets (MELD, CAER, CMU-MOSEI), lower-cased.
_ALIASES: dict[str, str] = {
    "happy": "joy",
    "happiness": "joy",
    "sad": "sadness",
    "angry": "anger",
    "fearful": "fear",
    "disgusted": "disgust",
    "surprised": "surprise",
}


@dataclass(frozen=True)
class Signal:
    """Everything that makes one emotion visible, audible and readable.

    Attributes:
        tint: RGB multiplier applied to every pixel of the frame.
        scale: face zoom factor; the face grows from ``scale**0.75`` to ``scale**1.25`` times
            its base size over a clip, so it differs by class both in size and in motion.
        motion: face pan velocity (x, y) in frame heights per second (y points down).
        pitch: espeak-ng ``-p`` (0..99).
        speed: espeak-ng ``-s`` in words per minute.
        words: the class vocabulary transcripts draw from.
    """

    tint: tuple[float, float, float]
    scale: float
    motion: tuple[float, float]
    pitch: int
    speed: int
    words: tuple[str, ...]


# Tints sit on six hue directions 60 degrees apart (red, yellow, green, cyan, blue, magenta)
# around neutral grey; pitches are 15 apart (about 14 Hz of fundamental with espeak-ng's
# default voice) and speeds at least 10 words per minute apart.
SIGNALS: dict[str, Signal] = {
    "neutral": Signal(
        tint=(1.0, 1.0, 1.0), scale=1.0, motion=(0.0, 0.0), pitch=45, speed=160,
        words=("table", "window", "today", "report", "meeting", "paper", "street", "number",
               "morning", "chair"),
    ),
    "joy": Signal(
        tint=(1.2, 1.15, 0.7), scale=1.1, motion=(0.05, -0.02), pitch=75, speed=185,
        words=("happy", "wonderful", "great", "love", "delighted", "fantastic", "smile",
               "celebrate", "cheerful", "glad"),
    ),
    "sadness": Signal(
        tint=(0.75, 0.85, 1.25), scale=0.85, motion=(0.0, 0.04), pitch=15, speed=115,
        words=("sad", "lonely", "miss", "cry", "tears", "sorry", "lost", "grief", "gloomy",
               "heartbroken"),
    ),
    "anger": Signal(
        tint=(1.3, 0.75, 0.75), scale=1.2, motion=(0.07, 0.0), pitch=30, speed=200,
        words=("angry", "furious", "hate", "stop", "outrageous", "mad", "annoyed", "rage",
               "shut", "unfair"),
    ),
    "fear": Signal(
        tint=(1.15, 0.75, 1.2), scale=0.9, motion=(-0.06, 0.02), pitch=90, speed=215,
        words=("scared", "afraid", "terrified", "danger", "nervous", "panic", "help",
               "worried", "frightened", "run"),
    ),
    "disgust": Signal(
        tint=(0.8, 1.25, 0.8), scale=0.95, motion=(-0.04, -0.04), pitch=0, speed=140,
        words=("gross", "disgusting", "nasty", "yuck", "revolting", "filthy", "awful", "vile",
               "rotten", "sickening"),
    ),
    "surprise": Signal(
        tint=(0.75, 1.15, 1.2), scale=1.15, motion=(0.0, -0.05), pitch=60, speed=170,
        words=("wow", "really", "unbelievable", "unexpected", "amazing", "suddenly", "whoa",
               "shocked", "incredible", "what"),
    ),
}


def canonical(name: str) -> str:
    """The :data:`EMOTIONS` name of a dataset label (case-insensitive; ``"Happy"`` -> ``"joy"``).

    Raises:
        ValueError: ``name`` is neither an emotion nor a known alias; the message lists both.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SIGNALS:
        valid = sorted(EMOTIONS) + sorted(_ALIASES)
        raise ValueError(f"unknown emotion {name!r}; valid names (case-insensitive): {valid}")
    return key


def signal_for(emotions: Sequence[str]) -> Signal:
    """The signal of a clip showing ``emotions`` (several for multi-label datasets).

    No emotion means neutral. Several emotions blend: tint, motion, pitch and speed are
    averaged, scale is the geometric mean, and the vocabularies are joined.

    Raises:
        ValueError: an unknown emotion name.
    """
    names = list(dict.fromkeys(canonical(e) for e in emotions)) or ["neutral"]
    parts = [SIGNALS[n] for n in names]
    if len(parts) == 1:
        return parts[0]
    n = len(parts)
    red, green, blue = (sum(p.tint[c] for p in parts) / n for c in range(3))
    return Signal(
        tint=(red, green, blue),
        scale=math.prod(p.scale for p in parts) ** (1.0 / n),
        motion=(sum(p.motion[0] for p in parts) / n, sum(p.motion[1] for p in parts) / n),
        pitch=round(sum(p.pitch for p in parts) / n),
        speed=round(sum(p.speed for p in parts) / n),
        words=tuple(w for p in parts for w in p.words),
    )


def transcript_for(emotions: Sequence[str], rng: random.Random, n_words: int = 6) -> str:
    """A short English utterance mixing the classes' words.

    Words are drawn in turn from each class's vocabulary, so a mixed clip says words of every
    one of its emotions; no emotion draws neutral words.

    Args:
        emotions: emotion names or dataset aliases; empty for neutral / unlabeled.
        rng: the caller's seeded generator (the only source of randomness).
        n_words: number of words, at least 1.

    Returns:
        A capitalised sentence ending with a full stop, e.g. ``"Happy smile great love glad."``.

    Raises:
        ValueError: ``n_words`` < 1 or an unknown emotion name.
    """
    if n_words < 1:
        raise ValueError(f"n_words must be at least 1, got {n_words}")
    names = list(dict.fromkeys(canonical(e) for e in emotions)) or ["neutral"]
    words = [rng.choice(SIGNALS[names[i % len(names)]].words) for i in range(n_words)]
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + "."
