"""Modalities that follow the dataset: what an extraction asks of a dataset's clips, checked.

A dataset's manifest names the store keys its clips can give (``modalities``: AFEW-VA's
folders of frames have no sound and no transcripts). Extraction

- defaults to them (:func:`follow_dataset`: the extraction config's modalities that the dataset
  has, when ``--modalities`` is not given);
- refuses, once the clips are listed and before any is extracted (:func:`check_plan`), a run
  that would drop a whole modality for every clip or produce nothing: a key the dataset does
  not have (:func:`check_modalities`; after the dataset's own errors, so a bad annotation is
  named first), no clip to extract, audio from clips that are all folders of frames, text when
  no clip has a transcript;
- refuses to call a store complete when every clip failed (:func:`check_extracted`), naming the
  reasons and what to change.

Each refusal is a :class:`ModalityError` (exit 2 on the command line).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from pipeline.errors import UserError
from pipeline.extract_config import ExtractConfig
from pipeline.manifest import DatasetManifest

log = logging.getLogger(__name__)

#: What to change for a failure reason that every clip had.
ADVICE = {
    "no_audio_stream": "the clips have no sound: leave audio out (--modalities without audio)",
    "no_video_stream": "the clips have no picture: extract audio and text only",
    "no_face": "no face was found: --faces crop-or-full (videos) keeps such clips uncropped",
    "empty_transcript": "every transcript is empty: give transcripts or leave text out",
    "missing_file": "no media file was found: check --root",
}


class ModalityError(UserError, ValueError):
    """An extraction that would give a store without some modality, or without any clip."""


def follow_dataset(cfg: ExtractConfig, manifest: DatasetManifest) -> ExtractConfig:
    """``cfg`` narrowed to the modalities ``manifest`` says the dataset has (the default when
    no ``--modalities`` is given); weights given for a key left out are dropped with it.

    Raises:
        ModalityError: none of the config's modalities is one the dataset has.
    """
    kept = tuple(m for m in cfg.choices.modalities if m in manifest.modalities)
    if not kept:
        raise ModalityError(f"{manifest.name} has {list(manifest.modalities)}, none of the "
                            f"extraction config's modalities {list(cfg.choices.modalities)}")
    if kept == cfg.choices.modalities:
        return cfg
    log.info("%s: extracting %s, the modalities its clips have (not %s)", manifest.name,
             ", ".join(kept), ", ".join(m for m in cfg.choices.modalities if m not in kept))
    weights = {k: v for k, v in cfg.choices.weights.items() if k in kept}
    return dataclasses.replace(
        cfg, choices=dataclasses.replace(cfg.choices, modalities=kept, weights=weights))


def check_modalities(cfg: ExtractConfig, manifest: DatasetManifest) -> None:
    """Refuse a modality the dataset's clips cannot give (its manifest's ``modalities``).

    Raises:
        ModalityError: naming the modalities it lacks and the ones to extract instead.
    """
    missing = [m for m in cfg.choices.modalities if m not in manifest.modalities]
    if missing:
        raise ModalityError(f"--modalities {','.join(cfg.choices.modalities)}: {manifest.name} "
                            "has no "
                            f"{', '.join(missing)} (it has {', '.join(manifest.modalities)}); "
                            f"extract --modalities {','.join(_others(cfg, missing))}")


def check_plan(cfg: ExtractConfig, manifest: DatasetManifest, samples: pa.Table,
               adapter_failures: pa.Table) -> None:
    """Refuse, before any clip is extracted, a store that would lack a modality for every
    clip or hold no clip at all.

    Args:
        cfg: the extraction config.
        manifest: the dataset's manifest.
        samples: the sample table's clips that will be extracted.
        adapter_failures: the clips the adapter already dropped (named when nothing is left).

    Raises:
        ModalityError: naming the modality or the reasons, and what to change.
    """
    check_modalities(cfg, manifest)
    if samples.num_rows == 0:
        raise ModalityError(f"{manifest.name}: no clip to extract"
                            + _reasons(adapter_failures, "; the adapter dropped "))
    if "audio" in cfg.choices.modalities and all(
            Path(p).is_dir() for p in samples.column("media_path").to_pylist()):
        raise ModalityError(f"{manifest.name}: every clip is a folder of frames, which has no "
                            f"sound; extract --modalities {','.join(_others(cfg, ['audio']))}")
    if "text" in cfg.choices.modalities and not any(
            (t or "").strip() for t in samples.column("transcript").to_pylist()):
        raise ModalityError(
            f"{manifest.name}: none of the {samples.num_rows} clips has a transcript, so the "
            "text features would be the same for every clip; give transcripts (--transcripts "
            "SIDECAR.csv, which `cli transcribe` writes) or extract --modalities "
            f"{','.join(_others(cfg, ['text']))}")


def check_extracted(kept: int, failures: Sequence[pa.Table]) -> None:
    """Refuse to complete a store in which every clip failed.

    Args:
        kept: clips extracted.
        failures: the failure tables (adapter and shards).

    Raises:
        ModalityError: ``kept`` is 0; the message counts the reasons and says what to change.
    """
    if kept:
        return
    table = pa.concat_tables(failures) if failures else None
    reasons = Counter(table.column("reason").to_pylist()) if table is not None else Counter()
    advice = [ADVICE[r] for r in reasons if r in ADVICE and reasons[r] == sum(reasons.values())]
    raise ModalityError("0 clips extracted, the store is not complete" + _reasons(table, ": ")
                        + (f"; {advice[0]}" if advice else "")
                        + " (the finished shards are kept: a new --out starts afresh)")


def _others(cfg: ExtractConfig, dropped: Sequence[str]) -> list[str]:
    return [m for m in cfg.choices.modalities if m not in dropped] or ["frames_2d,frames_3d"]


def _reasons(failures: pa.Table | None, prefix: str) -> str:
    if failures is None or failures.num_rows == 0:
        return ""
    counts = Counter(failures.column("reason").to_pylist())
    return prefix + ", ".join(f"{r} {n}" for r, n in counts.most_common())


__all__ = ["ModalityError", "check_extracted", "check_modalities", "check_plan",
           "follow_dataset"]
