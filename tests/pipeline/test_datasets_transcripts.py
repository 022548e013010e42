"""Transcript sidecars (read, write, validation) and the speech-recognition hook."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline.datasets.table import DatasetError
from pipeline.datasets.transcripts import (
    read_sidecar,
    read_sidecar_entries,
    sidecar_path,
    transcribe,
    write_sidecar,
)
from pipeline.manifest import load_manifest


def _csv(tmp_path: Path, text: str, name: str = "t.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ---- reading and writing ------------------------------------------------------------------


def test_round_trip_keeps_text_exactly(tmp_path: Path) -> None:
    mapping = {
        "train/Anger/0001": "Stop, \"now\" — I’m mad.",
        "val/Sad/0002": "line one\nline two",
        "test/Fear/0003": "NA",  # a type-inferring reader would make this missing
        "test/Fear/0004": "",  # heard nothing: stays empty, not unknown
        "id00012/21Uxsk56VDQ/00001": "  leading space kept ",
    }
    path = tmp_path / "transcripts.csv"
    write_sidecar(path, mapping)
    assert read_sidecar(path) == mapping
    assert list(read_sidecar(path)) == list(mapping)  # file order
    assert [p.name for p in tmp_path.iterdir()] == ["transcripts.csv"]  # no temp file left


def test_rows_are_file_lines_and_extra_columns_are_ignored(tmp_path: Path) -> None:
    path = _csv(tmp_path, "model,transcript,sample_id\nw,hello,a\n\nw,bye,b\n")
    entries = read_sidecar_entries(path)
    assert {k: (e.transcript, e.row) for k, e in entries.items()} == {
        "a": ("hello", 2), "b": ("bye", 4)}


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = _csv(tmp_path, "sample_id,transcript\r\na,hi\r\n", encoding="utf-8-sig")
    assert read_sidecar(path) == {"a": "hi"}


def test_write_rejects_empty_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty sample_id"):
        write_sidecar(tmp_path / "t.csv", {"": "x"})


@pytest.mark.parametrize(("text", "match"), [
    ("", r"t\.csv: empty file"),
    ("sample_id,text\na,b\n", r"t\.csv, row 1, column 'transcript': missing column"),
    ("id,transcript\na,b\n", r"t\.csv, row 1, column 'sample_id': missing column"),
    ("sample_id,transcript\na,b\nc,d,e\n", r"t\.csv, row 3: expected 2 fields, found 3"),
    ("sample_id,transcript\n,b\n", r"t\.csv, row 2, column 'sample_id': empty sample_id"),
    ("sample_id,transcript\na,b\nc,d\na,e\n",
     r"t\.csv, row 4, column 'sample_id': duplicate sample_id 'a' \(first at row 2\)"),
    ('sample_id,transcript\na,b\nc,"d"x\n', r"t\.csv, row 3: not valid CSV"),
])
def test_invalid_sidecars_name_file_row_and_column(tmp_path: Path, text: str, match: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(DatasetError, match=match):
        read_sidecar(path)


def test_missing_and_non_utf8_sidecars(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.csv: transcript sidecar not found"):
        read_sidecar(tmp_path / "nope.csv")
    path = _csv(tmp_path, "sample_id,transcript\na,caf\xe9\n", encoding="latin-1")
    with pytest.raises(DatasetError, match=r"t\.csv: not UTF-8"):
        read_sidecar(path)


def test_sidecar_path_resolution(tmp_path: Path) -> None:
    manifest = load_manifest("caer")  # transcripts: transcripts.csv
    assert sidecar_path(tmp_path, manifest, None) is None  # default absent: no text
    default = _csv(tmp_path, "sample_id,transcript\n", name="transcripts.csv")
    assert sidecar_path(tmp_path, manifest, None) == default
    explicit = _csv(tmp_path, "sample_id,transcript\n", name="other.csv")
    assert sidecar_path(tmp_path, manifest, explicit) == explicit
    with pytest.raises(DatasetError, match=r"gone\.csv: transcript sidecar not found"):
        sidecar_path(tmp_path, manifest, tmp_path / "gone.csv")


# ---- transcribe ---------------------------------------------------------------------------


def _write_tone(path: Path, seconds: float, *, rate: int = 48000, hz: float = 440.0) -> None:
    """A stereo AAC tone: decoding must resample to 16 kHz and down-mix to mono."""
    t = np.arange(round(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_silent_video(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


class _StubAsr:
    """Called like a transformers ASR pipeline; records what it gets, answers with the length."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, inputs: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, str]]:
        self.calls.append({"inputs": inputs, **kwargs})
        return [{"text": f" {len(item['raw'])} samples "} for item in inputs]


def test_transcribe_decodes_16k_mono_in_batches(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    durations = {"a": 1.0, "b": 0.5, "c": 2.0, "d": 1.5}
    _write_silent_video(tmp_path / "mute.mp4")
    paths: dict[str, Path] = {}
    for key, seconds in durations.items():
        paths[key] = tmp_path / f"{key}.m4a"
        _write_tone(paths[key], seconds)
        if key == "a":
            paths["mute"] = tmp_path / "mute.mp4"  # no audio stream: skipped
            paths["gone"] = tmp_path / "gone.m4a"  # missing: skipped
    stub = _StubAsr()
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.transcripts"):
        out = transcribe(paths, batch_size=2, pipe=stub)
    assert list(out) == ["a", "b", "c", "d"]
    for key, seconds in durations.items():
        samples = int(out[key].split()[0])  # stripped text: "<n> samples"
        assert abs(samples - seconds * 16000) <= 0.05 * 16000
    # skipped files do not leave holes: every batch is full
    assert [len(call["inputs"]) for call in stub.calls] == [2, 2]
    first = stub.calls[0]
    assert first["batch_size"] == 2
    assert first["generate_kwargs"] == {"language": "english", "task": "transcribe"}
    for item in first["inputs"]:
        assert item["sampling_rate"] == 16000
        assert item["raw"].dtype == np.float32 and item["raw"].ndim == 1
        assert 0.3 < np.abs(item["raw"]).max() <= 1.0  # the tone, down-mixed, not silence
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "mute.mp4" in warned and "no audio stream" in warned and "gone.m4a" in warned


def test_transcribe_keys_sequence_by_path_and_checks_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "a.m4a"
    _write_tone(path, 0.5)
    out = transcribe([path], language=None, pipe=_StubAsr())
    assert list(out) == [str(path)]
    with pytest.raises(ValueError, match="batch_size"):
        transcribe([path], batch_size=0, pipe=_StubAsr())


def _tiny_whisper(folder: Path) -> Path:
    """A randomly initialised two-layer Whisper with a byte-level vocabulary, built offline."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: i for i, char in enumerate(bytes_to_unicode().values())}
    for token in ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>",
                  "<|translate|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                  "<|notimestamps|>"):
        vocab[token] = len(vocab)
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                 unk_token=end, bos_token=end, eos_token=end, pad_token=end)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_target_positions=32, pad_token_id=vocab[end],
        bos_token_id=vocab[end], eos_token_id=vocab[end],
        decoder_start_token_id=vocab["<|startoftranscript|>"])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation._from_model_config = False  # keep the fields below when loading
    generation.lang_to_id = {"<|en|>": vocab["<|en|>"]}
    generation.task_to_id = {"transcribe": vocab["<|transcribe|>"],
                             "translate": vocab["<|translate|>"]}
    generation.no_timestamps_token_id = vocab["<|notimestamps|>"]
    generation.is_multilingual = True
    generation.begin_suppress_tokens = None
    generation.max_length = 12
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow  # importing transformers' Whisper and pipeline code takes seconds
def test_transcribe_runs_a_real_whisper_pipeline(tmp_path: Path) -> None:
    model = _tiny_whisper(tmp_path / "whisper")
    paths = []
    for i, seconds in enumerate((0.6, 1.2, 0.9)):
        paths.append(tmp_path / f"clip{i}.m4a")
        _write_tone(paths[-1], seconds, hz=300.0 + 200 * i)
    out = transcribe({f"id{i}": p for i, p in enumerate(paths)}, model=str(model), batch_size=2)
    assert list(out) == ["id0", "id1", "id2"]
    assert all(isinstance(text, str) and text == text.strip() for text in out.values())
