"""``store verify``'s check of the embedded label texts: ``label_texts.parquet`` against its
record in store.json (sha256, rows, classes in the dataset's order, vector width) and against
the store (embedded by the store's own text backbone and weights)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.store.errors import MissingFileError, UnsafePathError
from pipeline.store.filesystem import Location
from pipeline.store.manifest import LabelTextsInfo, StoreManifest
from pipeline.store.verify_report import Findings

LABEL_TEXTS = "label_texts.parquet"
"""The store's embedded label texts (:mod:`pipeline.label_texts`), recorded in store.json."""


def check_label_texts(loc: Location, manifest: StoreManifest, findings: Findings) -> None:
    """``label_texts.parquet`` against its record in store.json (readers trust both: CLEF's
    prototypes are read from it without a backbone to embed them again)."""
    info = manifest.label_texts
    report = findings.report
    if info is None:
        if loc.exists(LABEL_TEXTS):
            report.notes.append(f"{LABEL_TEXTS}: store.json records no label texts, so no "
                                "reader uses this file")
        return
    try:
        data = loc.read_bytes(LABEL_TEXTS)
    except MissingFileError:
        findings.problem(LABEL_TEXTS, "", "missing: store.json records label texts",
                         f"{info.rows} rows", "no file")
        return
    except UnsafePathError as err:
        findings.problem(LABEL_TEXTS, "",
                         str(err).removeprefix(loc.where(LABEL_TEXTS) + ": "))
        return
    report.bytes_hashed += len(data)
    digest = hashlib.sha256(data).hexdigest()
    if info.sha256 is None:
        report.notes.append(f"{LABEL_TEXTS}: not hashed (store.json records no sha256 for "
                            "it); `cli store add-label-texts` writes them again with one")
    elif digest != info.sha256:
        findings.problem(LABEL_TEXTS, "", "checksum mismatch: the file changed after it was "
                         "written", info.sha256, digest)
    try:
        table = pq.read_table(io.BytesIO(data))
    except pa.ArrowException as err:
        findings.problem(LABEL_TEXTS, "", f"not a readable Parquet file ({err})")
        return
    for where, message, expected, found in label_texts_mismatches(table, info, manifest):
        findings.problem(LABEL_TEXTS, where, message, expected, found)


def label_texts_mismatches(table: pa.Table, info: LabelTextsInfo, manifest: StoreManifest
                           ) -> list[tuple[str, str, Any, Any]]:
    """Where a label-texts table differs from its record and from the store: ``(where,
    message, expected, found)`` each; empty when it is the store's.

    The rows are the recorded count, the classes the dataset's labels in order, the vectors as
    wide as the text key's features, and the backbone and weights that embedded them the
    store's own for that key (the prototypes must lie in the space of its text features).
    """
    found: list[tuple[str, str, Any, Any]] = []
    needed = {"kind", "index", "label", "prompt_vector", "description_vector"}
    missing = sorted(needed - set(table.column_names))
    if missing:
        return [(f"columns {missing}", "missing", None, None)]
    if table.num_rows != info.rows:
        found.append(("rows", "row count differs from store.json", info.rows, table.num_rows))
    rows = table.select(["kind", "index", "label"]).to_pylist()
    classes = [r["label"] for r in sorted((r for r in rows if r["kind"] == "class"),
                                          key=lambda r: r["index"])]
    if classes != list(manifest.dataset.labels):
        found.append(("classes", "are not the dataset's labels, in order",
                      list(manifest.dataset.labels), classes))
    modality = manifest.modalities.get(info.key)
    if modality is None:
        return [*found, (f"key {info.key}", "the store has no such features", None, None)]
    for column in ("prompt_vector", "description_vector"):
        width = _list_width(table.schema.field(column).type)
        if width != modality.dim:
            found.append((f"column {column}", f"width differs from the {info.key} features'",
                          modality.dim, width))
        elif table.num_rows:
            values = pc.list_flatten(table.column(column)).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(~np.isfinite(np.asarray(values, np.float64).reshape(
                table.num_rows, width)).all(axis=1))
            if bad.size:
                found.append((f"column {column}, row {int(bad[0])}",
                              f"{bad.size} rows hold NaN or Inf values", None, None))
    space = manifest.feature_space.get(info.key) or {}
    recorded = (info.backbone, info.weights_sha256)
    store = (space.get("backbone"), space.get("weights_sha256"))
    if recorded != store:
        found.append(("backbone", f"embedded by another backbone than the store's {info.key} "
                      "features", store, recorded))
    return found


def _list_width(kind: pa.DataType) -> int | None:
    return int(kind.list_size) if pa.types.is_fixed_size_list(kind) else None
