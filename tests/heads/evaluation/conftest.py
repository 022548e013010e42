"""What the evaluation tests share: a saved classifier run again on a store's split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from heads.evaluation.classifier import load_predictor
from heads.evaluation.run import load_split
from pipeline.store import open_store

Outputs = Callable[[Path, str, str], tuple[np.ndarray, np.ndarray, dict[str, Any]]]


def saved_outputs(classifier: Path, store: str, split: str
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The classifier file's outputs on the stored features of ``split`` (the rows the
    evaluation scored), those rows' targets, and the file's payload as loaded."""
    model, meta = load_predictor(classifier)
    with open_store(store) as fs:
        data = load_split(fs, meta.layout, split, torch.device("cpu"), task=meta.task)
    assert data is not None
    with torch.no_grad():
        out = model({m: x.float() for m, x in data.inputs.items()})
    return out.numpy(), data.targets.numpy(), meta


@pytest.fixture
def classifier_outputs() -> Outputs:
    """:func:`saved_outputs`."""
    return saved_outputs
