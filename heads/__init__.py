"""Everything after the feature store: the ConCluGen heads, their pretraining, the evaluation
protocols and the study. Importable without decoding or backbone libraries.

Built in floors; a module imports from its own floor or below, never above
(``tests/test_architecture.py`` checks it, with no import cycle anywhere):

1. The base (top-level modules and :mod:`heads.losses`):

   - :mod:`heads.models`: representation heads F, projection J, clustering G, decoders Q;
   - :mod:`heads.losses`: the losses as pure tensor functions, one module per paper;
   - :mod:`heads.metrics`: the paper's metrics as pure functions;
   - :mod:`heads.data`, :mod:`heads.sources`: feature batches from a store (on the device, or
     streamed);
   - :mod:`heads.config`, :mod:`heads.eval_config`: :class:`~heads.config.TrainConfig` and
     :class:`~heads.eval_config.EvalConfig`, resolved strictly from YAML;
   - :mod:`heads.files`, :mod:`heads.checkpoint`, :mod:`heads.classifier_file`: the typed head
     files (atomic, weights-only, read strictly, versioned), and the feature-space check that
     lets heads pretrained on one store be evaluated on another;
   - :mod:`heads.metrics_log`, :mod:`heads.plots`: the run log (``metrics.jsonl``,
     TensorBoard, progress) and the figures;
   - :mod:`heads.runtime`: device, mixed precision, the learning-rate schedule;
   - :mod:`heads.run_record`, :mod:`heads.runs`: the run records (``run.json``), their
     listing and differences, and the random-weights warning;
   - :mod:`heads.api`: a pretraining run's representations of store features, for your own
     code.

2. Side by side, neither importing the other:

   - :mod:`heads.pretrain`: k-means, the six objectives (whose names it checks), the training
     program;
   - :mod:`heads.evaluation`: one module per protocol, the evaluation program, prediction on a
     new video.

3. On top: :mod:`heads.study`, the paper's study (every objective pretrained and evaluated),
   its tables beside the paper's numbers.
"""
