"""Per-block cost matrices for k-mixup, computed with one batched matrix product.

For blocks ``A_b = x[left[b]]`` and ``C_b = x[right[b]]`` (each ``[k, D]``) the cost is

    sqeuclidean:  M_b[r, c] = |a_r|^2 + |c_c|^2 - 2 <a_r, c_c>     (the paper's W2, squared)
    euclidean:    M_b[r, c] = sqrt(max(M_b[r, c], 0))              (the authors' reference code)

Written against the array API so the same lines run on NumPy, CuPy and torch. The Gram
matrices come from ``xp.matmul`` (BLAS / cuBLAS), never from einsum.

NumPy arrays take the faster route of :func:`dali_mixup._fast.numpy_sqdist` (the same
formula, blocks gathered one at a time into reused buffers, no batch-sized temporary).
"""
from __future__ import annotations

import numpy as np

import functools

from . import _fast
from ._checks import fail


def _checked_here(fn):
    """Run ``fn`` without NumPy's overflow / invalid-value warnings: the costs check NaN, Inf and
    overflow themselves (raising the argument's error, or rescaling), so those warnings would
    only repeat the error or warn about a case that is handled."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)
    return quiet


def pairwise_sqdist(a, c, xp):
    """Squared distances between the rows of ``a [..., m, D]`` and ``c [..., n, D]``.

    Returns ``[..., m, n]``, clipped at 0 against rounding.
    """
    aa = xp.sum(a * a, axis=-1)
    cc = xp.sum(c * c, axis=-1)
    g = xp.matmul(a, xp.matrix_transpose(c))
    d = aa[..., :, None] + cc[..., None, :] - 2.0 * g
    return xp.clip(d, 0.0, None)


@_checked_here
def block_costs(x2d, left: np.ndarray, right: np.ndarray, *, metric: str, xp, op: str = "k_mixup",
                arg: str = "images", match_only: bool = False, check_finite: bool = True):
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
    invariant to a positive scale of the cost); NaN or Inf in the data raise ``ValueError``.
    ``check_finite=False`` (a GPU operator) reads nothing back from the device: no check and no
    rescale, non-finite costs are returned as they are and the host checks them
    (:func:`dali_mixup.plan.check_costs`).
    """
    nb, k = left.shape
    d = x2d.shape[1]
    if isinstance(x2d, np.ndarray) and x2d.dtype in (np.float32, np.float64) and nb and k and d:
        reduced = match_only and metric == "sqeuclidean"
        cost = _fast.numpy_sqdist(x2d, left, right, match_only=reduced)
        if np.isfinite(cost).all():
            return np.sqrt(cost) if metric == "euclidean" else cost
        # NaN/Inf or overflow: the general path below checks and rescales
    device = getattr(x2d, "device", None)
    li = xp.asarray(left.reshape(-1), device=device)
    ri = xp.asarray(right.reshape(-1), device=device)
    a = xp.reshape(xp.take(x2d, li, axis=0), (nb, k, d))
    c = xp.reshape(xp.take(x2d, ri, axis=0), (nb, k, d))
    return gathered_costs(a, c, metric=metric, xp=xp, op=op, arg=arg, match_only=match_only,
                          check_finite=check_finite)


@_checked_here
def gathered_costs(a, c, *, metric: str, xp, op: str = "k_mixup", arg: str = "images",
                   match_only: bool = False, check_finite: bool = True):
    """Cost matrices ``[n_blocks, k, k]`` between already gathered blocks ``a``, ``c`` ``[n_blocks, k, D]``.

    The DALI operator gathers the blocks straight from the per-sample arrays it receives into
    reused buffers, so no batch-sized copy or fresh allocation is made per batch.
    ``match_only`` and ``check_finite`` as for :func:`block_costs`.
    """
    reduced = match_only and metric == "sqeuclidean"
    if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) and a.size:
        cost = _fast.gathered_sqdist(a, c, match_only=reduced)
    elif reduced:
        cost = -2.0 * xp.matmul(a, xp.matrix_transpose(c))
    else:
        cost = pairwise_sqdist(a, c, xp)
    if check_finite and not bool(xp.all(xp.isfinite(cost))):
        if not (bool(xp.all(xp.isfinite(a))) and bool(xp.all(xp.isfinite(c)))):
            raise fail(op, arg, "finite values (the k-mixup cost needs them)", "NaN or Inf")
        # Overflow of |x|^2: rescale each block by its largest magnitude and recompute.
        scale = xp.max(xp.abs(xp.concat([a, c], axis=1)), axis=(1, 2))
        scale = xp.where(scale > 0, scale, xp.ones_like(scale))[:, None, None]
        a, c = a / scale, c / scale
        cost = -2.0 * xp.matmul(a, xp.matrix_transpose(c)) if reduced else pairwise_sqdist(a, c, xp)
    if metric == "euclidean":
        cost = xp.sqrt(cost)
    return cost
