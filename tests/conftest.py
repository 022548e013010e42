"""Test-wide settings (offline model hubs, the GPU marker) and the shared fixtures: one
generated MELD sample dataset and one store extracted from it; an unreachable address and an
environment without S3 credentials; a race for a store's lock; tiny speech recognisers."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Nothing in the suite may reach a model hub: weights are made by the tests themselves.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Nor read or fill the user's weights folder, nor a mirror of the publishers set outside.
os.environ["CONCLUGEN_WEIGHTS_DIR"] = tempfile.mkdtemp(prefix="conclugen-test-weights-")
atexit.register(shutil.rmtree, os.environ["CONCLUGEN_WEIGHTS_DIR"], ignore_errors=True)
os.environ.pop("CONCLUGEN_WEIGHTS_MIRROR", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------ shared fixtures: one sample, one store

SAMPLE_CLIPS = 10


@pytest.fixture(scope="session")
def meld_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated MELD sample (10 usable clips plus the release's defects)."""
    from pipeline.sample_data import generate

    return generate("meld", tmp_path_factory.mktemp("meld") / "raw", clips=SAMPLE_CLIPS, seed=0)


@pytest.fixture(scope="session")
def meld_store(meld_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample extracted with random weights by two local Dask workers, 3 clips a shard."""
    from pipeline.extract_config import load_extract_config
    from pipeline.run import ClusterOptions, run_extract

    out = tmp_path_factory.mktemp("stores") / "meld"
    cfg = load_extract_config(weights={m: "random" for m in
                                       ("frames_2d", "frames_3d", "audio", "text")},
)
    run_extract("meld", meld_sample, str(out), cfg=cfg, shard_size=3, device="cpu",
                cluster=ClusterOptions(workers=2))
    return out


# ------------------------------------------------ unreachable places, races


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_s3_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                      closed_port: int) -> Iterator[None]:
    """An environment where S3 has no credentials at all (no keys, profile, container or
    instance metadata) and its endpoint is a closed port, with s3fs's cached clients cleared
    before and after."""
    s3fs = pytest.importorskip("s3fs")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


Race = Callable[[Any, int], tuple[list[Any], list[Any]]]


@pytest.fixture
def race_for_lock() -> Race:
    """``race_for_lock(loc, n)``: ``n`` threads take ``StoreLock(loc)`` at the same instant;
    returns ``(won, refused)``, the locks acquired and those refused with ``LockedError``."""
    from pipeline.store import LockedError
    from pipeline.store.lock import StoreLock

    def race(loc: Any, n: int) -> tuple[list[Any], list[Any]]:
        start, won, refused = threading.Barrier(n), [], []

        def run() -> None:
            lock = StoreLock(loc, interval=60)
            start.wait()
            try:
                lock.acquire()
                won.append(lock)
            except LockedError:
                refused.append(lock)

        threads = [threading.Thread(target=run) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return won, refused

    return race


# ------------------------------------------------ tiny speech recognisers (cli transcribe)

WORDS = "the a i am so very happy sad angry today".split()
TINY = {"vocab_size": 4 + len(WORDS), "d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
        "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
        "decoder_ffn_dim": 32, "max_source_positions": 1500, "max_target_positions": 64,
        "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
"""One layer of each kind, a 16-wide model: random weights, built in milliseconds."""


def _tokenizer() -> Any:
    """A word-level fast tokenizer from a tiny vocabulary (no sentencepiece, no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def tiny_speech2text(folder: Path) -> Path:
    """A randomly initialised one-layer Speech2Text (the reference model's architecture)."""
    import torch
    from transformers import (Speech2TextConfig, Speech2TextFeatureExtractor,
                              Speech2TextForConditionalGeneration)

    torch.manual_seed(0)
    config = Speech2TextConfig(**TINY, num_conv_layers=2, conv_channels=16,
                               input_feat_per_channel=80, input_channels=1,
                               decoder_start_token_id=2)
    Speech2TextForConditionalGeneration(config).save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    Speech2TextFeatureExtractor(feature_size=80, num_mel_bins=80).save_pretrained(folder)
    return folder


def tiny_whisper(folder: Path, *, timestamps: bool = False) -> Path:
    """A randomly initialised one-layer Whisper (English-only: no language token); with
    ``timestamps``, the 1501 timestamp tokens long-form decoding needs, after
    ``<|notimestamps|>``."""
    import torch
    from transformers import (WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    torch.manual_seed(0)
    vocab = TINY["vocab_size"] + (1 + 1501 if timestamps else 0)
    config = WhisperConfig(**{**TINY, "vocab_size": vocab}, num_mel_bins=80,
                           decoder_start_token_id=1)
    model = WhisperForConditionalGeneration(config)
    if timestamps:
        model.generation_config._from_model_config = False  # saved with the fields below
        model.generation_config.no_timestamps_token_id = TINY["vocab_size"]
        model.generation_config.max_initial_timestamp_index = 50
    model.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def asr_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of a tiny Speech2Text and a tiny Whisper, and one with timestamp tokens
    (``whisper-long``) for long-form decoding (random weights, made offline)."""
    root = tmp_path_factory.mktemp("asr")
    return {"speech2text": tiny_speech2text(root / "s2t"), "whisper": tiny_whisper(root / "wh"),
            "whisper-long": tiny_whisper(root / "wl", timestamps=True)}
