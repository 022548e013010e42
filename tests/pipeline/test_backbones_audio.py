"""The audio front end against DAVEnet's training recipe, and exact masked batching.

The reference below re-implements, in numpy/scipy, what DAVEnet's data loader computes with
librosa (DC removal, pre-emphasis 0.97, centred reflect-padded STFT with a 400-sample
symmetric Hamming window and 160-sample hop, power, 40 Slaney mel bands 20-8000 Hz with
Slaney area normalisation, ``power_to_db(ref=np.max, top_db=80)``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from pipeline.backbones import load_encoder
from pipeline.backbones.davenet import AudioEncoder
from pipeline.failures import ClipError, Reason

SR, N_FFT, HOP, N_MELS = 16000, 400, 160, 40


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def davenet() -> AudioEncoder:
    return load_encoder("davenet", weights="random")


@pytest.fixture(scope="module")
def resdavenet() -> AudioEncoder:
    return load_encoder("resdavenet", weights="random")


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    linear = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp
                    + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)),
                    f_sp * m)


def _slaney_filterbank(fmin: float = 20.0, fmax: float = 8000.0) -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40, fmin=20) -> ``[40, 201]``."""
    fft_freqs = np.linspace(0, SR / 2, 1 + N_FFT // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)),
                                   N_MELS + 2))
    fdiff, ramps = np.diff(mel_f), np.subtract.outer(mel_f, fft_freqs)
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


def _reference_log_mel(y: np.ndarray) -> np.ndarray:
    y = y.astype(np.float64) - y.mean()
    y = np.append(y[0], y[1:] - 0.97 * y[:-1])
    y = np.pad(y, N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(y) - N_FFT) // HOP
    frames = np.stack([y[i * HOP:i * HOP + N_FFT] for i in range(n_frames)])
    window = scipy.signal.get_window("hamming", N_FFT, fftbins=False)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    db = 10 * np.log10(np.maximum(_slaney_filterbank() @ power.T, 1e-10))
    db -= db.max()
    return np.maximum(db, -80.0)


def test_log_mel_matches_davenet_training_recipe(davenet: AudioEncoder) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
            + 0.02 * rng.standard_normal(SR) + 0.1).astype(np.float32)  # with a DC offset
    ours = davenet.log_mel(wave).numpy()
    assert ours.shape == (N_MELS, 1 + SR // HOP)
    np.testing.assert_allclose(ours, _reference_log_mel(wave), atol=2e-3)
    assert ours.max() == 0.0 and ours.min() >= -80.0


def test_provenance_records_the_front_end(davenet: AudioEncoder) -> None:
    prov = davenet.provenance()
    assert {k: prov[k] for k in ("sample_rate", "n_mels", "win_ms", "hop_ms", "n_fft",
                                 "preemphasis", "top_db", "log_offset")} == \
        {"sample_rate": 16000, "n_mels": 40, "win_ms": 25.0, "hop_ms": 10.0, "n_fft": 400,
         "preemphasis": 0.97, "top_db": 80.0, "log_offset": 1e-10}


@pytest.mark.parametrize("name", ["davenet", "resdavenet"])
def test_batching_mixed_lengths_equals_one_by_one(name: str, request: pytest.FixtureRequest,
                                                  ) -> None:
    enc = request.getfixturevalue(name)
    rng = np.random.default_rng(1)
    # from 1 spectrogram frame (shorter than a window, zero-padded) to 3 s
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32)
             for n in (48000, 150, 7000, 401, 16001, 2300)]
    one_by_one = np.stack([enc.encode(w) for w in waves])
    np.testing.assert_allclose(enc.encode_batch(waves), one_by_one, rtol=1e-5,
                               atol=1e-6 * np.abs(one_by_one).max())


def test_padding_a_clip_with_silence_changes_its_vector(davenet: AudioEncoder) -> None:
    # the time-mean covers the clip, not a fixed 2048-frame canvas
    wave = (0.1 * np.random.default_rng(2).standard_normal(8000)).astype(np.float32)
    padded = np.concatenate([wave, np.zeros(8000, np.float32)])
    assert not np.allclose(davenet.encode(wave), davenet.encode(padded), atol=1e-4)


def test_bad_waveforms(davenet: AudioEncoder) -> None:
    with pytest.raises(ClipError) as err:
        davenet.encode(np.zeros(0, np.float32))
    assert err.value.reason is Reason.TOO_SHORT
    with pytest.raises(ClipError) as err:
        davenet.validate(np.array([0.1, np.nan, 0.2], np.float32))
    assert err.value.reason is Reason.CORRUPT_MEDIA
    with pytest.raises(ValueError, match=r"mono float waveform \[n\]"):
        davenet.encode(np.zeros((2, 1600), np.float32))
    with pytest.raises(ValueError, match="mono float waveform"):
        davenet.encode(np.zeros(1600, np.int16))
