"""Everything after the feature store: the ConCluGen heads, their losses and the trainer.

- :mod:`heads.losses`: the self-supervised losses as pure tensor functions.
- :mod:`heads.kmeans`: online cosine k-means (k-means++ seeding, warm start, FIFO queue).
- :mod:`heads.models`: representation heads F, projection J, clustering G, decoders Q.
- :mod:`heads.objectives`: the registry ``OBJECTIVES`` of the paper's six objectives.
- :mod:`heads.data`: feature batches from a store (on the device, or streamed).
- :mod:`heads.train`: :func:`heads.train.run_pretrain`, the training program.
- :mod:`heads.checkpoint`: atomic, weights-only checkpoints; ``load_model`` for evaluators.

Importable without decoding or backbone libraries.
"""
