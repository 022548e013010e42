"""Everything after the feature store: the ConCluGen heads, their losses, the trainer
and the evaluation.

- :mod:`heads.losses`: the self-supervised losses as pure tensor functions.
- :mod:`heads.kmeans`: online cosine k-means (k-means++ seeding, warm start, FIFO queue).
- :mod:`heads.models`: representation heads F, projection J, clustering G, decoders Q.
- :mod:`heads.objectives`: the registry ``OBJECTIVES`` of the paper's six objectives.
- :mod:`heads.data`: feature batches from a store (on the device, or streamed).
- :mod:`heads.train`: :func:`heads.train.run_pretrain`, the training program.
- :mod:`heads.checkpoint`: atomic, weights-only checkpoints; ``load_model`` for evaluators.
- :mod:`heads.classifier`, :mod:`heads.evaluate`: linear probe, fine-tuning, the supervised
  baseline (:func:`heads.evaluate.run_eval`); :mod:`heads.metrics` and :mod:`heads.plots` for
  the paper's metrics and figures.
- :mod:`heads.study`: every objective and ablation, evaluated, in one table.
- :mod:`heads.predict`: a new video through the store's backbones, the heads and a classifier
  (imports the extraction pipeline only when called).

Importable without decoding or backbone libraries.
"""
