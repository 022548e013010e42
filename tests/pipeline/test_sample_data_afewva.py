"""The AFEW-VA sample: the release's layout, read back by the adapter, with targets that the
pictures carry (each clip's emotion shows in its frames and sets its valence and arousal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import media
from pipeline.datasets import scan
from pipeline.sample_data import generate
from pipeline.sample_data.afewva import CIRCUMPLEX


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate("afewva", tmp_path_factory.mktemp("afewva") / "raw", clips=7, seed=0)


def test_layout_reads_back_with_every_split_and_the_defects(sample: Path) -> None:
    table = scan("afewva", sample)
    rows = table.samples.to_pylist()
    assert len(rows) == 7 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert [f["reason"] for f in table.failures.to_pylist()] == ["missing_file"]
    assert (sample / "001" / "001.json").is_file() and (sample / "001" / "00000.png").is_file()
    assert all(-1 <= v <= 1 for r in rows for v in r["targets"])


def test_targets_follow_the_emotion_the_frames_show(sample: Path) -> None:
    rows = {r["sample_id"]: r for r in scan("afewva", sample).samples.to_pylist()}
    # train clips cycle the emotions in CIRCUMPLEX order: 001 neutral, 002 joy, 003 sadness
    emotions = list(CIRCUMPLEX)
    for clip, emotion in (("001", emotions[0]), ("002", emotions[1]), ("003", emotions[2])):
        expected = np.array(CIRCUMPLEX[emotion]) / 10
        got = np.array(rows[clip]["targets"])
        assert np.all(np.abs(got - 0.85 * expected) <= 0.15 * np.abs(expected) + 0.1), clip
    tint = {clip: next(media.iter_frames(sample / clip, fps=1.0))[1].reshape(-1, 3).mean(0)
            for clip in ("001", "002", "003")}
    # joy's tint is warm (more red than blue), sadness's cold: the frames carry the emotion
    assert tint["002"][0] - tint["002"][2] > tint["003"][0] - tint["003"][2] + 20
