"""Earlier ``store.json`` formats converted to the current one, as plain mappings.

Each step takes one version's mapping to the next (:func:`upgrade_v1`: 1 -> 2,
:func:`upgrade_v2`: 2 -> 3); :func:`upgrade` chains them. Nothing is lost: the recorded
``store_id`` is kept (the shards carry it, and stores shared between people must still
compare equal), and the identity it was computed from is kept under ``legacy`` (with its
format) so that ``store verify`` can still recompute it. The strict typed parse of the result
is :func:`pipeline.store.manifest.parse_manifest`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.store.errors import StoreError

FORMAT_PREFIX = "conclugen-store/"
#: The format the last step writes (:data:`pipeline.store.manifest.FORMAT`).
LATEST = 3
#: Run settings of the version-2 ``config`` (the rest of it was its choices and the feature
#: settings its identity already held).
RUN_FIELDS = ("batch_clips", "units_per_call", "prefetch")
CHOICE_FIELDS = ("modalities", "backbones", "weights", "views")
#: Version 2's ``identity.extraction`` fields without a default.
V2_REQUIRED = ("fps_2d", "fps_3d", "detect_fps", "sample_rate", "faces", "face_policy",
               "empty_text", "dtype", "augment_seed")
#: What a version-2 store without ``decode`` did: a release before damaged streams were
#: decoded failed a clip at any decoding error, which is no lost time and full coverage.
STRICT_DECODE = {"min_coverage": 1.0, "max_gap_s": 0.0}


def upgrade(data: Mapping[str, Any], version: int, where: str = "store.json") -> dict[str, Any]:
    """A ``store.json`` mapping of format ``version`` converted to the current format.

    Raises:
        StoreError: a field an upgrade needs is missing or not a mapping (names the field).
    """
    out = dict(data)
    if version == 1:
        out = upgrade_v1(out)
    if version <= 2:
        out = upgrade_v2(out, where)
    return out


def upgrade_v2(data: Mapping[str, Any], where: str = "store.json") -> dict[str, Any]:
    """A version-2 ``store.json`` mapping converted to version 3 (nothing is lost).

    Version 2 repeated the extraction's feature settings in ``identity.extraction`` (with
    ``seed`` renamed ``augment_seed``) and in ``config``, and the dataset's face policy under
    ``identity.extraction.face_policy``. Version 3 holds the feature settings once (as
    ``identity.extraction``), the face policy in ``identity.dataset.faces``, and the rest of
    the config as ``choices`` and ``run``.

    Raises:
        StoreError: ``identity``, ``identity.extraction`` or ``config`` is not a mapping, or a
            field of ``identity.extraction`` without a default is missing.
    """
    old = dict(data)
    ident = _mapping(old.get("identity"), f"{where}: identity")
    config = old.get("config")
    new_ident = dict(ident)
    extraction = ident.get("extraction")
    if extraction is not None:
        ext = _mapping(extraction, f"{where}: identity.extraction")
        missing = [name for name in V2_REQUIRED if name not in ext]
        if missing:
            raise StoreError(f"{where}: identity.extraction.{missing[0]} is missing (store "
                             "format 2; store.json does not fit the store contract)")
        dataset = _mapping(ident.get("dataset"), f"{where}: identity.dataset")
        new_ident["dataset"] = {**dataset, "faces": ext["face_policy"]}
        new_ident["extraction"] = _v2_features(ext, config)
    out = {k: v for k, v in old.items() if k != "config"}
    out.update(format=f"{FORMAT_PREFIX}{LATEST}", identity=new_ident)
    if config is not None:
        cfg = _mapping(config, f"{where}: config")
        out["choices"] = {k: cfg[k] for k in CHOICE_FIELDS if k in cfg}
        out["run"] = {k: cfg[k] for k in RUN_FIELDS if k in cfg}
    if old.get("legacy") is None:  # an upgraded version-1 store keeps its first identity
        out["legacy"] = {"format": old.get("format"), "identity": ident}
    return out


def _v2_features(ext: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """Version 2's ``identity.extraction`` as version 3's feature settings. ``augment`` was
    recorded only with more than one view: for one view it is taken from the config (it
    changed nothing)."""
    renamed = {"face_policy", "augment_seed", "augment", "decode"}
    out = {k: v for k, v in ext.items() if k not in renamed}
    out["seed"] = ext["augment_seed"]
    augment = ext.get("augment")
    if augment is None and isinstance(config, Mapping):
        augment = config.get("augment")
    if augment is not None:
        out["augment"] = augment
    out["decode"] = STRICT_DECODE if ext.get("decode") is None else ext["decode"]
    return out


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise StoreError(f"{where}: expected a mapping, got {type(value).__name__} (store.json "
                         "does not fit the store contract)")
    return value


def upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 ``store.json`` mapping converted to version 2 (nothing is lost; the
    feature space is derived again when the result is parsed).

    Version 1 held the dataset, views and extraction settings twice (in ``identity`` and at
    the top level) and merged the planned backbone with the loaded encoder's report per key.
    """
    old = dict(data)
    ident = old.get("identity") or {}
    modalities = old.get("modalities") or {}
    extraction = ident.get("extraction")
    new_ident: dict[str, Any] = {
        "dataset": ident.get("dataset", old.get("dataset")),
        "modalities": {k: _v1_choice(v) for k, v in (ident.get("modalities") or {}).items()},
        "views": ident.get("views", old.get("views", 1)),
        "extraction": _v1_extraction(extraction) if extraction else None,
    }
    infos = {k: _v1_modality(v) for k, v in modalities.items()}
    out: dict[str, Any] = {
        "format": f"{FORMAT_PREFIX}2", "store_id": old.get("store_id"), "identity": new_ident,
        "modalities": infos, "shards": old.get("shards", []), "counts": old.get("counts"),
        "created": old.get("created", ""), "config": None,
        "software": old.get("software", {}), "timings": old.get("timings", {}),
        "options": old.get("options", {}), "merged_from": old.get("merged_from", []),
        "legacy": {"format": old.get("format"), "identity": ident},
    }
    if extraction:
        out["config"] = _v1_config(new_ident)
    return out


def _v1_choice(entry: Mapping[str, Any]) -> dict[str, Any]:
    choice = {"backbone": entry.get("backbone"), "weights": entry.get("weights"),
              "spec": dict(entry.get("spec") or {})}
    if entry.get("weights_file_sha256"):
        choice["weights_file_sha256"] = entry["weights_file_sha256"]
    if choice["backbone"] == "arrays":
        choice["spec"] = {k: entry[k] for k in ("dim", "dtype") if k in entry}
    return choice


def _v1_extraction(ext: Mapping[str, Any]) -> dict[str, Any]:
    # The first release kept a face track however rarely the face was found.
    faces = {"min_face_ratio": 0.0, **dict(ext.get("faces") or {})}
    policy = {"crop": faces.pop("crop", True), "no_face": faces.pop("no_face", "fail")}
    return {"fps_2d": ext["fps_2d"], "fps_3d": ext["fps_3d"],
            "detect_fps": ext.get("detect_fps", 1.0), "sample_rate": ext["sample_rate"],
            "faces": faces, "face_policy": policy, "empty_text": ext["empty_text"],
            "dtype": ext["dtype"], "augment_seed": ext.get("augment_seed", 0)}


def _v1_modality(entry: Mapping[str, Any]) -> dict[str, Any]:
    encoder = {k: v for k, v in entry.items()
               if k not in ("dim", "dtype", "weights_sha256", "backbone", "weights")}
    return {"dim": entry["dim"], "dtype": entry.get("dtype", "float16"),
            "weights_sha256": entry.get("weights_sha256"), "encoder": encoder}


def _v1_config(ident: Mapping[str, Any]) -> dict[str, Any]:
    """The ExtractConfig a version-1 store was made with, as far as it recorded it (the
    weights as resolved, ``batch_clips`` at its default)."""
    ext = ident["extraction"]
    order = [m for m in ("frames_2d", "frames_3d", "audio", "text") if m in ident["modalities"]]
    return {"modalities": order,
            "backbones": {m: ident["modalities"][m]["backbone"] for m in order},
            "weights": {m: ident["modalities"][m]["weights"] for m in order},
            "views": ident["views"], "fps_2d": ext["fps_2d"], "fps_3d": ext["fps_3d"],
            "detect_fps": ext["detect_fps"], "sample_rate": ext["sample_rate"],
            "faces": ext["faces"], "empty_text": ext["empty_text"], "dtype": ext["dtype"],
            "seed": ext["augment_seed"]}


__all__ = ["LATEST", "upgrade", "upgrade_v1", "upgrade_v2"]
