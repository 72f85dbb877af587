"""Host NumPy work on several cores: BLAS threads, a small thread pool, reused scratch.

The one module that knows about threads. NumPy's own BLAS (OpenBLAS) runs single-threaded
from the first product we make (:func:`one_blas_thread`, through threadpoolctl), and large jobs
are cut into pieces that a small pool of Python threads runs at once (:func:`run_parallel`;
each piece a NumPy or single-threaded BLAS call, which releases the GIL). Measured on the
2-core VM of the benchmarks (docs/benchmarks.md): OpenBLAS's own second thread spins after each
call and made many small products 20-200x slower on a busy machine, while a hand-off to the
pool costs ~50 us, so only jobs well above that are split (thresholds at their uses, each
measured).
"""
from __future__ import annotations

import os
import threading

import numpy as np

#: Element-wise jobs (the k-mixup blend) touching at least this many bytes are split over the
#: cores (:func:`run_parallel`). Measured on 2 cores: 2.6 -> 1.7 ms at [32, 3, 224, 224]; no
#: gain at 3 MiB and a loss at 0.8 MiB (the hand-off and the shared cache eat it).
PARALLEL_BYTES = 8 << 20

_blas_lock = threading.Lock()
_blas_state: dict = {"ctl": None, "pinned": False}


def _numpy_blas():
    """Controllers of NumPy's own BLAS (via threadpoolctl), else ``[]``."""
    if _blas_state["ctl"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            ctl = ThreadpoolController().select(user_api="blas")
            _blas_state["ctl"] = [c for c in ctl.lib_controllers if "numpy" in c.filepath]
        except Exception:  # threadpoolctl missing or failing: leave BLAS threading alone
            _blas_state["ctl"] = []
    return _blas_state["ctl"]


def one_blas_thread() -> None:
    """Set NumPy's own BLAS (OpenBLAS, not torch's) to one thread, for the rest of the process.

    Called before each of our products (once it has run, a cheap check). k-mixup's many small
    k x k Gram blocks and zeta-mixup's label products are single-threaded calls; large products
    use more cores through :func:`run_parallel` (Python threads, each calling single-threaded
    BLAS). The setting is kept, not restored after each call, because OpenBLAS's idle second
    thread spins and takes a core from whatever runs next. Measured on a 2-core machine: with
    k = 32 / 64 blocks it made the costs 20-100x slower (255 ms instead of ~2 ms at B = 256,
    D = 3072); and a CPU training step (small CNN, 32x32, B = 256) fed by fn.k_mixup /
    fn.zeta_mixup ran 1.7x / 2.6x slower than without mixing when the thread count was set to 1
    around each product and restored after it, against 1.1-1.2x / 1.3-1.4x with it kept.
    """
    if _blas_state["pinned"]:
        return
    with _blas_lock:
        if not _blas_state["pinned"]:
            for c in _numpy_blas():
                c.set_num_threads(1)
            _blas_state["pinned"] = True


#: Products below this many flops run in one call (a hand-off to the pool costs ~50 us).
_SPLIT_FLOPS = 2e7
#: Column pieces start at multiples of this many items (unaligned pieces ran ~2x slower).
_SPLIT_ALIGN = 64
_pool_lock = threading.Lock()
_pool: dict = {}


def _forget_pool_after_fork() -> None:
    """A forked child (a DataLoader or DALI worker) has none of the parent's pool threads:
    it must start its own pool instead of queueing work nobody will run."""
    global _pool_lock, _blas_lock
    _pool_lock = threading.Lock()
    _pool.clear()
    # threadpoolctl remembers which thread last set OpenBLAS's threads; when that was one of
    # DALI's (non-Python) threads, asking the child whether it is alive fails an assertion
    # (Python 3.11's _DummyThread after fork), so the child starts with no controlling thread
    _blas_lock = threading.Lock()
    for c in _blas_state["ctl"] or []:
        shared = getattr(type(c), "_SHARED_STATE", None)
        if shared is not None:
            shared.controlling_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def split_matmul(w: np.ndarray, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = w @ x`` for NumPy ``w [M, K]``, ``x [K, N]`` with large N (zeta-mixup's
    ``[B, B] @ [B, D]`` mix), split by columns over up to 8 cores.

    Each column piece is one single-threaded BLAS call, run by a small pool of Python threads
    (the caller takes the last piece). OpenBLAS's own threads would do the same split, but its
    idle workers spin for a while after each call: in one process with DALI pipelines that
    stole a core from the next pipeline (mixup pipelines ran ~15% slower after a zeta product)
    and on a busy machine made the product 1.25x slower. Idle pool threads block instead.
    Measured on a quiet 2-core VM: 6.4 -> 3.4 ms at [32, 32] @ [32, 150528], 4.1 -> 2.1 ms at
    [256, 256] @ [256, 3072]. Every column is computed by the same single-threaded kernel.
    """
    m, k = w.shape
    n = x.shape[1]
    parts = min(parallel_parts(), n // _SPLIT_ALIGN)
    one_blas_thread()
    if parts < 2 or 2.0 * m * k * n < _SPLIT_FLOPS:
        return np.matmul(w, x, out=out)
    step = -(-n // parts)
    step = -(-step // _SPLIT_ALIGN) * _SPLIT_ALIGN
    cuts = list(range(0, n, step)) + [n]
    run_parallel([lambda c0=c0, c1=c1: np.matmul(w, x[:, c0:c1], out=out[:, c0:c1])
                  for c0, c1 in zip(cuts[:-1], cuts[1:])])
    return out


def parallel_parts() -> int:
    """How many pieces a large NumPy job is cut into: the usable cores, at most 8."""
    return min(8, _usable_cores())


def split_points(n: int, parts: int) -> list:
    """``parts + 1`` increasing cut points from 0 to ``n`` (pieces differ by at most one)."""
    return [n * i // parts for i in range(parts + 1)]


def run_parallel(tasks) -> None:
    """Run the callables ``tasks`` at once: all but the last on a small pool of Python threads
    (created on first use, one fewer than :func:`parallel_parts`), the last on the caller's.

    The tasks are NumPy / BLAS calls, which release the GIL. Idle pool threads block (they do
    not spin like OpenBLAS's workers). A task's exception is raised here.
    """
    if len(tasks) == 1:
        tasks[0]()
        return
    with _pool_lock:  # one pool per process, created on first use
        pool = _pool.get("pool")
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            pool = _pool["pool"] = ThreadPoolExecutor(max(1, parallel_parts() - 1),
                                                      thread_name_prefix="dali_mixup")
    futures = [pool.submit(t) for t in tasks[:-1]]
    try:
        tasks[-1]()
    finally:
        for f in futures:
            f.result()


_scratch = threading.local()


def scratch(n: int, dtype) -> np.ndarray:
    """A per-thread scratch vector of ``n`` items kept between calls (contents undefined): a
    fresh 512 KiB block per batch is served by mmap (page faults) until glibc raises its mmap
    threshold, which made chunked loops several times slower. A caller must not hold it across
    a call into other code that takes it too (none of ours does)."""
    nbytes = n * np.dtype(dtype).itemsize
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _scratch.buf = np.empty(max(nbytes, 1 << 19), np.uint8)
    return buf[:nbytes].view(dtype)
