"""Applying a plan to a batch: the plain expressions, written against the array API.

These lines are the reference semantics of every operator, and they run as they are on CuPy
(the GPU python operators), torch and any array-API namespace::

    blend:   x~ = lam * x + (1 - lam) * x[partner]                      (mixup, k-mixup)
    paste:   x~ = x * (1 - M) + x[partner] * M                          (CutMix, mix)
    zeta:    x~ = sum_t w_t x[index[:, t]]                              (zeta-mixup, Eq. 5)

:func:`blend`, :func:`mix_pairs` and :func:`zeta_mix` send NumPy batches to the fast paths of
:mod:`dali_mixup.core._fast`, which the tests hold to these expressions (bitwise for the blend and
the gather, equal for the paste, to rounding for the matrix product).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _fast


# ------------------------------------------------------------------------------ pairs


def blend_reference(x, partner, lam, xp):
    """``lam_i * x_i + (1 - lam_i) * x_partner(i)`` for a float batch ``x [B, ...]``."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    lam = xp.reshape(xp.astype(lam, x.dtype), shape)
    return lam * x + (1.0 - lam) * xp.take(x, partner, axis=0)


def blend(x, partner, lam, xp, out=None):
    """:func:`blend_reference`; NumPy batches take :func:`dali_mixup.core._fast.blend_numpy`.

    ``partner`` and ``lam`` are arrays of ``xp`` on ``x``'s device. ``out``: an optional NumPy
    buffer shaped and typed like ``x`` (not ``x`` itself) that the NumPy path writes into; use
    the returned array, which is a new one on other backends.
    """
    if (isinstance(x, np.ndarray) and isinstance(partner, np.ndarray) and isinstance(lam, np.ndarray)
            and x.ndim >= 1 and x.dtype.kind == "f" and x.flags.c_contiguous and x.size
            and partner.shape == (x.shape[0],) and lam.shape == (x.shape[0],)
            and partner.dtype.kind in "iu" and 0 <= partner.min() and partner.max() < x.shape[0]):
        return _fast.blend_numpy(x, partner, lam, out=out if out is not x else None)
    return blend_reference(x, partner, lam, xp)


def paste(x, partner, m, xp):
    """``x * (1 - m) + x[partner] * m`` for a float batch and a broadcastable share ``m``."""
    return x * (1.0 - m) + xp.take(x, partner, axis=0) * m


def mix_into(x, partner, own, other, xp):
    """``x * own + x[partner] * other`` written into ``x``, a batch the caller owns and no
    longer needs (a GPU operator's stacked input): one batch-sized temporary, the partner
    gather, where :func:`blend_reference` / :func:`paste` make three. Bitwise equal to them
    (the same two products and one sum). ``own``, ``other`` broadcast against ``x``."""
    g = xp.take(x, partner, axis=0)
    g *= other
    x *= own
    x += g
    return x


def pixel_share(share, cut, boxes, h: int, w: int, xp):
    """``M [B, h, w]``: the partner's share of each pixel: 1 inside a CutMix row's box,
    ``share`` elsewhere (``boxes`` ``[B, 4]`` as (y1, y2, x1, x2); ``cut`` ``[B]`` bool)."""
    device = getattr(share, "device", None)
    ys = xp.reshape(xp.arange(h, device=device), (1, h, 1))
    xs = xp.reshape(xp.arange(w, device=device), (1, 1, w))
    bx = [xp.reshape(boxes[:, j], (-1, 1, 1)) for j in range(4)]
    inside = (ys >= bx[0]) & (ys < bx[1]) & (xs >= bx[2]) & (xs < bx[3])
    inside = inside & xp.reshape(cut, (-1, 1, 1))
    s = xp.broadcast_to(xp.reshape(share, (-1, 1, 1)), inside.shape)
    return xp.where(inside, xp.ones_like(s), s)


def expand(m, axes: tuple[int, int], ndim: int, xp):
    """``[B, h, w]`` -> ``[B, ...]`` broadcastable against samples of ``ndim`` dims whose
    H and W sit at ``axes``."""
    shape = [m.shape[0]] + [1] * ndim
    shape[1 + axes[0]], shape[1 + axes[1]] = m.shape[1], m.shape[2]
    return xp.reshape(m, tuple(shape))


@dataclass(frozen=True)
class PairArrays:
    """A :class:`dali_mixup.core.plan.PairPlan` in the images' namespace, on their device.

    ``partner`` int64; ``lam`` and ``share`` in the working float dtype; ``cut`` bool;
    ``boxes`` int64 ``[B, 4]``.
    """

    partner: Any
    lam: Any
    share: Any
    cut: Any
    boxes: Any

    #: columns of :meth:`rows`: partner, lam, share, cut, y1, y2, x1, x2
    WIDTH = 8

    @classmethod
    def from_plan(cls, plan, xp, dtype, device=None) -> "PairArrays":
        def put(a, dt):
            return xp.asarray(a, dtype=dt, device=device)

        return cls(partner=put(plan.partner, xp.int64), lam=put(plan.lam, dtype),
                   share=put(plan.share, dtype), cut=put(plan.cut, xp.bool),
                   boxes=put(plan.boxes, xp.int64))

    @staticmethod
    def rows(plan) -> np.ndarray:
        """The plan as one float64 row per sample (what a CPU operator hands a GPU one)."""
        return np.concatenate([plan.partner[:, None], plan.lam[:, None], plan.share[:, None],
                               plan.cut[:, None], plan.boxes], axis=1).astype(np.float64)

    @classmethod
    def from_rows(cls, rows, xp, dtype) -> "PairArrays":
        """From :meth:`rows` already on the device (``[B, 8]`` float64)."""
        return cls(partner=xp.astype(rows[:, 0], xp.int64), lam=xp.astype(rows[:, 1], dtype),
                   share=xp.astype(rows[:, 2], dtype), cut=rows[:, 3] > 0.5,
                   boxes=xp.astype(rows[:, 4:8], xp.int64))


def mix_pairs(x, pa: PairArrays, *, cutmix: bool, axes: tuple[int, int] | None, xp, out=None,
              overwrite: bool = False):
    """The images (or an ``extra`` tensor) of a pair operator: :func:`blend` with ``lam``
    for k-mixup / mixup, :func:`paste` with the pixel share when CutMix is possible (NumPy
    batches: :func:`dali_mixup.core._fast.paste_numpy`, which makes no pixel map).

    ``overwrite``: ``x`` is the caller's own batch and may be overwritten; other backends than
    NumPy then mix into it with :func:`mix_into` (fewer batch-sized temporaries on the GPU).
    """
    numpy = isinstance(x, np.ndarray)
    if not cutmix:
        if overwrite and not numpy and x.shape[0]:
            lam = xp.reshape(xp.astype(pa.lam, x.dtype, copy=False), (x.shape[0],) + (1,) * (x.ndim - 1))
            return mix_into(x, pa.partner, lam, 1.0 - lam, xp)
        return blend(x, pa.partner, pa.lam, xp, out=out)
    if _fast.numpy_fast(x) and isinstance(pa.partner, np.ndarray) and x.ndim >= 3:
        return _fast.paste_numpy(x, pa.partner, pa.share, pa.cut, pa.boxes, axes, out=out)
    h, w = x.shape[1 + axes[0]], x.shape[1 + axes[1]]
    m = expand(pixel_share(pa.share, pa.cut, pa.boxes, h, w, xp), axes, x.ndim - 1, xp)
    if overwrite and not numpy and x.shape[0]:
        return mix_into(x, pa.partner, 1.0 - m, m, xp)
    return paste(x, pa.partner, m, xp)


def mix_pair_masks(m, pa: PairArrays, *, cutmix: bool, axes: tuple[int, int] | None, xp):
    """Integer maps: each output (or, with CutMix, each pixel) takes its dominant source's."""
    b = m.shape[0]
    if not cutmix:
        own = xp.arange(b, dtype=xp.int64, device=getattr(pa.partner, "device", None))
        return xp.take(m, xp.where(pa.lam >= 0.5, own, pa.partner), axis=0)
    h, w = m.shape[1 + axes[0]], m.shape[1 + axes[1]]
    dom = expand(pixel_share(pa.share, pa.cut, pa.boxes, h, w, xp) > 0.5, axes, m.ndim - 1, xp)
    return xp.where(dom, xp.take(m, pa.partner, axis=0), m)


# ------------------------------------------------------------------------------ zeta


def zeta_mix_reference(x, index, weights, xp):
    """``w_0 x_i + sum_{t >= 1} w_t x_index(i, t)`` (Eq. 5), accumulated in column order.

    ``index`` ``[B, T]`` int and ``weights`` ``[T]`` are arrays of ``xp`` on ``x``'s device.
    """
    acc = None
    for t in range(1, index.shape[1]):
        term = xp.take(x, index[:, t], axis=0) * xp.astype(weights[t], x.dtype)
        acc = term if acc is None else acc + term
    own = x * xp.astype(weights[0], x.dtype)
    return own if acc is None else own + acc


def zeta_mix_matrix(x, W, xp):
    """The same mix as one ``W [B, B] @ x [B, D]`` product (``W`` from
    :func:`dali_mixup.core.plan.mixing_matrix` with the self weight on the diagonal)."""
    b = x.shape[0]
    return xp.reshape(xp.matmul(xp.astype(W, x.dtype), xp.reshape(x, (b, -1))), x.shape)


def zeta_mix(x, index: np.ndarray, weights: np.ndarray, xp, method: str, *, W=None, out=None):
    """zeta-mixup of a float batch with a host plan (``index``, ``weights``, NumPy).

    NumPy batches take :func:`dali_mixup.core._fast.zeta_mix_numpy`; others the plain
    expressions on their device (``method`` ``"matmul"``: :func:`zeta_mix_matrix`).
    ``W``: the host mixing matrix when the caller already has it.
    """
    if index.shape[1] == 1 or x.shape[0] == 0:  # unmixed (weights [1.0]) or empty: a copy
        return x * 1.0
    if _fast.numpy_fast(x) and index.shape[0] == x.shape[0]:
        return _fast.zeta_mix_numpy(x, index, weights, method, include_self=True, W=W, out=out)
    device = getattr(x, "device", None)
    if method == "matmul":
        from .plan import mixing_matrix

        W = mixing_matrix(index, weights, include_self=True) if W is None else W
        return zeta_mix_matrix(x, xp.asarray(W, device=device), xp)
    return zeta_mix_reference(x, xp.asarray(index, device=device),
                              xp.asarray(weights, dtype=x.dtype, device=device), xp)
