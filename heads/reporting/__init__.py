"""What a person reads: training logs, figures and the study's tables.

- :mod:`~heads.reporting.metrics_log`: ``metrics.jsonl``, TensorBoard events, progress bars;
- :mod:`~heads.reporting.plots`: confusion matrices, t-SNE maps, the study's bar chart;
- :mod:`~heads.reporting.study`: every objective and ablation, evaluated, in one table beside
  the paper's numbers.
"""
