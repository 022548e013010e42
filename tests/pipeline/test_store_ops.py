"""Whole-store operations: info, verify (a flipped byte, a lost shard, ...), diff and merge."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.extract_config import ExtractChoices, ExtractConfig, FeatureSettings
from pipeline.failures import FAILURE_SCHEMA
from pipeline.store import (FeatureStore, Location, StoreError, finalize, group_by_code,
                            open_store, redact_url, store_id_of, write_arrays, write_shard)
from pipeline.manifest import FacePolicy
from pipeline.store.manifest import (BackboneChoice, Counts, DatasetInfo, ModalityInfo,
                                     StoreIdentity, build_manifest)
from pipeline.store.ops import diff_stores, provenance_differences, store_info, verify_store
from pipeline.store.merge import merge_stores

LABELS = ["neutral", "joy", "anger"]
SPLITS = ("train", "val", "test")


def _arrays(n: int = 90, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"ids": [f"dia{i}_utt0" for i in range(n)],
            "splits": [SPLITS[0 if i < n * 2 // 3 else 1 if i < n * 5 // 6 else 2]
                       for i in range(n)],
            "labels": np.array([i % 4 - 1 for i in range(n)]),  # -1 (unlabeled), 0, 1, 2
            "features": {"frames_2d": rng.standard_normal((n, 2, 16)).astype(np.float32),
                         "text": rng.standard_normal((n, 2, 8)).astype(np.float32)}}


def _write(url: str | Path, data: dict[str, Any], mask: np.ndarray | None = None,
           shard_size: int = 16) -> None:
    mask = np.ones(len(data["ids"]), bool) if mask is None else mask
    write_arrays(url, dataset="toy", sample_ids=list(np.array(data["ids"])[mask]),
                 splits=list(np.array(data["splits"])[mask]),
                 features={k: v[mask] for k, v in data["features"].items()},
                 labels=data["labels"][mask], label_names=LABELS, shard_size=shard_size)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    _write(tmp_path / "s", _arrays())
    return tmp_path / "s"


def _extract_like(url: str | Path, ids: list[str], *, weights: str = "random",
                  software: str = "2.9.1", failures: list[tuple[str, str]] = (),
                  preset: str | None = None) -> None:
    """A store with the provenance an extraction run writes (backbone, preprocessing, ...)."""
    identity = StoreIdentity(
        dataset=DatasetInfo("meld", tuple(LABELS), False, "m" * 64, faces=FacePolicy()),
        modalities={"frames_2d": BackboneChoice("resnet152", weights)}, views=1,
        extraction=FeatureSettings(empty_text="fail"))
    modalities = {"frames_2d": ModalityInfo(
        dim=4, weights_sha256="w" * 64,
        encoder={"image_size": 224, "mean": [0.485, 0.456, 0.406]})}
    loc = Location.parse(url)
    index = pa.table({"sample_id": ids, "split": ["train"] * len(ids),
                      "label": pa.array([i % 3 for i in range(len(ids))], pa.int64())})
    fail = pa.Table.from_pylist([{"sample_id": s, "split": "train", "stage": "faces",
                                  "reason": r, "message": "x"} for s, r in failures],
                                schema=FAILURE_SCHEMA)
    shard = write_shard(loc, 0, store_id=store_id_of(identity), sample_ids=ids, index=index,
                        features={"frames_2d": np.ones((len(ids), 1, 4), np.float32)},
                        failures=fail)
    finalize(loc, identity=identity, modalities=modalities, shards=[shard],
             adapter_failures=FAILURE_SCHEMA.empty_table(), software={"torch": software},
             timings={"decode": 1.5}, config=ExtractConfig(
                 choices=ExtractChoices(modalities=("frames_2d",), views=1, preset=preset),
                 features=FeatureSettings(empty_text="fail")))


# ----------------------------------------------------------------------------------------- info

def test_info_reports_counts_modalities_failures_and_size(tmp_path: Path) -> None:
    _extract_like(tmp_path / "e", ["a", "b", "c", "d"],
                  failures=[("x", "no_face"), ("y", "no_face"), ("z", "corrupt_media")])
    info = store_info(tmp_path / "e")
    assert info.dataset == "meld" and info.samples == 4 and info.failures == 3
    assert info.counts == {"train": {"neutral": 2, "joy": 1, "anger": 1}}
    assert info.failures_by_reason == {"no_face": 2, "corrupt_media": 1}
    assert info.random_weights == ["frames_2d"]
    (mod,) = info.modalities
    assert (mod.backbone, mod.weights_sha256, mod.dim, mod.dtype) == (
        "resnet152", "w" * 64, 4, "float16")
    assert mod.preprocessing == {"image_size": 224, "mean": [0.485, 0.456, 0.406]}
    assert info.software == {"torch": "2.9.1"}
    files = [p for p in (tmp_path / "e").rglob("*") if p.is_file()]
    assert info.size_bytes == sum(p.stat().st_size for p in files)
    assert info.store_id == open_store(tmp_path / "e").store_id


def test_info_shows_the_preset_the_extraction_was_asked_for(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    _extract_like(tmp_path / "e", ["a", "b"], preset="reference")
    assert store_info(tmp_path / "e").preset == "reference"
    raw = json.loads((tmp_path / "e" / "store.json").read_text())
    assert raw["choices"]["preset"] == "reference" and raw["run"]["prefetch"] is True
    assert "extraction" in raw["identity"] and "config" not in raw
    result = CliRunner().invoke(app, ["store", "info", str(tmp_path / "e")])
    assert result.exit_code == 0 and "preset reference" in result.output, result.output
    _extract_like(tmp_path / "n", ["a", "b"])
    assert store_info(tmp_path / "n").preset is None


def test_info_counts_unlabeled_and_keeps_label_order(store: Path) -> None:
    info = store_info(store)
    assert list(info.counts) == ["test", "train", "val"]
    assert list(info.counts["train"]) == ["neutral", "joy", "anger", "unlabeled"]
    assert sum(sum(c.values()) for c in info.counts.values()) == 90
    assert info.counts["train"]["unlabeled"] == 15 and info.random_weights == []


# --------------------------------------------------------------------------------------- verify

def _shard(store: Path, k: int = 1) -> Path:
    return store / "shards" / f"shard-{k:05d}.h5"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # the lowest mantissa bit of a little-endian float16: still finite
    path.write_bytes(bytes(data))


def _feature_offset(path: Path) -> int:
    """A byte in the middle of the first chunk of frames_2d's raw data."""
    with h5py.File(path, "r") as h5:
        chunk = h5["frames_2d"].id.get_chunk_info(0)
    return int(chunk.byte_offset + chunk.size // 2)


def _fix_checksum(store: Path, k: int) -> None:
    manifest = json.loads((store / "store.json").read_text())
    manifest["shards"][k]["sha256"] = hashlib.sha256(_shard(store, k).read_bytes()).hexdigest()
    (store / "store.json").write_text(json.dumps(manifest))


def test_a_sound_store_passes(store: Path) -> None:
    report = verify_store(store, chunk_rows=5)  # several chunks per shard
    assert report.ok, report.problems
    assert (report.shards, report.rows) == (6, 90)
    assert report.bytes_hashed == sum(_shard(store, k).stat().st_size for k in range(6))


def test_a_flipped_byte_in_feature_data_is_caught_though_the_file_reads(store: Path) -> None:
    _flip(_shard(store), _feature_offset(_shard(store)))
    with h5py.File(_shard(store), "r") as h5:
        assert np.isfinite(h5["frames_2d"][:]).all()   # nothing but the checksum can tell
    report = verify_store(store)
    assert [(p.file, p.message.split(":")[0]) for p in report.problems] == [
        ("shards/shard-00001.h5", "checksum mismatch")]
    assert report.problems[0].expected != report.problems[0].found


@pytest.mark.parametrize("where", ["signature", "middle"])
def test_any_flipped_byte_is_caught_and_names_the_shard(store: Path, where: str) -> None:
    path = _shard(store)
    _flip(path, 0 if where == "signature" else path.stat().st_size // 2)
    report = verify_store(store)
    assert any(p.file == "shards/shard-00001.h5" and "checksum mismatch" in p.message
               for p in report.problems)
    if where == "signature":
        assert any("not a readable HDF5" in p.message for p in report.problems)


def test_nan_is_caught_even_with_a_matching_checksum(store: Path) -> None:
    with h5py.File(_shard(store, 2), "r+") as h5:
        h5["text"][3, 1, 5] = np.nan
    _fix_checksum(store, 2)
    report = verify_store(store, chunk_rows=2)
    assert [str(p) for p in report.problems] == [
        "shards/shard-00002.h5 [dataset text, row 3 (sample_id 'dia35_utt0')]: "
        "1 rows hold NaN or Inf values"]


def test_a_deleted_shard(store: Path) -> None:
    _shard(store, 3).unlink()
    report = verify_store(store)
    (problem,) = report.problems
    assert problem.file == "shards/shard-00003.h5"
    assert "missing" in problem.message and "16 index rows point to it" in problem.message


def test_a_removed_index_row(store: Path) -> None:
    index = pq.read_table(store / "index.parquet")
    pq.write_table(pa.concat_tables([index.slice(0, 20), index.slice(21)]),
                   store / "index.parquet")
    report = verify_store(store)
    texts = [str(p) for p in report.problems]
    assert "shards/shard-00001.h5 [row 4]: sample_id 'dia20_utt0' has no index row" in texts
    assert any(p.where == "counts.samples" and p.expected == 89 for p in report.problems)


def test_a_duplicate_id(store: Path) -> None:
    index = pq.read_table(store / "index.parquet")
    ids = index.column("sample_id").to_pylist()
    ids[7] = ids[3]
    index = index.set_column(0, "sample_id", pa.array(ids))
    pq.write_table(index, store / "index.parquet")
    texts = [str(p) for p in verify_store(store).problems]
    assert "index.parquet [sample_id 'dia3_utt0']: appears 2 times (rows [3, 7])" in texts
    assert ("index.parquet [row 7]: sample_id 'dia3_utt0' points to shards/shard-00000.h5 row 7,"
            " which holds 'dia7_utt0'") in texts


def test_failures_schema_overlap_and_store_id(store: Path) -> None:
    pq.write_table(pa.table({"sample_id": ["dia1_utt0"], "split": ["train"],
                             "stage": ["faces"], "reason": ["sunspots"]}),
                   store / "failures.parquet")
    manifest = json.loads((store / "store.json").read_text())
    manifest["identity"]["views"] = 3
    (store / "store.json").write_text(json.dumps(manifest))
    report = verify_store(store)
    wheres = {(p.file, p.where) for p in report.problems}
    assert ("failures.parquet", "column message") in wheres      # missing column
    assert ("store.json", "store_id") in wheres                  # identity edited
    problems = {p.message for p in report.problems}
    assert "counts.failures" in {p.where for p in report.problems}
    assert not any("sunspots" in m for m in problems), "closed sets need the whole schema"


def test_failed_and_extracted_at_once(tmp_path: Path) -> None:
    _extract_like(tmp_path / "e", ["a", "b"], failures=[("b", "no_face"), ("q", "dancing")])
    texts = [str(p) for p in verify_store(tmp_path / "e").problems]
    assert any("1 samples are also in index.parquet, e.g. ['b']" in t for t in texts)
    assert any("unknown reason" in t and "'dancing'" in t for t in texts)


def test_a_missing_store_json_is_one_problem(tmp_path: Path) -> None:
    (problem,) = verify_store(tmp_path).problems
    assert problem.file == "store.json" and "missing" in problem.message


# ----------------------------------------------------------------------------------------- diff

def test_diff_of_one_configuration_is_comparable(tmp_path: Path) -> None:
    _extract_like(tmp_path / "a", ["a", "b", "c"])
    _extract_like(tmp_path / "b", ["c", "d"], software="2.10.0")
    diff = diff_stores(tmp_path / "a", tmp_path / "b")
    assert diff.comparable and diff.blocking == []
    assert [(d.path, d.a, d.b) for d in diff.differences] == [
        ("software.torch", "2.9.1", "2.10.0")]
    assert (diff.samples_only_a, diff.samples_only_b, diff.samples_both) == (2, 1, 1)
    assert diff.examples_only_a == ["a", "b"] and diff.examples_both == ["c"]


def test_diff_names_what_made_the_features_differ(tmp_path: Path) -> None:
    _extract_like(tmp_path / "a", ["a"])
    _extract_like(tmp_path / "b", ["a"], weights="imagenet")
    diff = diff_stores(tmp_path / "a", tmp_path / "b")
    assert not diff.comparable and "different store_id" in diff.reason
    paths = [d.path for d in diff.blocking]
    assert paths == ["identity.modalities.frames_2d.weights"], "each field once"
    assert (diff.blocking[0].a, diff.blocking[0].b) == ("random", "imagenet")
    assert diff.feature_space == {"frames_2d": ["weights: random -> sha256"]}


def test_same_store_id_with_other_weights_is_not_comparable(tmp_path: Path) -> None:
    _extract_like(tmp_path / "a", ["a"], weights="default")
    _extract_like(tmp_path / "b", ["a"], weights="default", software="2.10")
    manifest = json.loads((tmp_path / "b" / "store.json").read_text())
    manifest["modalities"]["frames_2d"]["weights_sha256"] = "v" * 64  # another checkpoint
    manifest["feature_space"]["frames_2d"]["weights_sha256"] = "v" * 64
    (tmp_path / "b" / "store.json").write_text(json.dumps(manifest))
    a, b = open_store(tmp_path / "a"), open_store(tmp_path / "b")
    diffs = {d.path: (d.a, d.b) for d in provenance_differences(a.manifest, b.manifest)}
    assert diffs == {"modalities.frames_2d.weights_sha256": ("w" * 64, "v" * 64),
                     "software.torch": ("2.9.1", "2.10")}
    diff = diff_stores(a, b)
    assert a.store_id == b.store_id and not diff.comparable
    assert [d.path for d in diff.blocking] == ["modalities.frames_2d.weights_sha256"]
    assert not diff.same_feature_space


# ---------------------------------------------------------------------------------------- merge

def test_merge_split_by_split_gives_back_every_feature(tmp_path: Path) -> None:
    data = _arrays()
    splits = np.array(data["splits"])
    sources = []
    for split in SPLITS:
        url = f"memory://merge-src/{split}"   # merged across filesystems, into a local folder
        _write(url, data, splits == split, shard_size=12)
        sources.append(url)
    result = merge_stores(sources, tmp_path / "all")
    assert (result.samples, result.failures, result.sources) == (90, 0, sources)
    report = verify_store(tmp_path / "all")
    assert report.ok, report.problems
    merged = open_store(tmp_path / "all")
    names = [e.path for e in merged.manifest.shards]
    assert names == [f"shards/shard-{k:05d}.h5" for k in range(len(names))]
    order = [data["ids"].index(s) for s in merged.index.column("sample_id").to_pylist()]
    for key, values in data["features"].items():
        np.testing.assert_array_equal(merged.read(key),
                                      values[order].astype(np.float16))
    np.testing.assert_array_equal(merged.labels(), data["labels"][order])
    assert [m["url"] for m in merged.manifest.merged_from] == sources
    assert merged.manifest.counts.splits == {"test": 15, "train": 60, "val": 15}


def test_merge_drops_failures_of_samples_another_team_extracted(tmp_path: Path) -> None:
    _extract_like(tmp_path / "a", ["a", "b"], failures=[
        ("w", "no_face"), ("c", "missing_file"), ("v", "corrupt_media"), ("d", "no_face")])
    _extract_like(tmp_path / "b", ["c"], failures=[("d", "no_face"), ("a", "missing_file"),
                                                   ("u", "too_short")])
    result = merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert (result.samples, result.failures, result.dropped_failures) == (3, 4, 3)
    assert verify_store(tmp_path / "m").ok
    merged = open_store(tmp_path / "m")
    assert merged.failures.column("sample_id").to_pylist() == ["w", "v", "d", "u"]
    assert merged.manifest.timings == {"decode": 3.0}
    assert merged.store_id == open_store(tmp_path / "a").store_id


def test_merge_refuses_another_configuration_naming_the_fields(tmp_path: Path) -> None:
    _extract_like(tmp_path / "a", ["a"])
    _extract_like(tmp_path / "b", ["b"], weights="imagenet")
    with pytest.raises(StoreError, match="modalities.frames_2d.weights: 'random' vs 'imagenet'"):
        merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_overlapping_samples_naming_some(tmp_path: Path) -> None:
    _extract_like(tmp_path / "a", ["a", "b", "c"])
    _extract_like(tmp_path / "b", ["c", "b", "z"])
    with pytest.raises(StoreError, match=r"overlap in 2 sample_ids .*'b'"):
        merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")


def test_merge_refuses_a_used_destination_and_a_corrupt_source(tmp_path: Path,
                                                               store: Path) -> None:
    data = _arrays(n=10, seed=1)
    data["ids"] = [f"other{i}" for i in range(10)]
    _write(tmp_path / "b", data)
    with pytest.raises(StoreError, match="not empty"):
        merge_stores([store, tmp_path / "b"], store)
    _flip(_shard(store), _feature_offset(_shard(store)))
    with pytest.raises(StoreError, match="shard-00001.h5: checksum mismatch"):
        merge_stores([store, tmp_path / "b"], tmp_path / "m")


# --------------------------------------------------------------------------- label texts

def _with_texts(url: Path, vectors: np.ndarray) -> bytes:
    """Label texts of the toy store's classes, ``vectors`` [3, 8] as the prompts' (their
    negation as the descriptions'); returns the file's bytes."""
    from pipeline.label_texts import FILE, LabelText, LabelTextSet, write_label_texts

    texts = LabelTextSet(tuple(LabelText("class", "", i, label, f"a face with {label}",
                                         f"{label}, described") for i, label in enumerate(LABELS)),
                         "a face with {label}", {}, "s" * 64)
    fs = open_store(url)
    write_label_texts(fs.loc, fs.manifest, texts, vectors, -vectors, backbone="arrays",
                      weights_sha256=None)
    return (url / FILE).read_bytes()


def _two_sources(tmp_path: Path) -> tuple[Path, Path]:
    data = _arrays(n=30)
    first = np.arange(30) < 20
    _write(tmp_path / "a", data, first)
    _write(tmp_path / "b", data, ~first)
    return tmp_path / "a", tmp_path / "b"


VECTORS = np.arange(24, dtype=np.float32).reshape(3, 8) / 10


def test_merge_carries_the_label_texts_and_verify_checks_them(tmp_path: Path) -> None:
    from pipeline.label_texts import FILE, read_label_texts

    a, b = _two_sources(tmp_path)
    data = _with_texts(a, VECTORS)
    _with_texts(b, VECTORS)
    merge_stores([a, b], tmp_path / "m")
    assert (tmp_path / "m" / FILE).read_bytes() == data
    merged = open_store(tmp_path / "m")
    info = merged.manifest.label_texts
    assert info is not None and info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.rows == 3 and info.template == "a face with {label}"
    texts = read_label_texts(merged)
    np.testing.assert_array_equal(texts.names, VECTORS)
    np.testing.assert_array_equal(texts.descriptions, -VECTORS)
    assert texts.prompts == ("a face with neutral", "a face with joy", "a face with anger")
    assert verify_store(tmp_path / "m").ok


def test_merge_gives_one_sources_label_texts_to_the_merged_store(tmp_path: Path) -> None:
    from pipeline.label_texts import FILE

    a, b = _two_sources(tmp_path)
    data = _with_texts(b, VECTORS)
    merge_stores([a, b], tmp_path / "m")
    assert (tmp_path / "m" / FILE).read_bytes() == data
    assert open_store(tmp_path / "m").manifest.label_texts is not None


def test_merge_refuses_sources_with_other_label_texts_or_a_changed_file(tmp_path: Path) -> None:
    from pipeline.label_texts import FILE

    a, b = _two_sources(tmp_path)
    _with_texts(a, VECTORS)
    _with_texts(b, VECTORS + 1)
    with pytest.raises(StoreError, match=r"carry different label texts for dataset 'toy' "
                                         r"\(text backbone arrays\): the texts or their vectors"):
        merge_stores([a, b], tmp_path / "m")
    assert not (tmp_path / "m").exists()
    _with_texts(b, VECTORS)
    (b / FILE).write_bytes((b / FILE).read_bytes()[:-1] + b"x")
    with pytest.raises(StoreError, match=f"b/{FILE}: checksum mismatch"):
        merge_stores([a, b], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def _problems(url: Path) -> list[str]:
    return [str(p) for p in verify_store(url).problems]


def test_verify_finds_changed_lost_and_foreign_label_texts(store: Path) -> None:
    from pipeline.label_texts import FILE

    data = _with_texts(store, VECTORS)
    assert verify_store(store).ok
    table = pq.read_table(store / FILE)
    swapped = table.set_column(table.column_names.index("label"), "label",
                               pa.array(["joy", "neutral", "anger"]))
    pq.write_table(swapped, store / FILE)
    found = _problems(store)
    assert found[0].startswith(f"{FILE}: checksum mismatch") and len(found) == 2
    assert found[1] == (f"{FILE} [classes]: are not the dataset's labels, in order (expected "
                        f"{LABELS}, found ['joy', 'neutral', 'anger'])")
    (store / FILE).unlink()
    assert _problems(store) == [f"{FILE}: missing: store.json records label texts (expected "
                                "3 rows, found no file)"]
    (store / FILE).write_bytes(data)
    manifest = json.loads((store / "store.json").read_text())
    manifest["label_texts"]["backbone"] = "distilbert-sst2"
    (store / "store.json").write_text(json.dumps(manifest))
    assert _problems(store) == [f"{FILE} [backbone]: embedded by another backbone than the "
                                "store's text features (expected ('arrays', None), found "
                                "('distilbert-sst2', None))"]


def test_a_label_texts_record_without_its_hash_is_read_and_noted_as_not_hashed(
        store: Path) -> None:
    from pipeline.label_texts import FILE, read_label_texts

    _with_texts(store, VECTORS)
    manifest = json.loads((store / "store.json").read_text())
    del manifest["label_texts"]["sha256"]  # a record written without the file's hash
    (store / "store.json").write_text(json.dumps(manifest))
    report = verify_store(store)
    assert report.ok, report.problems
    assert any(n.startswith(f"{FILE}: not hashed") for n in report.notes)
    np.testing.assert_array_equal(read_label_texts(open_store(store)).names, VECTORS)


# ------------------------------------------------------------------------------- credentials

@pytest.mark.parametrize(("url", "shown"), [
    ("s3://AKIAKEY:s3cr3t@bucket/store", "s3://bucket/store"),
    ("https://host/store?X-Amz-Signature=s3cr3t", "https://host/store"),
    ("simplecache::gs://user:s3cr3t@b/s", "simplecache::gs://b/s"),
    ("/data/stores/meld", "/data/stores/meld"),
])
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cr3t" not in repr(Location(url, None, "root"))  # type: ignore[arg-type]


def test_multilabel_counts_count_each_label(tmp_path: Path) -> None:
    labels = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]], np.float32)
    write_arrays(tmp_path / "ml", dataset="mosei", sample_ids=list("abcd"),
                 splits=["train", "train", "test", "train"],
                 features={"audio": np.zeros((4, 1, 2), np.float32)}, labels=labels,
                 label_names=LABELS, multilabel=True)
    info = store_info(tmp_path / "ml")
    assert info.counts == {"test": {"neutral": 1, "joy": 1, "anger": 0},
                           "train": {"neutral": 2, "joy": 0, "anger": 1}}
    assert verify_store(tmp_path / "ml").ok


# ------------------------------------------------------------------- a million-clip index

def test_index_operations_are_columnar_and_exact_on_a_large_index() -> None:
    """positions / labels / read's shard grouping on 300k rows, against plain numpy."""
    n, rng = 300_000, np.random.default_rng(0)
    split = np.array(SPLITS)[rng.integers(0, 3, n)]
    label = rng.integers(-1, 3, n)
    index = pa.table({"sample_id": [f"s{i}" for i in range(n)], "split": split,
                      "shard": [f"shard-{i // 256:05d}" for i in range(n)],
                      "row": np.arange(n) % 256, "label": label})
    manifest = build_manifest(
        identity=StoreIdentity(DatasetInfo("vox", tuple(LABELS)), {}, views=1), modalities={},
        shards=[], counts=Counts(n, 0), created="")
    store = FeatureStore(Location.parse("memory://unused"), manifest, index)
    np.testing.assert_array_equal(store.positions("val"), np.flatnonzero(split == "val"))
    np.testing.assert_array_equal(store.positions(["test", "train"]),
                                  np.flatnonzero(split != "val"))
    assert store.splits == ("test", "train", "val") and len(store.positions("dev")) == 0
    pos = rng.permutation(n)[:5000]
    np.testing.assert_array_equal(store.labels(pos), label[pos])
    codes = np.arange(n)[pos] // 256
    for code, sel in group_by_code(codes):
        assert (codes[sel] == code).all() and (np.diff(sel) > 0).all()
    assert sum(len(sel) for _, sel in group_by_code(codes)) == len(pos)


# ------------------------------------------------------------------- verify at scale

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_nonfinite_rows_are_those_numpy_finds(dtype: type) -> None:
    """The exponent-bit test finds exactly the rows np.isfinite rejects: NaN, +-Inf, and not
    the largest finite values, subnormals or negative zero."""
    from pipeline.store.shard_checks import nonfinite_rows

    info = np.finfo(dtype)
    block = np.zeros((8, 2, 3), dtype)
    block[1, 0, 2] = np.nan
    block[3, 1, 0] = np.inf
    block[4, 0, 0] = -np.inf
    block[5] = info.max
    block[6] = -info.smallest_subnormal
    block[7] = -0.0
    found = nonfinite_rows(block)
    np.testing.assert_array_equal(found, [1, 3, 4])
    np.testing.assert_array_equal(found, np.flatnonzero(~np.isfinite(block).all(axis=(1, 2))))
    assert len(nonfinite_rows(block[:0])) == 0


def test_verify_hashes_a_local_store_on_a_second_thread(store: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashing overlaps the checks of the shards' contents (verify then costs about what
    hashing the store costs, benchmarks/scale.py); every shard is hashed once."""
    import threading

    import pipeline.store.verify as verify

    threads = []
    real = verify._sha256_and_size

    def recording(loc: Location, path: str) -> tuple[str, int]:
        threads.append(threading.current_thread())
        return real(loc, path)

    monkeypatch.setattr(verify, "_sha256_and_size", recording)
    assert verify_store(store).ok
    assert len(threads) == 6 and threading.main_thread() not in threads
