"""The study caption's sentence on its ``--preset``: the preset's name, how many augmented views
the stores hold (against the reference code's 10) and where the stores' backbones are not the
preset's (:func:`pipeline.presets.store_differences`)."""

from __future__ import annotations

from heads.study.types import Target
from pipeline.presets import REFERENCE_VIEWS, Preset, store_differences


def preset_lines(preset: Preset, target: Target) -> list[str]:
    """The caption's sentence on the preset: its name, the views the probe and Instance-Cont
    drew from, and where the stores were extracted with other choices than the preset's."""
    probe = _views_sentence(target.store.views, "downstream",
                            "the probe trains on one per clip, modality and epoch")
    pairs = _views_sentence(target.pretrain.views, "pretraining",
                            "Instance-Cont pairs two of them per clip and epoch")
    line = (f"Preset: `{preset.name}` (the {preset.fidelity} column of docs/CHOICES.md). "
            f"{probe} {pairs}")
    differ = sorted({d for facts in (target.store, target.pretrain)
                     for d in store_differences(preset, {k: v.get("backbone", "") for k, v in
                                                         facts.feature_space.items()})})
    if differ:
        line += (" Where the stores differ from the preset's extraction: "
                 + "; ".join(differ) + ".")
    return [line]


def _views_sentence(views: int, which: str, use: str) -> str:
    if views < 2:
        return f"The {which} store holds no augmented views (clean features only)."
    return (f"The {which} store holds {views - 1} augmented view(s) per clip ({use}; the "
            f"reference code drew from {REFERENCE_VIEWS}).")


__all__ = ["preset_lines"]
