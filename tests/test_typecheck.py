"""mypy passes on the packages and the command line (configuration: the [mypy] section of
setup.cfg)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # about a minute the first time (torch and transformers are analysed too)
def test_mypy_passes_on_pipeline_heads_and_the_cli(request: pytest.FixtureRequest,
                                           tmp_path: Path) -> None:
    cache = getattr(request.config, "cache", None)
    cache_dir = cache.mkdir("mypy") if cache is not None else tmp_path / "mypy"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"),
         "--cache-dir", str(cache_dir), "pipeline", "heads", "manifests", "cli.py"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"mypy found problems:\n{result.stdout}{result.stderr}", pytrace=False)
