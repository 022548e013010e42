"""Linear evaluation (the paper's main protocol): the pretrained heads frozen, only
``Dropout + Linear`` on their concatenated representations learns."""

from heads.evaluation.classification import ClassifierProtocol

PROTOCOL = ClassifierProtocol(
    name="linear", needs_run=True, train_heads=False,
    summary="frozen pretrained heads, a linear classifier on their representations")
