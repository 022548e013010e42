"""The other systems' training loop: a protocol's own batch size and schedule, applied as a
factor of each parameter group's own learning rate."""

from __future__ import annotations

import math

import pytest
import torch

from heads.eval_config import EvalConfig
from heads.evaluation.loop import cosine_schedule, steps_per_epoch, train_epochs


def test_clefs_schedule_warms_up_one_epoch_then_follows_one_cosine_to_min_lr() -> None:
    factor = cosine_schedule(epochs=5, per_epoch=10, warmup_epochs=1, base_lr=2e-4, min_lr=1e-6)
    assert [factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    # after the warm-up, 4 epochs (40 steps) of cosine from 2e-4 to 1e-6
    for step in (10, 20, 30, 49):
        t = (step - 10) / 40
        expected = 1e-6 + (2e-4 - 1e-6) * (1 + math.cos(math.pi * t)) / 2
        assert 2e-4 * factor(step) == pytest.approx(expected, rel=1e-9)
    assert 2e-4 * factor(50) == pytest.approx(2e-4)  # a restart only past the run's end
    assert steps_per_epoch(129, 64) == 3 and steps_per_epoch(0, 64) == 1


def test_each_optimiser_keeps_its_own_rate_under_one_schedule() -> None:
    model = torch.nn.Linear(2, 1)
    fast = torch.optim.SGD([model.weight], lr=1e-2)
    slow = torch.optim.Adam([model.bias], lr=1e-4)
    seen: list[tuple[float, float]] = []

    def step(idx: torch.Tensor) -> dict[str, float]:
        seen.append((fast.param_groups[0]["lr"], slow.param_groups[0]["lr"]))
        return {"loss": 0.0}

    result = train_epochs(model, [fast, slow], rows=8, cfg=EvalConfig(), base_lr=1e-4, step=step,
                          validate=None, select="", epochs=2, seed=0, batch_size=4,
                          schedule=lambda s: 0.5 ** s)
    assert [f for f, _ in seen] == pytest.approx([1e-2 * 0.5 ** s for s in range(4)])
    assert [s for _, s in seen] == pytest.approx([1e-4 * 0.5 ** s for s in range(4)])
    assert [r["lr"] for r in result.history] == pytest.approx([1e-4, 1e-4 * 0.25])
