"""Audio features: DAVEnet (Harwath et al., ECCV 2018) or ResDAVEnet (Harwath et al., ICLR 2020).

Front end, as in the training code of both models (``dharwath/DAVEnet-pytorch``
``dataloaders/image_caption_dataset.py``, ``wnhsu/ResDAVEnet-VQ`` ``dataloaders/utils.py``):
16 kHz mono, DC removed, pre-emphasis 0.97, STFT with a 25 ms symmetric Hamming window
(``n_fft`` = 400 samples), 10 ms hop, centred with reflect padding; power spectrum; 40 mel
bands from 20 Hz to 8 kHz (Slaney scale and area normalisation, librosa's defaults);
``librosa.power_to_db(ref=max)``: ``10 log10(max(mel, 1e-10))`` minus the clip's maximum,
floored at -80 dB. The training code padded every spectrogram to 2048 frames; here each clip
keeps its own length and the time-mean runs over its valid frames only.

Networks (parameter names as in the originals, so their checkpoints load by name):

- ``davenet``: ``batchnorm1`` on the input, ``conv1`` (40x1) -> 128, ``conv2`` (1x11) -> 256,
  ``conv3``/``conv4`` (1x17) -> 512, ``conv5`` (1x17) -> 1024, ReLU after each, max pool
  (1x3, stride 2) after conv2..conv5.
- ``resdavenet``: ``conv1`` (40x1) -> 128 + ``bn1``, four stages ``layer1..layer4`` of two
  residual blocks (1x9 convolutions, the first strided by 2, projection shortcut) with widths
  256, 256, 512, 1024 (the released models' ``--layer-widths 128,256,256,512,1024``).
  Its ``batchnorm1`` exists in the checkpoints but is never applied by the original forward,
  so it is kept for key compatibility and not applied here either. Only the unquantised
  model is supported (checkpoints with ``quant*`` codebooks are refused).

Batching: clips are sorted by length and zero-padded per chunk; after every layer the frames
past each clip's valid length are zeroed, so convolutions see exactly the zero padding a clip
run alone sees, and batched features equal one-by-one features. Any clip of at least one
spectrogram frame fits the conv stack; a waveform shorter than one window (25 ms) is
zero-padded to one window; an empty one is a ``too_short`` clip error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbones.encoder import (
    compute_dtype, finite_rows, freeze, inference, resolve_device, resolved)
from pipeline.backbones.random_init import AUDIO_CNN, he_init_, init_fields, state_sha256
from pipeline.backbones.weights import (
    WeightsError, WeightsSource, fit_state_dict, in_background, load_state_dict, resolve_weights,
    skeleton, warn_random)
from pipeline.failures import ClipError, Reason, Stage


@dataclass(frozen=True)
class DavenetSpec:
    """An audio CNN of the DAVEnet family with its log-mel front end.

    Attributes:
        name: registry name.
        arch: ``davenet`` or ``resdavenet``.
        key: store key.
        dim: output channels of the last layer.
        default_weights: the published checkpoint loaded when none is given (ResDAVEnet-VQ's
            ``RDVQ_00000``, :mod:`pipeline.backbones.catalogue`); ``None`` for DAVEnet, whose
            checkpoints are not published.
        checkpoint_hint: what to pass as weights, for the error when none is given.
        sample_rate: expected waveform rate (Hz).
        n_mels: mel bands.
        win_ms: STFT window (ms); also the FFT size.
        hop_ms: STFT hop (ms).
        preemphasis: pre-emphasis coefficient.
        f_min: lowest mel band edge (Hz).
        f_max: highest mel band edge (Hz).
        amin: power floor before the log.
        top_db: dynamic range kept below the clip's maximum (dB).
        widths: ResDAVEnet channel widths (conv1, layer1..layer4).
        depths: ResDAVEnet residual blocks per stage.
        conv_width: ResDAVEnet temporal kernel width.
        batch_size: clips per backbone call.
    """

    name: str
    arch: Literal["davenet", "resdavenet"]
    checkpoint_hint: str
    key: str = "audio"
    dim: int = 1024
    default_weights: str | None = None
    sample_rate: int = 16_000
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    preemphasis: float = 0.97
    f_min: float = 20.0
    f_max: float = 8_000.0
    amin: float = 1e-10
    top_db: float = 80.0
    widths: tuple[int, ...] = (128, 256, 256, 512, 1024)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    conv_width: int = 9
    batch_size: int = 32

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing parameters recorded in provenance."""
        return {"input": "float32 mono waveform [n]", "sample_rate": self.sample_rate,
                "dc_removal": True, "preemphasis": self.preemphasis, "n_mels": self.n_mels,
                "win_ms": self.win_ms, "hop_ms": self.hop_ms, "n_fft": self.win_length,
                "window": "hamming, symmetric", "center": "reflect", "power": 2.0,
                "f_min": self.f_min, "f_max": self.f_max, "mel_scale": "slaney",
                "mel_norm": "slaney", "log": "10*log10(max(mel, amin)) - clip maximum",
                "log_offset": self.amin, "top_db": self.top_db,
                "min_samples": self.win_length, "pooling": "mean over valid time steps"}


DAVENET = DavenetSpec(name="davenet", arch="davenet",
                      checkpoint_hint=" (the audio model of the DAVEnet-pytorch release, "
                                      "e.g. audio_model.pth / best_audio_model.pth)")
#: The reference code's audio model, with the release of model '{}' (``RDVQ_00000``, no
#: quantised layer) as its default weights.
RESDAVENET = DavenetSpec(name="resdavenet", arch="resdavenet", default_weights="RDVQ_00000",
                         checkpoint_hint=" (best_audio_model.pth of the unquantised "
                                         "ResDAVEnet-VQ release model, '{}' in its README)")


def _mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the time steps of ``x [B, C, 1, L]`` at or past each row's length."""
    valid = torch.arange(x.shape[-1], device=x.device) < lengths[:, None]
    return x * valid[:, None, None, :].to(x.dtype)


def _halve(lengths: torch.Tensor) -> torch.Tensor:
    """Valid length after a stride-2 layer whose padding keeps ``ceil(L / 2)`` outputs."""
    return (lengths - 1) // 2 + 1


def masked_time_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, C, 1, L]`` with zeros past ``lengths`` -> ``[B, C]`` mean over valid steps.

    Summed in float32, also under bf16 autocast.
    """
    return x.float().flatten(2).sum(-1) / lengths[:, None].float()


class Davenet(nn.Module):
    """DAVEnet's audio branch; ``forward`` returns the time-mean embedding ``[B, dim]``."""

    def __init__(self, n_mels: int = 40, dim: int = 1024) -> None:
        super().__init__()
        self.batchnorm1 = nn.BatchNorm2d(1)
        self.conv1 = nn.Conv2d(1, 128, kernel_size=(n_mels, 1))
        self.conv2 = nn.Conv2d(128, 256, kernel_size=(1, 11), padding=(0, 5))
        self.conv3 = nn.Conv2d(256, 512, kernel_size=(1, 17), padding=(0, 8))
        self.conv4 = nn.Conv2d(512, 512, kernel_size=(1, 17), padding=(0, 8))
        self.conv5 = nn.Conv2d(512, dim, kernel_size=(1, 17), padding=(0, 8))
        self.pool = nn.MaxPool2d(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, n_mels, L]`` log-mel (zero past ``lengths [B]``) -> ``[B, dim]``."""
        x = self.batchnorm1(x.unsqueeze(1))
        x = _mask(F.relu(self.conv1(x)), lengths)
        x = _mask(F.relu(self.conv2(x)), lengths)
        for conv in (self.conv3, self.conv4, self.conv5, None):
            # Pooling after ReLU: zeros past the end never beat a valid (>= 0) maximum.
            lengths = _halve(lengths)
            x = _mask(self.pool(x), lengths)
            if conv is not None:
                x = _mask(F.relu(conv(x)), lengths)
        return masked_time_mean(x, lengths)


class SpeechBlock(nn.Module):
    """ResDAVEnet's residual block: two 1xW convolutions, the first possibly strided."""

    def __init__(self, in_channels: int, planes: int, width: int, stride: int = 1) -> None:
        super().__init__()
        pad = (0, width // 2)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=(1, width),
                               stride=(1, stride), padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=(1, width), padding=pad, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Sequential | None = None
        self.stride = stride
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, planes, kernel_size=1, stride=(1, stride), bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, 1, L]`` masked -> ``[B, planes, 1, L']`` masked, and the new lengths."""
        if self.stride != 1:
            lengths = _halve(lengths)
        out = _mask(F.relu(self.bn1(self.conv1(x))), lengths)
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return _mask(F.relu(out + shortcut), lengths), lengths


class ResDavenet(nn.Module):
    """ResDAVEnet's audio network (unquantised); ``forward`` returns ``[B, widths[-1]]``."""

    def __init__(self, n_mels: int = 40, widths: Sequence[int] = (128, 256, 256, 512, 1024),
                 depths: Sequence[int] = (2, 2, 2, 2), width: int = 9) -> None:
        super().__init__()
        if len(widths) != len(depths) + 1:
            raise ValueError(f"widths {widths} must have one entry more than depths {depths}")
        self.batchnorm1 = nn.BatchNorm2d(1)  # in the checkpoints, unused by the original too
        self.conv1 = nn.Conv2d(1, widths[0], kernel_size=(n_mels, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.n_stages = len(depths)
        for i, (planes, blocks) in enumerate(zip(widths[1:], depths), start=1):
            stage = [SpeechBlock(widths[i - 1], planes, width, stride=2)]
            stage += [SpeechBlock(planes, planes, width) for _ in range(1, blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, n_mels, L]`` log-mel (zero past ``lengths [B]``) -> ``[B, dim]``."""
        x = _mask(F.relu(self.bn1(self.conv1(x.unsqueeze(1)))), lengths)
        for i in range(1, self.n_stages + 1):
            for block in getattr(self, f"layer{i}"):
                x, lengths = block(x, lengths)
        return masked_time_mean(x, lengths)


class AudioEncoder:
    """Waveform ``float32 [n]`` at 16 kHz -> ``float32 [dim]``, batched across clips."""

    def __init__(self, *, spec: DavenetSpec, model: nn.Module, device: torch.device,
                 provenance: dict[str, Any]) -> None:
        import torchaudio

        self.spec, self.key, self.dim = spec, spec.key, spec.dim
        self.model, self.device, self._provenance = model, device, provenance
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=spec.sample_rate, n_fft=spec.win_length, win_length=spec.win_length,
            hop_length=spec.hop_length, f_min=spec.f_min, f_max=spec.f_max,
            n_mels=spec.n_mels, window_fn=torch.hamming_window, wkwargs={"periodic": False},
            power=2.0, center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney")

    def validate(self, x: Any) -> None:
        """Raise if ``x`` is not a non-empty, finite 1-D float waveform."""
        _check_wave(x, self.spec.name)

    def log_mel(self, wave: np.ndarray) -> torch.Tensor:
        """Waveform ``[n]`` -> log-mel ``float32 [n_mels, 1 + max(n, win) // hop]`` (dB)."""
        w = torch.from_numpy(np.ascontiguousarray(_check_wave(wave, self.spec.name),
                                                  dtype=np.float32))
        w = w - w.mean()
        w = torch.cat([w[:1], w[1:] - self.spec.preemphasis * w[:-1]])
        w = F.pad(w, (0, max(0, self.spec.win_length - len(w))))
        db = 10.0 * torch.log10(self.melspec(w).clamp(min=self.spec.amin))
        return (db - db.max()).clamp(min=-self.spec.top_db)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """One waveform ``[n]`` -> ``float32 [dim]``."""
        return self.encode_batch([x])[0]

    def encode_batch(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        """Waveforms ``[n_i]`` -> ``float32 [len(xs), dim]``; chunks of similar length."""
        out = np.empty((len(xs), self.dim), dtype=np.float32)
        mels = [self.log_mel(x) for x in xs]
        order = sorted(range(len(xs)), key=lambda i: mels[i].shape[-1], reverse=True)
        with inference(self.device):
            for start in range(0, len(order), self.spec.batch_size):
                rows = order[start:start + self.spec.batch_size]
                lengths = torch.tensor([mels[i].shape[-1] for i in rows])
                batch = nn.utils.rnn.pad_sequence([mels[i].T for i in rows], batch_first=True)
                emb = self.model(batch.transpose(1, 2).to(self.device), lengths.to(self.device))
                out[rows] = emb.float().cpu().numpy()
        return finite_rows(out, self.spec.name)

    def provenance(self) -> dict[str, Any]:
        """JSON-able description of backbone, weights and preprocessing."""
        self._provenance = resolved(self._provenance)
        return dict(self._provenance)


def _check_wave(x: Any, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        shape = getattr(x, "shape", None)
        dtype = getattr(x, "dtype", type(x).__name__)
        raise ValueError(f"{what}: expected a mono float waveform [n], got {dtype} {shape}")
    if x.size == 0:
        raise ClipError(Stage.BACKBONE, Reason.TOO_SHORT, f"{what}: the waveform is empty")
    if not np.isfinite(x).all():
        raise ClipError(Stage.BACKBONE, Reason.CORRUPT_MEDIA,
                        f"{what}: the waveform has non-finite samples")
    return x


def _refuse_codebooks(state: dict[str, torch.Tensor], source: str) -> None:
    """Quantised ResDAVEnet-VQ models feed codebook vectors forward; this network does not."""
    layers = sorted({k.removeprefix("module.").split(".")[0] for k in state
                     if k.removeprefix("module.").startswith("quant")})
    if layers:
        raise WeightsError(f"{source}: a vector-quantised ResDAVEnet-VQ checkpoint (codebooks "
                           f"{', '.join(layers)}); only the unquantised model loads here")


def standardise_input_(model: nn.Module, spec: DavenetSpec) -> None:
    """Random weights: standardise the log-mel input from its known range, in place.

    The log-mel lies in ``[-top_db, 0]`` dB; ``(x + top_db / 2) / (top_db / 4)`` maps that to
    ``[-2, 2]`` (speech: about -45 +- 24 dB at ``top_db`` 80). DAVEnet's input BatchNorm holds
    the statistics. ResDAVEnet does not apply its input BatchNorm, so they go through its first
    convolution ``y = w * x`` (no bias) into ``bn1``: ``w * (x - m) / s = (y - m sum(w)) / s``,
    with ``sum(w)`` exact (``math.fsum``) so the result does not depend on a vectorised
    reduction order.
    """
    mean, std = -spec.top_db / 2, spec.top_db / 4
    if isinstance(model, Davenet):
        _set_running_stats(model.batchnorm1, torch.tensor(mean), std ** 2)
    elif isinstance(model, ResDavenet):
        sums = [math.fsum(row) for row in model.conv1.weight.detach().flatten(1).tolist()]
        _set_running_stats(model.bn1, torch.tensor([mean * s for s in sums]), std ** 2)
    else:
        raise TypeError(f"no input standardisation for {type(model).__name__}")


def _set_running_stats(norm: nn.BatchNorm2d, mean: torch.Tensor, var: float) -> None:
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("the BatchNorm keeps no running statistics")
    with torch.no_grad():
        norm.running_mean.copy_(mean)
        norm.running_var.fill_(var)


def build(spec: DavenetSpec, weights: str | WeightsSource | None = None,
          device: str = "cpu") -> AudioEncoder:
    """Build the frozen audio encoder.

    Args:
        spec: :data:`DAVENET` or :data:`RESDAVENET`.
        weights: a state-dict file or http(s) URL with the original key names (a ``module.``
            prefix from ``nn.DataParallel`` is accepted, as the releases have it), a source
            the registry resolved (the fetched ``RDVQ_00000``), or ``"random"``
            (:data:`~pipeline.backbones.random_init.AUDIO_CNN`). ``None``: the spec's default,
            an error for DAVEnet, which has none.
        device: ``"cpu"`` or ``"cuda[:i]"``.

    Returns:
        An encoder mapping a 16 kHz waveform ``float32 [n]`` to ``float32 [spec.dim]``.
    """
    dev = resolve_device(device)
    source = resolve_weights(weights, backbone=spec.name, key=spec.key,
                             default=spec.default_weights, hint=spec.checkpoint_hint)
    if source.kind != "random":  # read first: the file is hashed while the model is built
        state, sha = load_state_dict(source)
        _refuse_codebooks(state, source.location)
    with skeleton():  # no memory, no initialisation: the checkpoint or the scheme sets all
        model: nn.Module = (Davenet(spec.n_mels, spec.dim) if spec.arch == "davenet" else
                            ResDavenet(spec.n_mels, spec.widths, spec.depths, spec.conv_width))
    init: dict[str, Any] = {}
    if source.kind == "random":
        warn_random(spec.name)
        he_init_(model.to_empty(device="cpu"), residual_blocks=(SpeechBlock,))
        standardise_input_(model, spec)
        sha, init = in_background(state_sha256, model.state_dict()), init_fields(AUDIO_CNN)
    else:
        fit_state_dict(model, state, source=source.location, backbone=spec.name)
    provenance = {"backbone": spec.name, "architecture": type(model).__name__,
                  "weights": source.identifier, "weights_sha256": sha, **init, "dim": spec.dim,
                  "dtype": "float32", "compute_dtype": compute_dtype(dev),
                  **spec.preprocessing()}
    return AudioEncoder(spec=spec, model=freeze(model, dev), device=dev, provenance=provenance)
