"""The study as the paper ran it, on small synthetic stores in one feature space: each objective
pretrained once on an unlabelled store (VoxCeleb2's part), evaluated on a MELD and a CAER store,
every row in the paper's order beside the paper's numbers; a store of another feature space is
refused before any training; a re-run trains and evaluates nothing."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from heads.checkpoint import load_checkpoint
from heads.data import DataError, check_views
from heads.study import paper, runner
from heads.study.plan import check_systems, skip_reason
from heads.study.run import run_study
from heads.study.runner import QUICK_EPOCHS, up_to_date
from heads.study.systems import CLEF_ROWS, zero_shot_row
from heads.study.tables import regression_lines
from heads.study.types import BASELINE_ROWS, EXTRA_ROWS, OBJECTIVE_ROWS, Method, TableRow
from pipeline.config import ConfigError
from pipeline.label_texts import texts_for, write_label_texts
from pipeline.manifest import load_manifest
from pipeline.store import FeatureStore, open_store, write_arrays
from pipeline.store.manifest import StoreError

DIMS = {"frames_2d": 16, "frames_3d": 16, "audio": 8, "text": 8}
PAPER = yaml.safe_load((Path(paper.__file__).parent / "paper_results.yaml").read_text())
METRICS = ("accuracy", "f1_weighted", "precision_weighted", "recall_weighted")
FULL = {"video": ("frames_2d", "frames_3d"), "audio": ("audio",), "text": ("text",)}


def synthetic_store(path: Path, *, dataset: str, labels: list[str] | None, n: int, seed: int,
                    views: int = 1, keys: tuple[str, ...] = tuple(DIMS),
                    space: str = "synthetic-v1") -> FeatureStore:
    """Clips of up to 7 latent classes (one per label) seen through fixed per-key maps: the
    maps are the feature space (shared by every store of one ``space``), ``seed`` draws the
    clips; splits train/train/train/val/test."""
    maps = np.random.default_rng(0)
    means = maps.normal(size=(7, 6)) * 2.0
    weights = {k: maps.normal(size=(6, d)) / np.sqrt(6) for k, d in DIMS.items()}
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(labels) if labels else 7, n)
    z = means[y] + rng.normal(size=(n, 6))
    features = {}
    for k in keys:
        base = z @ weights[k] + 0.3 * rng.normal(size=(n, DIMS[k]))
        extra = [base + 0.3 * rng.normal(size=base.shape) for _ in range(views - 1)]
        features[k] = np.stack([base, *extra], axis=1).astype(np.float16)
    splits = [("train", "train", "train", "val", "test")[i % 5] for i in range(n)]
    return write_arrays(path, dataset=dataset, sample_ids=[f"{seed}-{i}" for i in range(n)],
                        splits=splits, features=features,
                        labels=y if labels else np.full(n, -1), label_names=labels or [],
                        feature_space=space)


def labelled(dataset: str) -> list[str]:
    return list(load_manifest(dataset).labels)


def with_label_texts(store: FeatureStore) -> FeatureStore:
    """The dataset's label texts, with random vectors in the store's 8-d "text space"."""
    made = texts_for(store.dataset, list(store.label_names))
    vectors = np.random.default_rng(7).normal(size=(len(made.texts), DIMS["text"]))
    write_label_texts(store.loc, store.manifest, made, vectors.astype(np.float32),
                      (vectors + 0.1).astype(np.float32), backbone="arrays", weights_sha256=None)
    return open_store(store.url)


def afewva_like(path: Path, *, n: int, seed: int) -> FeatureStore:
    """Clips of the study's feature space (video keys only) with valence and arousal, a
    squashed linear function of the latent, and no classes."""
    maps = np.random.default_rng(0)
    weights = {k: maps.normal(size=(6, DIMS[k])) / np.sqrt(6) for k in ("frames_2d", "frames_3d")}
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6))
    targets = np.tanh(z[:, :2] / 2)
    features = {k: (z @ w + 0.3 * rng.normal(size=(n, w.shape[1])))[:, None].astype(np.float16)
                for k, w in weights.items()}
    return write_arrays(path, dataset="afewva", sample_ids=[f"v{i}" for i in range(n)],
                        splits=[("train", "train", "train", "val", "test")[i % 5]
                                for i in range(n)],
                        features=features, labels=np.full(n, -1), label_names=[],
                        targets=targets, target_names=("valence", "arousal"),
                        feature_space="synthetic-v1")


@dataclass
class Study:
    out: Path
    vox: FeatureStore
    stores: dict[str, FeatureStore]


@pytest.fixture(scope="module")
def paper_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("study")
    vox = synthetic_store(root / "vox", dataset="voxceleb2", labels=None, n=192, seed=1,
                          views=3)
    stores = {"meld": with_label_texts(synthetic_store(root / "meld", dataset="meld",
                                                       labels=labelled("meld"), n=140, seed=2)),
              "caer": with_label_texts(synthetic_store(root / "caer", dataset="caer",
                                                       labels=labelled("caer"), n=150, seed=3))}
    out = run_study([s.url for s in stores.values()], root / "out", pretrain_store=vox.url,
                    quick=True, device="cpu", progress=False)
    return Study(out, vox, stores)


def tables(markdown: str) -> dict[str, list[list[str]]]:
    """Heading -> the cells of its table's body rows."""
    found: dict[str, list[list[str]]] = {}
    heading = ""
    for line in markdown.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("# ")
        elif line.startswith("| ") and not line.startswith("| Method"):
            found.setdefault(heading, []).append([c.strip() for c in line.strip("|").split("|")])
    return found


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_the_rows_are_the_papers_in_its_order() -> None:
    for name, rows in (("baselines", BASELINE_ROWS), ("objectives", OBJECTIVE_ROWS)):
        paper_rows = PAPER["tables"][name]["rows"]
        assert [(m.key, m.label) for m in rows] == [(r["key"], r["label"]) for r in paper_rows]
    by_key = {m.key: m for m in OBJECTIVE_ROWS}
    assert by_key["multi_cont_no_text"] == Method("multi_cont_no_text", "Multi-Cont without text",
                                                  "multi_cont", pretrain=("video", "audio"))
    assert by_key["multi_cont_no_audio"].pretrain == ("video", "text")
    assert by_key["conclugen_vision"].objective == "conclugen"
    assert by_key["conclugen_vision"].probe == ("video",)
    assert {m.key for m in EXTRA_ROWS}.isdisjoint(
        r["key"] for t in PAPER["tables"].values() for r in t["rows"])


@pytest.mark.slow
def test_each_table_has_the_papers_rows_and_numbers_beside_ours(paper_study: Study) -> None:
    for dataset in ("meld", "caer"):
        md = tables((paper_study.out / dataset / "results.md").read_text())
        two = md["Table 2: the proposed method and the baselines"]
        objectives = md["Tables 3-5: self-supervised objectives and modality ablations, "
                        "linear evaluation"]
        expected = [*[r["label"] for r in PAPER["tables"]["objectives"]["rows"]],
                    "**not in the paper**", *[m.label for m in EXTRA_ROWS]]
        assert [r[0] for r in objectives] == expected
        assert [r[0] for r in two] == [r["label"] for r in PAPER["tables"]["baselines"]["rows"]]
        for name, body in (("objectives", objectives), ("baselines", two)):
            table = PAPER["tables"][name]
            for paper_row, cells in zip(table["rows"], body):
                values = dict(zip(table["metrics"], paper_row["values"][dataset]))
                for k, metric in enumerate(METRICS):
                    ours, theirs, delta = cells[1 + 3 * k: 4 + 3 * k]
                    assert theirs == (str(values[metric]) if metric in values else "-")
                    if metric in values:
                        assert float(delta) == pytest.approx(float(ours) - values[metric],
                                                             abs=0.011)
        for extra in objectives[-len(EXTRA_ROWS):]:
            assert extra[2] == "-" and extra[-1] == "this project's row"

        rows = read_csv(paper_study.out / dataset / "results.csv")
        paper_rows = {r["key"]: r for t in ("baselines", "objectives")
                      for r in PAPER["tables"][t]["rows"]}
        for row in rows:
            assert row["status"] == "ok", row
            if row["key"] in paper_rows and row["table"] == "Tables 3-5":
                assert [float(row[f"paper_{m}"]) for m in METRICS] == \
                    paper_rows[row["key"]]["values"][dataset]
        assert {r["modalities"] for r in rows if r["key"] == "conclugen_vision"} == {"video"}
        assert {r["protocol"] for r in rows if r["key"] == "conclugen_finetuned"} == {"finetune"}
        clef = md["Other systems: CLEF's text prototypes (test split)"]
        assert [r[0] for r in clef] == [m.label for m in CLEF_ROWS]
        written = json.loads((paper_study.out / dataset / "eval" / "clef" / "metrics.json")
                             .read_text())
        assert written["pretrained_on"]["store_id"] == paper_study.vox.store_id
        trained = written["summary"]["test"]["accuracy"]["mean"]
        zero = written["details"]["zero_shot"]["splits"]["test"]["accuracy"]
        for cells, key, value in zip(clef, ("clef", "clef_zero_shot"), (trained, zero)):
            assert cells[1] == f"{100 * value:.2f}" and cells[-1] == ""
            csv_row = next(r for r in rows if r["key"] == key)
            assert float(csv_row["accuracy"]) == pytest.approx(100 * value, abs=1e-4)
            assert csv_row["paper_accuracy"] == "" and csv_row["protocol"] == "clef"
        (avce,) = md["Other systems: valence/arousal regression (test split)"]
        assert avce[1:5] == ["skipped"] * 4
        assert avce[-1] == (f"skipped: the store has no continuous targets (dataset {dataset}); "
                            "AVCE regresses valence/arousal: stores of CMU-MOSEI (valence) and "
                            "AFEW-VA have them")
    index = (paper_study.out / "results.md").read_text()
    assert "[meld/results.md](meld/results.md)" in index and "## caer" in index
    assert "Multi-Task Multi-Modal Self-Supervised Learning" in index
    assert (paper_study.out / "meld" / "results.png").stat().st_size > 0


@pytest.mark.slow
def test_every_run_was_pretrained_once_on_the_pretraining_store(paper_study: Study) -> None:
    runs = sorted(p.name for p in (paper_study.out / "runs").iterdir())
    assert runs == sorted(["conclugen", "conclu", "congen", "multi_cont", "instance_cont",
                           "generative", "multi_cont-video-audio", "multi_cont-video-text",
                           "conclugen-video-audio", "conclugen-video-text"])
    for name in runs:
        payload = load_checkpoint(paper_study.out / "runs" / name / "checkpoints" / "last.pt")
        assert payload.store_id == paper_study.vox.store_id, name
        assert payload.epoch == QUICK_EPOCHS
    assert not any((paper_study.out / d / "runs").exists() for d in paper_study.stores)
    for dataset, store in paper_study.stores.items():
        for row in read_csv(paper_study.out / dataset / "results.csv"):
            assert row["store_id"] == store.store_id
            if row["protocol"] == "supervised":
                assert row["pretrain_store_id"] == ""
                continue
            metrics = json.loads((Path(row["eval"]) / "metrics.json").read_text())
            assert metrics["pretrained_on"]["store_id"] == paper_study.vox.store_id
            assert metrics["pretrained_on"]["dataset"] == "voxceleb2"
            assert row["pretrain_store_id"] == paper_study.vox.store_id
            assert Path(row["eval"]).is_relative_to(paper_study.out / dataset)
    caption = (paper_study.out / "meld" / "results.md").read_text()
    assert f"pretrained once per objective on `{paper_study.vox.url}`" in caption
    assert "not on VoxCeleb2" not in caption


@pytest.mark.slow
def test_each_table_reports_its_stores_test_split(paper_study: Study) -> None:
    counts = {}
    for dataset, store in paper_study.stores.items():
        test = len(store.positions("test"))
        counts[dataset] = test
        assert f"Test split: {test} clips." in (paper_study.out / dataset / "results.md"
                                                ).read_text()
        assert {int(r["test_clips"]) for r in read_csv(paper_study.out / dataset /
                                                       "results.csv")} == {test}
    assert counts["meld"] != counts["caer"]


@pytest.mark.slow
def test_a_rerun_trains_and_evaluates_nothing(paper_study: Study,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a re-run trained or evaluated again")

    monkeypatch.setattr(runner, "run_pretrain", refuse)
    monkeypatch.setattr(runner, "run_eval", refuse)
    files = sorted(paper_study.out.rglob("*.pt")) + sorted(paper_study.out.rglob("metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in files}
    tables_before = (paper_study.out / "results.csv").read_text()
    run_study([s.url for s in paper_study.stores.values()], paper_study.out,
              pretrain_store=paper_study.vox.url, quick=True, device="cpu", progress=False)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert (paper_study.out / "results.csv").read_text() == tables_before


def test_an_evaluation_is_repeated_when_what_it_depends_on_changed(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    kept = {"protocol": "linear", "store_id": "meld-1", "config": {"epochs": 20},
            "seeds": [0], "checkpoint": {"store_id": "vox-1", "step": 9, "path": "x"}}
    path.write_text(json.dumps(kept))
    same = dict(protocol="linear", store_id="meld-1", config={"epochs": 20}, seeds=[0],
                checkpoint={"store_id": "vox-1", "step": 9})
    assert up_to_date(path, **same) == kept
    for change in ({"store_id": "caer-1"}, {"config": {"epochs": 21}}, {"seeds": [0, 1]},
                   {"checkpoint": {"store_id": "vox-1", "step": 12}},
                   {"checkpoint": {"store_id": "vox-2", "step": 9}}, {"checkpoint": None},
                   {"protocol": "finetune"}):
        assert up_to_date(path, **{**same, **change}) is None, change


def test_a_store_of_another_feature_space_is_refused_before_any_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before checking every store")

    monkeypatch.setattr(runner, "run_pretrain", refuse)
    monkeypatch.setattr(runner, "run_eval", refuse)
    vox = synthetic_store(tmp_path / "vox", dataset="voxceleb2", labels=None, n=40, seed=1)
    meld = synthetic_store(tmp_path / "meld", dataset="meld", labels=labelled("meld"), n=40,
                           seed=2)
    caer = synthetic_store(tmp_path / "caer", dataset="caer", labels=labelled("caer"), n=40,
                           seed=3, space="synthetic-v2")
    with pytest.raises(StoreError) as err:
        run_study([meld.url, caer.url], tmp_path / "out", pretrain_store=vox.url, quick=True,
                  device="cpu", progress=False)
    message = str(err.value)
    assert caer.url in message and meld.url not in message.split("per store key:")[1]
    for key in DIMS:
        assert f"{key}: weights: synthetic-v1 -> synthetic-v2" in message
    assert "Nothing was trained" in message
    assert not (tmp_path / "out").exists()

    result = CliRunner().invoke(app, ["study", "--pretrain-store", vox.url, "--store", meld.url,
                                      "--store", caer.url, "--out", str(tmp_path / "out"),
                                      "--quick", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "frames_2d: weights: synthetic-v1 -> synthetic-v2" in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_without_a_pretraining_store_the_caption_says_so_and_skips_are_listed(
        tmp_path: Path) -> None:
    store = synthetic_store(tmp_path / "store", dataset="synthetic", labels=["a", "b", "c"],
                            n=120, seed=4, keys=("frames_2d", "audio"))
    out = run_study(store.url, tmp_path / "out", quick=True, device="cpu", progress=False,
                    extras=False)
    text = (out / "synthetic" / "results.md").read_text()
    assert "pretrained on the downstream store itself, not on VoxCeleb2 as in the paper" in text
    assert "pretrained on the downstream store itself" in (out / "results.md").read_text()
    assert "Paper: n/a" in text
    rows = {r[0]: r for r in tables(text)[
        "Tables 3-5: self-supervised objectives and modality ablations, linear evaluation"]}
    assert list(rows) == [r["label"] for r in PAPER["tables"]["objectives"]["rows"]]
    assert rows["ConCluGen"][2] == "n/a" and rows["ConCluGen"][1] not in ("skipped", "n/a")
    skipped = {label: cells[-1] for label, cells in rows.items() if cells[1] == "skipped"}
    assert skipped == {
        "Instance-Cont": "skipped: the store holds 1 view(s) per sample; instance_cont "
                         "contrasts two augmented views (extract it with --views 3 or more)",
        "Multi-Cont without text": "skipped: the store has only video+audio: the same run as "
                                   "multi_cont on all its modalities",
        "Multi-Cont without audio": "skipped: the store has no text features"}
    assert sorted(p.name for p in (out / "synthetic" / "runs").iterdir()) == [
        "conclu", "conclugen", "congen", "generative", "multi_cont"]
    by_key = {r["key"]: r for r in read_csv(out / "results.csv")}
    assert by_key["instance_cont"]["status"] == "skipped"
    assert by_key["conclugen"]["pretrain_store_id"] == store.store_id


def test_skip_reasons() -> None:
    keys = {"frames_2d", "frames_3d", "audio", "text"}
    conclugen, vision = OBJECTIVE_ROWS[0], OBJECTIVE_ROWS[6]
    assert skip_reason(conclugen, pretrain=FULL, store_keys=keys, views=1) is None
    assert skip_reason(BASELINE_ROWS[0], pretrain={}, store_keys={"audio"}, views=1) is None
    assert "2 modalities" in skip_reason(Method("x", "x", "multi_cont"),
                                         pretrain={"video": ("frames_2d",)}, store_keys=keys,
                                         views=1)
    # the heads read frames_3d, which this downstream store lacks; audio alone is still fine
    lacking = skip_reason(vision, pretrain=FULL, store_keys={"frames_2d", "audio", "text"},
                          views=1, own=False)
    assert lacking is not None and "no frames_3d features" in lacking
    assert skip_reason(Method("x", "x", "multi_cont", pretrain=("audio", "text")),
                       pretrain=FULL, store_keys={"frames_2d", "audio", "text"},
                       views=1) is None


@pytest.mark.parametrize("contrast_views", ["augmented", "all"])
def test_instance_cont_is_skipped_exactly_when_the_trainer_would_refuse_the_store(
        contrast_views: str) -> None:
    instance = OBJECTIVE_ROWS[4]
    assert instance.objective == "instance_cont"
    for views in (1, 2, 3, 4):
        store = SimpleNamespace(url="vox", views=views)  # what check_views reads
        try:
            check_views(store, True, contrast_views)  # type: ignore[arg-type]
            refused = False
        except DataError:
            refused = True
        reason = skip_reason(instance, pretrain=FULL, store_keys=set(DIMS), views=views,
                             own=False, contrast_views=contrast_views)
        assert (reason is not None) == refused, (views, reason)
        if refused:
            assert reason.startswith(f"the pretraining store holds {views} view(s)")


def test_a_run_of_other_settings_in_the_study_folder_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from heads.checkpoint import CheckpointError

    def other_settings(*args: object, **kwargs: object) -> None:
        raise CheckpointError("resume: settings differ from the checkpoint's: epochs")

    monkeypatch.setattr(runner, "run_pretrain", other_settings)
    store = synthetic_store(tmp_path / "store", dataset="synthetic", labels=["a", "b"], n=40,
                            seed=5, keys=("frames_2d", "audio"))
    with pytest.raises(CheckpointError, match=r"synthetic/runs/conclugen holds a run that this "
                                              r"study cannot continue \(resume: settings"):
        run_study(store.url, tmp_path / "out", quick=True, device="cpu", progress=False)


@pytest.mark.slow
def test_clef_and_avce_rows_where_they_apply_and_no_paper_rows(tmp_path: Path) -> None:
    vox = synthetic_store(tmp_path / "vox", dataset="voxceleb2", labels=None, n=160, seed=1)
    meld = with_label_texts(synthetic_store(tmp_path / "meld", dataset="meld",
                                            labels=labelled("meld"), n=140, seed=2))
    afewva = afewva_like(tmp_path / "afewva", n=150, seed=3)
    out = run_study([meld.url, afewva.url], tmp_path / "out", pretrain_store=vox.url,
                    quick=True, device="cpu", progress=False, systems=["avce", "clef"])
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["conclugen"]  # zero-shot's
    md = {name: tables((out / name / "results.md").read_text()) for name in ("meld", "afewva")}
    assert not any(h.startswith("Table") for t in md.values() for h in t)  # no paper rows
    clef = md["meld"]["Other systems: CLEF's text prototypes (test split)"]
    assert [r[0] for r in clef] == [m.label for m in CLEF_ROWS]
    assert all(cells[1] not in ("skipped", "n/a") for cells in clef)
    skipped = md["afewva"]["Other systems: CLEF's text prototypes (test split)"]
    assert {cells[-1] for cells in skipped} == {
        "skipped: the store has 0 class(es) (dataset afewva, continuous targets "
        "['valence', 'arousal'] only)"}

    (avce,) = md["afewva"]["Other systems: valence/arousal regression (test split)"]
    written = json.loads((out / "afewva" / "eval" / "avce" / "metrics.json").read_text())
    test = written["summary"]["test"]
    keys = ["ccc", "pcc", "rmse", "sagr"]
    keys += [f"{k}_{t}" for t in ("valence", "arousal") for k in ("ccc", "pcc", "rmse", "sagr")]
    assert avce[1:-1] == [f"{test[k]['mean']:.4f}" for k in keys] and avce[-1] == ""
    assert test["ccc"]["mean"] > 0.3  # the targets are learnable from the features
    regression = {r["dataset"]: r for r in read_csv(out / "results_regression.csv")}
    assert regression["afewva"]["status"] == "ok" and regression["meld"]["status"] == "skipped"
    assert float(regression["afewva"]["ccc_arousal"]) == pytest.approx(
        test["ccc_arousal"]["mean"], abs=1e-4)
    assert regression["afewva"]["targets"] == "valence+arousal"
    assert "Test split: 30 clips." in (out / "afewva" / "results.md").read_text()
    assert not (out / "afewva" / "results.png").exists()
    assert "[afewva/results_regression.csv](afewva/results_regression.csv)" in \
        (out / "results.md").read_text()


def test_the_regression_table_shows_ours_per_target_and_why_a_row_was_skipped() -> None:
    summary = {"test": {"ccc": {"mean": 0.5, "std": None}, "pcc": {"mean": 0.25, "std": None},
                        "rmse": {"mean": 0.125, "std": None}, "sagr": {"mean": 0.75, "std": None},
                        "ccc_valence": {"mean": 0.5, "std": 0.0625},
                        "pcc_valence": {"mean": float("nan"), "std": None}}}
    lines = regression_lines([TableRow("avce", "AVCE", {"summary": summary}),
                              TableRow("avce", "AVCE", None, "no targets")], ["valence"])
    assert lines[0] == ("| Method | CCC | PCC | RMSE | SAGR | valence CCC | valence PCC | "
                        "valence RMSE | valence SAGR | Notes |")
    assert lines[2] == ("| AVCE | 0.5000 | 0.2500 | 0.1250 | 0.7500 | 0.5000 +- 0.0625 | n/a | "
                        "n/a | n/a |  |")
    assert lines[3] == "| AVCE |" + " skipped |" * 8 + " skipped: no targets |"


def test_the_zero_shot_row_is_the_evaluations_zero_shot_score() -> None:
    method = CLEF_ROWS[1]
    metrics = {"seeds": [0, 1], "summary": {"test": {"accuracy": {"mean": 0.9}}},
               "details": {"zero_shot": {"ran": True, "splits": {
                   "test": {"accuracy": 0.25, "f1_weighted": None, "per_class": {}}}}}}
    row = zero_shot_row(method, metrics, None)
    assert row.ours("accuracy") == (25.0, None) and row.ours("f1_weighted") == (None, None)
    assert row.metrics is not None and row.metrics["seeds"] == [0]
    not_run = {"details": {"zero_shot": {"ran": False, "reason": "clef.zero_shot=false"}}}
    assert zero_shot_row(method, not_run, None).reason == "clef.zero_shot=false"
    assert zero_shot_row(method, not_run, "the store has no text features").reason == (
        "no ConCluGen run to take the text head from: the store has no text features")


def test_systems_are_checked_and_ordered(tmp_path: Path) -> None:
    assert check_systems(["avce", "conclugen"]) == ("conclugen", "avce")
    with pytest.raises(ConfigError, match=r"choose one or more of \['conclugen', 'clef', "
                                          r"'avce'\]"):
        check_systems(["clip"])
    store = synthetic_store(tmp_path / "s", dataset="synthetic", labels=["a", "b"], n=20,
                            seed=1)
    result = CliRunner().invoke(app, ["study", "--store", store.url, "--out",
                                      str(tmp_path / "out"), "--systems", "conclugen,clip"])
    assert result.exit_code == 2 and "choose one or more of" in result.output
    assert not (tmp_path / "out").exists()
