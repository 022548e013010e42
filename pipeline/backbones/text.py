"""Transcript features: a Hugging Face encoder, mean-pooled (``text``, 768-d for the defaults).

Default: ``distilbert-base-uncased-finetuned-sst-2-english``, the sentiment DistilBERT the
paper names (``distilbert-sst2``), fetched at a pinned revision into the weights folder
(:mod:`pipeline.backbones.catalogue`); ``emotion-distilroberta`` is the encoder the paper's code
actually used. Any Hugging Face id or ``save_pretrained`` folder works as weights, and as a
backbone with the ``hf:`` / ``dir:`` prefix.

A transcript is tokenised with the model's own tokenizer and truncated to ``max_tokens`` (128,
special tokens included; MELD utterances average well under 30 tokens, so truncation is rare
and bounds the cost of the few long ones). The vector is the mean of the last hidden state
over the real tokens (attention mask: ``[CLS]``/``<s>`` and ``[SEP]``/``</s>`` included,
padding excluded), so batching does not change it. An empty or whitespace-only transcript is
an ``empty_transcript`` clip error, never a vector of padding.

``weights="random"`` needs no download: a randomly initialised DistilBERT (``transformers``'
own initialisation, seeded: :data:`~pipeline.backbones.random_init.TRANSFORMER`) with a
character-piece tokenizer built here (special tokens, characters and their ``##``
continuations, a few hundred frequent English words), recorded as tokenizer
``random-charpiece``.

A local folder loads like a hub id, e.g. a sentence-transformers model such as
``all-MiniLM-L6-v2``, a plain BERT whose sentence vector is this same mean pooling, there
followed by an L2 normalisation that the store leaves to its readers (cosines are equal):
``--backbone text=hf:sentence-transformers/all-MiniLM-L6-v2 --weights text=FOLDER`` (or
``--backbone text=dir:FOLDER``), 384-d.
Provenance records the sha256 of the folder's weight file.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.backbones.catalogue import DISTILBERT_SST2 as DISTILBERT_SST2_FILES
from pipeline.backbones.encoder import (
    compute_dtype, finite_rows, freeze, inference, resolve_device, resolved)
from pipeline.backbones.random_init import SEED, TRANSFORMER, init_fields, state_sha256
from pipeline.backbones.weights import (
    WeightsError, WeightsSource, folder_weights_sha256, in_background, resolve_weights,
    seeded_init, warn_random)
from pipeline.failures import ClipError, Reason, Stage

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

RANDOM_TOKENIZER = "random-charpiece"
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = """the be to of and a in that have i it for not on with he as you do at this but his
by from they we say her she or an will my one all would there their what so up out if about who
get which go me when make can like time no just him know take people into year your good some
could them see other than then now look only come its over think also back after use two how
our work first well way even new want because any these give day most us is are was were been
has had did said yes yeah oh okay ok hey hi hello please thanks thank sorry right really very
much more here where why tell let need feel love hate happy sad angry mad fine great nice bad
sure maybe never always nothing something everything someone anyone thing things guy guys man
woman girl boy friend friends mom dad god wait stop going gonna wanna got talk call ask told
mean little big old last long next still down off again too own same few those each every""".split()


@dataclass(frozen=True)
class TextSpec:
    """A Hugging Face text encoder with its tokenisation and pooling settings.

    Attributes:
        name: registry name (or the Hugging Face id it was made from).
        default_weights: Hugging Face id (or folder) loaded when no weights are given.
        revision: the pinned revision of the default weights' published files, or ``None``.
        key: store key.
        dim: hidden size of the default model (the loaded model's config decides).
        max_tokens: truncation length in tokens, special tokens included.
        batch_size: transcripts per backbone call.
    """

    name: str
    default_weights: str | None
    revision: str | None = None
    key: str = "text"
    dim: int = 768
    max_tokens: int = 128
    batch_size: int = 64

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing parameters recorded in provenance (tokenizer added at build)."""
        return {"input": "str transcript", "max_tokens": self.max_tokens,
                "truncation": "first max_tokens tokens, special tokens included",
                "pooling": "mean of the last hidden state over attention-mask tokens"}


DISTILBERT_SST2 = TextSpec("distilbert-sst2", DISTILBERT_SST2_FILES.identifier,
                           revision=DISTILBERT_SST2_FILES.revision)
EMOTION_DISTILROBERTA = TextSpec("emotion-distilroberta",
                                 "j-hartmann/emotion-english-distilroberta-base")


def hub_spec(model_id: str) -> TextSpec:
    """A spec for any Hugging Face id or local ``save_pretrained`` folder."""
    return TextSpec(name=model_id, default_weights=model_id)


class TextEncoder:
    """Transcript ``str`` -> ``float32 [dim]``, batched across clips."""

    def __init__(self, *, spec: TextSpec, tokenizer: Any, model: PreTrainedModel,
                 device: torch.device, provenance: dict[str, Any]) -> None:
        self.spec, self.key = spec, spec.key
        self.dim = int(model.config.hidden_size)
        self.tokenizer, self.model, self.device = tokenizer, model, device
        self._provenance = {**provenance, "dim": self.dim}

    def validate(self, x: Any) -> None:
        """Raise :class:`ClipError` (``empty_transcript``) for a missing transcript (an empty
        string is encoded: the extraction's empty_text policy decides before this)."""
        _check_text(x, self.spec.name)

    def encode(self, x: str) -> np.ndarray:
        """One transcript -> ``float32 [dim]``."""
        return self.encode_batch([x])[0]

    def encode_batch(self, xs: Sequence[str]) -> np.ndarray:
        """Transcripts -> ``float32 [len(xs), dim]``; chunks of similar length, padded."""
        texts = [_check_text(x, f"{self.spec.name}: clip {i} of the batch")
                 for i, x in enumerate(xs)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        with inference(self.device):
            for start in range(0, len(order), self.spec.batch_size):
                rows = order[start:start + self.spec.batch_size]
                out[rows] = self._embed([texts[i] for i in rows])
        return finite_rows(out, self.spec.name)

    def provenance(self) -> dict[str, Any]:
        """JSON-able description of backbone, weights, tokenizer and pooling."""
        self._provenance = resolved(self._provenance)
        return dict(self._provenance)

    def _embed(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True,
                             max_length=self.spec.max_tokens, return_tensors="pt")
        mask = enc["attention_mask"]
        full = int((mask.sum(1) == self.spec.max_tokens).sum())
        if full:
            log.debug("%s: %d transcripts reach max_tokens=%d (truncated or exactly full)",
                      self.spec.name, full, self.spec.max_tokens)
        hidden = self.model(**{k: v.to(self.device) for k, v in enc.items()}).last_hidden_state
        hidden = hidden.float()  # pool in float32, also under bf16 autocast
        weights = mask.to(self.device, hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return pooled.float().cpu().numpy()


def _check_text(x: Any, what: str) -> str:
    # An empty string is encoded ([CLS] [SEP] only): the extraction's empty_text policy decides
    # before this whether such a clip is kept, fails, or gets a zero vector.
    if x is None:
        raise ClipError(Stage.BACKBONE, Reason.EMPTY_TRANSCRIPT,
                        f"{what}: the clip has no transcript")
    if not isinstance(x, str):
        raise ValueError(f"{what}: expected a transcript str, got {type(x).__name__}")
    return x


def charpiece_vocab() -> list[str]:
    """The offline vocabulary: specials, characters, ``##`` continuations, frequent words."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = [w for w in dict.fromkeys(_WORDS) if len(w) > 1]
    return _SPECIAL + chars + [f"##{c}" for c in chars] + words


def random_model() -> tuple[Any, PreTrainedModel]:
    """A DistilBERT-base-sized model with random weights and the char-piece tokenizer."""
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    vocab = charpiece_vocab()
    tokenizer = DistilBertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)},
                                        do_lower_case=True)
    with seeded_init(SEED):
        model = DistilBertModel(DistilBertConfig(vocab_size=len(vocab)))
    return tokenizer, model


def _pretrained(source: WeightsSource,
                ) -> tuple[Any, PreTrainedModel, Future[str], str | None]:
    """Tokenizer, model, weights sha256 (being computed) and hub revision for a folder or id."""
    from transformers import AutoModel, AutoTokenizer

    # A folder is hashed while it loads (the hash reads the files into the page cache).
    digest = (in_background(folder_weights_sha256, Path(source.location))
              if source.kind == "folder" else None)
    tokenizer = AutoTokenizer.from_pretrained(source.location)
    # float32 whatever the checkpoint's dtype (transformers 5 loads "auto" by default); seeded
    # so that layers the checkpoint lacks (a pooler the mean pooling never uses) are made
    # without touching the caller's generator.
    with seeded_init(SEED):
        model = AutoModel.from_pretrained(source.location, dtype=torch.float32)
    if digest is not None:
        return tokenizer, model, digest, None
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(source.location, "config.json")
    if not isinstance(config, str):
        raise WeightsError(f"{source.location}: loaded, but its files are not in the "
                           "Hugging Face cache, so the weights cannot be fingerprinted")
    snapshot = Path(config).parent
    return tokenizer, model, in_background(folder_weights_sha256, snapshot), snapshot.name


def build(spec: TextSpec, weights: str | WeightsSource | None = None,
          device: str = "cpu") -> TextEncoder:
    """Build the frozen transcript encoder.

    Args:
        spec: :data:`DISTILBERT_SST2`, :data:`EMOTION_DISTILROBERTA` or :func:`hub_spec`.
        weights: ``None`` (the spec's model), a Hugging Face id, a ``save_pretrained``
            folder, or ``"random"`` (offline random DistilBERT + char-piece tokenizer).
        device: ``"cpu"`` or ``"cuda[:i]"``.

    Returns:
        An encoder mapping a transcript ``str`` to ``float32 [hidden_size]``.
    """
    dev = resolve_device(device)
    source = resolve_weights(weights, backbone=spec.name, key=spec.key,
                             default=spec.default_weights, allow_folder=True, allow_hub=True)
    if source.kind in ("file", "url"):
        raise WeightsError(f"weights '{weights}' for backbone '{spec.name}': text encoders "
                           "load a Hugging Face id or a save_pretrained folder, not a file/URL")
    revision: str | None = None
    sha: Future[str]
    init: dict[str, Any] = {}
    if source.kind == "random":
        warn_random(spec.name)
        tokenizer, model = random_model()
        sha, tokenizer_name = in_background(state_sha256, model.state_dict()), RANDOM_TOKENIZER
        init = init_fields(TRANSFORMER)
    else:
        tokenizer, model, sha, revision = _pretrained(source)
        revision = revision or source.revision  # a fetched folder knows its pinned revision
        tokenizer_name = source.identifier
    provenance = {"backbone": spec.name, "architecture": model.config.model_type,
                  "weights": source.identifier, "weights_sha256": sha, **init,
                  "revision": revision,
                  "dtype": "float32", "compute_dtype": compute_dtype(dev),
                  "tokenizer": tokenizer_name,
                  "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
                  **spec.preprocessing()}
    return TextEncoder(spec=spec, tokenizer=tokenizer, model=freeze(model, dev), device=dev,
                       provenance=provenance)
