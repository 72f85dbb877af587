"""zeta-mixup: convex combinations of T samples with p-series weights.

Abhishek, Brown, Hamarneh, "zeta-mixup: Richer, More Realistic Mixing of Multiple Images",
Eq. 5-6::

    x^_i = sum_{t=1..T} w_t x_index(i, t),   w_t = s_t^-gamma / C,   C = sum_{j<=T} j^-gamma

As in the authors' code, sample i itself takes rank 1 (the largest weight 1/C, column 0 of
``index``); its T-1 partners are drawn without replacement from the other samples in random
order and take ranks 2..T. Because the partners are already in random order, the weight of
column t is simply ``(t + 1)^-gamma / C``: one weight vector serves the whole batch.

Theorem 1: for gamma >= 1.72865, w_1 > sum_{t>1} w_t (one sample dominates).
Theorem 2: T = 2 and gamma = log2(lam / (1 - lam)) give mixup with weight lam.

Mixing (:func:`dali_mixup.core.apply.zeta_mix`): a gather-and-accumulate over the T columns when
T is small, or one ``[B, B] @ [B, D]`` matrix product when T is large. The draws live in
:mod:`~dali_mixup.core.draws`, the plan (index and weights) in :mod:`~dali_mixup.core.plan`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .core._backend import numpy_view, torch_fields, torch_on_host
from .core.apply import zeta_mix
from .core.config import ZetaConfig
from .core.draws import ZetaDraws, draw_zeta as draw  # noqa: F401
from .core.images import as_batch, check_extra, finalize, work_dtype
from .core.labels import soft_labels
from .core.plan import (choose_zeta_method, mixing_matrix, resolve_T, zeta_partners as partners,  # noqa: F401
                   zeta_plan, zeta_weights)

OP = "zeta_mixup"


@dataclass(frozen=True)
class ZetaResult:
    """What zeta-mixup returns.

    Attributes:
        images: mixed batch ``[B, ...]``.
        labels: soft labels ``[B, num_classes]``, float32.
        index: ``[B, T]`` int64, column 0 is the sample itself.
        weights: ``[B, T]`` rows sum to 1 (the same row for every sample).
        gamma: the gamma used for this batch.
        extra: the ``extra`` arrays mixed with the same index and weights.
        masks: the integer ``masks``: each output keeps its own (the sample itself always
            carries the largest weight).
    """

    images: Any
    labels: Any
    index: Any
    weights: Any
    gamma: float
    extra: tuple = ()
    masks: tuple = ()


def zeta_mixup(images, labels, *, gamma: float | tuple[float, float] = 2.8, T: int | None = None,
               num_classes: int | None = None, label_smoothing: float = 0.0,
               dtype: str | None = None, method: str | None = None, prob: float = 1.0,
               extra: Sequence = (), masks: Sequence = (),
               rng: np.random.Generator | None = None, draws: ZetaDraws | None = None) -> ZetaResult:
    """zeta-mixup of a whole batch (array layer; NumPy, CuPy or torch in, the same kind out).

    Args:
        images: ``[B, ...]`` uint8, float16, float32 or float64, any layout.
        labels: class ids ``[B]`` / ``[B, 1]`` with ``num_classes``, or float ``[B, C]``.
        gamma: the p-series exponent, or a ``(low, high)`` range sampled once per batch (the
            paper uses U[1.72865, 4.0]). Below 1.72865 a warning says Theorem 1 fails.
        T: samples per mix; None means the whole batch (the paper); clamped to B.
        num_classes: number of classes for integer labels.
        label_smoothing: applied to one-hot labels built from class ids, before mixing.
        dtype: output image dtype, as for :func:`dali_mixup.k_mixup`.
        method: ``"gather"`` or ``"matmul"``; None picks by T and B (:func:`dali_mixup.core.plan.choose_zeta_method`).
        prob: probability that the batch is mixed at all (otherwise it passes through).
        extra: more per-sample arrays ``[B, ...]`` mixed with the same index and weights.
        masks: integer per-sample maps; each output keeps its own (its dominant sample).
        rng: NumPy ``Generator`` for the draws (a fresh one if None).
        draws: precomputed draws (overrides ``rng``).
    """
    cfg = ZetaConfig.zeta_mixup(gamma=gamma, T=T, method=method, prob=prob,
                                num_classes=num_classes, label_smoothing=label_smoothing, dtype=dtype)
    if torch_on_host(images, labels, extra, masks):  # NumPy's fast paths on views
        return torch_fields(zeta_mixup(
            numpy_view(images), numpy_view(labels), gamma=gamma, T=T, num_classes=num_classes,
            label_smoothing=label_smoothing, dtype=dtype, method=method, prob=prob,
            extra=numpy_view(extra), masks=numpy_view(masks), rng=rng, draws=draws))
    xp, images, in_name = as_batch(images, OP)
    b = images.shape[0]
    wd = work_dtype(xp, in_name)
    device = getattr(images, "device", None)
    y = soft_labels(labels, b, num_classes=cfg.num_classes, label_smoothing=cfg.label_smoothing,
                    dtype=xp.float32, xp=xp, op=OP, device=device)
    extra = check_extra(extra, b, xp, OP, "extra")
    masks = check_extra(masks, b, xp, OP, "masks")
    if draws is None:
        draws = draw(rng if rng is not None else np.random.default_rng(), b)
    zp = zeta_plan(cfg, draws, b)
    how = cfg.method or choose_zeta_method(zp.index.shape[1], b)
    # the [B, B] mixing matrix, built once for images, labels and extras
    W = mixing_matrix(zp.index, zp.weights, include_self=True) if zp.index.shape[1] > 1 else None

    def mix(a, method):
        return zeta_mix(a, zp.index, zp.weights, xp, method, W=W)

    mixed = mix(xp.astype(images, wd, copy=False), how)  # zeta_mix never writes its input
    w = xp.asarray(np.broadcast_to(zp.weights, zp.index.shape).copy(), dtype=wd, device=device)
    return ZetaResult(images=finalize(mixed, in_name, cfg.dtype, xp, OP), labels=mix(y, "matmul"),
                      index=xp.asarray(zp.index, device=device), weights=w, gamma=zp.gamma,
                      extra=tuple(mix(xp.astype(e, wd), how) for e in extra), masks=tuple(masks))
