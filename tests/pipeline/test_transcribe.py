"""The transcription run: recognisers, part files and resuming, the sidecar and its provenance,
unknown transcripts refused by extraction, and the transcript source in the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from pipeline.asr import AsrError, AsrSettings, check_model, load_recognizer
from pipeline.datasets import scan
from pipeline.datasets.table import SampleTable
from pipeline.datasets.text_sources import (TranscriptsUnknownError, require_known,
                                            transcript_source)
from pipeline.datasets.transcripts import (failed_entries, provenance_path, read_provenance,
                                           read_sidecar, read_sidecar_entries, write_sidecar)
from pipeline.failures import FAILURE_SCHEMA
from pipeline.manifest import load_manifest
from pipeline.store.manifest import TranscriptSource, store_id_of
from pipeline.transcribe import (_parts_folder, run_transcribe, transcribe_clips,
                                 transcribe_shard)

@pytest.fixture(scope="module")
def vox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VoxCeleb2 sample of 4 spoken utterances (espeak-ng), its sidecar kept aside."""
    from pipeline.sample_data import generate

    root = generate("voxceleb2", tmp_path_factory.mktemp("vox") / "raw", clips=4, seed=0)
    (root / "transcripts.csv").rename(root.parent / "spoken.csv")
    return root


def _rows(root: Path) -> list[dict[str, object]]:
    table = scan("voxceleb2", root)
    return [{k: r[k] for k in ("sample_id", "media_path", "start_s", "end_s")}
            for r in table.samples.to_pylist()]


# ---- recognisers --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["speech2text", "whisper"])
def test_recognizers_transcribe_spoken_clips_and_record_no_speech(
        kind: str, asr_models: dict[str, Path], vox: Path, tmp_path: Path) -> None:
    from pipeline.backbones.weights import folder_weights_sha256

    rows = _rows(vox)[:3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a media file")
    rows.insert(1, {"sample_id": "broken", "media_path": str(broken), "start_s": None,
                    "end_s": None})
    from transformers import AutoTokenizer

    folder = asr_models[kind]
    recognizer = load_recognizer(AsrSettings(model=str(folder), max_new_tokens=6), "cpu")
    words = set(AutoTokenizer.from_pretrained(folder).get_vocab())
    results = transcribe_clips(rows, recognizer, batch_clips=2)
    assert [r.sample_id for r in results] == [r["sample_id"] for r in rows]  # input order
    broken = results[1]
    assert (broken.transcript, broken.status) == (None, "corrupt_media")  # never ""
    for result in results[:1] + results[2:]:
        assert result.status == "ok" and isinstance(result.transcript, str)
        assert set(result.transcript.split()) <= words  # decoded by the model's tokenizer
    assert recognizer.provenance["architecture"] == {"speech2text": "speech_to_text",
                                                     "whisper": "whisper"}[kind]
    assert recognizer.provenance["weights_sha256"] == folder_weights_sha256(asr_models[kind])


class _Lengths:
    """A recogniser that answers with each signal's length and records its batches."""

    provenance: dict[str, Any] = {}

    def __init__(self) -> None:
        self.batches: list[list[np.ndarray]] = []

    def transcribe(self, audio: list[np.ndarray]) -> list[str]:
        self.batches.append(audio)
        return [str(len(a)) for a in audio]


def _tone(path: Path, seconds: float, rate: int = 48000) -> Path:
    """A stereo AAC tone at 48 kHz: decoding must resample to 16 kHz and down-mix to mono."""
    import av

    t = np.arange(round(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp",
                                           layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_clips_are_decoded_16k_mono_in_batches_and_cut_to_their_interval(
        tmp_path: Path) -> None:
    rows = [{"sample_id": f"c{i}", "media_path": str(_tone(tmp_path / f"{i}.m4a", 1.0 + i)),
             "start_s": None, "end_s": None} for i in range(3)]
    rows.append({**rows[2], "sample_id": "cut", "start_s": 0.5, "end_s": 1.5})
    rows.insert(1, {**rows[0], "sample_id": "gone", "media_path": str(tmp_path / "gone.m4a")})
    stub = _Lengths()
    results = transcribe_clips(rows, stub, batch_clips=2)
    assert [(r.sample_id, r.status) for r in results] == [
        ("c0", "ok"), ("gone", "missing_file"), ("c1", "ok"), ("c2", "ok"), ("cut", "ok")]
    seconds = [int(r.transcript) / 16000 for r in results if r.transcript is not None]
    assert seconds == pytest.approx([1.0, 2.0, 3.0, 1.0], abs=0.05)
    assert [len(b) for b in stub.batches] == [1, 2, 1]  # batches of 2 rows, the missing one out
    for audio in stub.batches[0]:
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.3 < np.abs(audio).max() <= 1.0  # the tone, down-mixed, not silence


def test_the_default_sidecar_is_the_one_the_adapter_reads(tmp_path: Path) -> None:
    from pipeline.transcribe import TranscribeOptionError, default_sidecar

    assert default_sidecar(load_manifest("caer"), tmp_path, None) == tmp_path / "transcripts.csv"
    assert default_sidecar(load_manifest("meld"), tmp_path, tmp_path / "a.csv") == (
        tmp_path / "a.csv")
    with pytest.raises(TranscribeOptionError, match="--dataset mosei: its annotations carry "
                                                    "the transcripts; pass --out"):
        default_sidecar(load_manifest("mosei"), tmp_path, None)


def test_models_that_cannot_be_loaded_are_named(tmp_path: Path) -> None:
    with pytest.raises(AsrError, match="no config.json"):
        check_model(AsrSettings(model=str(tmp_path)))
    with pytest.raises(AsrError, match="facebook/none-such: not in the Hugging Face cache"):
        check_model(AsrSettings(model="facebook/none-such"))  # the suite runs hub-offline
    with pytest.raises(AsrError, match="batch-clips 0"):
        AsrSettings(batch_clips=0)


# ---- the sidecar, its status column and its provenance ------------------------------------


def test_sidecar_records_failures_and_provenance_of_exactly_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.csv"
    write_sidecar(path, {"a": "hello", "b": None, "c": ""}, failed={"b": "no_audio_stream"},
                  provenance={"model": "m", "weights_sha256": "ab"})
    assert read_sidecar(path) == {"a": "hello", "c": ""}  # b is unknown, not ""
    assert failed_entries(path) == {"b": "no_audio_stream"}
    assert read_sidecar_entries(path)["b"].transcript is None
    from pipeline.config import file_sha256

    sha = file_sha256(path)
    assert read_provenance(path, sha) == {"model": "m", "weights_sha256": "ab"}
    path.write_text(path.read_text() + "d,edited by hand,ok\n")
    assert read_provenance(path, file_sha256(path)) == {}  # no longer credited to the model
    with pytest.raises(ValueError, match="no failure reason"):
        write_sidecar(path, {"x": None})


def test_a_status_that_is_no_failure_reason_is_refused(tmp_path: Path) -> None:
    from pipeline.datasets.table import DatasetError

    path = tmp_path / "t.csv"
    path.write_text("sample_id,transcript,status\na,,lost\n")
    with pytest.raises(DatasetError, match=r"t.csv.*row 2.*status 'lost'"):
        read_sidecar(path)


def test_unknown_transcripts_are_refused_and_failed_ones_become_failures(tmp_path: Path) -> None:
    manifest = load_manifest("caer")
    samples = pa.table({"sample_id": ["a", "b", "c"], "split": ["train"] * 3,
                        "transcript": ["hi", None, None]})
    table = SampleTable("caer", samples, FAILURE_SCHEMA.empty_table())
    with pytest.raises(TranscriptsUnknownError, match=r"caer: 2 of 3 clips have no transcript "
                                                      r"\(b, c\): no transcript sidecar at .*"
                                                      r"cli transcribe --dataset caer"):
        require_known(table, manifest, tmp_path, None)
    write_sidecar(tmp_path / "transcripts.csv", {"a": "hi", "b": None},
                  failed={"b": "corrupt_media"})
    with pytest.raises(TranscriptsUnknownError, match=r"1 of 3 clips .*\(c\): .* does not "
                                                      "list them"):
        require_known(table, manifest, tmp_path, None)
    write_sidecar(tmp_path / "transcripts.csv", {"a": "hi", "b": None, "c": None},
                  failed={"b": "corrupt_media", "c": "no_audio_stream"})
    known = require_known(table, manifest, tmp_path, None)
    assert known.samples.column("sample_id").to_pylist() == ["a"]
    assert known.failures.column("reason").to_pylist() == ["corrupt_media", "no_audio_stream"]


def test_a_dataset_whose_annotations_lack_text_for_some_clips_is_refused(
        tmp_path: Path) -> None:
    samples = pa.table({"sample_id": ["x", "y"], "split": ["test"] * 2,
                        "transcript": ["", None]})  # "" is known (nobody spoke), None is not
    table = SampleTable("mosei", samples, FAILURE_SCHEMA.empty_table())
    with pytest.raises(TranscriptsUnknownError, match=r"mosei: 1 of 2 clips have no transcript "
                                                      r"\(y\) in the dataset's annotations.*"
                                                      r"--transcripts FILE.csv"):
        require_known(table, load_manifest("mosei"), tmp_path, None)


def test_transcript_source_is_dataset_level_identity(tmp_path: Path) -> None:
    assert transcript_source(tmp_path, load_manifest("meld"), None) == TranscriptSource(
        "annotations")
    caer = load_manifest("caer")
    assert transcript_source(tmp_path, caer, None) == TranscriptSource("sidecar")
    write_sidecar(tmp_path / "transcripts.csv", {"a": "x"}, provenance={"model": "m"})
    source = transcript_source(tmp_path, caer, None)
    assert (source.file, source.provenance) == ("transcripts.csv", {"model": "m"})
    from pipeline.config import file_sha256

    assert source.sha256 == file_sha256(tmp_path / "transcripts.csv")
    # a store without a recorded source keeps the store_id it had before sources existed
    from pipeline.extract_config import load_extract_config
    from pipeline.identity import feature_identity

    cfg = load_extract_config(None, modalities=["text"], weights={"text": "random"})
    plain = feature_identity(cfg, caer)
    assert store_id_of(plain) == store_id_of(_as_json(plain))
    assert store_id_of(feature_identity(cfg, caer, source)) != store_id_of(plain)


def _as_json(identity: object) -> dict[str, Any]:
    from pipeline.store.manifest import to_json

    data = to_json(identity)
    assert data["dataset"].pop("transcripts") is None  # as written before the field existed
    return dict(data)


# ---- the run: part files, resuming, the adapters read the result --------------------------


@pytest.mark.slow  # a Dask LocalCluster with one worker importing torch and transformers
def test_run_resumes_from_part_files_and_adapters_read_the_sidecar(
        asr_models: dict[str, Path], vox: Path, tmp_path: Path) -> None:
    from pipeline.backbones.weights import folder_weights_sha256
    from pipeline.cluster import ClusterOptions

    root = tmp_path / "raw"
    shutil.copytree(vox, root)
    settings = AsrSettings(model=str(asr_models["speech2text"]), max_new_tokens=4, batch_clips=2)
    rows = _rows(root)
    plan = [rows[:2], rows[2:]]
    sidecar = root / "transcripts.csv"
    # A run killed after its first shard: that shard's part file is there, marked.
    parts = _parts_folder(sidecar, "voxceleb2", settings, plan)
    part = transcribe_shard(str(parts), 0, plan[0], settings, "cpu")
    for clip in part["clips"]:
        clip["transcript"] = "from the first run"
    (parts / "shard-00000.json").write_text(json.dumps(part))
    (parts / "shard-00001.json").write_text('{"format": "conclugen-transc')  # cut short
    progress: list[tuple[int, int]] = []
    result = run_transcribe("voxceleb2", root, settings=settings, shard_size=2, device="cpu",
                            cluster=ClusterOptions(workers=1),
                            on_plan=lambda total, done: progress.append((total, done)))
    assert progress == [(4, 2)]  # the first shard was found done
    texts = read_sidecar(sidecar)
    assert [texts[str(r["sample_id"])] for r in rows[:2]] == ["from the first run"] * 2
    assert all(texts[str(r["sample_id"])] != "from the first run" for r in rows[2:])
    assert not (root / ".transcripts.csv.parts").exists()
    made = json.loads(provenance_path(sidecar).read_text())
    assert made["model"] == str(asr_models["speech2text"]) and made["language"] == "en"
    assert made["weights_sha256"] == folder_weights_sha256(asr_models["speech2text"])
    assert made["counts"]["clips"] == result.clips == 4
    assert {"transformers", "torch", "av"} <= set(made["software"])
    # the adapter reads it by default: every clip's transcript is known
    assert scan("voxceleb2", root).samples.column("transcript").null_count == 0


# ---- PocketSphinx: a real offline recogniser on the samples' speech -----------------------


@pytest.mark.slow
def test_pocketsphinx_recognises_the_sample_speech(vox: Path) -> None:
    pytest.importorskip("pocketsphinx")
    recognizer = load_recognizer(AsrSettings(model="pocketsphinx"), "cpu")
    rows = _rows(vox)
    results = transcribe_clips(rows, recognizer, batch_clips=4)
    spoken = read_sidecar(vox.parent / "spoken.csv")
    assert recognizer.provenance["engine"] == "pocketsphinx"
    assert all(r.status == "ok" for r in results)
    common = [set((r.transcript or "").split()) & set(_words(spoken[r.sample_id]))
              for r in results]
    assert sum(map(len, common)) > 0  # some of the spoken words are recognised


def _words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalpha() or c.isspace()).split()


@pytest.mark.slow  # a Dask LocalCluster with one worker
def test_a_dataset_with_its_own_text_is_transcribed_into_out(asr_models: dict[str, Path],
                                                             tmp_path: Path) -> None:
    from pipeline.cluster import ClusterOptions
    from pipeline.sample_data import generate

    raw = generate("mosei", tmp_path / "raw", clips=3, seed=0)
    out = tmp_path / "asr.csv"
    result = run_transcribe("mosei", raw, out=out, device="cpu",
                            settings=AsrSettings(model=str(asr_models["speech2text"]),
                                                 max_new_tokens=3),
                            cluster=ClusterOptions(workers=1))
    segments = scan("mosei", raw).samples
    assert result.clips == segments.num_rows and result.failed == {}
    assert list(read_sidecar(out)) == segments.column("sample_id").to_pylist()


def test_whisper_decodes_a_clip_longer_than_its_window_in_windows(
        asr_models: dict[str, Path]) -> None:
    """Whisper sees 30 s at a time: a 65 s clip goes through three windows, never cut."""
    settings = AsrSettings(model=str(asr_models["whisper-long"]), max_new_tokens=3)
    recognizer = load_recognizer(settings, "cpu")
    windows: list[int] = []
    encoder = recognizer.model.model.encoder  # type: ignore[attr-defined]
    encoder.register_forward_hook(
        lambda _m, args, kwargs, _out: windows.append(
            (args[0] if args else kwargs["input_features"]).shape[-1]), with_kwargs=True)
    rng = np.random.default_rng(0)
    texts = recognizer.transcribe([0.1 * rng.standard_normal(16000 * 65, dtype=np.float32),
                                   0.1 * rng.standard_normal(16000 * 3, dtype=np.float32)])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert len(windows) >= 3 and set(windows) == {3000}  # 30 s windows of 10 ms frames


def test_a_speech2text_tokenizer_without_sentencepiece_names_the_package(
        asr_models: dict[str, Path], tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("sentencepiece") is not None:
        pytest.skip("sentencepiece is installed")
    folder = tmp_path / "s2t"
    shutil.copytree(asr_models["speech2text"], folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    # the files of the reference model's tokenizer: a SentencePiece model and its vocabulary
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "Speech2TextTokenizer"}')
    (folder / "vocab.json").write_text('{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}')
    (folder / "sentencepiece.bpe.model").write_bytes(b"\0")
    with pytest.raises(AsrError, match="need the sentencepiece package"):
        load_recognizer(AsrSettings(model=str(folder)), "cpu")
