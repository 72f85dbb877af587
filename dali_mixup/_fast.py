"""Fast NumPy paths of the blends, each tested against its plain expression in :mod:`apply`.

* :func:`blend_numpy`: ``lam * x + (1 - lam) * x[partner]`` in row chunks that stay in cache,
  bitwise equal to the plain expression, without batch-sized temporaries; large batches are
  shared out over the cores.
* :func:`blend_samples`: the same blend of a batch given as a list of samples (what a DALI
  python operator receives), without stacking it first.
* :func:`zeta_mix_numpy`: zeta-mixup's weighted sum, gathered in row chunks or as one
  ``[B, B] @ [B, D]`` product split by columns over the cores.

Measured on 2-core x86 VMs (the benchmark suite's rows): at D = 3*224*224 the chunked blend
runs at the memory-bandwidth floor where the plain expression, with its three batch-sized
temporaries, took 2-10x longer; the thresholds below say where each was measured.
"""
from __future__ import annotations

import numpy as np

from .plan import mixing_matrix
from ._threads import PARALLEL_BYTES, parallel_parts, run_parallel, scratch, split_matmul, split_points

#: Bytes of partner rows gathered per step of the NumPy blend (stays in cache).
_BLEND_CHUNK_BYTES = 1 << 19


def blend_numpy(x: np.ndarray, partner: np.ndarray, lam: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
    """:func:`dali_mixup.apply.blend_reference` in row chunks, without batch temporaries.

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


#: Bytes of gathered partner rows per step of the NumPy gather mix (stays in cache).
_GATHER_CHUNK_BYTES = 1 << 19


def numpy_fast(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64) and x.ndim >= 1 and x.size > 0


def zeta_mix_numpy(x: np.ndarray, index: np.ndarray, weights: np.ndarray, method: str,
                   include_self: bool, W: np.ndarray | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """:func:`dali_mixup.apply.zeta_mix_reference` for NumPy batches (without the sample's own
    term ``weights[0] * x`` unless ``include_self``).

    The gather method is bitwise equal to the plain gather-and-accumulate: the same
    float ops in the same order, but accumulated in row chunks that stay in cache, so no
    batch-sized temporary (``w * x[index[:, t]]``, the running sum, ``w[0] * x``) is ever made.
    The matmul method computes one ``[B, B] @ [B, D]`` product into a preallocated output, with
    the self weight ``weights[0]`` on the diagonal of the mixing matrix when ``include_self``
    (one pass over the batch fewer than adding ``w_1 x`` afterwards; equal to it up to rounding).
    Large products are split by columns over the usable cores
    (:func:`dali_mixup._threads.split_matmul`).
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
