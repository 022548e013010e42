"""Self-supervised pretraining of the heads: the paper's objectives and the training program.

- :mod:`~heads.pretrain.kmeans`: online cosine k-means (k-means++ seeding, warm start, FIFO
  queue);
- :mod:`~heads.pretrain.objectives`: the registry ``OBJECTIVES`` of the paper's six objectives;
- :mod:`~heads.pretrain.train`: :func:`~heads.pretrain.train.run_pretrain`, build, loop,
  evaluate, checkpoint.
"""
