"""What a person reads: training logs, figures and the study's tables.

- :mod:`~heads.reporting.metrics_log`: ``metrics.jsonl``, TensorBoard events, progress bars;
- :mod:`~heads.reporting.plots`: confusion matrices, t-SNE maps, the study's bar chart;
- :mod:`~heads.reporting.study`: every objective and ablation pretrained once and evaluated on
  every downstream store (the paper's protocol);
- :mod:`~heads.reporting.study_systems`: the study's rows of two other systems on the same
  stores (CLEF's text prototypes, AVCE's valence/arousal regression);
- :mod:`~heads.reporting.study_tables`: the study's Markdown/CSV tables and chart, our numbers
  beside the paper's;
- :mod:`~heads.reporting.paper`: the paper's reported numbers (``paper_results.yaml``, with its
  source).
"""
