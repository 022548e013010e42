"""Everything after the feature store: the ConCluGen heads, their pretraining, the evaluation
protocols and the reports. Importable without decoding or backbone libraries.

Shared building blocks (top level):

- :mod:`heads.models`: representation heads F, projection J, clustering G, decoders Q;
- :mod:`heads.losses`: the losses as pure tensor functions;
- :mod:`heads.metrics`: the paper's metrics as pure functions;
- :mod:`heads.data`: feature batches from a store (on the device, or streamed);
- :mod:`heads.config`: :class:`~heads.config.TrainConfig` and
  :class:`~heads.config.EvalConfig`, resolved strictly from YAML;
- :mod:`heads.checkpoint`: atomic, weights-only checkpoints and classifier files, and the
  feature-space check that lets heads pretrained on one store be evaluated on another;
- :mod:`heads.runtime`: device, mixed precision, the learning-rate schedule.

By role (folders):

- :mod:`heads.pretrain`: k-means, the six objectives, the training program;
- :mod:`heads.evaluation`: one module per protocol (linear, finetune, supervised), the
  evaluation program, prediction on a new video;
- :mod:`heads.reporting`: metrics logs, plots, the study's tables.
"""
