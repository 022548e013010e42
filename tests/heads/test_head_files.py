"""The typed head files: a pretraining checkpoint and a classifier file of each kind, written by
the release before these formats (tests/fixtures/heads-v1), load, upgrade and give the outputs
they gave then; files of the current formats round-trip and are read strictly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from heads.checkpoint import FORMAT, CheckpointError, load_checkpoint, load_model
from heads.classifier_file import (FORMAT as CLASSIFIER_FORMAT, ClassifierFile,
                                   read_classifier_file, save_classifier_file)
from heads.evaluation.classifier import load_classifier, load_predictor
from heads.files import save_checkpoint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "heads-v1"
HEADS = FIXTURES / "heads-v1.pt"
KINDS = {"linear": "probe", "finetune": "probe", "clef": "clef", "avce": "avce"}


@pytest.fixture(scope="module")
def expected() -> dict:
    """The inputs and each file's outputs on them, computed by the release that wrote them."""
    return torch.load(FIXTURES / "expected-outputs.pt", weights_only=True)


def test_a_format_1_checkpoint_upgrades_and_rebuilds_the_same_heads(expected: dict) -> None:
    checkpoint = load_checkpoint(HEADS)
    assert checkpoint.objective == "conclugen" and checkpoint.step == checkpoint.epoch == 1
    assert checkpoint.layout == {"video": ("frames_2d",), "audio": ("audio",), "text": ("text",)}
    assert checkpoint.model_spec.representation_dim == 8
    model, _ = load_model(HEADS)
    with torch.no_grad():
        reps = model.represent({m: expected["inputs"][m] for m in checkpoint.layout})
    for m, want in expected["heads-v1.pt"].items():
        torch.testing.assert_close(reps[m], want, rtol=0, atol=0)


def test_a_checkpoint_round_trips_as_format_2(tmp_path: Path) -> None:
    old = load_checkpoint(HEADS)
    path = save_checkpoint(tmp_path / "last.pt", old.to_payload())
    assert torch.load(path, weights_only=True)["format"] == FORMAT == "conclugen-heads/2"
    new = load_checkpoint(path)
    assert new.to_payload().keys() == old.to_payload().keys()
    assert (new.model_spec, new.layout, new.store_id, new.step) == \
        (old.model_spec, old.layout, old.store_id, old.step)
    assert all(torch.equal(new.model[k], old.model[k]) for k in old.model)


@pytest.mark.parametrize("protocol", list(KINDS))
def test_a_format_1_classifier_upgrades_and_predicts_as_before(protocol: str, expected: dict,
                                                                tmp_path: Path) -> None:
    name = f"classifier-{protocol}-v1.pt"
    model, file = load_predictor(FIXTURES / name, run=HEADS)
    assert (file.kind, file.protocol) == (KINDS[protocol], protocol)
    assert file.task == ("regression" if protocol == "avce" else "classification")
    assert file.multilabel is False
    assert (file.checkpoint is not None) == (protocol in ("linear", "finetune"))
    inputs = {m: expected["inputs"][m] for m in file.layout}
    with torch.no_grad():
        torch.testing.assert_close(model(inputs).float(), expected[name], rtol=0, atol=0)
    # written again, it is a format-2 file that gives the same model
    again = save_classifier_file(tmp_path / "classifier.pt", file)
    assert torch.load(again, weights_only=True)["format"] == CLASSIFIER_FORMAT
    assert read_classifier_file(again).to_payload().keys() == file.to_payload().keys()
    rebuilt, _ = load_predictor(again, run=HEADS)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(inputs).float(), expected[name], rtol=0, atol=0)


def test_a_linear_probe_keeps_its_heads_in_the_run_and_checks_the_step(tmp_path: Path) -> None:
    file = read_classifier_file(FIXTURES / "classifier-linear-v1.pt")
    assert file.spec["heads_from_checkpoint"] is True
    assert not any(k.startswith("heads.") for k in file.state)
    assert load_classifier(FIXTURES / "classifier-linear-v1.pt", run=HEADS)[1].checkpoint == \
        file.checkpoint
    later = dataclasses.replace(load_checkpoint(HEADS), step=2)
    save_checkpoint(tmp_path / "later.pt", later.to_payload())
    with pytest.raises(CheckpointError, match="is at step 2, but the classifier was trained on "
                                              "the heads of step 1"):
        load_predictor(FIXTURES / "classifier-linear-v1.pt", run=tmp_path / "later.pt")
    with pytest.raises(CheckpointError, match="a clef classifier, not the paper's probe"):
        load_classifier(FIXTURES / "classifier-clef-v1.pt")


def _rewritten(tmp_path: Path, change: dict) -> Path:
    """The CLEF fixture as a format-2 file with ``change`` applied (None deletes a field)."""
    payload = read_classifier_file(FIXTURES / "classifier-clef-v1.pt").to_payload()
    for key, value in change.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    return save_checkpoint(tmp_path / "classifier.pt", payload)


@pytest.mark.parametrize(("change", "match"), [
    ({"seed": None}, "missing required key 'seed'"),
    ({"seed": "0"}, "seed: expected int, got '0'"),
    ({"kind": "svm"}, "kind: 'svm' is not one of \\['probe', 'clef', 'avce'\\]"),
    ({"colour": "red"}, "unknown key\\(s\\) \\['colour'\\]"),
    ({"state": {"w": [1.0]}}, "state: \\['w'\\] are not tensors"),
    ({"spec": {"modalities": ["video"]}}, "spec: missing required key 'input_dims'"),
    ({"format": "conclugen-classifier/9"}, "format 'conclugen-classifier/9'; a classifier is"),
])
def test_a_classifier_file_is_read_strictly_naming_the_field(tmp_path: Path, change: dict,
                                                            match: str) -> None:
    path = _rewritten(tmp_path, change)
    with pytest.raises(CheckpointError, match=match):
        load_predictor(path)


def test_a_checkpoint_is_read_strictly_naming_the_field(tmp_path: Path) -> None:
    payload = load_checkpoint(HEADS).to_payload()
    del payload["layout"]
    save_checkpoint(tmp_path / "a.pt", payload)
    with pytest.raises(CheckpointError, match="a.pt: missing required key 'layout'"):
        load_checkpoint(tmp_path / "a.pt")
    payload = {**load_checkpoint(HEADS).to_payload(), "step": 1.5}
    save_checkpoint(tmp_path / "b.pt", payload)
    with pytest.raises(CheckpointError, match="b.pt: step: expected int, got 1.5"):
        load_checkpoint(tmp_path / "b.pt")


def test_the_file_types_are_frozen() -> None:
    file = read_classifier_file(FIXTURES / "classifier-avce-v1.pt")
    assert isinstance(file, ClassifierFile)
    with pytest.raises(dataclasses.FrozenInstanceError):
        file.seed = 1  # type: ignore[misc]
