"""Named presets: which pipeline a run reproduces (``paper`` or ``reference``) and how big its
model is (``cpu``), as one ``--preset`` option of ``cli extract``, ``pretrain``, ``eval`` and
``study``.

Two axes, at most one name of each, in any order (``--preset reference,cpu``):

* **fidelity**: ``paper`` (the default: the paper's choices, the reference code's bugs
  corrected) or ``reference`` (every choice as the reference code ``tub-cv-group/conclugen``
  made it, where it can be reproduced faithfully: that code produced the published numbers).
* **size**: ``cpu`` (a laptop-sized model for tests and demos; pretraining and evaluation only).

The training and evaluation values of each name are layers of ``manifests/pretrain.yaml`` and
``manifests/evaluate.yaml`` (``presets:``); the extraction values are :data:`EXTRACT_REFERENCE`
below. ``docs/CHOICES.md`` shows both fidelity presets' values side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config import ConfigError

log = logging.getLogger(__name__)

#: The fidelity axis: the first is the default.
FIDELITY = ("paper", "reference")
#: The size axis (no size name: the paper's sizes).
SIZES = ("cpu",)

#: Augmented views per clip the reference code extracted (the probe drew 1, Instance-Cont 2).
REFERENCE_VIEWS = 10

#: ``cli extract --preset reference``: the extraction settings the reference code used that
#: this project can reproduce faithfully, as ``load_extract_config`` overrides.
EXTRACT_REFERENCE: dict[str, dict[str, Any]] = {
    # REFERENCE-NOTES: "the encoder is an emotion-fine-tuned DistilRoBERTa
    # (j-hartmann/emotion-english-distilroberta-base), not the sentiment DistilBERT the paper
    # names"
    "backbones": {"text": "emotion-distilroberta"},
    # its augmentation drew "p > u" where it meant "u < p": the colour jitter asked for with
    # 0.8 is applied with 0.2, the grayscale asked for with 0.2 with 0.8 x 0.2 = 0.16
    "augment": {"jitter_p": 0.2, "grayscale_p": 0.16},
    # REFERENCE-NOTES: "boxes are a running union of overlapping detections ... crops are
    # stretched to a square" (at 180 px, the default size)
    "faces": {"crop_mode": "union"},
}

#: Reference choices of extraction this project has no faithful switch for (yet): the preset
#: leaves them at the paper's value and says so (``cli extract --preset reference`` logs them).
EXTRACT_NOT_REPRODUCED = {
    "audio input": "128 linear-power mel bands, min-max scaled (the ResDAVEnet checkpoint "
                   "was trained on 40 log-mel bands; the 40-band input is used)",
    "face detection": "MTCNN on BGR frames, every video frame, a clip cut into segments "
                      "where the boxes stop overlapping (the union crop detects on RGB frames "
                      "at detect_fps and leaves a detection apart from the last out of the "
                      "clip's one box)",
}

#: Reference choices reproduced only from a file the user gives (none is published): per
#: dataset, the choice and what to pass; ``cli extract --preset reference`` says so when it
#: is not given.
EXTRACT_NEEDS_FILE = {
    "voxceleb2": ("VoxCeleb2 subset", "the 534,616 utterances the paper used are extracted "
                  "from a list of their sample ids: pass --annotations LIST (no list is "
                  "published; without one every clip under --root is extracted)"),
}


class PresetError(ConfigError):
    """A ``--preset`` value with an unknown name or two names of one axis."""


@dataclass(frozen=True)
class Preset:
    """A parsed ``--preset``: the fidelity name and the size name (None: full size)."""

    fidelity: str = FIDELITY[0]
    size: str | None = None

    @property
    def name(self) -> str:
        """The canonical spelling, fidelity first (``"reference,cpu"``, ``"paper"``)."""
        return ",".join(n for n in (self.fidelity, self.size) if n is not None)

    @property
    def layers(self) -> tuple[str, ...]:
        """The config files' ``presets:`` layers to merge, in order (fidelity, then size)."""
        return tuple(n for n in (self.fidelity, self.size) if n is not None)


def parse_preset(text: str | Preset | None) -> Preset:
    """``"reference,cpu"`` -> ``Preset("reference", "cpu")``; None or ``""``: the paper's.

    ``"cpu"`` alone is ``paper,cpu``.

    Raises:
        PresetError: an unknown name or two names of one axis (one line naming the option).
    """
    if isinstance(text, Preset):
        return text
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    fidelity = [n for n in names if n in FIDELITY]
    size = [n for n in names if n in SIZES]
    unknown = [n for n in names if n not in FIDELITY and n not in SIZES]
    valid = f"valid: one of {'|'.join(FIDELITY)}, optionally with one of {'|'.join(SIZES)}"
    if unknown:
        raise PresetError(f"--preset {text!r}: unknown preset name(s) {', '.join(unknown)}; {valid} "
                          "(e.g. --preset reference,cpu)")
    for axis, given in (("fidelity", fidelity), ("size", size)):
        if len(given) > 1:
            raise PresetError(f"--preset {text!r}: {len(given)} {axis} names "
                              f"({', '.join(given)}); give at most one; {valid}")
    return Preset(fidelity[0] if fidelity else FIDELITY[0], size[0] if size else None)


def extract_overrides(preset: Preset, backbones: Mapping[str, str]) -> dict[str, Any]:
    """``load_extract_config`` overrides of an extraction: the preset's values, its backbones
    replaced by those given explicitly (``--backbone``).

    Raises:
        PresetError: a size name (extraction has one size).
    """
    if preset.size is not None:
        raise PresetError(f"--preset {preset.name!r}: {preset.size!r} sizes the heads "
                          "(pretrain, eval, study); extraction takes paper or reference")
    chosen = EXTRACT_REFERENCE if preset.fidelity == "reference" else {}
    return {**chosen, "backbones": {**chosen.get("backbones", {}), **backbones},
            "preset": preset.name}


def extract_settings(preset: str | None, backbones: Mapping[str, str], *,
                     dataset: str | None = None,
                     file_given: bool = False) -> tuple[Preset, dict[str, Any]]:
    """``cli extract --preset``: the parsed preset and its ``load_extract_config`` overrides
    (logging, for ``reference``, the reference choices it cannot reproduce, and for a
    ``dataset`` of :data:`EXTRACT_NEEDS_FILE` without its file (``file_given``), what to pass).

    Raises:
        PresetError: a malformed ``--preset`` or a size name.
    """
    chosen = parse_preset(preset)
    settings = extract_overrides(chosen, backbones)
    if chosen.fidelity == "reference":
        for choice, why in EXTRACT_NOT_REPRODUCED.items():
            log.warning("--preset reference: the reference code's %s is not reproduced: %s",
                        choice, why)
        if dataset in EXTRACT_NEEDS_FILE and not file_given:
            log.warning("--preset reference: the reference code's %s is not reproduced "
                        "without its file: %s", *EXTRACT_NEEDS_FILE[dataset])
    return chosen, settings


def store_differences(preset: Preset, backbones: Mapping[str, str]) -> list[str]:
    """Where a store's backbones (per store key) differ from the preset's extraction, one
    phrase each (``"text backbone distilbert-sst2 (the reference preset: ..."``)."""
    from pipeline.extract_config import DEFAULT_BACKBONES

    wanted = {**DEFAULT_BACKBONES, **extract_overrides(Preset(preset.fidelity), {})["backbones"]}
    return [f"{key} backbone {have} (the {preset.fidelity} preset: {wanted[key]})"
            for key, have in sorted(backbones.items()) if key in wanted and have != wanted[key]]


__all__ = ["EXTRACT_NEEDS_FILE", "EXTRACT_NOT_REPRODUCED", "EXTRACT_REFERENCE", "FIDELITY",
           "REFERENCE_VIEWS", "Preset", "PresetError", "SIZES", "extract_overrides",
           "extract_settings", "parse_preset", "store_differences"]
