"""Per-block cost matrices for k-mixup, computed with one batched matrix product.

For blocks ``A_b = x[left[b]]`` and ``C_b = x[right[b]]`` (each ``[k, D]``) the cost is

    sqeuclidean:  M_b[r, c] = |a_r|^2 + |c_c|^2 - 2 <a_r, c_c>     (the paper's W2, squared)
    euclidean:    M_b[r, c] = sqrt(max(M_b[r, c], 0))              (the authors' reference code)

Written against the array API so the same lines run on NumPy, CuPy and torch. The Gram
matrices come from ``xp.matmul`` (BLAS / cuBLAS), never from einsum.

NumPy arrays take a faster route with the same formula (:func:`_numpy_terms`): blocks are
gathered into reused buffers (``np.take(..., out=, mode="clip")``, which is not buffered), one
block (or, for very wide rows, one slice of columns) at a time so that it stays in cache while
its Gram matrix (BLAS) and squared norms (a row dot, :func:`_rowdot`) are taken. No
batch-sized temporary is made; at D = 3*224*224 this was 10-30x faster than the stacked
expression, whose gathers and ``a * a`` temporaries dominated.
"""
from __future__ import annotations

import numpy as np

from ._checks import fail
from ._threads import one_blas_thread, parallel_parts, run_parallel, split_points


def pairwise_sqdist(a, c, xp):
    """Squared distances between the rows of ``a [..., m, D]`` and ``c [..., n, D]``.

    Returns ``[..., m, n]``, clipped at 0 against rounding.
    """
    aa = xp.sum(a * a, axis=-1)
    cc = xp.sum(c * c, axis=-1)
    g = xp.matmul(a, xp.matrix_transpose(c))
    d = aa[..., :, None] + cc[..., None, :] - 2.0 * g
    return xp.clip(d, 0.0, None)


def _rowdot(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``sum(a * a, axis=1)``: ``np.vecdot`` (BLAS dot per row, NumPy >= 2) is 3-4x faster than
    the one-pass ``einsum`` at D = 3072; both differ from the plain sum only by rounding."""
    if _vecdot is not None:
        return _vecdot(a, a, out=out)
    return np.einsum("ij,ij->i", a, a, out=out)


_vecdot = getattr(np, "vecdot", None)

#: Gathered bytes per side above which a block is processed one slice of columns at a time.
_SLICE_BYTES = 2 << 20
#: Total gathered bytes per side up to which all blocks are gathered in one call.
_SMALL_BYTES = 4 << 20


#: k-mixup Gram blocks are split over the cores from this many flops: at B = 256, D = 3072
#: k = 64 (50 MFLOP) went 0.9 -> 0.64 ms, k = 16 (12.6 MFLOP) was slower split.
_PARALLEL_GRAM_FLOPS = 2.5e7


def _numpy_terms(x2d: np.ndarray, left: np.ndarray, right: np.ndarray, norms: bool = True):
    """``(aa [nb, k], cc [nb, k], g [nb, k, k])`` for NumPy input, without batch-sized
    temporaries; the blocks are shared out over the cores when there is enough work.
    Without ``norms``, ``aa`` and ``cc`` are None."""
    nb, k = left.shape
    x2d = np.ascontiguousarray(x2d)
    parts = min(parallel_parts(), nb)
    if parts < 2 or 2.0 * nb * k * k * x2d.shape[1] < _PARALLEL_GRAM_FLOPS:
        return _numpy_terms_serial(x2d, left, right, norms=norms)
    dt, d = x2d.dtype, x2d.shape[1]
    aa, cc, g = np.empty((nb, k), dt), np.empty((nb, k), dt), np.empty((nb, k, k), dt)
    # gather buffers allocated here: fresh ones in the pool threads come from malloc arenas
    # that serve them with new pages (that made the split slower than one thread)
    a_buf, c_buf = np.empty((nb * k, d), dt), np.empty((nb * k, d), dt)
    cuts = split_points(nb, parts)

    def task(i0, i1):
        ta, tc, g[i0:i1] = _numpy_terms_serial(
            x2d, left[i0:i1], right[i0:i1], (a_buf[i0 * k:i1 * k], c_buf[i0 * k:i1 * k]), norms)
        if norms:
            aa[i0:i1], cc[i0:i1] = ta, tc

    run_parallel([lambda i0=i0, i1=i1: task(i0, i1) for i0, i1 in zip(cuts[:-1], cuts[1:])])
    return (aa, cc, g) if norms else (None, None, g)


def _numpy_terms_serial(x2d: np.ndarray, left: np.ndarray, right: np.ndarray, scratch=None,
                        norms: bool = True):
    """One thread's share of :func:`_numpy_terms`; ``scratch``: two ``[nb * k, D]`` buffers."""
    nb, k = left.shape
    d = x2d.shape[1]
    dt, item = x2d.dtype, x2d.dtype.itemsize
    if scratch is None:
        scratch = (None, None)
    if nb * k * d * item <= _SMALL_BYTES:  # small batch: a few calls over all blocks at once
        a = np.take(x2d, left.reshape(-1), axis=0, out=scratch[0], mode="clip")
        c = np.take(x2d, right.reshape(-1), axis=0, out=scratch[1], mode="clip")
        g = np.matmul(a.reshape(nb, k, d), c.reshape(nb, k, d).transpose(0, 2, 1))
        if not norms:
            return None, None, g
        return _rowdot(a).reshape(nb, k), _rowdot(c).reshape(nb, k), g
    g = np.empty((nb, k, k), dt)
    aa = np.empty((nb, k), dt)
    cc = np.empty((nb, k), dt)
    if k * d * item <= _SLICE_BYTES:  # one whole block per step, gathered into reused buffers
        a = scratch[0][:k] if scratch[0] is not None else np.empty((k, d), dt)
        c = scratch[1][:k] if scratch[1] is not None else np.empty((k, d), dt)
        for i in range(nb):
            np.take(x2d, left[i], axis=0, out=a, mode="clip")
            np.take(x2d, right[i], axis=0, out=c, mode="clip")
            np.matmul(a, c.T, out=g[i])
            if norms:
                _rowdot(a, out=aa[i])
                _rowdot(c, out=cc[i])
        return (aa, cc, g) if norms else (None, None, g)
    w = max(256, _SLICE_BYTES // (k * item))  # wide rows: slices of w columns
    gt = np.empty((k, k), dt)
    nt = np.empty(k, dt)
    for i in range(nb):
        g[i] = 0
        aa[i] = 0
        cc[i] = 0
        for d0 in range(0, d, w):
            a = x2d[left[i], d0:d0 + w]
            c = x2d[right[i], d0:d0 + w]
            np.matmul(a, c.T, out=gt)
            g[i] += gt
            if norms:
                aa[i] += _rowdot(a, out=nt)
                cc[i] += _rowdot(c, out=nt)
    return (aa, cc, g) if norms else (None, None, g)


def _numpy_sqdist(x2d, left, right, match_only: bool = False):
    with one_blas_thread():
        aa, cc, g = _numpy_terms(x2d, left, right, norms=not match_only)
    if match_only:
        return np.multiply(g, -2.0, out=g)
    d = aa[..., :, None] + cc[..., None, :] - 2.0 * g
    return np.clip(d, 0.0, None, out=d)


def block_costs(x2d, left: np.ndarray, right: np.ndarray, *, metric: str, xp, op: str = "k_mixup",
                arg: str = "images", match_only: bool = False, raise_nonfinite: bool = True):
    """Cost matrices ``[n_blocks, k, k]`` between the rows ``x2d[left[b]]`` and ``x2d[right[b]]``.

    Args:
        x2d: ``[B, D]`` float array (features or flattened images).
        left, right: ``[n_blocks, k]`` host integer index arrays (a short last block is padded
            by repeating its indices; the caller slices the padding away).
        metric: ``"sqeuclidean"`` or ``"euclidean"``.
        xp: the array namespace of ``x2d``.
        match_only: the costs only serve to find the optimal assignment; for
            ``"sqeuclidean"`` they are ``-2 <a_r, c_c>``, the squared distance less a constant
            per row and per column, which leaves the optimal assignments unchanged, skips the
            norms and avoids float32 cancellation against them.

    Values too large to square in the working dtype are rescaled (the optimal matching is
    invariant to a positive scale of the cost); NaN or Inf in the data raise ``ValueError``
    (with ``raise_nonfinite=False``, as in a GPU operator, they give non-finite costs instead,
    which the host checks).
    """
    nb, k = left.shape
    d = x2d.shape[1]
    if isinstance(x2d, np.ndarray) and x2d.dtype in (np.float32, np.float64) and nb and k and d:
        reduced = match_only and metric == "sqeuclidean"
        cost = _numpy_sqdist(x2d, left, right, match_only=reduced)
        if np.isfinite(cost).all():
            return np.sqrt(cost) if metric == "euclidean" else cost
        # NaN/Inf or overflow: the general path below checks and rescales
    device = getattr(x2d, "device", None)
    li = xp.asarray(left.reshape(-1), device=device)
    ri = xp.asarray(right.reshape(-1), device=device)
    a = xp.reshape(xp.take(x2d, li, axis=0), (nb, k, d))
    c = xp.reshape(xp.take(x2d, ri, axis=0), (nb, k, d))
    return gathered_costs(a, c, metric=metric, xp=xp, op=op, arg=arg, match_only=match_only,
                          raise_nonfinite=raise_nonfinite)


def gathered_costs(a, c, *, metric: str, xp, op: str = "k_mixup", arg: str = "images",
                   match_only: bool = False, raise_nonfinite: bool = True):
    """Cost matrices ``[n_blocks, k, k]`` between already gathered blocks ``a``, ``c`` ``[n_blocks, k, D]``.

    The DALI operator gathers the blocks straight from the per-sample arrays it receives into
    reused buffers, so no batch-sized copy or fresh allocation is made per batch.
    ``match_only`` as for :func:`block_costs`.
    """
    reduced = match_only and metric == "sqeuclidean"
    if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) and a.size:
        nb, k, d = a.shape
        with one_blas_thread():
            g = np.matmul(a, c.transpose(0, 2, 1))
            if not reduced:
                aa = _rowdot(a.reshape(nb * k, d)).reshape(nb, k)
                cc = _rowdot(c.reshape(nb * k, d)).reshape(nb, k)
        if reduced:
            cost = np.multiply(g, -2.0, out=g)
        else:
            cost = aa[:, :, None] + cc[:, None, :] - 2.0 * g
            cost = np.clip(cost, 0.0, None, out=cost)
    elif reduced:
        cost = -2.0 * xp.matmul(a, xp.matrix_transpose(c))
    else:
        cost = pairwise_sqdist(a, c, xp)
    if not bool(xp.all(xp.isfinite(cost))):
        if not (bool(xp.all(xp.isfinite(a))) and bool(xp.all(xp.isfinite(c)))):
            if not raise_nonfinite:
                return cost
            raise fail(op, arg, "finite values (the k-mixup cost needs them)", "NaN or Inf")
        # Overflow of |x|^2: rescale each block by its largest magnitude and recompute.
        scale = xp.max(xp.abs(xp.concat([a, c], axis=1)), axis=(1, 2))
        scale = xp.where(scale > 0, scale, xp.ones_like(scale))[:, None, None]
        a, c = a / scale, c / scale
        cost = -2.0 * xp.matmul(a, xp.matrix_transpose(c)) if reduced else pairwise_sqdist(a, c, xp)
    if metric == "euclidean":
        cost = xp.sqrt(cost)
    return cost
