"""The classification protocols train on augmented views (``train_views: augmented``): one
random view per clip, modality and epoch, as the reference code drew 1 of its 10; validation,
test and the train split's scores stay on the clean view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from heads.evaluation.probe import LabelledSplit
from heads.evaluation.run import run_eval
from heads.evaluation.splits import load_split
from pipeline.store import open_store, write_arrays

KEYS = {"audio": ("audio",)}


def views_store(path: Path, *, augmented_zero: bool) -> str:
    """Labels a linear map of the clean view can learn; the two augmented views are the clean
    one plus small noise, or (``augmented_zero``) all zeros: nothing to learn from."""
    rng = np.random.default_rng(0)
    n, dim = 240, 8
    labels = rng.integers(0, 3, n)
    clean = rng.normal(size=(3, dim))[labels] * 2 + rng.normal(size=(n, dim))
    extra = [np.zeros_like(clean) if augmented_zero else clean + 0.1 * rng.normal(size=clean.shape)
             for _ in range(2)]
    write_arrays(path, dataset="synthetic", sample_ids=[f"s{i}" for i in range(n)],
                 splits=["val" if i % 4 == 0 else "train" for i in range(n)],
                 features={"audio": np.stack([clean, *extra], axis=1).astype(np.float16)},
                 labels=labels, label_names=["a", "b", "c"])
    return str(path)


def test_a_batch_draws_one_view_per_row_and_modality() -> None:
    n, views = 6, 4
    inputs = {"audio": torch.full((n, 2), -1.0)}
    stacked = torch.arange(views, dtype=torch.float32)[None, :, None].expand(n, views, 2)
    split = LabelledSplit("train", inputs, torch.zeros(n, dtype=torch.int64),
                          [str(i) for i in range(n)], {"audio": stacked.clone()})
    generator = torch.Generator().manual_seed(0)
    idx = torch.arange(n)
    drawn = torch.stack([split.batch(idx, generator)["audio"][:, 0] for _ in range(40)])
    assert set(drawn.unique().tolist()) == set(range(views))  # every view, never the clean -1
    assert all(len(set(drawn[:, row].tolist())) > 1 for row in range(n))  # per row, it varies
    one = split.batch(idx, generator)["audio"]
    assert (one[:, 0] == one[:, 1]).all()  # one view per row: its features stay whole
    clean = LabelledSplit("train", inputs, split.targets, split.sample_ids)
    assert torch.equal(clean.batch(idx)["audio"], inputs["audio"])


def test_the_train_split_carries_the_augmented_views(tmp_path: Path) -> None:
    store = open_store(views_store(tmp_path / "s", augmented_zero=False))
    train = load_split(store, KEYS, "train", torch.device("cpu"), views=True)
    assert train is not None and train.views is not None
    assert train.views["audio"].shape == (len(train), 2, 8)
    positions = store.positions("train")
    assert torch.equal(train.views["audio"],
                       torch.from_numpy(store.read("audio", positions)[:, 1:]).float())
    assert load_split(store, KEYS, "train", torch.device("cpu")).views is None  # type: ignore


def test_the_probe_trains_on_the_views_and_records_it(tmp_path: Path) -> None:
    zeros = views_store(tmp_path / "zeros", augmented_zero=True)
    fast = {"epochs": 6, "optim.lr": 1e-2, "optim.warmup_epochs": 0}
    runs = {views: run_eval(zeros, run=None, protocol="supervised", out=tmp_path / views,
                            preset="cpu", overrides={"train_views": views, **fast},
                            device="cpu", progress=False)
            for views in ("augmented", "clean")}
    assert runs["augmented"]["train_views"] == "augmented: 1 of 2 per clip, modality and epoch"
    assert runs["clean"]["train_views"] == "clean"
    assert runs["augmented"]["preset"] == runs["augmented"]["config"]["preset"] == "paper,cpu"
    # all-zero views teach nothing beyond the class prior: their training loss stays far above
    # the clean features'
    last = {v: r["runs"][0]["history"][-1]["train_loss"] for v, r in runs.items()}
    assert last["augmented"] > 2 * last["clean"], last
