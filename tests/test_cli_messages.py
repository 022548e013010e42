"""Messages the command-line user sees name the flag to change (``--run``, ``--seeds``), with
the Python parameter beside it for callers of the library."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


@pytest.mark.parametrize(("args", "said"), [
    (["eval", "--store", "S", "--protocol", "linear"], "pass --run (run=RUN)"),
    (["eval", "--store", "S", "--run", "R", "--seeds", "0"], "--seeds 0 (seeds=0): must be"),
    (["eval", "--store", "S", "--run", "R", "--fusion", "sum"], "--fusion sum (fusion='sum')"),
    (["study", "--store", "S", "--out", "O", "--seeds", "0"], "--seeds 0 (seeds=0): must be"),
    (["study", "--store", "S", "--out", "O", "--systems", "clip"],
     "--systems (systems=['clip'])"),
])
def test_refusals_name_the_flag(tmp_path: Path, args: list[str], said: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output
    assert not (tmp_path / "O").exists()


def test_predict_without_a_classifier_or_run_names_both_flags(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    result = runner.invoke(app, ["predict", str(video)])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "--classifier" in said and "--run" in said, said


def test_supervised_without_run_or_out_names_out(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.store import write_arrays

    n = 24
    store = tmp_path / "store"
    write_arrays(store, dataset="toy", sample_ids=[f"c{i}" for i in range(n)],
                 splits=["train"] * 16 + ["val"] * 8, labels=np.arange(n) % 2,
                 label_names=["a", "b"], feature_space="toy-space", shard_size=8,
                 features={"audio": np.ones((n, 1, 4), np.float32)})
    result = runner.invoke(app, ["eval", "--store", str(store), "--protocol", "supervised",
                                 "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "without --run needs --out (out=FOLDER)" in " ".join(result.output.split())
