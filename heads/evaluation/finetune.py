"""Fine-tuning (the paper's Table 2): the pretrained heads learn together with the classifier
(their learning rate scaled by ``heads_lr_scale``)."""

from heads.evaluation.classification import ClassifierProtocol

PROTOCOL = ClassifierProtocol(
    name="finetune", needs_run=True, train_heads=True,
    summary="pretrained heads trained together with the classifier")
