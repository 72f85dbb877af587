"""mixup or CutMix per lam group, as timm's ``Mixup`` (array layer: :func:`mix`).

Per lam group (batch, matched block or sample, by ``lam_mode``) a coin decides whether to mix
at all (``prob``), a second whether to use CutMix instead of mixup (``switch_prob``).
Partners are random disjoint pairs (k = 1) or come from k-mixup's optimal-transport
assignment (k > 1). Every output is::

    x~ = x * (1 - M) + x_partner * M          y~ = lam * y + (1 - lam) * y_partner

with ``M`` the partner's share of each pixel: ``1 - lam`` everywhere for mixup, the box
indicator for CutMix (:mod:`dali_mixup.cut`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .core.config import PairConfig
from .core.draws import MixDraws
from .core.pairs import PairResult, mix_batch

OP = "mix"

#: What :func:`mix` and :func:`dali_mixup.cutmix` return (an older name of ``PairResult``).
MixResult = PairResult


def mix(images, labels, *, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0,
        prob: float = 1.0, switch_prob: float = 0.5, k: int = 1, cost: str = "sqeuclidean",
        pairing: str = "disjoint", lam_mode: str = "batch", correct_lam: bool = True,
        num_classes: int | None = None, label_smoothing: float = 0.0, layout: str = "CHW",
        features=None, dtype: str | None = None, extra: Sequence = (), masks: Sequence = (),
        rng: np.random.Generator | None = None, draws: MixDraws | None = None) -> PairResult:
    """mixup or CutMix per lam group, as timm's ``Mixup``, with random or OT partners.

    Args:
        images: ``[B, ...]`` batch whose samples have ``layout`` (default ``"CHW"``).
        labels: class ids with ``num_classes``, or float ``[B, C]`` soft labels.
        mixup_alpha, cutmix_alpha: Beta parameters; 0 disables that method.
        prob: probability that a lam group is mixed at all (applied exactly once).
        switch_prob: probability of CutMix instead of mixup when both alphas are > 0.
        k, cost, pairing, features: partners from k-mixup's optimal-transport matching (k > 1)
            or random disjoint pairs (k = 1); see :func:`dali_mixup.k_mixup`.
        lam_mode: ``"batch"``, ``"block"`` or ``"sample"``: the lam group that shares lam,
            box and coins.
        correct_lam: recompute the CutMix label weight from the clipped box area (timm).
        layout: the samples' layout, with H before W (``"CHW"``, ``"HWC"``, ...).
        dtype: output image dtype, as for :func:`dali_mixup.k_mixup`.
        extra: more per-sample arrays with the images' layout, mixed the same way.
        masks: integer per-pixel maps; each pixel takes the value of its dominant source.
        rng, draws: randomness, as for :func:`dali_mixup.k_mixup`.
    """
    cfg = PairConfig.mix(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                         switch_prob=switch_prob, k=k, cost=cost, pairing=pairing, lam_mode=lam_mode,
                         correct_lam=correct_lam, num_classes=num_classes,
                         label_smoothing=label_smoothing, dtype=dtype)
    return mix_batch(cfg, images, labels, layout=layout, features=features, extra=extra,
                     masks=masks, rng=rng, draws=draws)
