"""The paper's study, on top of pretraining and evaluation: every objective and ablation
pretrained once and evaluated on every downstream store, beside the paper's numbers.

- :mod:`~heads.study.run`: :func:`~heads.study.run.run_study`, the program;
- :mod:`~heads.study.types`: what the study's modules share (rows, store facts, targets, table
  rows);
- :mod:`~heads.study.plan`: the checks and the plan made before anything is trained;
- :mod:`~heads.study.runner`: runs each row's pretraining and evaluation once;
- :mod:`~heads.study.systems`: the rows of two other systems on the same stores (CLEF's text
  prototypes, AVCE's valence/arousal regression);
- :mod:`~heads.study.tables`: the Markdown/CSV tables and chart, our numbers beside the paper's;
- :mod:`~heads.study.paper`: the paper's reported numbers (``paper_results.yaml``, with its
  source).
"""
