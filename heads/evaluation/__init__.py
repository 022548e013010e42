"""Downstream evaluation of the heads' representations: one module per protocol behind one
small interface (:class:`~heads.evaluation.protocol.Protocol`).

- :mod:`~heads.evaluation.linear`, :mod:`~heads.evaluation.finetune`,
  :mod:`~heads.evaluation.supervised`: the paper's protocols (Tables 2-5), all built on
  :mod:`~heads.evaluation.classification`, the classifier of :mod:`~heads.evaluation.probe`
  and its training (:mod:`~heads.evaluation.fit`);
- :mod:`~heads.evaluation.clef`, :mod:`~heads.evaluation.avce`: the heads of two other systems
  of the field on the same stores (CLEF's text prototypes, its stage 1's coarse labels from
  :mod:`~heads.evaluation.clef_stage1`; AVCE's valence/arousal regression), trained by
  :mod:`~heads.evaluation.loop`;
- :mod:`~heads.evaluation.run`: :func:`~heads.evaluation.run.run_eval`, the program that loads
  a store's splits (:mod:`~heads.evaluation.splits`), runs a protocol for each seed and writes
  metrics, figures and the classifier;
- :mod:`~heads.evaluation.classifier`: the classifier file of an evaluation, and the builders
  that rebuild each kind's model from its spec;
- :mod:`~heads.evaluation.predict`: a new video through the store's backbones (repeated by
  :mod:`pipeline.one_video`), the heads and a trained classifier.

A new protocol is one new module with a ``PROTOCOL`` object, added to :data:`PROTOCOLS`.
"""

from __future__ import annotations

from heads.evaluation import avce, clef, finetune, linear, supervised
from heads.evaluation.protocol import Protocol
from pipeline.config import ConfigError

PROTOCOLS: dict[str, Protocol] = {
    "linear": linear.PROTOCOL,
    "finetune": finetune.PROTOCOL,
    "supervised": supervised.PROTOCOL,
    "clef": clef.PROTOCOL,
    "avce": avce.PROTOCOL,
}


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name``; an unknown name lists the valid ones."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; valid: {list(PROTOCOLS)}")
    return PROTOCOLS[name]


__all__ = ["PROTOCOLS", "Protocol", "get_protocol"]
