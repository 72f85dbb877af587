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

Mixing: ``x^ = w_1 * x + others`` where ``others`` is a gather-and-accumulate over the T-1
partner columns when T is small, or one ``[B, B] @ [B, D]`` matrix product when T is large.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _checks
from ._threads import scratch, split_matmul
from .images import as_batch, check_extra, finalize, work_dtype
from .labels import soft_labels

OP = "zeta_mixup"


@dataclass(frozen=True)
class ZetaDraws:
    """All randomness of one zeta-mixup batch.

    Attributes:
        u: ``[B, W]`` uniform in [0, 1), W >= B: row i ranks the other samples (its T-1
            smallest keys, in key order, are i's partners).
        g: ``[B]`` uniform in [0, 1); ``g[0]`` picks gamma inside a ``(low, high)`` range.
        coin: ``[B]`` uniform in [0, 1); the batch is mixed when ``coin[0] < prob``
            (None: always).
    """

    u: np.ndarray
    g: np.ndarray
    coin: np.ndarray | None = None


def draw(rng: np.random.Generator, batch_size: int) -> ZetaDraws:
    return ZetaDraws(u=rng.random((batch_size, batch_size)), g=rng.random(batch_size),
                     coin=rng.random(batch_size))


def zeta_weights(T: int, gamma: float) -> np.ndarray:
    """``w_t = t^-gamma / sum_{j<=T} j^-gamma`` for t = 1..T (float64, sums to 1)."""
    w = np.arange(1, T + 1, dtype=np.float64) ** (-float(gamma))
    return w / w.sum()


def partners(u: np.ndarray, batch_size: int, T: int) -> np.ndarray:
    """``index [B, T]``: column 0 is the sample itself, columns 1.. its partners in key order."""
    b = batch_size
    index = np.empty((b, T), dtype=np.int64)
    index[:, 0] = np.arange(b)
    if T > 1:
        keys = np.array(u[:b, :b], dtype=np.float64)
        keys[np.arange(b), np.arange(b)] = np.inf  # never pick yourself
        m = T - 1
        if m < b // 4:
            cand = np.argpartition(keys, m - 1, axis=1)[:, :m]
            order = np.argsort(np.take_along_axis(keys, cand, axis=1), axis=1, kind="stable")
            index[:, 1:] = np.take_along_axis(cand, order, axis=1)
        else:
            # From B = 64 the default (SIMD) sort is 3-6x faster than the stable one; it gives
            # the same order unless a row has equal keys, and such rows are re-sorted stably.
            if b < 64:
                order = np.argsort(keys, axis=1, kind="stable")
            else:
                order = np.argsort(keys, axis=1)
                s = np.take_along_axis(keys, order, axis=1)
                tied = (s[:, 1:] == s[:, :-1]).any(axis=1)
                if tied.any():
                    order[tied] = np.argsort(keys[tied], axis=1, kind="stable")
            index[:, 1:] = order[:, :m]
    return index


def resolve_T(T: int | None, batch_size: int) -> int:
    """T = None means the whole batch; a T larger than the batch is clamped to it."""
    return max(1, batch_size if T is None else min(T, batch_size))


def choose_method(T: int, batch_size: int) -> str:
    """``"gather"`` while T-1 passes over the batch cost less than one B x B x D product.

    A gather pass moves about 12 bytes per element; the product costs 2B flops per element.
    At the ~200 GFLOP/s and ~25 GB/s measured on these CPUs (NOTES) the break-even is near
    T - 1 = B / 48; see benchmarks/ for the measured crossover.
    """
    return "gather" if T - 1 <= max(2, batch_size // 48) else "matmul"


def mixing_matrix(index: np.ndarray, weights: np.ndarray, *, include_self: bool) -> np.ndarray:
    """Dense ``W [B, B]`` with ``W[i, index[i, t]] = weights[t]`` (float64, host)."""
    b, T = index.shape
    start = 0 if include_self else 1
    # bincount sums repeated entries like np.add.at, at a fraction of its cost
    flat = (np.arange(b, dtype=np.int64)[:, None] * b + index[:, start:]).reshape(-1)
    vals = np.tile(np.asarray(weights[start:], dtype=np.float64), b)
    return np.bincount(flat, weights=vals, minlength=b * b).reshape(b, b)



#: Bytes of gathered partner rows per step of the NumPy gather mix (stays in cache).
_GATHER_CHUNK_BYTES = 1 << 19


def _numpy_fast(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64) and x.ndim >= 1 and x.size > 0


def _mix_numpy(x: np.ndarray, index: np.ndarray, weights: np.ndarray, method: str,
               include_self: bool, W: np.ndarray | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """:func:`mix_others` (plus ``weights[0] * x`` with ``include_self``) for NumPy batches.

    The gather method is bitwise equal to ``float(w[0]) * x + mix_others(x, ...)``: the same
    float ops in the same order, but accumulated in row chunks that stay in cache, so no
    batch-sized temporary (``w * x[index[:, t]]``, the running sum, ``w[0] * x``) is ever made.
    The matmul method computes one ``[B, B] @ [B, D]`` product into a preallocated output, with
    the self weight ``weights[0]`` on the diagonal of the mixing matrix when ``include_self``
    (one pass over the batch fewer than adding ``w_1 x`` afterwards; equal to it up to rounding).
    Large products are split by columns over the usable cores (:func:`dali_mixup._threads.split_matmul`).
    ``out``: an optional buffer shaped and typed like ``x`` (not ``x``) to write the result into.
    """
    b = x.shape[0]
    x2 = np.ascontiguousarray(x).reshape(b, -1)
    n = x2.shape[1]
    scalar = x.dtype.type
    rows = max(1, min(b, _GATHER_CHUNK_BYTES // max(1, n * x2.itemsize)))
    buf = scratch(rows * n, x2.dtype).reshape(rows, n)
    ok = out is not None and out.shape == x.shape and out.dtype == x.dtype and out.flags.c_contiguous
    out = out.reshape(x2.shape) if ok and out is not x else np.empty_like(x2)  # out: a buffer to reuse
    if method == "matmul":
        if W is None:  # W: the caller's mixing_matrix(index, weights, include_self=...)
            W = mixing_matrix(index, weights, include_self=include_self)
        split_matmul(W.astype(x.dtype, copy=False), x2, out)
        return out.reshape(x.shape)
    else:
        for i0 in range(0, b, rows):
            i1 = min(b, i0 + rows)
            o, t = out[i0:i1], buf[: i1 - i0]
            np.take(x2, index[i0:i1, 1], axis=0, out=o, mode="clip")
            np.multiply(o, scalar(weights[1]), out=o)
            for j in range(2, index.shape[1]):
                np.take(x2, index[i0:i1, j], axis=0, out=t, mode="clip")
                np.multiply(t, scalar(weights[j]), out=t)
                np.add(o, t, out=o)
    if include_self:
        w0 = scalar(weights[0])
        for i0 in range(0, b, rows):
            i1 = min(b, i0 + rows)
            t = buf[: i1 - i0]
            np.multiply(x2[i0:i1], w0, out=t)
            np.add(t, out[i0:i1], out=out[i0:i1])
    return out.reshape(x.shape)


def mix_others(x, index: np.ndarray, weights: np.ndarray, xp, method: str):
    """``sum_{t >= 1} weights[t] * x[index[:, t]]`` for a float batch ``x [B, ...]``."""
    b = x.shape[0]
    T = index.shape[1]
    device = getattr(x, "device", None)
    if T == 1 or b == 0:
        return xp.zeros_like(x)
    if _numpy_fast(x) and index.shape[0] == b and 0 <= index.min() and index.max() < b and T > 1:
        return _mix_numpy(x, index, weights, method, include_self=False)
    if method == "matmul":
        W = xp.asarray(mixing_matrix(index, weights, include_self=False), dtype=x.dtype, device=device)
        flat = xp.reshape(x, (b, -1))
        return xp.reshape(xp.matmul(W, flat), x.shape)
    acc = None
    for t in range(1, T):
        term = float(weights[t]) * xp.take(x, xp.asarray(index[:, t], device=device), axis=0)
        acc = term if acc is None else acc + term
    return acc


def plan(draws: ZetaDraws, batch_size: int, T: int | None, gamma: tuple[float, float],
         prob: float = 1.0):
    """Index ``[B, T]``, weights ``[T]`` (float64) and the gamma used.

    A batch left unmixed by ``prob`` gets T = 1 (weights ``[1.0]``, index = the sample itself).
    """
    t_eff = resolve_T(T, batch_size)
    if prob < 1.0 and draws.coin is not None and batch_size and float(draws.coin[0]) >= prob:
        t_eff = 1
    low, high = gamma
    g = low + float(draws.g[0]) * (high - low) if batch_size and high > low else low
    return partners(draws.u, batch_size, t_eff), zeta_weights(t_eff, g), g


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


def validate(*, gamma, T, num_classes, label_smoothing, dtype, prob=1.0, op=OP):
    return dict(
        prob=_checks.check_prob(op, "prob", prob),
        gamma=_checks.check_gamma(op, gamma),
        T=_checks.check_int(op, "T", T, minimum=1, allow_none=True),
        num_classes=_checks.check_num_classes(op, num_classes),
        label_smoothing=_checks.check_smoothing(op, label_smoothing),
        dtype=_checks.check_dtype(op, dtype),
    )


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
        method: ``"gather"`` or ``"matmul"``; None picks by T and B (:func:`choose_method`).
        prob: probability that the batch is mixed at all (otherwise it passes through).
        extra: more per-sample arrays ``[B, ...]`` mixed with the same index and weights.
        masks: integer per-sample maps; each output keeps its own (its dominant sample).
        rng: NumPy ``Generator`` for the draws (a fresh one if None).
        draws: precomputed draws (overrides ``rng``).
    """
    opts = validate(gamma=gamma, T=T, num_classes=num_classes, label_smoothing=label_smoothing,
                    dtype=dtype, prob=prob)
    if method not in (None, "gather", "matmul"):
        raise _checks.fail(OP, "method", "None, 'gather' or 'matmul'", method)
    xp, images, in_name = as_batch(images, OP)
    b = images.shape[0]
    wd = work_dtype(xp, in_name)
    y = soft_labels(labels, b, num_classes=opts["num_classes"], label_smoothing=opts["label_smoothing"],
                    dtype=xp.float32, xp=xp, op=OP, device=getattr(images, "device", None))
    if draws is None:
        draws = draw(rng if rng is not None else np.random.default_rng(), b)
    index, weights, g = plan(draws, b, opts["T"], opts["gamma"], opts["prob"])
    method = method or choose_method(index.shape[1], b)

    W = []  # the [B, B] mixing matrix, built once for images, labels and extras

    def mix(a, how):
        if _numpy_fast(a) and index.shape[1] > 1:  # w0 * a + others, without batch temporaries
            if how == "matmul" and not W:
                W.append(mixing_matrix(index, weights, include_self=True))
            return _mix_numpy(a, index, weights, how, include_self=True, W=W[0] if W else None)
        return float(weights[0]) * a + mix_others(a, index, weights, xp, how)

    mixed = mix(xp.astype(images, wd, copy=False), method)  # mix never writes its input
    mixed_y = mix(y, "matmul")
    extras = tuple(mix(xp.astype(e, wd), method) for e in check_extra(extra, b, xp, OP, "extra"))
    device = getattr(images, "device", None)
    w = xp.asarray(np.broadcast_to(weights, index.shape).copy(), dtype=wd, device=device)
    return ZetaResult(images=finalize(mixed, in_name, opts["dtype"], xp, OP), labels=mixed_y,
                      index=xp.asarray(index, device=device), weights=w, gamma=g, extra=extras,
                      masks=tuple(check_extra(masks, b, xp, OP, "masks")))
