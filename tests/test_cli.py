"""The command line, called as a user would (Typer's CliRunner) and as `python -m cli`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from cli import app
from pipeline.datasets import scan

runner = CliRunner()
MELD_LABELS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("datasets", "sample-data", "scan", "extract", "store", "pretrain", "eval",
                    "study", "predict", "runs"):
        assert command in result.output


def test_python_dash_m_cli_works() -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "cli", "datasets"], cwd=root,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "meld" in done.stdout and "voxceleb2" in done.stdout


def test_datasets_lists_all_four() -> None:
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    for name in ("meld", "caer", "mosei", "voxceleb2", "neutral", "multi-label"):
        assert name in result.output


def test_scan_prints_counts_and_failures_and_writes_the_table(meld_sample: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "samples.parquet"
    result = runner.invoke(app, ["scan", "--dataset", "meld", "--root", str(meld_sample),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "known_bad" in result.output and "train" in result.output
    table = pq.read_table(out)
    assert table.num_rows == 10 + 1  # the truncated dia120_utt0 is only found out when decoded
    assert pq.read_table(tmp_path / "samples.failures.parquet").num_rows >= 2


def test_scan_of_a_missing_root_is_one_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", "--dataset", "meld", "--root", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope" in result.output and "not found" in result.output
    assert "Traceback" not in result.output


def test_unknown_dataset_lists_the_valid_ones(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", "--dataset", "affectnet", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "affectnet" in result.output and "meld" in result.output


def test_sample_data_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["sample-data", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_extract_rejects_bad_options_before_any_work(meld_sample: Path, tmp_path: Path) -> None:
    base = ["extract", "--dataset", "meld", "--root", str(meld_sample), "--out",
            str(tmp_path / "s")]
    result = runner.invoke(app, [*base, "--weights", "speech=random"])
    assert result.exit_code == 2 and "unknown modality 'speech'" in result.output
    result = runner.invoke(app, [*base, "--modalities", "frames_2d,smell"])
    assert result.exit_code == 2 and "smell" in result.output
    result = runner.invoke(app, [*base, "--detect-fps", "0"])
    assert result.exit_code == 2 and "detect_fps must be > 0" in result.output
    result = runner.invoke(app, [*base, "--device", "tpu"])
    assert result.exit_code == 2 and "tpu" in result.output
    assert not (tmp_path / "s").exists()


def test_pretrain_eval_predict_on_the_extracted_sample(meld_sample: Path, meld_store: Path,
                                                       tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["pretrain", "--store", str(meld_store), "--out", str(run),
                                 "--objective", "conclugen", "--preset", "cpu", "--epochs", "3",
                                 "--device", "cpu", "--set", "clustering.start_epoch=1"])
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yaml").is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert any('"clustering"' in line for line in lines), "clustering loss never became active"
    again = runner.invoke(app, ["pretrain", "--store", str(meld_store), "--out", str(run),
                                "--preset", "cpu", "--device", "cpu"])
    assert again.exit_code == 2 and "resume" in again.output

    # the chain a user runs next: linear probe, then a new clip through everything
    evaluated = runner.invoke(app, ["eval", "--store", str(meld_store), "--run", str(run),
                                    "--protocol", "linear", "--preset", "cpu", "--set",
                                    "epochs=3", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "f1_weighted" in evaluated.output and "test" in evaluated.output
    assert (run / "eval" / "linear" / "metrics.json").is_file()
    row = scan("meld", meld_sample).samples.to_pylist()[0]
    predicted = runner.invoke(app, ["predict", row["media_path"], "--run", str(run),
                                    "--transcript", row["transcript"], "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    # the class printed as predicted is the most probable one in the printed table
    probs = {}
    for line in predicted.output.splitlines():
        cells = [c.strip() for c in line.replace("│", "|").split("|") if c.strip()]
        if len(cells) == 2 and cells[0] in MELD_LABELS:
            probs[cells[0]] = float(cells[1])
    assert set(probs) == set(MELD_LABELS), predicted.output
    said = predicted.output.split("predicted:")[1].split()[0]
    assert said == max(probs, key=probs.get)


def test_pretrain_unknown_objective_lists_the_valid_ones(meld_store: Path,
                                                          tmp_path: Path) -> None:
    result = runner.invoke(app, ["pretrain", "--store", str(meld_store), "--out",
                                 str(tmp_path / "r"), "--objective", "simclr", "--preset", "cpu"])
    assert result.exit_code == 2 and "conclugen" in result.output


def _toy_store(path: Path, splits: list[str], start: int = 0) -> Path:
    import numpy as np

    from pipeline.store import write_arrays

    n = len(splits)
    rng = np.random.default_rng(start)
    write_arrays(path, dataset="toy", sample_ids=[f"c{start + i}" for i in range(n)],
                 splits=splits, features={"audio": rng.standard_normal((n, 1, 8), np.float32)},
                 labels=np.arange(n) % 2, label_names=["a", "b"], shard_size=4)
    return path


def test_store_info_verify_diff_merge(tmp_path: Path) -> None:
    a = _toy_store(tmp_path / "a", ["train"] * 6)
    b = _toy_store(tmp_path / "b", ["test"] * 3, start=100)
    info = runner.invoke(app, ["store", "info", str(a)])
    assert info.exit_code == 0 and "toy" in info.output and "audio" in info.output
    assert runner.invoke(app, ["store", "verify", str(a)]).exit_code == 0
    diff = runner.invoke(app, ["store", "diff", str(a), str(b)])
    assert diff.exit_code == 0 and "comparable" in diff.output
    merged = runner.invoke(app, ["store", "merge", str(a), str(b), "--out", str(tmp_path / "c")])
    assert merged.exit_code == 0, merged.output
    assert runner.invoke(app, ["store", "verify", str(tmp_path / "c")]).exit_code == 0


def test_store_verify_exits_1_on_a_flipped_byte(tmp_path: Path) -> None:
    store = _toy_store(tmp_path / "a", ["train"] * 6)
    shard = store / "shards" / "shard-00000.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = runner.invoke(app, ["store", "verify", str(store)])
    assert result.exit_code == 1
    assert "shard-00000.h5" in result.output and "checksum" in result.output


def test_store_info_of_a_missing_store_is_one_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["store", "info", str(tmp_path / "none")])
    assert result.exit_code == 2 and "store.json" in result.output


def test_user_errors_exit_2_and_bugs_surface_as_tracebacks(monkeypatch, tmp_path: Path) -> None:
    import pipeline.store.ops

    missing = runner.invoke(app, ["store", "info", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no store.json" in missing.output
    assert missing.exception is None or isinstance(missing.exception, SystemExit)

    def bug(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a programming error")

    monkeypatch.setattr(pipeline.store.ops, "store_info", bug)
    crashed = runner.invoke(app, ["store", "info", str(tmp_path / "none")])
    assert crashed.exit_code == 1 and isinstance(crashed.exception, ZeroDivisionError)


def test_cuda_without_a_gpu_fails_at_once(meld_store: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        return
    result = runner.invoke(app, ["pretrain", "--store", str(meld_store), "--out",
                                 str(tmp_path / "r"), "--preset", "cpu", "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA device" in result.output


def test_the_papers_protocol_pretrain_on_voxceleb2_evaluate_on_meld(
        meld_sample: Path, meld_store: Path, tmp_path: Path) -> None:
    """Two stores extracted separately (VoxCeleb2 uncropped, MELD face-cropped) share a feature
    space for the keys the heads read; a store with another text backbone is refused."""
    import json

    vox_raw, vox = tmp_path / "vox-raw", tmp_path / "vox"
    assert runner.invoke(app, ["sample-data", str(vox_raw), "--dataset", "voxceleb2",
                               "--clips", "10"]).exit_code == 0
    extracted = runner.invoke(app, ["extract", "--dataset", "voxceleb2", "--root", str(vox_raw),
                                    "--out", str(vox), "--modalities", "audio,text", "--weights",
                                    "random", "--device", "cpu", "--workers", "1"])
    assert extracted.exit_code == 0, extracted.output
    run = tmp_path / "run"
    pretrained = runner.invoke(app, ["pretrain", "--store", str(vox), "--out", str(run),
                                     "--objective", "multi_cont", "--modalities", "audio,text",
                                     "--preset", "cpu", "--epochs", "2", "--set",
                                     "data.batch_size=4",
                                     "--device", "cpu"])
    assert pretrained.exit_code == 0, pretrained.output
    evaluated = runner.invoke(app, ["eval", "--store", str(meld_store), "--run", str(run),
                                    "--protocol", "linear", "--preset", "cpu", "--set",
                                    "epochs=3", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((run / "eval" / "linear" / "metrics.json").read_text())
    vox_id = json.loads((vox / "store.json").read_text())["store_id"]
    meld_id = json.loads((meld_store / "store.json").read_text())["store_id"]
    assert metrics["pretrained_on"]["store_id"] == vox_id != meld_id == metrics["store_id"]
    assert metrics["modalities"] == ["audio", "text"] and metrics["dataset"] == "meld"

    other = tmp_path / "meld-roberta"
    made = runner.invoke(app, ["extract", "--dataset", "meld", "--root", str(meld_sample),
                               "--out", str(other), "--modalities", "audio,text",
                               "--backbone", "text=emotion-distilroberta", "--weights", "random",
                               "--limit", "6", "--device", "cpu", "--workers", "1"])
    assert made.exit_code == 0, made.output
    refused = runner.invoke(app, ["eval", "--store", str(other), "--run", str(run),
                                  "--protocol", "linear", "--preset", "cpu", "--device", "cpu"])
    assert refused.exit_code == 2
    said = " ".join(refused.output.split())
    assert "not in the feature space" in said
    assert "text: backbone: distilbert-sst2 -> emotion-distilroberta" in said
    assert "audio:" not in said.split("fields per store key:")[1]


def test_set_reads_numbers_in_exponent_notation() -> None:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; the README's own example must work."""
    from pipeline.commands.options import parse_sets

    assert parse_sets(["optim.lr=1e-4", "a=2", "b=true", "c=[1, 2]", "d=name", "e=.5E3"]) == {
        "optim.lr": 1e-4, "a": 2, "b": True, "c": [1, 2], "d": "name", "e": 500.0}
