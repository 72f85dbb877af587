"""k-mixup's costs: one registry, and per-block cost matrices from terms computed once.

For blocks ``A_b = x[left[b]]`` and ``C_b = x[right[b]]`` (each ``[k, D]``) every cost is a
function of three terms, which both routes below compute once:

    aa[b, r] = |a_r|^2,   cc[b, c] = |c_c|^2,   g[b, r, c] = <a_r, c_c>   (Gram product, matmul)

:data:`COSTS` maps a cost's name to how it combines them (:class:`Cost`), with its properties;
the operators' ``cost=`` argument, the command line's ``--cost`` choices and the docs take the
list from it. Adding a cost is one entry here and its tests (``docs/architecture.md``).

Routes: NumPy arrays take :mod:`dali_mixup.core._fast` (blocks gathered into reused buffers, no
batch-sized temporary: :func:`~dali_mixup.core._fast.numpy_terms` from the batch and indices,
:func:`~dali_mixup.core._fast.gathered_terms` from blocks a DALI operator already holds); other
backends (CuPy, torch, array-API) the plain expressions of :func:`terms`, written against the
array API. The Gram matrices come from ``xp.matmul`` (BLAS / cuBLAS), never from einsum.

Overflow (a square too large for the working dtype) is detected on the terms, not on the
combined cost, so a bounded cost (whose overflowed value can still be finite) is caught too;
the blocks are then rescaled by their largest magnitude (the optimal matching of every cost
here is invariant to a positive scale of the data) and the terms recomputed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _fast
from ._checks import nonfinite_cost_data


@dataclass(frozen=True)
class Cost:
    """One k-mixup cost.

    Attributes:
        combine: ``(aa [..., k], cc [..., k], g [..., k, k], xp) -> cost [..., k, k]``.
        separable: the cost is ``-2 g`` plus a term per row and a term per column, so the
            optimal assignment needs only ``-2 g`` (no norms; see ``match_only``).
        formula: what it is, for the docs and messages.
    """

    combine: Callable
    separable: bool
    formula: str


def _sqeuclidean(aa, cc, g, xp):
    return xp.clip(aa[..., :, None] + cc[..., None, :] - 2.0 * g, 0.0, None)


def _euclidean(aa, cc, g, xp):
    return xp.sqrt(_sqeuclidean(aa, cc, g, xp))


def _cosine(aa, cc, g, xp):
    norms = xp.sqrt(aa)[..., :, None] * xp.sqrt(cc)[..., None, :]
    similarity = xp.where(norms > 0, g / xp.where(norms > 0, norms, 1.0), 0.0)  # a zero row: 0
    return xp.clip(1.0 - similarity, 0.0, 2.0)


#: name -> :class:`Cost`, the costs k-mixup matches blocks with (the first is the default)
COSTS: dict[str, Cost] = {
    "sqeuclidean": Cost(_sqeuclidean, separable=True,
                        formula="|a - c|^2, the paper's W2 (squared Euclidean)"),
    "euclidean": Cost(_euclidean, separable=False,
                      formula="|a - c|, as the authors' reference code (scipy distance_matrix)"),
    "cosine": Cost(_cosine, separable=False,
                   formula="1 - <a, c> / (|a| |c|), blind to each sample's scale (1 for a zero sample)"),
}


def _checked_here(fn):
    """Run ``fn`` without NumPy's overflow / invalid-value warnings: the costs check NaN, Inf and
    overflow themselves (raising the argument's error, or rescaling), so those warnings would
    only repeat the error or warn about a case that is handled."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)
    return quiet


def terms(a, c, xp, norms: bool = True):
    """``(aa, cc, g)`` of gathered blocks ``a``, ``c`` ``[..., k, D]`` (the plain expressions;
    without ``norms``, ``aa`` and ``cc`` are None)."""
    g = xp.matmul(a, xp.matrix_transpose(c))
    if not norms:
        return None, None, g
    return xp.sum(a * a, axis=-1), xp.sum(c * c, axis=-1), g


def pairwise_sqdist(a, c, xp):
    """Squared distances between the rows of ``a [..., m, D]`` and ``c [..., n, D]``.

    Returns ``[..., m, n]``, clipped at 0 against rounding (the reference expression)."""
    return _sqeuclidean(*terms(a, c, xp), xp)


def _combine(cost: str, t, match_only: bool, xp):
    aa, cc, g = t
    entry = COSTS[cost]
    if match_only and entry.separable:
        return -2.0 * g
    return entry.combine(aa, cc, g, xp)


def _norms_needed(cost: str, match_only: bool) -> bool:
    return not (match_only and COSTS[cost].separable)


def _finite(xp, *arrays) -> bool:
    return all(bool(xp.all(xp.isfinite(t))) for t in arrays if t is not None)


@_checked_here
def block_costs(x2d, left: np.ndarray, right: np.ndarray, *, cost: str, xp, op: str = "k_mixup",
                arg: str = "images", match_only: bool = False, check_finite: bool = True):
    """Cost matrices ``[n_blocks, k, k]`` between the rows ``x2d[left[b]]`` and ``x2d[right[b]]``.

    Args:
        x2d: ``[B, D]`` float array (features or flattened images).
        left, right: ``[n_blocks, k]`` host integer index arrays (a short last block is padded
            by repeating its indices; the caller slices the padding away).
        cost: a name of :data:`COSTS`.
        xp: the array namespace of ``x2d``.
        match_only: the costs only serve to find the optimal assignment; for a separable cost
            (``"sqeuclidean"``) they are ``-2 <a_r, c_c>``, the cost less a constant per row and
            per column, which leaves the optimal assignments unchanged, skips the norms and
            avoids float32 cancellation against them.
        check_finite: check the terms for NaN, Inf and overflow (see the module docstring);
            ``False`` (a GPU operator) reads nothing back from the device: non-finite costs are
            returned as they are and the host checks them (:func:`dali_mixup.core.plan.check_costs`).

    NaN or Inf in the data raise ``ValueError`` naming ``arg``.
    """
    nb, k = left.shape
    d = x2d.shape[1]
    if isinstance(x2d, np.ndarray) and x2d.dtype in (np.float32, np.float64) and nb and k and d:
        t = _fast.numpy_terms(x2d, left, right, norms=_norms_needed(cost, match_only))
        out = _combine(cost, t, match_only, np)
        if _finite(np, *t, out):
            return out
        # NaN/Inf or overflow: the general path below checks and rescales
    device = getattr(x2d, "device", None)
    li = xp.asarray(left.reshape(-1), device=device)
    ri = xp.asarray(right.reshape(-1), device=device)
    a = xp.reshape(xp.take(x2d, li, axis=0), (nb, k, d))
    c = xp.reshape(xp.take(x2d, ri, axis=0), (nb, k, d))
    return gathered_costs(a, c, cost=cost, xp=xp, op=op, arg=arg, match_only=match_only,
                          check_finite=check_finite)


@_checked_here
def gathered_costs(a, c, *, cost: str, xp, op: str = "k_mixup", arg: str = "images",
                   match_only: bool = False, check_finite: bool = True):
    """Cost matrices ``[n_blocks, k, k]`` between already gathered blocks ``a``, ``c``
    ``[n_blocks, k, D]`` (a DALI operator's blocks: views of the batch it stacked in block
    order, or gathered into its buffers). ``cost``, ``match_only`` and ``check_finite`` as for
    :func:`block_costs`."""
    norms = _norms_needed(cost, match_only)
    if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) and a.size:
        t = _fast.gathered_terms(a, c, norms=norms)
    else:
        t = terms(a, c, xp, norms)
    out = _combine(cost, t, match_only, xp)
    if check_finite and not _finite(xp, *t, out):
        if not _finite(xp, a, c):
            raise nonfinite_cost_data(op, arg)
        # overflow of the terms: rescale each block by its largest magnitude and recompute
        scale = xp.max(xp.abs(xp.concat([a, c], axis=1)), axis=(1, 2))
        scale = xp.where(scale > 0, scale, xp.ones_like(scale))[:, None, None]
        out = _combine(cost, terms(a / scale, c / scale, xp, norms), match_only, xp)
    return out
