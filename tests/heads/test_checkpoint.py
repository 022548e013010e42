"""Checkpoints: atomic writes, weights-only loading, store checks, rebuilding a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from heads import files
from heads.checkpoint import (FORMAT, CheckpointError, HeadsCheckpoint, check_same_store,
                              epoch_file, link_checkpoint, load_checkpoint, load_model,
                              prune_epochs, restore_rng, rng_state, save_checkpoint)
from heads.files import load_plain
from heads.models import ModelSpec
from heads.pretrain.train import run_pretrain
from pipeline.store import open_store


@dataclass
class Arbitrary:
    """Any class: unpickling it could run code, so weights-only loading must refuse it."""

    value: int = 1


def _payload(**extra) -> dict:
    return {"format": FORMAT, "store_id": "a" * 64, "store_url": "s", "step": 3,
            "weights": torch.arange(4.0), "config": {"objective": "conclu"}, **extra}


def heads_checkpoint(store_id: str = "a" * 64) -> HeadsCheckpoint:
    """A checkpoint of tiny untrained heads."""
    return HeadsCheckpoint(
        objective="multi_cont", config={"objective": "multi_cont"}, store_id=store_id,
        store_url="s", dataset="meld", feature_space=None, layout={"video": ("frames_2d",)},
        model_spec=ModelSpec({"video": 4}, 2), model={"w": torch.zeros(2)}, optimizer={},
        scheduler={}, objective_state={}, step=3, epoch=1, rng={}, device="cpu")


def test_round_trip_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c" / "last.pt", _payload())
    loaded = load_plain(path)
    assert torch.equal(loaded["weights"], torch.arange(4.0)) and loaded["step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _payload(step=1))

    def broken_save(obj: object, f: object) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(files.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _payload(step=2))
    monkeypatch.undo()
    assert load_plain(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_loading_refuses_pickled_objects_and_other_formats(tmp_path: Path) -> None:
    torch.save({"format": FORMAT, "object": Arbitrary()}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match=r"pickled objects are refused\): .*Unsupported "
                                              r"global: GLOBAL test_checkpoint.Arbitrary$"):
        load_checkpoint(tmp_path / "pickle.pt")
    torch.save({"format": "lightning/2"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="format 'lightning/2', expected"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable file of plain tensors"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_store_check_names_both_stores() -> None:
    check_same_store(heads_checkpoint(), "a" * 64, checkpoint="run/last.pt", store="s")
    with pytest.raises(CheckpointError, match="run/last.pt was trained on store_id aaaa.*"
                                              "but other has store_id bbbb"):
        check_same_store(heads_checkpoint(), "b" * 64, checkpoint="run/last.pt", store="other")


def test_pruning_and_linking(tmp_path: Path) -> None:
    for e in range(1, 6):
        save_checkpoint(tmp_path / epoch_file(e), _payload(step=e))
    link_checkpoint(tmp_path / epoch_file(5), tmp_path / "last.pt")
    prune_epochs(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["epoch-0004.pt", "epoch-0005.pt", "last.pt"]
    assert load_plain(tmp_path / "last.pt")["step"] == 5
    prune_epochs(tmp_path, keep=0)
    assert len(list(tmp_path.iterdir())) == 3


def test_rng_state_restores_every_draw() -> None:
    g = torch.Generator().manual_seed(3)
    state = rng_state(g)
    first = (torch.rand(3), torch.rand(3, generator=g))
    restore_rng(state, g)
    assert torch.equal(torch.rand(3), first[0]) and torch.equal(torch.rand(3, generator=g),
                                                                first[1])


def test_an_evaluator_rebuilds_the_model_from_the_checkpoint_alone(store_1view: str, cpu: dict,
                                                                   tmp_path: Path) -> None:
    run = run_pretrain(store_1view, "conclugen", tmp_path / "run", overrides=cpu, epochs=1,
                       device="cpu", progress=False)
    model, payload = load_model(run / "checkpoints" / "last.pt")
    assert not model.training
    assert payload.store_id == open_store(store_1view).store_id
    store = open_store(store_1view)
    pos = store.positions("test") if len(store.positions("test")) else store.positions("val")[:5]
    batch = {}
    for modality, keys in payload.layout.items():
        parts = [torch.from_numpy(store.read(k, pos, view=0)).float() for k in keys]
        batch[modality] = torch.cat(parts, dim=1)
    with torch.no_grad():
        reps = model.represent(batch)
    d = payload.config["model"]["representation_dim"]
    assert {m: tuple(r.shape) for m, r in reps.items()} == {m: (5, d) for m in batch}
    assert all(torch.isfinite(r).all() for r in reps.values())
