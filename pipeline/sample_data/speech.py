"""Speech for the sample data: espeak-ng, with a clearly synthetic stand-in where it is missing.

espeak-ng is a formant synthesiser without randomness, so the same text, pitch and speed give
the same samples on every run, which keeps the sample dataset reproducible.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import subprocess
import tempfile
import wave
import zlib
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
VOICE = "en-us"
# espeak-ng accepts -s from 80 to 450 words per minute.
_SPEED_RANGE = (80, 450)


def speak(text: str, *, pitch: int, speed: int, sample_rate: int = 16000) -> np.ndarray:
    """Speak ``text`` with espeak-ng.

    Where espeak-ng is not installed, logs a warning once and returns :func:`synthetic_voice`
    instead, so the sample dataset can still be built (its audio then is tones, not speech).

    Args:
        text: the words to say; blank text gives an empty signal.
        pitch: espeak-ng ``-p``, 0..99.
        speed: espeak-ng ``-s``, words per minute, 80..450.
        sample_rate: rate of the returned signal in Hz.

    Returns:
        ``[samples]`` float32 mono in [-1, 1].

    Raises:
        ValueError: pitch, speed or sample_rate out of range.
        RuntimeError: espeak-ng is installed but fails; the message carries its stderr.
    """
    _check_voice(pitch, speed, sample_rate)
    exe = shutil.which(ESPEAK)
    if exe is None:
        _warn_missing()
        return synthetic_voice(text, pitch=pitch, speed=speed, sample_rate=sample_rate)
    if not text.strip():
        return np.zeros(0, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="speak-") as tmp:
        wav = Path(tmp) / "speech.wav"
        _run_espeak(exe, text, pitch=pitch, speed=speed, wav=wav)
        samples, rate = _read_wav(wav)
    return resample(samples, rate, sample_rate)


def synthetic_voice(text: str, *, pitch: int, speed: int, sample_rate: int = 16000) -> np.ndarray:
    """A tone sequence standing in for speech: one harmonic tone per word.

    The fundamental follows ``pitch`` (80 Hz at 0 to about 300 Hz at 99) and the tone length
    follows ``speed``, so the classes stay as audible as with espeak-ng; each word shifts the
    fundamental by a fixed amount derived from its letters, so different texts sound different.

    Returns:
        ``[samples]`` float32 mono in [-1, 1], peak 0.5.
    """
    _check_voice(pitch, speed, sample_rate)
    words = text.split()
    if not words:
        return np.zeros(0, dtype=np.float32)
    word_len = round(sample_rate * 60.0 / speed)
    t = np.arange(round(0.8 * word_len)) / sample_rate
    envelope = np.hanning(t.size)
    gap = np.zeros(word_len - t.size)
    tones = []
    for word in words:
        shift = 1.0 + 0.2 * (zlib.crc32(word.lower().encode()) % 101 / 100.0 - 0.5)
        f0 = (80.0 + 2.2 * pitch) * shift
        tone = sum(np.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))
        tones += [envelope * tone, gap]
    signal = np.concatenate(tones)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """``[samples]`` at ``rate`` -> float32 ``[samples']`` at ``target_rate``, clipped to [-1, 1].

    Uses FFmpeg's band-limited resampler (libswresample, through PyAV), which the pipeline
    already depends on; its output is deterministic.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if rate != target_rate and samples.size:
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
        out = resampler.resample(frame) + resampler.resample(None)  # None flushes the tail
        samples = np.concatenate([f.to_ndarray()[0] for f in out])
    return np.clip(samples, -1.0, 1.0)


def _check_voice(pitch: int, speed: int, sample_rate: int) -> None:
    if not 0 <= pitch <= 99:
        raise ValueError(f"pitch must be in 0..99 (espeak-ng -p), got {pitch}")
    if not _SPEED_RANGE[0] <= speed <= _SPEED_RANGE[1]:
        raise ValueError(f"speed must be in {_SPEED_RANGE} words/min (espeak-ng -s), got {speed}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")


@functools.cache
def _warn_missing() -> None:
    # cached: one warning per process, not one per clip
    log.warning(
        "%s not found on PATH: the sample audio is a synthetic tone sequence, not speech "
        "(install espeak-ng for spoken transcripts)",
        ESPEAK,
    )


def _run_espeak(exe: str, text: str, *, pitch: int, speed: int, wav: Path) -> None:
    # text goes through stdin so that words starting with "-" are never read as options
    cmd = [exe, "-v", VOICE, "-p", str(pitch), "-s", str(speed), "-w", str(wav), "--stdin"]
    try:
        subprocess.run(cmd, input=text.encode(), capture_output=True, check=True, timeout=60)
    except subprocess.CalledProcessError as err:
        stderr = err.stderr.decode(errors="replace").strip()
        message = f"{ESPEAK} failed (exit {err.returncode}) on {text!r}: {stderr}"
        raise RuntimeError(message) from err


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise RuntimeError(
                f"{ESPEAK} wrote {path} with {w.getnchannels()} channels of "
                f"{8 * w.getsampwidth()} bits; expected 16-bit mono"
            )
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate
