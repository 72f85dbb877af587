"""CutMix, and timm-style switching between mixup and CutMix, with random or OT partners.

CutMix (Yun et al., ICCV 2019): a box of the partner image is pasted into the image. The box
side ratio is ``sqrt(1 - lam)`` with lam ~ Beta(alpha, alpha), its centre uniform over the
image, and it is clipped to the image; with ``correct_lam`` (timm's default) the label weight
is recomputed from the clipped area: ``lam = 1 - box_area / (H * W)``.

:func:`mix` is the general operator, after timm's ``Mixup``: per lam group (batch, matched
block or sample, by ``lam_mode``) a coin decides whether to mix at all (``prob``), a second
whether to use CutMix instead of mixup (``switch_prob``). Partners are random disjoint pairs
(k = 1) or come from k-mixup's optimal-transport assignment (k > 1). Every output is::

    x~ = x * (1 - M) + x_partner * M          y~ = lam * y + (1 - lam) * y_partner

with ``M`` the partner's share of each pixel: ``1 - lam`` everywhere for mixup, the box
indicator for CutMix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _checks
from . import kmixup as km
from .assign import solve_blocks
from .cost import block_costs
from .images import as_batch, check_extra, finalize, flat_features, work_dtype
from .labels import soft_labels


@dataclass(frozen=True)
class MixDraws:
    """All randomness of one :func:`mix` batch.

    Attributes:
        u: ``[B, 2]`` pairing draws, as :class:`dali_mixup.KMixupDraws`.
        lam: ``[B]`` Beta(mixup_alpha, mixup_alpha).
        lam_cut: ``[B]`` Beta(cutmix_alpha, cutmix_alpha).
        box: ``[B, 2]`` uniform box centres (row, column) as fractions of H and W.
        coin: ``[B, 2]`` uniform: column 0 against ``prob``, column 1 against ``switch_prob``.
    """

    u: np.ndarray
    lam: np.ndarray
    lam_cut: np.ndarray
    box: np.ndarray
    coin: np.ndarray


def draw(rng: np.random.Generator, batch_size: int, mixup_alpha: float, cutmix_alpha: float) -> MixDraws:
    b = batch_size
    return MixDraws(u=rng.random((b, 2)), lam=rng.beta(mixup_alpha or 1.0, mixup_alpha or 1.0, b),
                    lam_cut=rng.beta(cutmix_alpha or 1.0, cutmix_alpha or 1.0, b),
                    box=rng.random((b, 2)), coin=rng.random((b, 2)))


def spatial_axes(layout: str, ndim: int, op: str) -> tuple[int, int]:
    """Positions of H and W in a sample of ``ndim`` dimensions with the given layout."""
    if not isinstance(layout, str) or len(layout) != ndim or "H" not in layout or "W" not in layout \
            or layout.index("H") > layout.index("W"):
        raise _checks.fail(op, "layout", f"a sample layout of {ndim} dimensions containing H before W "
                           "(e.g. 'HWC' or 'CHW')", layout)
    return layout.index("H"), layout.index("W")


def check_spatial(op: str, arg: str, shape: tuple, image_shape: tuple, ah: int, aw: int) -> None:
    """An ``extra``/``masks`` sample must have the images' dims and H, W (to take the same box)."""
    if len(shape) != len(image_shape) or shape[ah] != image_shape[ah] or shape[aw] != image_shape[aw]:
        raise _checks.fail(op, arg, f"samples with the images' layout and height/width (image sample "
                           f"shape {tuple(image_shape)}; other sizes may differ)", f"shape {tuple(shape)}")


def boxes(h: int, w: int, lam: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """CutMix boxes ``[B, 4]`` (y1, y2, x1, x2), clipped to the image (Yun et al., Alg. A1)."""
    cut = np.sqrt(1.0 - np.asarray(lam, np.float64))
    ch, cw = (h * cut).astype(np.int64), (w * cut).astype(np.int64)
    cy = np.minimum((np.asarray(centre[:, 0]) * h).astype(np.int64), h - 1)
    cx = np.minimum((np.asarray(centre[:, 1]) * w).astype(np.int64), w - 1)
    return np.stack([np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h),
                     np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)], axis=1)


def box_area(bx: np.ndarray) -> np.ndarray:
    return (bx[:, 1] - bx[:, 0]) * (bx[:, 3] - bx[:, 2])


@dataclass(frozen=True)
class MixPlan:
    """Host-side result of :func:`plan`: who is mixed with whom, and how.

    Attributes:
        partner: ``[B]`` (itself when not mixed).
        lam: ``[B]`` label weight of the sample itself.
        cut: ``[B]`` bool, CutMix (True) or mixup (False).
        boxes: ``[B, 4]`` (y1, y2, x1, x2); all zero for mixup or unmixed samples.
        share: ``[B]`` partner's pixel share for mixup rows (``1 - lam``), 0 for CutMix rows.
        k: block size used for the pairing.
    """

    partner: np.ndarray
    lam: np.ndarray
    cut: np.ndarray
    boxes: np.ndarray
    share: np.ndarray
    k: int

    def pixel_share(self, h: int, w: int) -> np.ndarray:
        """``M [B, h, w]``: the partner's share of each pixel (float64)."""
        b = self.partner.shape[0]
        m = np.broadcast_to(self.share[:, None, None], (b, h, w)).copy()
        for i in np.flatnonzero(self.cut):
            y1, y2, x1, x2 = self.boxes[i]
            m[i, y1:y2, x1:x2] = 1.0
        return m


def plan(draws: MixDraws, batch_size: int, hw: tuple[int, int], *, k: int, pairing: str,
         cost: str, lam_mode: str, prob: float, switch_prob: float, mixup_alpha: float,
         cutmix_alpha: float, correct_lam: bool, feats=None, costs=None, xp=None, op: str = "mix",
         arg: str = "images") -> MixPlan:
    """Partners (random pairs or optimal transport), coins, lambdas and boxes for one batch.

    ``costs`` (``[n_blocks, k, k]`` host array) may be given instead of ``feats``.
    """
    b = batch_size
    bp = km.plan_blocks(draws.u, b, k, pairing)
    cols = None
    if bp.k > 1:
        if costs is None:
            from ._backend import to_numpy

            costs = to_numpy(block_costs(feats, bp.left, bp.right, metric=cost, xp=xp, op=op,
                                         arg=arg, match_only=True))
        cols = solve_blocks(costs, bp.sizes)
    partner = km.assemble(bp, cols, b)
    rep = km.representatives(bp, lam_mode, b)
    coin = np.asarray(draws.coin, np.float64).reshape(b, 2) if b else np.zeros((0, 2))
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cut = coin[rep, 1] < switch_prob
    else:
        cut = np.full(b, cutmix_alpha > 0)
    skip = (coin[rep, 0] >= prob) | (partner == np.arange(b))
    partner = np.where(skip, np.arange(b), partner)
    h, w = hw
    bx = boxes(h, w, np.asarray(draws.lam_cut, np.float64)[rep], np.asarray(draws.box, np.float64).reshape(b, 2)[rep]) \
        if b else np.zeros((0, 4), np.int64)
    cut_lam = 1.0 - box_area(bx) / float(h * w) if correct_lam else np.asarray(draws.lam_cut, np.float64)[rep]
    lam = np.where(cut, cut_lam, np.asarray(draws.lam, np.float64)[rep])
    lam = np.where(skip, 1.0, lam)
    bx = np.where((cut & ~skip)[:, None], bx, 0)
    share = np.where(cut, 0.0, 1.0 - lam)
    return MixPlan(partner=partner, lam=lam, cut=cut & ~skip, boxes=bx, share=share, k=bp.k)


def expand(m, layout: str, ndim: int, xp, op: str):
    """``[B, h, w]`` -> ``[B, ...]`` broadcastable against samples of the given layout."""
    ah, aw = spatial_axes(layout, ndim, op)
    shape = [m.shape[0]] + [1] * ndim
    shape[1 + ah], shape[1 + aw] = m.shape[1], m.shape[2]
    return xp.reshape(m, tuple(shape))


def paste(x, partner, m, xp):
    """``x * (1 - m) + x[partner] * m`` for a float batch and a broadcastable share ``m``."""
    return x * (1.0 - m) + xp.take(x, partner, axis=0) * m


def validate(*, mixup_alpha, cutmix_alpha, prob, switch_prob, k, cost, pairing, lam_mode,
             correct_lam, num_classes, label_smoothing, dtype, op="mix"):
    def alpha(name, v):
        if v == 0:
            return 0.0
        return _checks.check_positive(op, name, v)

    o = dict(mixup_alpha=alpha("mixup_alpha", mixup_alpha), cutmix_alpha=alpha("cutmix_alpha", cutmix_alpha),
             prob=_checks.check_prob(op, "prob", prob),
             switch_prob=_checks.check_prob(op, "switch_prob", switch_prob))
    if o["mixup_alpha"] == 0 and o["cutmix_alpha"] == 0:
        raise _checks.fail(op, "mixup_alpha", "mixup_alpha > 0 or cutmix_alpha > 0", "both 0")
    if not isinstance(correct_lam, bool):
        raise _checks.fail(op, "correct_lam", "True or False", correct_lam)
    o.update(km.validate(k=k, alpha=1.0, num_classes=num_classes, cost=cost, pairing=pairing,
                         lam_mode=lam_mode, label_smoothing=label_smoothing, dtype=dtype, prob=prob,
                         op=op))
    o["correct_lam"] = correct_lam
    return o


@dataclass(frozen=True)
class MixResult:
    """What :func:`mix` / :func:`cutmix` return.

    Attributes:
        images, labels, partner, lam, k, extra, masks: as :class:`dali_mixup.MixupResult`
            (``lam`` is the label weight: the uncovered area for CutMix).
        cut: ``[B]`` bool, True where CutMix was applied.
        boxes: ``[B, 4]`` (y1, y2, x1, x2) of the pasted partner region (zero when none).
    """

    images: Any
    labels: Any
    partner: Any
    lam: Any
    k: int
    cut: Any
    boxes: Any
    extra: tuple = ()
    masks: tuple = ()


def mix(images, labels, *, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0,
        prob: float = 1.0, switch_prob: float = 0.5, k: int = 1, cost: str = "sqeuclidean",
        pairing: str = "disjoint", lam_mode: str = "batch", correct_lam: bool = True,
        num_classes: int | None = None, label_smoothing: float = 0.0, layout: str = "CHW",
        features=None, dtype: str | None = None, extra: Sequence = (), masks: Sequence = (),
        rng: np.random.Generator | None = None, draws: MixDraws | None = None,
        _op: str = "mix") -> MixResult:
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
        extra: more per-sample arrays with the images' layout, mixed the same way.
        masks: integer per-pixel maps; each pixel takes the value of its dominant source.
        rng, draws: randomness, as for :func:`dali_mixup.k_mixup`.
    """
    o = validate(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob, switch_prob=switch_prob,
                 k=k, cost=cost, pairing=pairing, lam_mode=lam_mode, correct_lam=correct_lam,
                 num_classes=num_classes, label_smoothing=label_smoothing, dtype=dtype, op=_op)
    xp, images, in_name = as_batch(images, _op)
    b = images.shape[0]
    ah, aw = spatial_axes(layout, images.ndim - 1, _op)
    hw = (images.shape[1 + ah], images.shape[1 + aw])
    wd = work_dtype(xp, in_name)
    y = soft_labels(labels, b, num_classes=o["num_classes"], label_smoothing=o["label_smoothing"],
                    dtype=xp.float32, xp=xp, op=_op, device=getattr(images, "device", None))
    if draws is None:
        draws = draw(rng if rng is not None else np.random.default_rng(), b, o["mixup_alpha"], o["cutmix_alpha"])
    arg = "features" if features is not None else "images"
    feats = flat_features(features if features is not None else images, b, xp, _op, arg) if o["k"] > 1 else None
    p = plan(draws, b, hw, k=o["k"], pairing=o["pairing"], cost=o["cost"], lam_mode=o["lam_mode"],
             prob=o["prob"], switch_prob=o["switch_prob"], mixup_alpha=o["mixup_alpha"],
             cutmix_alpha=o["cutmix_alpha"], correct_lam=o["correct_lam"], feats=feats, xp=xp, op=_op, arg=arg)
    device = getattr(images, "device", None)
    partner = xp.asarray(p.partner, device=device)
    share = p.pixel_share(*hw)
    m = expand(xp.asarray(share, dtype=wd, device=device), layout, images.ndim - 1, xp, _op)
    lam = xp.asarray(p.lam, dtype=wd, device=device)
    out = finalize(paste(xp.astype(images, wd), partner, m, xp), in_name, o["dtype"], xp, _op)
    mixed_y = km.blend(y, partner, lam, xp)
    extra, masks = check_extra(extra, b, xp, _op, "extra"), check_extra(masks, b, xp, _op, "masks")
    for arg, arrs in (("extra", extra), ("masks", masks)):
        for j, a in enumerate(arrs):
            check_spatial(_op, f"{arg}[{j}]", tuple(a.shape[1:]), tuple(images.shape[1:]), ah, aw)
    extras = tuple(paste(xp.astype(e, wd), partner, m, xp) for e in extra)
    dom = expand(xp.asarray((share > 0.5).astype(np.float32), device=device), layout, images.ndim - 1, xp, _op)
    mask_out = tuple(xp.where(dom > 0.5, xp.take(mk, partner, axis=0), mk) for mk in masks)
    return MixResult(images=out, labels=mixed_y, partner=partner, lam=lam, k=p.k,
                     cut=xp.asarray(p.cut, device=device), boxes=xp.asarray(p.boxes, device=device),
                     extra=extras, masks=mask_out)


def cutmix(images, labels, *, alpha: float = 1.0, prob: float = 1.0, k: int = 1,
           cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
           correct_lam: bool = True, num_classes: int | None = None, label_smoothing: float = 0.0,
           layout: str = "CHW", features=None, dtype: str | None = None, extra: Sequence = (),
           masks: Sequence = (), rng: np.random.Generator | None = None,
           draws: MixDraws | None = None) -> MixResult:
    """CutMix (Yun et al. 2019); with k > 1 the partners come from k-mixup's OT matching.

    Arguments as for :func:`mix` (``alpha`` is the CutMix Beta parameter).
    """
    return mix(images, labels, mixup_alpha=0.0, cutmix_alpha=alpha, prob=prob, k=k, cost=cost,
               pairing=pairing, lam_mode=lam_mode, correct_lam=correct_lam, num_classes=num_classes,
               label_smoothing=label_smoothing, layout=layout, features=features, dtype=dtype,
               extra=extra, masks=masks, rng=rng, draws=draws, _op="cutmix")
