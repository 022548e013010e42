"""The supervised baseline (the paper's Table 2): the same architecture from seeded random
weights, trained on the labels; it needs no pretraining run."""

from heads.evaluation.classification import ClassifierProtocol

PROTOCOL = ClassifierProtocol(
    name="supervised", needs_run=False, train_heads=True,
    summary="the same heads from scratch, trained on the labels (no pretraining)")
