"""k-mixup and mixup (array layer).

Greenewald et al., "k-Mixup Regularization for Deep Learning via Optimal Transport"
(TMLR 2023), section 2: two k-subsets are matched by the optimal assignment on their
k x k cost matrix and the matched pairs are blended with lam ~ Beta(alpha, alpha)::

    x~_i = lam_i * x_i + (1 - lam_i) * x_partner(i)        y~ likewise

k = 1 is standard mixup (Zhang et al. 2018). The steps live in their own modules:
:mod:`~dali_mixup.core.draws` (randomness), :mod:`~dali_mixup.core.plan` (blocks, assignment, lambdas),
:mod:`~dali_mixup.core.cost` (block cost matrices), :mod:`~dali_mixup.core.apply` (the blend);
:func:`dali_mixup.core.pairs.mix_batch` chains them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .core.apply import blend  # noqa: F401  (the blend, also reachable here)
from .core.config import PairConfig
from .core.draws import KMixupDraws, beta_quantile, draw_pairs as draw  # noqa: F401
from .core.pairs import PairResult, mix_batch
from .core.plan import BlockPlan, assemble, plan_blocks, representatives  # noqa: F401

OP = "k_mixup"

#: What :func:`k_mixup` and :func:`mixup` return.
MixupResult = PairResult


def k_mixup(images, labels, *, k: int = 16, alpha: float = 1.0, num_classes: int | None = None,
            cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
            label_smoothing: float = 0.0, features=None, dtype: str | None = None,
            prob: float = 1.0, extra: Sequence = (), masks: Sequence = (),
            rng: np.random.Generator | None = None, draws: KMixupDraws | None = None) -> PairResult:
    """k-mixup of a whole batch (array layer; NumPy, CuPy or torch in, the same kind out).

    Args:
        images: ``[B, ...]`` uint8, float16, float32 or float64, any layout.
        labels: class ids ``[B]`` / ``[B, 1]`` with ``num_classes``, or float ``[B, C]``.
        k: block size; clamped to what the batch allows (see ``.k`` of the result).
        alpha: lam ~ Beta(alpha, alpha).
        num_classes: number of classes for integer labels.
        cost: a name of :data:`dali_mixup.core.cost.COSTS`: ``"sqeuclidean"`` (the paper's W2, the
            default), ``"euclidean"`` (the reference code), ...
        pairing: ``"disjoint"`` (two random halves, everyone mixed) or ``"permutation"``
            (the reference code: blocks meet a random permutation of the batch).
        lam_mode: ``"batch"``, ``"block"`` or ``"sample"``.
        label_smoothing: applied to one-hot labels built from class ids, before mixing.
        features: optional ``[B, ...]`` array the cost is computed on instead of the images.
        dtype: output image dtype: None (float32; float64 for float64 input), ``"float16"``,
            ``"float32"``, ``"float64"`` or ``"uint8"`` (uint8 input only).
        prob: probability that a lam group (the batch, a block or a sample, per ``lam_mode``)
            is mixed at all; unmixed samples keep partner = self and lam = 1.
        extra: more per-sample arrays ``[B, ...]`` (a second view, a depth map) blended with
            the same partners and weights (float results, like the images).
        masks: integer per-sample maps (segmentation masks): each output takes the mask of its
            dominant sample (the one with weight >= 0.5).
        rng: NumPy ``Generator`` for the draws (a fresh one if None).
        draws: precomputed draws (overrides ``rng``), e.g. to replay a batch.
    """
    cfg = PairConfig.k_mixup(k=k, alpha=alpha, num_classes=num_classes, cost=cost, pairing=pairing,
                             lam_mode=lam_mode, label_smoothing=label_smoothing, dtype=dtype, prob=prob)
    return mix_batch(cfg, images, labels, features=features, extra=extra, masks=masks, rng=rng,
                     draws=draws)


def mixup(images, labels, *, alpha: float = 1.0, num_classes: int | None = None,
          lam_mode: str = "batch", label_smoothing: float = 0.0, dtype: str | None = None,
          prob: float = 1.0, extra: Sequence = (), masks: Sequence = (),
          rng: np.random.Generator | None = None, draws: KMixupDraws | None = None) -> PairResult:
    """Standard mixup (Zhang et al. 2018): k-mixup with k = 1, random disjoint pairs.

    Every sample is mixed with a random other sample (never with itself).
    Arguments as for :func:`k_mixup`.
    """
    cfg = PairConfig.mixup(alpha=alpha, num_classes=num_classes, lam_mode=lam_mode,
                           label_smoothing=label_smoothing, dtype=dtype, prob=prob)
    return mix_batch(cfg, images, labels, extra=extra, masks=masks, rng=rng, draws=draws)
