"""CutMix (array layer): a box of the partner image is pasted into the image.

Yun et al., ICCV 2019. The box side ratio is ``sqrt(1 - lam)`` with lam ~ Beta(alpha, alpha),
its centre uniform over the image, and it is clipped to the image; with ``correct_lam``
(timm's default) the label weight is recomputed from the clipped area:
``lam = 1 - box_area / (H * W)``. Partners are random disjoint pairs (k = 1) or come from
k-mixup's optimal-transport assignment (k > 1). Every output is::

    x~ = x * (1 - M) + x_partner * M          y~ = lam * y + (1 - lam) * y_partner

with ``M`` the box indicator. The boxes are drawn in :mod:`~dali_mixup.core.plan` (``boxes``);
:func:`dali_mixup.core.pairs.mix_batch` runs the steps. Switching between mixup and CutMix per
lam group is :func:`dali_mixup.mix` (:mod:`dali_mixup.switch`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .core.config import PairConfig
from .core.draws import MixDraws
from .core.pairs import PairResult, mix_batch

OP = "cutmix"


def cutmix(images, labels, *, alpha: float = 1.0, prob: float = 1.0, k: int = 1,
           cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
           correct_lam: bool = True, num_classes: int | None = None, label_smoothing: float = 0.0,
           layout: str = "CHW", features=None, dtype: str | None = None, extra: Sequence = (),
           masks: Sequence = (), rng: np.random.Generator | None = None,
           draws: MixDraws | None = None) -> PairResult:
    """CutMix (Yun et al. 2019); with k > 1 the partners come from k-mixup's OT matching.

    Arguments as for :func:`mix` (``alpha`` is the CutMix Beta parameter).
    """
    cfg = PairConfig.cutmix(alpha=alpha, prob=prob, k=k, cost=cost, pairing=pairing,
                            lam_mode=lam_mode, correct_lam=correct_lam, num_classes=num_classes,
                            label_smoothing=label_smoothing, dtype=dtype)
    return mix_batch(cfg, images, labels, layout=layout, features=features, extra=extra,
                     masks=masks, rng=rng, draws=draws)
