"""The labels of the other systems' study rows say where an evaluation departs from the
paper's setting, read from its metrics.json."""

from __future__ import annotations

from heads.evaluation.avce import DEGENERATE
from heads.study.systems import caveats


def test_a_clef_row_names_its_stage_1_source() -> None:
    fallback = {"details": {"weak": {"ran": True, "source": "sentiment_fallback",
                                     "group": "sentiment"}}}
    assert caveats(fallback) == " [stage 1: sentiment-sign fallback]"
    other = {"details": {"weak": {"ran": True, "source": "stage1_store", "group": "caer"}}}
    assert caveats(other) == " [stage 1: caer labels]"
    assert caveats({"details": {"weak": {"ran": False, "reason": "clef.weak=none"}}}) == ""


def test_an_avce_row_names_the_valence_only_variant_and_text_inputs() -> None:
    one = {"details": {"variant": "valence_only", "degenerate": DEGENERATE,
                       "inputs": ["video", "audio", "text"]}}
    assert caveats(one) == " [valence only: angle term degenerate; inputs include text]"
    assert caveats({"details": {"inputs": ["video", "audio"]}}) == ""
    assert caveats({}) == ""
