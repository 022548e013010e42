"""Modalities that follow the dataset: the default keys are those the dataset has, and a run
that would lack a modality for every clip, or extract no clip, is refused with its reason."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.datasets.modalities import (ModalityError, check_extracted, check_modalities,
                                          check_plan, follow_dataset)
from pipeline.datasets.table import build_table
from pipeline.errors import UserError
from pipeline.extract_config import load_extract_config
from pipeline.extract_config import ExtractConfig
from pipeline.failures import Failure, Reason, Stage, failures_table
from pipeline.manifest import load_manifest

runner = CliRunner()
ALL = ("frames_2d", "frames_3d", "audio", "text")


def _samples(tmp_path: Path, *, folders: bool = False,
             transcripts: tuple[str | None, ...] = ()) -> pa.Table:
    rows = []
    for k, transcript in enumerate(transcripts):
        media = tmp_path / f"clip{k}"
        if folders:
            media.mkdir()
        else:
            media.write_bytes(b"")
        rows.append({"sample_id": f"c{k}", "split": "train", "media_path": str(media),
                     "start_s": None, "end_s": None, "transcript": transcript, "label": -1})
    return build_table("videos", rows, [], multilabel=False, source=tmp_path).samples


def test_afewva_defaults_to_its_video_keys_and_drops_their_weights_with_the_rest() -> None:
    cfg = load_extract_config(weights={m: "random" for m in ALL})
    followed = follow_dataset(cfg, load_manifest("afewva"))
    assert followed.choices.modalities == ("frames_2d", "frames_3d")
    assert set(followed.choices.weights) == {"frames_2d", "frames_3d"}
    meld = load_manifest("meld")
    assert follow_dataset(cfg, meld) is cfg and meld.modalities == ALL


def test_a_modality_the_dataset_lacks_is_refused_naming_what_to_extract() -> None:
    cfg = load_extract_config(modalities=["frames_2d", "audio"])
    with pytest.raises(ModalityError, match=r"afewva has no audio \(it has frames_2d, "
                                            r"frames_3d\); extract --modalities frames_2d$"):
        check_modalities(cfg, load_manifest("afewva"))
    with pytest.raises(ModalityError, match="none of the extraction config's modalities"):
        follow_dataset(load_extract_config(modalities=["audio"]), load_manifest("afewva"))


def test_no_clip_to_extract_names_what_the_adapter_dropped(tmp_path: Path) -> None:
    dropped = failures_table([Failure("a", "train", Stage.ADAPTER, Reason.MISSING_FILE, "gone"),
                              Failure("b", "test", Stage.ADAPTER, Reason.MISSING_FILE, "gone")])
    with pytest.raises(ModalityError, match="no clip to extract; the adapter dropped "
                                            "missing_file 2"):
        check_plan(load_extract_config(), load_manifest("meld"), _samples(tmp_path), dropped)


def test_audio_from_folders_of_frames_only_is_refused(tmp_path: Path) -> None:
    cfg = load_extract_config(modalities=["frames_2d", "audio"])
    samples = _samples(tmp_path, folders=True, transcripts=(None, None))
    with pytest.raises(ModalityError, match="every clip is a folder of frames.*"
                                            "--modalities frames_2d$"):
        check_plan(cfg, load_manifest("meld"), samples, failures_table([]))
    check_plan(load_extract_config(modalities=["frames_2d"]), load_manifest("meld"), samples,
               failures_table([]))


def test_text_when_no_clip_has_a_transcript_is_refused(tmp_path: Path) -> None:
    cfg = load_extract_config(modalities=["audio", "text"])
    (tmp_path / "a").mkdir()
    none = _samples(tmp_path / "a", transcripts=(None, " ", ""))
    with pytest.raises(ModalityError, match=r"none of the 3 clips has a transcript.*"
                                            r"cli transcribe.*--modalities audio$"):
        check_plan(cfg, load_manifest("meld"), none, failures_table([]))
    (tmp_path / "b").mkdir()
    check_plan(cfg, load_manifest("meld"), _samples(tmp_path / "b", transcripts=(None, "hi")),
               failures_table([]))


def test_a_store_where_every_clip_failed_is_not_complete() -> None:
    failed = failures_table([Failure(f"c{k}", "train", Stage.DECODE, Reason.NO_AUDIO_STREAM,
                                     "no audio stream") for k in range(3)])
    with pytest.raises(ModalityError, match=r"0 clips extracted, the store is not complete: "
                                            r"no_audio_stream 3; the clips have no sound"):
        check_extracted(0, [failures_table([]), failed])
    check_extracted(1, [failed])


def test_cli_extract_refuses_audio_from_afewva_before_writing_anything(tmp_path: Path) -> None:
    clip = tmp_path / "raw" / "001"
    clip.mkdir(parents=True)
    (clip / "00000.png").write_bytes(b"")  # the adapter does not decode
    (clip / "001.json").write_text('{"actor": "a", "frames": {"00000": {"valence": 1, '
                                   '"arousal": 0}}}')
    out = tmp_path / "store"
    result = runner.invoke(app, ["extract", "--dataset", "afewva", "--root", str(clip.parent),
                                 "--out", str(out), "--modalities", "frames_2d,audio",
                                 "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "afewva has no audio" in " ".join(result.output.split())
    assert not out.exists() or not any(out.iterdir()), "nothing written, the lock released"


class _Planned(UserError):
    """Stops the command where extraction would start."""


@pytest.mark.parametrize(("dataset", "extra", "expected"), [
    ("afewva", [], ("frames_2d", "frames_3d")),
    ("videos", [], ("frames_2d", "frames_3d", "audio")),
    ("videos", ["--transcripts", "SIDECAR"], ALL),
    ("videos", ["--modalities", "audio"], ("audio",)),
])
def test_cli_extract_defaults_to_the_modalities_the_dataset_has(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str, extra: list[str],
        expected: tuple[str, ...]) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    sidecar = tmp_path / "asr.csv"
    sidecar.write_text("sample_id,transcript\na,hello\n", encoding="utf-8")
    planned = []

    def run_extract(*args: object, cfg: ExtractConfig, **kwargs: object) -> None:
        planned.append(cfg)
        raise _Planned("planned")

    monkeypatch.setattr("pipeline.run.run_extract", run_extract)
    options = [str(sidecar) if o == "SIDECAR" else o for o in extra]
    result = runner.invoke(app, ["extract", "--dataset", dataset, "--root", str(tmp_path),
                                 "--out", str(tmp_path / "s"), "--weights", "random",
                                 *options])
    assert "planned" in result.output, result.output
    assert planned[0].choices.modalities == expected
    assert set(planned[0].choices.weights) == set(expected)
