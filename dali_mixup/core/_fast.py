"""Fast NumPy paths of the blends, each tested against its plain expression in :mod:`apply`.

* :func:`blend_numpy`: ``lam * x + (1 - lam) * x[partner]`` in row chunks that stay in cache,
  bitwise equal to the plain expression, without batch-sized temporaries; large batches are
  shared out over the cores.
* :func:`blend_samples`: the same blend of a batch given as a list of samples (what a DALI
  python operator receives), without stacking it first.
* :func:`paste_numpy`: CutMix's ``x * (1 - M) + x[partner] * M`` without the pixel-share map
  M: cut rows are copied and get their partner's box, the other rows are blended.
* :func:`zeta_mix_numpy`: zeta-mixup's weighted sum, gathered in row chunks or as one
  ``[B, B] @ [B, D]`` product split by columns over the cores.
* :func:`numpy_terms`, :func:`gathered_terms`: the terms of k-mixup's block costs (squared
  norms and Gram products, :func:`dali_mixup.core.cost.terms`; the costs combine them in
  :data:`dali_mixup.core.cost.COSTS`): blocks gathered into reused buffers
  (``np.take(..., out=, mode="clip")``, which is not buffered), one block (or, for very wide
  rows, one slice of columns) at a time so that it stays in cache while its Gram matrix (BLAS)
  and squared norms (a row dot, :func:`_rowdot`) are taken. At D = 3*224*224 this was 10-30x
  faster than the stacked expression, whose gathers and ``a * a`` temporaries dominated.

Measured on 2-core x86 VMs (the benchmark suite's rows): at D = 3*224*224 the chunked blend
runs at the memory-bandwidth floor where the plain expression, with its three batch-sized
temporaries, took 2-10x longer; the thresholds below say where each was measured.
"""
from __future__ import annotations

import numpy as np

from .plan import mixing_matrix
from ._threads import PARALLEL_BYTES, one_blas_thread, parallel_parts, run_parallel, scratch, \
    split_matmul, split_points

#: Bytes of partner rows gathered per step of the NumPy blend (stays in cache).
_BLEND_CHUNK_BYTES = 1 << 19


def blend_numpy(x: np.ndarray, partner: np.ndarray, lam: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
    """:func:`dali_mixup.core.apply.blend_reference` in row chunks, without batch temporaries.

    Per element it computes ``lam * x + (1 - lam) * x[partner]`` with the same float ops in
    the same order (bitwise equal), but reads ``x`` twice and writes the output once, instead
    of making three batch-sized temporaries.
    """
    b = x.shape[0]
    x2 = x.reshape(b, -1)
    lam = lam.astype(x.dtype, copy=False).reshape(b, 1)
    oml = 1.0 - lam
    uniform = bool(b) and bool((lam == lam[0, 0]).all())  # lam_mode "batch": one scalar
    partner = np.asarray(partner, dtype=np.intp)
    ok = out is not None and out.shape == x.shape and out.dtype == x.dtype and out.flags.c_contiguous
    if not ok and x2.nbytes <= _BLEND_CHUNK_BYTES:  # small (labels): one chunk, no machinery
        mixed = np.multiply(x2, lam[0, 0] if uniform else lam)
        mixed += np.multiply(np.take(x2, partner, axis=0), oml[0, 0] if uniform else oml)
        return mixed.reshape(x.shape)
    out = out.reshape(x2.shape) if ok else np.empty_like(x2)
    parts = min(parallel_parts(), b) if 2 * x2.nbytes >= PARALLEL_BYTES else 1
    if parts < 2:
        _blend_rows(x2, partner, lam, oml, uniform, out, 0, b)
    else:
        cuts = split_points(b, parts)
        run_parallel([lambda r0=r0, r1=r1: _blend_rows(x2, partner, lam, oml, uniform, out, r0, r1)
                      for r0, r1 in zip(cuts[:-1], cuts[1:])])
    return out.reshape(x.shape)


def _blend_rows(x2, partner, lam, oml, uniform, out, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`blend_numpy`, in chunks that stay in cache."""
    n = x2.shape[1]
    rows = max(1, min(r1 - r0, _BLEND_CHUNK_BYTES // max(1, n * x2.itemsize)))
    buf = scratch(rows * n, x2.dtype).reshape(rows, n)
    for i0 in range(r0, r1, rows):
        i1 = min(r1, i0 + rows)
        t = buf[: i1 - i0]
        o = out[i0:i1]
        np.take(x2, partner[i0:i1], axis=0, out=t, mode="clip")
        np.multiply(t, oml[0, 0] if uniform else oml[i0:i1], out=t)
        np.multiply(x2[i0:i1], lam[0, 0] if uniform else lam[i0:i1], out=o)
        np.add(o, t, out=o)


#: Samples of at least this many bytes are blended one by one from the sample list
#: (:func:`blend_samples`) rather than stacked first. Measured on a 2-core VM: 3x32x32 float32
#: samples (12 KiB) blend 1.4x slower one by one than stacked; 3x48x48 (27 KiB) ~1.9x faster
#: and 3x224x224 (588 KiB) 1.2-1.5x faster, the stacking copy saved.
SAMPLE_BYTES = 16 << 10


def blend_samples(samples: list, partner: np.ndarray, lam: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`blend_numpy` of ``np.stack(samples)``, written into ``out`` without the stack.

    ``samples``: ``B`` C-contiguous arrays of one shape and float dtype, ``out``'s; ``out``:
    ``[B, ...]``, C-contiguous. Per element the same float ops in the same order as
    :func:`blend_numpy` (bitwise equal). Reads each sample twice and writes the output once:
    the stacking copy (a read and a write of the batch) is not made. Large batches are shared
    out over the cores by sample ranges.
    """
    b = len(samples)
    out2 = out.reshape(b, -1)
    lam = np.asarray(lam).astype(out.dtype, copy=False)
    oml = 1.0 - lam
    partner = np.asarray(partner, dtype=np.intp)
    parts = min(parallel_parts(), b) if 2 * out2.nbytes >= PARALLEL_BYTES else 1
    cuts = split_points(b, parts)
    run_parallel([lambda r0=r0, r1=r1: _blend_sample_range(samples, partner, lam, oml, out2, r0, r1)
                  for r0, r1 in zip(cuts[:-1], cuts[1:])])
    return out


def _blend_sample_range(samples, partner, lam, oml, out2, r0: int, r1: int) -> None:
    t = scratch(out2.shape[1], out2.dtype)
    for i in range(r0, r1):
        o = out2[i]
        np.multiply(samples[partner[i]].reshape(-1), oml[i], out=t)
        np.multiply(samples[i].reshape(-1), lam[i], out=o)
        np.add(o, t, out=o)


def paste_numpy(x: np.ndarray, partner: np.ndarray, share: np.ndarray, cut: np.ndarray,
                boxes: np.ndarray, axes: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """:func:`dali_mixup.core.apply.paste` with :func:`~dali_mixup.core.apply.pixel_share`'s map, without
    making the map or batch-sized temporaries.

    Rows with ``cut`` take their own pixels and their partner's inside the box
    ``boxes[i]`` = (y1, y2, x1, x2) on the H, W dimensions at ``axes``; the others are
    ``x * (1 - s) + x[partner] * s`` with their ``share`` s, the same float ops as the plain
    expression. Equal to it for finite pixels (where the plain expression adds ``x * 0`` or
    ``x[partner] * 0``, a zero's sign may differ). Measured on a 2-core machine (``dm.cutmix``,
    float32): 25.6 -> 5.6 ms at ``[64, 3, 224, 224]`` and 3.6 -> 1.1 ms at ``[256, 3, 32, 32]``
    against the plain expression (a pixel map and three batch-sized temporaries). ``out``: an optional buffer shaped and typed like ``x``
    (not ``x``) to write into.
    """
    b = x.shape[0]
    ok = out is not None and out is not x and out.shape == x.shape and out.dtype == x.dtype \
        and out.flags.c_contiguous
    out = out if ok else np.empty_like(x)
    x2, o2 = x.reshape(b, -1), out.reshape(b, -1)
    partner = np.asarray(partner, dtype=np.intp)
    share = np.asarray(share).astype(x.dtype, copy=False)
    one = x.dtype.type(1.0)
    for i in range(b):
        if cut[i]:
            o2[i] = x2[i]
            y1, y2, x1, x2_ = (int(v) for v in boxes[i])
            box = [slice(None)] * (x.ndim - 1)
            box[axes[0]], box[axes[1]] = slice(y1, y2), slice(x1, x2_)
            out[i][tuple(box)] = x[partner[i]][tuple(box)]
        else:
            np.multiply(x2[i], one - share[i], out=o2[i])
            o2[i] += x2[partner[i]] * share[i]
    return out


#: Bytes of gathered partner rows per step of the NumPy gather mix (stays in cache).
_GATHER_CHUNK_BYTES = 1 << 19


def numpy_fast(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64) and x.ndim >= 1 and x.size > 0


def zeta_mix_numpy(x: np.ndarray, index: np.ndarray, weights: np.ndarray, method: str,
                   include_self: bool, W: np.ndarray | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """:func:`dali_mixup.core.apply.zeta_mix_reference` for NumPy batches (without the sample's own
    term ``weights[0] * x`` unless ``include_self``).

    The gather method is bitwise equal to the plain gather-and-accumulate: the same
    float ops in the same order, but accumulated in row chunks that stay in cache, so no
    batch-sized temporary (``w * x[index[:, t]]``, the running sum, ``w[0] * x``) is ever made.
    The matmul method computes one ``[B, B] @ [B, D]`` product into a preallocated output, with
    the self weight ``weights[0]`` on the diagonal of the mixing matrix when ``include_self``
    (one pass over the batch fewer than adding ``w_1 x`` afterwards; equal to it up to rounding).
    Large products are split by columns over the usable cores
    (:func:`dali_mixup.core._threads.split_matmul`).
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


# ------------------------------------------------------------------------------ k-mixup costs


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


def _numpy_terms_serial(x2d: np.ndarray, left: np.ndarray, right: np.ndarray, bufs=None,
                        norms: bool = True):
    """One thread's share of :func:`_numpy_terms`; ``bufs``: two ``[nb * k, D]`` buffers."""
    nb, k = left.shape
    d = x2d.shape[1]
    dt, item = x2d.dtype, x2d.dtype.itemsize
    if bufs is None:
        bufs = (None, None)
    if nb * k * d * item <= _SMALL_BYTES:  # small batch: a few calls over all blocks at once
        a = np.take(x2d, left.reshape(-1), axis=0, out=bufs[0], mode="clip")
        c = np.take(x2d, right.reshape(-1), axis=0, out=bufs[1], mode="clip")
        g = np.matmul(a.reshape(nb, k, d), c.reshape(nb, k, d).transpose(0, 2, 1))
        if not norms:
            return None, None, g
        return _rowdot(a).reshape(nb, k), _rowdot(c).reshape(nb, k), g
    g = np.empty((nb, k, k), dt)
    aa = np.empty((nb, k), dt)
    cc = np.empty((nb, k), dt)
    if k * d * item <= _SLICE_BYTES:  # one whole block per step, gathered into reused buffers
        a = bufs[0][:k] if bufs[0] is not None else np.empty((k, d), dt)
        c = bufs[1][:k] if bufs[1] is not None else np.empty((k, d), dt)
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


def numpy_terms(x2d: np.ndarray, left: np.ndarray, right: np.ndarray, norms: bool = True):
    """k-mixup's cost terms ``(aa [nb, k], cc [nb, k], g [nb, k, k])`` of the blocks
    ``x2d[left[b]]``, ``x2d[right[b]]`` (see :mod:`dali_mixup.core.cost`), equal to
    :func:`dali_mixup.core.cost.terms` up to rounding; without ``norms``, ``aa`` and ``cc`` are None."""
    one_blas_thread()
    return _numpy_terms(x2d, left, right, norms=norms)


def gathered_terms(a: np.ndarray, c: np.ndarray, norms: bool = True):
    """:func:`numpy_terms` of blocks already gathered (``a``, ``c`` ``[n_blocks, k, D]``, as a
    DALI operator holds them: views of its stacked batch)."""
    nb, k, d = a.shape
    one_blas_thread()
    g = np.matmul(a, c.transpose(0, 2, 1))
    if not norms:
        return None, None, g
    return _rowdot(a.reshape(nb * k, d)).reshape(nb, k), _rowdot(c.reshape(nb * k, d)).reshape(nb, k), g
