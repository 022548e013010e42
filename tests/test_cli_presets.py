"""``--preset`` on the command line: refused in one line when malformed (exit 2, before any
work), and recorded in the store an extraction writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app


@pytest.mark.parametrize("command, preset, message", [
    (["pretrain", "--store", "S", "--out", "R"], "paper,reference",
     "--preset 'paper,reference': 2 fidelity names (paper, reference); give at most one"),
    (["eval", "--store", "S", "--protocol", "supervised", "--out", "R"], "gpu",
     "--preset 'gpu': unknown preset name(s) gpu"),
    (["extract", "--dataset", "meld", "--root", "RAW", "--out", "S"], "reference,cpu",
     "--preset 'reference,cpu': 'cpu' sizes the heads (pretrain, eval, study); extraction "
     "takes paper or reference"),
])
def test_a_malformed_preset_is_one_line_and_exit_2(tmp_path: Path, command: list[str],
                                                  preset: str, message: str) -> None:
    args = [str(tmp_path / a) if a in ("S", "R", "RAW") else a for a in command]
    (tmp_path / "RAW").mkdir()
    result = CliRunner().invoke(app, [*args, "--preset", preset])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "S").exists()  # no store begun
    assert not (tmp_path / "R" / "config.yaml").exists()  # no run begun


@pytest.mark.slow
def test_an_extraction_records_its_preset_and_applies_it(meld_sample: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "store"
    result = CliRunner().invoke(app, ["extract", "--dataset", "meld", "--root", str(meld_sample),
                                      "--out", str(out), "--preset", "reference", "--views", "2",
                                      "--modalities", "audio", "--weights", "random",
                                      "--limit", "2", "--workers", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "store.json").read_text())
    assert manifest["choices"]["preset"] == "reference"
    # the reference's probability, in the feature settings the store's identity embeds
    assert manifest["identity"]["extraction"]["augment"]["jitter_p"] == 0.2
    assert manifest["choices"]["backbones"]["text"] == "emotion-distilroberta"
    assert manifest["identity"]["extraction"]["faces"]["crop_mode"] == "union"


@pytest.mark.slow
def test_a_voxceleb2_extraction_of_a_list_holds_its_clips_and_records_it(tmp_path: Path) -> None:
    from pipeline.datasets import dataset_source, scan

    raw, out = tmp_path / "vox-raw", tmp_path / "vox"
    runner = CliRunner()
    assert runner.invoke(app, ["sample-data", str(raw), "--dataset", "voxceleb2",
                               "--clips", "4"]).exit_code == 0
    ids = scan("voxceleb2", raw).samples.column("sample_id").to_pylist()
    speaker = ids[0].split("/")[0]
    listed = tmp_path / "subset.txt"
    listed.write_text(f"# two clips and a lost one\n{ids[2]}\n{ids[0]}\n{speaker}/lost/00001\n")
    result = runner.invoke(app, ["extract", "--dataset", "voxceleb2", "--root", str(raw),
                                 "--annotations", str(listed), "--out", str(out),
                                 "--preset", "reference", "--modalities", "audio",
                                 "--weights", "random", "--workers", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "store.json").read_text())
    assert manifest["counts"]["samples"] == 2 and manifest["counts"]["failures"] == 1
    subset = dataset_source("voxceleb2", raw, annotations=listed)[1].sha256
    assert manifest["identity"]["dataset"]["manifest_sha256"] == subset
    assert subset != dataset_source("voxceleb2", raw)[1].sha256
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(out / "index.parquet").column("sample_id").to_pylist()) == \
        sorted([ids[0], ids[2]])
    assert pq.read_table(out / "failures.parquet").column("reason").to_pylist() == ["missing_file"]
