"""The losses, one module per paper; pure tensor functions.

Hyper-parameters are keyword-only and checked (``ValueError``), shapes are checked at call time
with messages that print them. No function normalises its inputs: the projection head
L2-normalises, so a dot product here is a cosine similarity.

- :mod:`~heads.losses.conclugen`: ConCluGen's (Halawa et al., CVPR 2024 workshops): the
  Masked Margin Softmax :func:`mms_loss` and its sums over modality pairs, the clustering and
  reconstruction losses, InfoNCE;
- :mod:`~heads.losses.clef`: CLEF's (Zhang et al., ICCV 2023), for
  :mod:`heads.evaluation.clef`;
- :mod:`~heads.losses.avce`: AVCE's (Kim & Song, ECCV 2022), for :mod:`heads.evaluation.avce`.

Every loss is importable from here (``from heads.losses import mms_loss`` is a public
contract).
"""

from __future__ import annotations

from heads.losses.avce import (av_loss, avce_objective, avce_similarity, concordance,
                               disentangle_loss, pearson, sparsemax)
from heads.losses.clef import (clef_fine_loss, description_name_loss, image_text_supcon,
                               instance_loss, supcon_loss)
from heads.losses.conclugen import (clustering_loss, info_nce, mms_loss, mms_pairs,
                                    multimodal_mms, reconstruction_loss, reconstruction_losses)

__all__ = ["av_loss", "avce_objective", "avce_similarity", "clef_fine_loss", "clustering_loss",
           "concordance", "description_name_loss", "disentangle_loss", "image_text_supcon",
           "info_nce", "instance_loss", "mms_loss", "mms_pairs", "multimodal_mms", "pearson",
           "reconstruction_loss", "reconstruction_losses", "sparsemax", "supcon_loss"]
