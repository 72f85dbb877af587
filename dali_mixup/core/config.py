"""Frozen operator configurations, validated once where the caller's arguments arrive.

One config class per family, shared by the array layer, the DALI layer, the ready-made
pipelines and the CLI:

* :class:`PairConfig`: every method that mixes each sample with one partner (k-mixup, mixup,
  CutMix and timm-style mixup/CutMix switching). k-mixup is ``cutmix_alpha = 0``; CutMix is
  ``mixup_alpha = 0``.
* :class:`ZetaConfig`: zeta-mixup.

Build them with the named constructors (``PairConfig.k_mixup(...)``, ``PairConfig.cutmix(...)``
...): each checks the arguments under the names its caller used, so an error always names an
argument the caller actually has::

    cutmix: argument 'alpha' expected a finite number > 0, got 0
"""
from __future__ import annotations

from dataclasses import dataclass

from . import _checks
from .cost import COSTS

#: zeta-mixup mixing methods: None picks by T and B.
ZETA_METHODS = (None, "gather", "matmul")


@dataclass(frozen=True)
class PairConfig:
    """Settings of a pair-mixing operator (one partner per sample).

    Attributes:
        op: operator name used in messages (``"k_mixup"``, ``"mixup"``, ``"mix"``, ``"cutmix"``).
        k: block size of the optimal-transport matching (1: random disjoint pairs).
        mixup_alpha: lam ~ Beta(mixup_alpha, mixup_alpha) for blended rows; 0 disables them.
        cutmix_alpha: CutMix's Beta parameter; 0 disables CutMix.
        prob: probability that a lam group is mixed at all.
        switch_prob: probability of CutMix instead of mixup when both alphas are > 0.
        cost: a name of :data:`dali_mixup.core.cost.COSTS` (k > 1).
        pairing: ``"disjoint"`` or ``"permutation"``.
        lam_mode: ``"batch"``, ``"block"`` or ``"sample"``.
        correct_lam: CutMix label weight from the clipped box area.
        num_classes: C for class-id labels (None for float label vectors).
        label_smoothing: applied to one-hot labels before mixing.
        dtype: output image dtype (None: float32, float64 for float64 images).
    """

    op: str
    k: int = 1
    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    cost: str = "sqeuclidean"
    pairing: str = "disjoint"
    lam_mode: str = "batch"
    correct_lam: bool = True
    num_classes: int | None = None
    label_smoothing: float = 0.0
    dtype: str | None = None

    @property
    def uses_cutmix(self) -> bool:
        return self.cutmix_alpha > 0

    @classmethod
    def _build(cls, op, *, k, mixup_alpha, cutmix_alpha, prob, switch_prob, cost, pairing,
               lam_mode, correct_lam, num_classes, label_smoothing, dtype) -> "PairConfig":
        if not isinstance(correct_lam, bool):
            raise _checks.fail(op, "correct_lam", "True or False", correct_lam)
        return cls(
            op=op, k=_checks.check_int(op, "k", k, minimum=1), mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha, prob=_checks.check_prob(op, "prob", prob),
            switch_prob=_checks.check_prob(op, "switch_prob", switch_prob),
            cost=_checks.check_choice(op, "cost", cost, tuple(COSTS)),
            pairing=_checks.check_choice(op, "pairing", pairing, _checks.PAIRINGS),
            lam_mode=_checks.check_choice(op, "lam_mode", lam_mode, _checks.LAM_MODES),
            correct_lam=correct_lam, num_classes=_checks.check_num_classes(op, num_classes),
            label_smoothing=_checks.check_smoothing(op, label_smoothing),
            dtype=_checks.check_dtype(op, dtype))

    @classmethod
    def k_mixup(cls, *, k: int = 16, alpha: float = 1.0, num_classes: int | None = None,
                cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
                label_smoothing: float = 0.0, dtype: str | None = None, prob: float = 1.0,
                op: str = "k_mixup") -> "PairConfig":
        """k-mixup (Greenewald et al.); ``op="mixup"`` with ``k=1`` is standard mixup."""
        return cls._build(op, k=k, mixup_alpha=_checks.check_positive(op, "alpha", alpha),
                          cutmix_alpha=0.0, prob=prob, switch_prob=0.0, cost=cost, pairing=pairing,
                          lam_mode=lam_mode, correct_lam=True, num_classes=num_classes,
                          label_smoothing=label_smoothing, dtype=dtype)

    @classmethod
    def mixup(cls, **kw) -> "PairConfig":
        """Standard mixup: :meth:`k_mixup` with k = 1."""
        return cls.k_mixup(k=1, op="mixup", **kw)

    @classmethod
    def mix(cls, *, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0, prob: float = 1.0,
            switch_prob: float = 0.5, k: int = 1, cost: str = "sqeuclidean",
            pairing: str = "disjoint", lam_mode: str = "batch", correct_lam: bool = True,
            num_classes: int | None = None, label_smoothing: float = 0.0,
            dtype: str | None = None, op: str = "mix") -> "PairConfig":
        """timm-style mixup or CutMix per lam group; 0 disables either method."""
        def alpha(name, v):
            return 0.0 if (_checks.is_number(v) and v == 0) else _checks.check_positive(op, name, v)

        ma, ca = alpha("mixup_alpha", mixup_alpha), alpha("cutmix_alpha", cutmix_alpha)
        if ma == 0 and ca == 0:
            raise _checks.fail(op, "mixup_alpha", "mixup_alpha > 0 or cutmix_alpha > 0", "both 0")
        return cls._build(op, k=k, mixup_alpha=ma, cutmix_alpha=ca, prob=prob,
                          switch_prob=switch_prob, cost=cost, pairing=pairing, lam_mode=lam_mode,
                          correct_lam=correct_lam, num_classes=num_classes,
                          label_smoothing=label_smoothing, dtype=dtype)

    @classmethod
    def cutmix(cls, *, alpha: float = 1.0, prob: float = 1.0, k: int = 1,
               cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
               correct_lam: bool = True, num_classes: int | None = None,
               label_smoothing: float = 0.0, dtype: str | None = None) -> "PairConfig":
        """CutMix (Yun et al. 2019), with random or optimal-transport partners."""
        op = "cutmix"
        return cls._build(op, k=k, mixup_alpha=0.0,
                          cutmix_alpha=_checks.check_positive(op, "alpha", alpha), prob=prob,
                          switch_prob=1.0, cost=cost, pairing=pairing, lam_mode=lam_mode,
                          correct_lam=correct_lam, num_classes=num_classes,
                          label_smoothing=label_smoothing, dtype=dtype)


@dataclass(frozen=True)
class ZetaConfig:
    """Settings of zeta-mixup (Abhishek et al.).

    Attributes:
        gamma: ``(low, high)``; equal for a fixed gamma, else sampled once per batch.
        T: samples per mix (None: the whole batch).
        method: ``"gather"``, ``"matmul"`` or None (picked by T and B).
        prob, num_classes, label_smoothing, dtype: as for :class:`PairConfig`.
    """

    gamma: tuple[float, float] = (2.8, 2.8)
    T: int | None = None
    method: str | None = None
    prob: float = 1.0
    num_classes: int | None = None
    label_smoothing: float = 0.0
    dtype: str | None = None
    op: str = "zeta_mixup"

    @classmethod
    def zeta_mixup(cls, *, gamma=2.8, T: int | None = None, method: str | None = None,
                   prob: float = 1.0, num_classes: int | None = None,
                   label_smoothing: float = 0.0, dtype: str | None = None) -> "ZetaConfig":
        op = "zeta_mixup"
        return cls(gamma=_checks.check_gamma(op, gamma),
                   T=_checks.check_int(op, "T", T, minimum=1, allow_none=True),
                   method=_checks.check_choice(op, "method", method, ZETA_METHODS),
                   prob=_checks.check_prob(op, "prob", prob),
                   num_classes=_checks.check_num_classes(op, num_classes),
                   label_smoothing=_checks.check_smoothing(op, label_smoothing),
                   dtype=_checks.check_dtype(op, dtype))
