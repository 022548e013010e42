"""benchmarks/scale.py runs end to end at a toy size (so it cannot rot), and its projection is
the arithmetic it states. Nothing here checks a timing: timings are never assertions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scale.py"
STEPS = ("scan", "extract", "resume", "write", "merge", "open", "info", "verify", "sha256",
         "diff", "read", "loader", "stream", "memory")


def _run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_every_step_runs_at_a_toy_size_and_is_saved(tmp_path: Path) -> None:
    saved = tmp_path / "scale.json"
    out = _run("--sizes", "300", "--shard-size", "50", "--workers", "1", "--in-process",
               "--save", str(saved))
    for step in STEPS:
        assert re.search(rf"^\| {step} \|", out, flags=re.MULTILINE), step
    data = json.loads(saved.read_text())
    results = data["results"]
    assert data["sizes"] == [300] and set(results) == set(STEPS)
    # the driver ran for real: every shard planned, written and collected, then resumed
    assert results["scan"]["300"]["rows"] == 300 and results["open"]["300"]["rows"] == 300
    for run in ("extract", "resume"):
        phases = results[run]["300"]
        assert {"scan", "plan", "resume check", "final write", "driver CPU"} <= set(phases)
    assert "tasks" in results["extract"]["300"] and "tasks" not in results["resume"]["300"]
    assert results["verify"]["300"]["bytes"] == results["sha256"]["300"]["bytes"] > 0
    assert results["diff"]["300"]["both"] == 150  # the merged store against one half
    assert results["read"]["300"]["rows"] == 300 - _test_rows(300)  # the train split
    assert results["stream"]["300"]["samples_per_s"] > 0
    assert "store verify / sha256 alone" in out and "driver's own cost" in out
    assert " 8 GPU(s): projected" in out


def _test_rows(n: int) -> int:
    """Rows of the test split in a store of ``n`` rows (whole test speakers)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import scale
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return sum(clips for split, _, _, clips in scale.speaker_layout(n) if split == "test")


def test_the_projection_states_its_inputs_and_adds_them_up(tmp_path: Path) -> None:
    clips = 1_092_009
    saved = {"sizes": [1000, 2000], "machine": "a test", "results": {"extract": {"2000": {
        "scan": 2.0, "plan": 1.0, "resume check": 0.5, "final write": 0.5, "tasks": 50.0,
        "driver CPU": 0.2}}}}
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved))
    out = _run("--project-from", str(path), "--gpu-clips-per-s", "20", "--worker-start-s", "30")
    serial = clips / 2000 * 4.0
    for gpus in (1, 8, 32):
        hours = (serial + 30 + clips / (gpus * 20)) / 3600
        assert f"{gpus:2d} GPU(s): projected {hours:7.1f} h (GPUs-bound)" in out
    assert "20 clips/s per GPU (from the GPU suite" in out and "start-up 30 s (measured)" in out
    assumed = _run("--project-from", str(path))
    assert "ASSUMED (no GPU measured)" in assumed and "start-up 60 s (ASSUMED)" in assumed
    needed = clips / (8 * (12 * 3600 - serial - 60))
    assert f"needs >= {needed:.2f} clips/s per GPU" in assumed
