"""What a new user meets first: ``--version``, the ``conclugen`` command beside ``cli``, and a
missing optional library named with its install command before any work starts."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.dependencies import MissingDependency, check_extraction_dependencies

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_version_names_the_package_torch_and_the_commit() -> None:
    import torch

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert re.fullmatch(r"conclugen \d+\.\d+\.\S+, torch \S+(, git [0-9a-f]{12})?", line), line
    assert f"torch {torch.__version__.split('+')[0]}" in line
    if (ROOT / ".git").exists():  # a checkout (a file in a git worktree)
        assert ", git " in line


def test_conclugen_and_cli_are_the_same_console_script() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = dict(line.replace(" ", "").split("=") for line in
                   cfg["options.entry_points"]["console_scripts"].strip().splitlines())
    assert scripts == {"cli": "cli:main", "conclugen": "cli:main"}


def _extract_without(module: str, raw: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``cli extract`` in a fresh process in which importing ``module`` fails."""
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv[0] = 'conclugen'; "
            "from cli import main; main()")
    return subprocess.run(
        [sys.executable, "-c", code, "extract", "--dataset", "meld", "--root", str(raw),
         "--out", str(out), "--weights", "random", "--device", "cpu", "--workers", "1"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.parametrize(("module", "install"), [
    ("facenet_pytorch", "pip install --no-deps facenet-pytorch==2.6.0"),
    ("av", "pip install 'av>=14'")])
def test_a_missing_library_is_one_line_with_its_install_command_before_any_work(
        meld_sample: Path, tmp_path: Path, module: str, install: str) -> None:
    done = _extract_without(module, meld_sample, tmp_path / "store")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and install in lines[0], \
        done.stderr
    assert not (tmp_path / "store").exists()  # nothing written, no cluster started


def test_a_dataset_without_face_crops_needs_no_facenet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    check_extraction_dependencies(crop_faces=False)
    with pytest.raises(MissingDependency, match="facenet-pytorch"):
        check_extraction_dependencies(crop_faces=True)


@pytest.mark.slow
def test_a_small_extraction_keeps_dask_noise_off_the_console(meld_sample: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "extract", "--dataset", "meld", "--root", str(meld_sample),
         "--out", str(out), "--modalities", "audio", "--weights", "random", "--limit", "3",
         "--device", "cpu", "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("Host wildcard", "still alive", "Traceback"):
        assert noise not in done.stderr, done.stderr
    log_file = tmp_path / "store.extract.log"
    assert f"Dask's messages: {log_file}" in done.stdout
    assert "bokeh.server.util WARNING Host wildcard" in log_file.read_text()  # routed, not lost
