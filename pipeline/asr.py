"""Speech recognisers for ``cli transcribe``: a model turns 16 kHz mono speech into text.

Two kinds, one interface (:class:`Recognizer`: ``transcribe(batch) -> texts`` and a
``provenance`` record):

- any Hugging Face sequence-to-sequence ASR model, by id or ``save_pretrained`` folder: the
  reference code's ``facebook/s2t-large-librispeech-asr`` (Speech2Text, the default; its
  tokenizer needs the ``sentencepiece`` package) or a Whisper model
  (``openai/whisper-small``, ...). A batch is padded to its longest clip, encoded once and
  decoded with ``generate``; Whisper gets the language and ``task=transcribe`` when its
  generation config is multilingual, and clips longer than its 30-second window are decoded in
  sequential windows (transformers' long-form generation) rather than cut.
- :data:`POCKETSPHINX`: CMU PocketSphinx with the US-English acoustic model, dictionary and
  language model its PyPI wheel ships, so a real recogniser runs without any download (far
  less accurate than the neural models; one clip at a time, on the CPU).

Audio is decoded by the caller (:func:`pipeline.media.read_audio`, PyAV), never here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/s2t-large-librispeech-asr"
"""The reference code's recogniser (Speech2Text large, trained on LibriSpeech)."""
POCKETSPHINX = "pocketsphinx"
"""The offline recogniser shipped in the ``pocketsphinx`` wheel (US English)."""
SAMPLE_RATE = 16_000
WHISPER_WINDOW_S = 30.0
"""Whisper's input window: longer clips go through long-form generation."""


class AsrError(UserError):
    """A recogniser that cannot be loaded or used (model missing, package not installed)."""


@dataclass(frozen=True)
class AsrSettings:
    """How clips are transcribed; everything here is recorded in the sidecar's provenance.

    Attributes:
        model: a Hugging Face ASR model id or folder, or :data:`POCKETSPHINX`.
        language: the spoken language (ISO 639-1). Whisper decodes in it when multilingual;
            English-only models (the default, PocketSphinx's) record it.
        num_beams: beam width of ``generate`` (None: the model's own generation config).
        max_new_tokens: the longest transcript, in tokens, per clip (per 30 s window for
            Whisper's long-form decoding).
        batch_clips: clips per model call (a run setting: on a GPU, larger is faster).
    """

    model: str = DEFAULT_MODEL
    language: str = "en"
    num_beams: int | None = None
    max_new_tokens: int = 200
    batch_clips: int = 8

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "batch_clips", "num_beams"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise AsrError(f"--{name.replace('_', '-')} {value}: must be at least 1")

    def recorded(self) -> dict[str, Any]:
        """The settings as the provenance records them."""
        return dataclasses.asdict(self)


class Recognizer(Protocol):
    """A loaded speech recogniser."""

    provenance: dict[str, Any]

    def transcribe(self, audio: list[np.ndarray]) -> list[str]:
        """Float32 ``[n_i]`` 16 kHz mono signals -> one whitespace-stripped text each."""
        ...


def check_model(settings: AsrSettings) -> None:
    """What is settled before any worker starts: PocketSphinx is installed; a model given as
    a path is a folder with a ``config.json``; a Hugging Face id is in the local cache, or is
    downloaded into it here (on a cluster's login node, for workers that share its cache).

    Raises:
        AsrError: naming the model and the fix.
    """
    if settings.model == POCKETSPHINX:
        _import_pocketsphinx()
        return
    path = Path(settings.model).expanduser()
    if settings.model.startswith((".", "/", "~")) or path.exists():
        if not (path / "config.json").is_file():
            raise AsrError(f"--model {settings.model}: not a Hugging Face model folder (no "
                           "config.json); give a model id or a save_pretrained folder")
        return
    _cache_hub_model(settings.model)


def _cache_hub_model(model: str) -> None:
    from huggingface_hub import snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return
    log.info("downloading speech recognition model %s into the Hugging Face cache", model)
    try:
        snapshot_download(model)
    except (OSError, ValueError, HfHubHTTPError) as err:  # offline, unknown id, HTTP error
        raise AsrError(f"--model {model}: not in the Hugging Face cache and not downloadable "
                       f"here ({type(err).__name__}: {str(err)[:200]}); download it where there "
                       "is a network (`hf download MODEL`) or pass a save_pretrained "
                       "folder") from None


def load_recognizer(settings: AsrSettings, device: str) -> Recognizer:
    """Load the recogniser ``settings.model`` names on ``device`` (``cpu``, ``cuda:0``)."""
    if settings.model == POCKETSPHINX:
        return SphinxRecognizer(settings)
    return HfRecognizer(settings, device)


class HfRecognizer:
    """A Hugging Face sequence-to-sequence ASR model (Speech2Text, Whisper, ...)."""

    def __init__(self, settings: AsrSettings, device: str) -> None:
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForSpeechSeq2Seq, AutoTokenizer

        self.settings, self.device = settings, torch.device(device)
        try:
            self.features = AutoFeatureExtractor.from_pretrained(settings.model)
            self.tokenizer = AutoTokenizer.from_pretrained(settings.model)
            model = AutoModelForSpeechSeq2Seq.from_pretrained(settings.model,
                                                              dtype=torch.float32)
        except (ImportError, OSError, ValueError) as err:
            raise AsrError(f"--model {settings.model}: cannot load it ({str(err)[:300]})"
                           f"{_sentencepiece_hint()}") from None
        self.model = model.eval().to(self.device)
        self.whisper = model.config.model_type == "whisper"
        weights, revision = _weights_fingerprint(settings.model)
        self.provenance = {"engine": "transformers", "model": settings.model,
                           "architecture": model.config.model_type,
                           "weights_sha256": weights, "revision": revision,
                           "generate": self._generate_kwargs(long_form=False)}

    def _generate_kwargs(self, *, long_form: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.settings.max_new_tokens}
        if self.settings.num_beams is not None:
            kwargs["num_beams"] = self.settings.num_beams
        if self.whisper and getattr(self.model.generation_config, "is_multilingual", False):
            kwargs.update(language=self.settings.language, task="transcribe")
        if long_form:
            kwargs["condition_on_prev_tokens"] = False
        return kwargs

    def transcribe(self, audio: list[np.ndarray]) -> list[str]:
        import torch

        long_form = self.whisper and max(len(a) for a in audio) > WHISPER_WINDOW_S * SAMPLE_RATE
        extra = {"truncation": False, "padding": "longest"} if long_form else (
            {} if self.whisper else {"padding": True})
        inputs = self.features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                               return_attention_mask=True, **extra)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            ids = self.model.generate(**inputs, **self._generate_kwargs(long_form=long_form))
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]


def _sentencepiece_hint() -> str:
    """Speech2Text's tokenizer (the default model's) is a SentencePiece model: without the
    package, transformers fails to load it with unrelated-looking errors."""
    import importlib.util

    if importlib.util.find_spec("sentencepiece") is not None:
        return ""
    return ("; Speech2Text models (the default) need the sentencepiece package: pip install "
            "sentencepiece")


def _weights_fingerprint(model: str) -> tuple[str, str | None]:
    """sha256 of the weight files of a folder or of a hub id's cached snapshot, and the
    snapshot's revision (None for a folder)."""
    from pipeline.backbones.weights import folder_weights_sha256

    path = Path(model).expanduser()
    if path.is_dir():
        return folder_weights_sha256(path), None
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(model, "config.json")
    if not isinstance(config, str):
        raise AsrError(f"--model {model}: loaded, but its files are not in the Hugging Face "
                       "cache, so its weights cannot be fingerprinted")
    snapshot = Path(config).parent
    return folder_weights_sha256(snapshot), snapshot.name


class SphinxRecognizer:
    """CMU PocketSphinx with the US-English model its wheel ships (no download)."""

    def __init__(self, settings: AsrSettings) -> None:
        pocketsphinx = _import_pocketsphinx()
        from importlib.metadata import version

        self.decoder = pocketsphinx.Decoder(samprate=SAMPLE_RATE)
        model_dir = Path(pocketsphinx.get_model_path())
        self.provenance = {"engine": "pocketsphinx", "model": POCKETSPHINX,
                           "architecture": "pocketsphinx-en-us",
                           "weights_sha256": _tree_sha256(model_dir),
                           "revision": version("pocketsphinx"),
                           "language": settings.language}

    def transcribe(self, audio: list[np.ndarray]) -> list[str]:
        return [self._one(a) for a in audio]

    def _one(self, samples: np.ndarray) -> str:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return " ".join(hyp.hypstr.split()) if hyp is not None else ""


def _import_pocketsphinx() -> Any:
    try:
        import pocketsphinx
    except ImportError:
        raise AsrError("--model pocketsphinx needs the pocketsphinx package (pip install "
                       "pocketsphinx==5.1.1; its wheel ships the US-English model)") from None
    return pocketsphinx


def _tree_sha256(folder: Path) -> str:
    """sha256 over a model folder's files (relative names and contents, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


__all__ = ["DEFAULT_MODEL", "POCKETSPHINX", "AsrError", "AsrSettings", "Recognizer",
           "check_model", "load_recognizer"]
