"""VoxCeleb2 without its transcripts, from the command line: extraction of text features stops
before any worker starts, naming the count and `cli transcribe`; after `cli transcribe` (a tiny
randomly initialised Speech2Text) it extracts, and the store records where its text came from
(the sidecar's sha256 and how it was made), shown by `store info`; another source is a
difference `store diff` lists, outside the feature space."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.config import file_sha256

runner = CliRunner()


@pytest.mark.slow  # two Dask runs of one worker (transcribe, extract; the text key only)
def test_voxceleb2_without_sidecar_is_refused_then_transcribed_and_extracted(
        tmp_path: Path, asr_models: dict[str, Path]) -> None:
    from pipeline.sample_data import generate

    raw = generate("voxceleb2", tmp_path / "raw", clips=3, seed=1)
    shipped = tmp_path / "shipped.csv"
    shutil.move(raw / "transcripts.csv", shipped)
    model = asr_models["speech2text"]
    store = tmp_path / "store"
    extract = ["extract", "--dataset", "voxceleb2", "--root", str(raw), "--out", str(store),
               "--modalities", "text", "--weights", "random", "--device", "cpu",
               "--workers", "1"]

    refused = runner.invoke(app, extract)
    assert refused.exit_code == 2, refused.output
    assert "3 of 3 clips have no transcript" in refused.output
    assert "cli transcribe --dataset voxceleb2" in refused.output
    assert not (store / "store.json").exists() and not list(store.glob("shards/*"))

    done = runner.invoke(app, ["transcribe", "--dataset", "voxceleb2", "--root", str(raw),
                               "--model", str(model), "--max-new-tokens", "4", "--device",
                               "cpu", "--workers", "1"])
    assert done.exit_code == 0, done.output
    assert "transcripts written" in done.output and "3 clips" in done.output

    extracted = runner.invoke(app, extract)
    assert extracted.exit_code == 0, extracted.output
    source = json.loads((store / "store.json").read_text())["identity"]["dataset"]["transcripts"]
    assert source["kind"] == "sidecar" and source["file"] == "transcripts.csv"
    assert source["sha256"] == file_sha256(raw / "transcripts.csv")
    assert source["provenance"]["model"] == str(model)
    assert source["provenance"]["made_by"] == "cli transcribe"
    info = runner.invoke(app, ["store", "info", str(store)])
    assert info.exit_code == 0, info.output
    assert "transcripts: sidecar transcripts.csv" in info.output
    assert "made by cli transcribe" in " ".join(info.output.split())

    # another source of text (the shipped, hand-made transcripts) is a difference that
    # store diff lists, at dataset level: the feature space stays the same
    import dataclasses

    from pipeline.store import open_store
    from pipeline.store.manifest import TranscriptSource, feature_space_of
    from pipeline.store.ops import provenance_differences

    ours = open_store(store).manifest
    hand = TranscriptSource("sidecar", "transcripts.csv", file_sha256(shipped))
    theirs = dataclasses.replace(ours, identity=dataclasses.replace(
        ours.identity, dataset=dataclasses.replace(ours.dataset, transcripts=hand)))
    paths = {d.path for d in provenance_differences(ours, theirs)}
    assert "identity.dataset.transcripts.sha256" in paths
    assert "identity.dataset.transcripts.provenance.model" in paths
    assert feature_space_of(ours.identity, ours.modalities) == feature_space_of(
        theirs.identity, theirs.modalities)
