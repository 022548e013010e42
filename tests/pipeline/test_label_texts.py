"""Label texts: the prompts and descriptions of every labelled dataset, kept in a store beside
its features (label_texts.parquet, recorded in store.json), read back without a backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.label_texts import (FILE, LabelTextsError, available, read_label_texts,
                                  texts_for, write_label_texts)
from pipeline.manifest import load_manifest
from pipeline.store import open_store, write_arrays
from pipeline.store.ops import verify_store

MELD = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]


@pytest.mark.parametrize("dataset", ["meld", "caer", "mosei"])
def test_every_labelled_dataset_has_a_prompt_and_a_description_per_label(dataset: str) -> None:
    manifest = load_manifest(dataset)
    made = texts_for(dataset, manifest.labels, manifest.targets)
    classes = [t for t in made.texts if t.kind == "class"]
    assert [t.label for t in classes] == list(manifest.labels)
    assert all(t.prompt.startswith("a photo of a person with ") for t in classes)
    assert len({t.description for t in classes}) == len(classes)
    assert made.template == "a photo of a person with {label}"


def test_prompts_name_the_label_and_coarse_groups_need_their_target() -> None:
    made = texts_for("meld", MELD)
    assert made.texts[4].prompt == "a photo of a person with joy"
    assert made.texts[0].prompt == "a photo of a person with a neutral expression"
    assert made.coarse == {}
    mosei = load_manifest("mosei")
    with_target = texts_for("mosei", mosei.labels, ("valence",))
    assert with_target.coarse == {"sentiment": "valence"}
    coarse = [t for t in with_target.texts if t.kind == "coarse"]
    assert [(t.index, t.label) for t in coarse] == [(0, "negative"), (1, "non-negative")]
    assert texts_for("mosei", mosei.labels).coarse == {}


def test_unknown_datasets_and_labels_are_refused() -> None:
    with pytest.raises(LabelTextsError, match="voxceleb2"):
        texts_for("voxceleb2", ["x"])
    with pytest.raises(LabelTextsError, match="contempt"):
        texts_for("meld", [*MELD, "contempt"])


def _array_store(path: Path):
    rng = np.random.default_rng(0)
    return write_arrays(path, dataset="meld", sample_ids=[f"s{i}" for i in range(7)],
                        splits=["train"] * 5 + ["val", "test"],
                        features={"text": rng.normal(size=(7, 1, 8)).astype(np.float16)},
                        labels=np.arange(7), label_names=MELD)


def test_written_texts_are_read_back_and_recorded_in_store_json(tmp_path: Path) -> None:
    fs = _array_store(tmp_path / "s")
    assert "written from arrays" in str(available(fs.manifest))
    made = texts_for("meld", MELD)
    prompts = np.arange(7 * 8, dtype=np.float32).reshape(7, 8)
    write_label_texts(fs.loc, fs.manifest, made, prompts, -prompts, backbone="arrays",
                      weights_sha256=None)
    reopened = open_store(fs.url)
    info = reopened.manifest.label_texts
    assert info is not None and info.rows == 7 and info.key == "text"
    texts = read_label_texts(reopened)
    np.testing.assert_array_equal(texts.names, prompts)
    np.testing.assert_array_equal(texts.descriptions, -prompts)
    assert texts.prompts[4] == "a photo of a person with joy"
    assert reopened.store_id == fs.store_id  # derived data: not part of the identity
    assert verify_store(fs.url).problems == []
    (tmp_path / "s" / FILE).write_bytes((tmp_path / "s" / FILE).read_bytes()[:-1] + b"x")
    with pytest.raises(LabelTextsError, match="sha256"):
        read_label_texts(open_store(fs.url))


def test_reading_a_store_without_texts_names_the_command(tmp_path: Path) -> None:
    fs = _array_store(tmp_path / "s")
    with pytest.raises(LabelTextsError, match="cli store add-label-texts"):
        read_label_texts(fs)


def test_vectors_must_fit_the_text_key(tmp_path: Path) -> None:
    fs = _array_store(tmp_path / "s")
    with pytest.raises(ValueError, match=r"\[7, 8\]"):
        write_label_texts(fs.loc, fs.manifest, texts_for("meld", MELD), np.zeros((7, 3)),
                          np.zeros((7, 3)), backbone="arrays", weights_sha256=None)


def test_non_finite_vectors_are_refused_by_the_writer_verify_and_readers(tmp_path: Path) -> None:
    import hashlib
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = _array_store(tmp_path / "s")
    made = texts_for("meld", MELD)
    bad = np.ones((7, 8))
    bad[3, 2] = 1e39  # finite as float64, Inf as float32
    with pytest.raises(ValueError, match="NaN or Inf"):
        write_label_texts(fs.loc, fs.manifest, made, bad, bad, backbone="arrays",
                          weights_sha256=None)
    assert not (tmp_path / "s" / FILE).exists()
    good = np.ones((7, 8), np.float32)
    write_label_texts(fs.loc, fs.manifest, made, good, good, backbone="arrays",
                      weights_sha256=None)
    # The file rewritten with a NaN, and its record made to match: only the value is wrong.
    table = pq.read_table(tmp_path / "s" / FILE)
    vectors = table.column("prompt_vector").to_pylist()
    vectors[3][2] = float("nan")
    column = table.column_names.index("prompt_vector")
    table = table.set_column(column, "prompt_vector",
                             pa.array(vectors, table.schema.field("prompt_vector").type))
    pq.write_table(table, tmp_path / "s" / FILE)
    record = json.loads((tmp_path / "s" / "store.json").read_text())
    record["label_texts"]["sha256"] = hashlib.sha256(
        (tmp_path / "s" / FILE).read_bytes()).hexdigest()
    (tmp_path / "s" / "store.json").write_text(json.dumps(record))
    problems = [str(p) for p in verify_store(fs.url).problems]
    assert any("prompt_vector, row 3" in p and "NaN or Inf" in p for p in problems), problems
    with pytest.raises(LabelTextsError, match="NaN or Inf"):
        read_label_texts(open_store(fs.url))
