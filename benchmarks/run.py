"""Side-by-side benchmarks of k-mixup and zeta-mixup.

    python -m benchmarks.run --out bench-out            # full CPU run (a few minutes)
    python -m benchmarks.run --quick --out /tmp/b       # smoke test (< 30 s)
    python -m benchmarks.run --device gpu --out b-gpu   # the same suite with CuPy + DALI GPU

Every figure is a median over interleaved repeats measured in this one process, float32,
B = 256 unless stated. Suites:

1. ``kmixup``: ``dali_mixup.k_mixup`` (k in {16, 32, 64}, D in {784, 3072, 150528}) against
   (a) the authors' reference procedure (scipy ``distance_matrix`` per block, one
   ``linear_sum_assignment`` on the B x B block-diagonal matrix filled with a large constant,
   then the blend), (b) 1-mixup written as users write it, ``lam*x + (1-lam)*x[perm]``, and
   (c) one copy of the batch.
2. ``zeta``: ``dali_mixup.zeta_mixup`` with T = B in {32, 128, 256} against the paper's einsum
   formulation and 1-mixup; B = 32, D = 3*224*224 is the paper's Table 9 case.
3. ``pipeline``: a real DALI pipeline (file reader, decode, crop_mirror_normalize, 32x32,
   B = 256): batches/s with no mixing, DALI-native mixup and each dali_mixup operator.
4. ``breakdown``: the assignment solver per block for k = 2..256, and the distance cost.

Each time is also given against its physical floor: memory traffic at the bandwidth measured
by a copy, and flops at the matmul peak measured by a square sgemm, in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import arrays, loop, report

NOT_MEASURED_GPU = "not measured (no GPU)"
B_DEFAULT = 256
REF_FILL = 1000.0  # the authors' fill value outside the diagonal blocks


# ----------------------------------------------------------------------------- backend


class Backend:
    """NumPy on CPU, CuPy on GPU: array namespace, synchronisation and host copies."""

    def __init__(self, device: str):
        self.device = device
        if device == "gpu":
            import cupy

            try:
                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as e:  # noqa: BLE001 - CuPy installed, no driver or device
                raise RuntimeError(f"no usable GPU: CuPy sees no CUDA device ({type(e).__name__}: {e})") from e
            if n < 1:
                raise RuntimeError("no usable GPU: CuPy sees no CUDA device")
            self.xp = cupy
            self.name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        else:
            self.xp = np
            self.name = platform.processor() or platform.machine()

    def sync(self) -> None:
        if self.device == "gpu":
            self.xp.cuda.Device().synchronize()

    def asarray(self, a):
        return self.xp.asarray(a)

    def to_host(self, a) -> np.ndarray:
        return a.get() if self.device == "gpu" else np.asarray(a)


def gpu_available() -> bool:
    try:
        Backend("gpu")
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------- timing


def interleaved(fns: dict[str, Callable[[], object]], sync: Callable[[], None], *, budget: float,
                min_rounds: int, max_rounds: int, sample_target: float) -> dict:
    """Median seconds per call of each function, timed round-robin (rotating the order).

    Each sample runs a function ``inner`` times (calibrated so a sample lasts about
    ``sample_target`` seconds). Rounds go on until ``budget`` seconds have passed (at least
    ``min_rounds``, at most ``max_rounds``).
    """
    inner, samples = {}, {n: [] for n in fns}
    for name, f in fns.items():  # warm-up and calibration
        t0 = time.perf_counter()
        f()
        sync()
        t = time.perf_counter() - t0
        inner[name] = max(1, min(2000, int(sample_target / max(t, 1e-7))))
        if t > 0.5:  # slow: the warm-up counts as a sample
            samples[name].append(t)
    if any(samples.values()):  # some call takes > 0.5 s: three rounds are enough
        min_rounds = min(min_rounds, 3)
        max_rounds = min(max_rounds, 3)
    names = list(fns)
    start, r = time.perf_counter(), 0
    while r < min_rounds or (r < max_rounds and time.perf_counter() - start < budget):
        rot = r % len(names)
        for name in names[rot:] + names[:rot]:
            f, n = fns[name], inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            sync()
            samples[name].append((time.perf_counter() - t0) / n)
        r += 1
    return {n: statistics.median(s) for n, s in samples.items()}


class Timer:
    def __init__(self, be: Backend, quick: bool):
        self.be, self.quick = be, quick

    def __call__(self, fns: dict, budget: float | None = None) -> dict:
        if self.quick:
            return interleaved(fns, self.be.sync, budget=0.2, min_rounds=2, max_rounds=5,
                               sample_target=0.005)
        return interleaved(fns, self.be.sync, budget=budget or 3.0, min_rounds=5, max_rounds=25,
                           sample_target=0.02)


# ----------------------------------------------------------------------------- floors


def measure_floor(be: Backend, timer: Timer) -> dict:
    """Copy bandwidth (bytes read + written per second) and square sgemm throughput."""
    xp = be.xp
    n = (8 if timer.quick else 32) * 2**20
    a = xp.ones(n, dtype=xp.float32)
    b = xp.empty_like(a)
    m = 1024 if timer.quick else 2048
    rng = np.random.default_rng(0)
    A = be.asarray(rng.random((m, m), dtype=np.float32))
    Bm = be.asarray(rng.random((m, m), dtype=np.float32))
    C = xp.empty_like(A)

    def copy():
        xp.copyto(b, a)

    def gemm():
        xp.matmul(A, Bm, out=C)

    t = timer({"copy": copy, "sgemm": gemm}, budget=2.0)
    return {"bandwidth_GBps": 2 * a.nbytes / t["copy"] / 1e9,
            "sgemm_GFLOPs": 2 * m**3 / t["sgemm"] / 1e9,
            "copy_bytes": int(a.nbytes), "sgemm_n": m}


def warm_allocator() -> None:
    """Put glibc malloc in the state of a long-running process before timing.

    glibc serves a block above its mmap threshold (128 KiB at start) with fresh pages, and the
    threshold only rises (up to 32 MiB) after such a block is freed. Until then every
    batch-sized temporary costs page faults, which made the same 1-mixup expression 10x slower
    (4.4 vs 0.4 ms at [256, 3, 32, 32]) depending on what the process had allocated before.
    Allocating and freeing one block just under 32 MiB fixes the state for every contender.
    Blocks above 32 MiB (the D = 150528 batches) are always fresh mmaps, for every contender.
    """
    block = np.ones((32 << 20) - (1 << 16), dtype=np.uint8)
    del block


def warm_up(be: Backend, seconds: float = 1.0) -> None:
    """Run the operators untimed for a while first: the first calls of a process pay one-off
    costs (lazy imports, the thread pool, threadpoolctl's library scan, CPU clocks ramping
    up) that made the first table row up to 2x slower than the same call later in the run."""
    import dali_mixup as dm

    x, y = make_batch(be, 64, 3072, seed=0)
    rng = np.random.default_rng(0)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        dm.k_mixup(x, y, k=16, num_classes=10, rng=rng)
        dm.zeta_mixup(x, y, num_classes=10, rng=rng)
    be.sync()


def floor_time(floor: dict, bytes_moved: float, flops: float = 0.0) -> float:
    """Lower bound: the larger of memory time and compute time."""
    return max(bytes_moved / (floor["bandwidth_GBps"] * 1e9), flops / (floor["sgemm_GFLOPs"] * 1e9))


# ----------------------------------------------------------------------------- data


def image_shape(d: int) -> tuple:
    return {784: (1, 28, 28), 3072: (3, 32, 32), 150528: (3, 224, 224)}.get(d, (d,))


def make_batch(be: Backend, b: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random((b,) + image_shape(d), dtype=np.float32)
    y = rng.integers(0, 10, size=b)
    return be.asarray(x), be.asarray(y)


def mixup1(xp, rng):
    """1-mixup as users write it: ``lam*x + (1-lam)*x[perm]``."""
    def f(x):
        lam = float(rng.beta(1.0, 1.0))
        perm = xp.asarray(rng.permutation(x.shape[0]))
        return lam * x + (1 - lam) * x[perm]
    return f


def reference_kmixup(be: Backend, k: int, rng, num_classes: int = 10):
    """The authors' procedure (kmixup-cifar10 train.py) on one batch.

    Consecutive k-blocks of the batch meet the same blocks of a random permutation; each
    block's Euclidean distance matrix (scipy ``distance_matrix``) is written into a B x B
    matrix filled with a large constant; one ``linear_sum_assignment`` solves it; partner =
    perm[assignment]; one lam per batch; images and one-hot labels are blended.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import distance_matrix

    xp = be.xp

    def f(x, y):
        b = x.shape[0]
        xh = be.to_host(x).reshape(b, -1)
        perm = rng.permutation(b)
        lam = float(rng.beta(1.0, 1.0))
        M = np.full((b, b), REF_FILL)
        for i in range(0, b, k):
            j = min(i + k, b)
            M[i:j, i:j] = distance_matrix(xh[i:j], xh[perm[i:j]])
        _, cols = linear_sum_assignment(M)
        p = xp.asarray(perm[cols])
        oh = xp.eye(num_classes, dtype=x.dtype)[y]
        return lam * x + (1 - lam) * x[p], lam * oh + (1 - lam) * oh[p]
    return f


def paper_zeta(be: Backend, rng, gamma: float = 2.8):
    """The paper's formulation: a B x B weight matrix (self rank 1, the others a random
    permutation of ranks 2..B) applied with einsum, as in the authors' utils.py."""
    xp = be.xp

    def f(x):
        b = x.shape[0]
        keys = rng.random((b, b))
        keys[np.arange(b), np.arange(b)] = -1.0
        ranks = np.argsort(np.argsort(keys, axis=1), axis=1) + 1.0
        w = ranks ** -gamma
        w /= (np.arange(1, b + 1, dtype=np.float64) ** -gamma).sum()
        W = xp.asarray(w, dtype=x.dtype)
        return xp.einsum("pi,i...->p...", W, x)
    return f


# ----------------------------------------------------------------------------- suites


def suite_kmixup(be: Backend, timer: Timer, floor: dict, ds, ks, b: int) -> list:
    import dali_mixup as dm

    xp = be.xp
    rows = []
    for d in ds:
        x, y = make_batch(be, b, d, seed=d)
        for k in ks:
            rng = np.random.default_rng(k)
            ref, m1 = reference_kmixup(be, k, rng), mixup1(xp, rng)
            fns = {
                "ours": lambda: dm.k_mixup(x, y, k=k, num_classes=10, rng=rng),
                "reference": lambda: ref(x, y),
                "mixup1": lambda: m1(x),
                "copy": lambda: xp.copy(x),
            }
            t = timer(fns, budget=4.0)
            nbytes = x.nbytes
            h = b // 2
            kk = min(k, h)
            gram_flops = 2.0 * h * kk * d  # (h/k) blocks of (k x D)(D x k)
            floors = {
                "ours": floor_time(floor, 4 * nbytes, gram_flops),
                "reference": floor_time(floor, 4 * nbytes, gram_flops),
                "mixup1": floor_time(floor, 3 * nbytes),
                "copy": floor_time(floor, 2 * nbytes),
            }
            rows.append({
                "k": k, "D": d, "B": b, "shape": [b, *image_shape(d)], "times_s": t, "floor_s": floors,
                "x_floor": {n: t[n] / floors[n] for n in t},
                "reference_over_ours": t["reference"] / t["ours"],
                "ours_over_mixup1": t["ours"] / t["mixup1"],
                "ours_over_copy": t["ours"] / t["copy"],
                "mixup1_over_copy": t["mixup1"] / t["copy"],
            })
            _log(f"kmixup k={k} D={d}: ours {t['ours']*1e3:.2f} ms, ref {t['reference']*1e3:.1f} ms, "
                 f"mixup1 {t['mixup1']*1e3:.2f} ms, copy {t['copy']*1e3:.2f} ms")
    return rows


#: T < B rows of the zeta suite at B = 256: an exact T = B mix cannot reach 5x 1-mixup here.
ZETA_SMALL_T = (4, 8)


def suite_zeta(be: Backend, timer: Timer, floor: dict, ds, bs) -> list:
    import dali_mixup as dm
    from dali_mixup.core.plan import choose_zeta_method as choose_method

    xp = be.xp
    rows = []
    for d in ds:
        for b in bs:
            x, y = make_batch(be, b, d, seed=b + d)
            for T in (b,) + (ZETA_SMALL_T if b == 256 else ()):
                rng = np.random.default_rng(b + T)
                pz, m1 = paper_zeta(be, rng), mixup1(xp, rng)
                fns = {
                    "ours": lambda: dm.zeta_mixup(x, y, num_classes=10, T=T, rng=rng),
                    "mixup1": lambda: m1(x),
                }
                if T == b:  # the paper's formulation mixes the whole batch
                    fns["paper_einsum"] = lambda: pz(x)
                t = timer(fns, budget=4.0)
                nbytes = x.nbytes
                method = choose_method(T, b)
                # the floor of what ours computes: a B x B product, or T-1 gather passes
                flops = 2.0 * b * b * d if method == "matmul" else 0.0
                exact = floor_time(floor, (2 if method == "matmul" else 1 + 2 * (T - 1)) * nbytes, flops)
                floors = {"ours": exact, "paper_einsum": floor_time(floor, 2 * nbytes, 2.0 * b * b * d),
                          "mixup1": floor_time(floor, 3 * nbytes)}
                rows.append({
                    "T": T, "B": b, "D": d, "shape": [b, *image_shape(d)], "method": method,
                    "table9": b == 32 and d == 150528, "times_s": t, "floor_s": floors,
                    "x_floor": {n: t[n] / floors[n] for n in t},
                    "paper_over_ours": t["paper_einsum"] / t["ours"] if "paper_einsum" in t else None,
                    "ours_over_mixup1": t["ours"] / t["mixup1"],
                    "exact_floor_over_mixup1_floor": exact / floors["mixup1"],
                })
                _log(f"zeta T={T} B={b} D={d}: ours {t['ours']*1e3:.2f} ms, mixup1 {t['mixup1']*1e3:.2f} ms")
    return rows


def suite_breakdown(be: Backend, timer: Timer, floor: dict, ds, solver_ks, b: int) -> dict:
    from scipy.optimize import linear_sum_assignment

    from dali_mixup.core.apply import blend
    from dali_mixup.core.config import PairConfig
    from dali_mixup.core.cost import block_costs
    from dali_mixup.core.draws import draw_pairs
    from dali_mixup.core.plan import pair_plan, plan_blocks

    rng = np.random.default_rng(7)
    solver = []
    try:
        import lap  # noqa: F401  optional comparison only
        have_lap = True
    except ImportError:
        have_lap = False
    for k in solver_ks:
        n_mat = max(1, min(16, 256 // k))
        pts = [rng.normal(size=(2, k, 16)) for _ in range(n_mat)]
        mats = [((p[0][:, None, :] - p[1][None, :, :]) ** 2).sum(-1) for p in pts]
        fns = {"scipy": lambda: [linear_sum_assignment(m) for m in mats]}
        if have_lap:
            fns["lap.lapjv"] = lambda: [lap.lapjv(m) for m in mats]
        t = timer(fns, budget=1.0)
        row = {"k": k, "per_block_s": {n: v / n_mat for n, v in t.items()},
               "blocks_at_B256": (b // 2 + k - 1) // k if k <= b // 2 else 1}
        row["per_batch_s"] = {n: v * row["blocks_at_B256"] for n, v in row["per_block_s"].items()}
        solver.append(row)
        _log(f"solver k={k}: scipy {row['per_block_s']['scipy']*1e6:.1f} us/block")
    distance, stages = [], []
    for d in ds:
        x, y = make_batch(be, b, d, seed=3 * d)
        x2d = be.xp.reshape(x, (b, -1))
        draws = draw_pairs(np.random.default_rng(1), b, 1.0)
        for k in (16, 64):
            cfg = PairConfig.k_mixup(k=k, num_classes=10)
            plan = plan_blocks(draws.u, b, k, "disjoint")
            costs_h = np.asarray(be.to_host(block_costs(x2d, plan.left, plan.right, cost="sqeuclidean",
                                                        xp=be.xp)))
            pp = pair_plan(cfg, draws, plan, costs_h, b)
            p_dev, lam_dev = be.asarray(pp.partner), be.asarray(pp.lam.astype(np.float32))
            fns = {
                "blocks": lambda: plan_blocks(draws.u, b, k, "disjoint"),
                "distance": lambda: block_costs(x2d, plan.left, plan.right, cost="sqeuclidean", xp=be.xp),
                "solve+plan": lambda: pair_plan(cfg, draws, plan, costs_h, b),
                "blend": lambda: blend(x, p_dev, lam_dev, be.xp),
            }
            t = timer(fns, budget=2.0)
            flops = 2.0 * plan.left.size * plan.k * d
            dist_floor = floor_time(floor, x.nbytes, flops)
            distance.append({"k": k, "D": d, "time_s": t["distance"], "GFLOPs": flops / t["distance"] / 1e9,
                             "floor_s": dist_floor, "x_floor": t["distance"] / dist_floor})
            stages.append({"k": k, "D": d, "times_s": t, "total_s": sum(t.values())})
            _log(f"breakdown k={k} D={d}: " + ", ".join(f"{n} {v*1e3:.3f} ms" for n, v in t.items()))
    return {"solver": solver, "distance": distance, "stages": stages, "lap_installed": have_lap}


# ----------------------------------------------------------------------------- targets


def evaluate_targets(res: dict) -> list:
    def find(rows, **kw):
        for r in rows or []:
            if all(r.get(a) == v for a, v in kw.items()):
                return r
        return None

    out = []

    def add(name, value, limit, better):
        if value is None:
            out.append({"target": name, "value": None, "limit": limit, "met": None, "note": "not measured"})
            return
        met = value >= limit if better == "higher" else value <= limit
        out.append({"target": name, "value": value, "limit": limit, "met": bool(met)})

    km, zt = res.get("kmixup"), res.get("zeta")
    if isinstance(km, list):
        r = find(km, k=16, D=3072)
        add("k-mixup k=16 D=3072: reference / ours >= 20", r and r["reference_over_ours"], 20.0, "higher")
        add("k-mixup k=16 D=3072: ours / 1-mixup <= 2", r and r["ours_over_mixup1"], 2.0, "lower")
        for k in (16, 32, 64):
            r = find(km, k=k, D=150528)
            if r is not None or k == 16:
                add(f"k-mixup k={k} D=150528: ours / 1-mixup <= 1.5", r and r["ours_over_mixup1"], 1.5, "lower")
    if isinstance(zt, list):
        r = find(zt, B=32, T=32, D=150528)
        add("zeta [32,3,224,224]: ours / 1-mixup <= 1", r and r["ours_over_mixup1"], 1.0, "lower")
        r = find(zt, B=256, T=256, D=3072)
        add("zeta T=B=256 D=3072: ours / 1-mixup <= 5", r and r["ours_over_mixup1"], 5.0, "lower")
    return report.comparison_targets(res) + out


# ----------------------------------------------------------------------------- report


def _ms(s) -> str:
    return "-" if s is None else f"{s * 1e3:.3g}"


def _x(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def to_markdown(res: dict) -> str:
    m = res["meta"]
    lines = [f"# dali-mixup benchmarks ({m['device']}: {m['device_name']})", "",
             f"`{m['command']}` · {m['date']} · {'quick' if m['quick'] else 'full'} run · "
             f"numpy {m['numpy']}, scipy {m['scipy']}, DALI {m.get('dali', '-')} · {m['cpus']} CPUs", ""]
    if res.get("status"):
        lines += [f"**{res['status']}**", ""]
    gpu = m["device"] == "gpu"
    if not gpu:
        lines += ["GPU: every GPU column reads \"not measured on GPU\" until `dali-mixup bench --device gpu` "
                  "runs on a machine with one.", ""]
    lines += report.floors_markdown(res) + report.targets_markdown(res.get("targets", []))
    lines += report.sources_markdown(res) + report.arrays_markdown(res, gpu)
    lines += report.iterator_markdown(res, gpu) + report.training_markdown(res, gpu)
    fl = res.get("floor")
    if any(s in res for s in ("kmixup", "zeta", "breakdown")) and isinstance(fl, dict):
        lines += ["## The array layer in depth", "",
                  f"Physical floor measured in this run: copy bandwidth **{fl['bandwidth_GBps']:.1f} GB/s** "
                  f"(read + write), sgemm **{fl['sgemm_GFLOPs']:.0f} GFLOP/s** (n = {fl['sgemm_n']}). "
                  "`x floor` = measured time / (larger of bytes moved at that bandwidth and flops at "
                  "that peak); 1.0 is the physical limit.", ""]
    km = res.get("kmixup")
    if km is not None:
        lines += ["### k-mixup (B=256) vs the authors' reference, 1-mixup and a copy", ""]
    if isinstance(km, list):
        lines += ["| k | D | ours ms | reference ms | 1-mixup ms | copy ms | ref/ours | ours/1-mixup | "
                  "ours x floor | 1-mixup x floor |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in km:
            t, xf = r["times_s"], r["x_floor"]
            lines.append(f"| {r['k']} | {r['D']} | {_ms(t['ours'])} | {_ms(t['reference'])} | {_ms(t['mixup1'])} | "
                         f"{_ms(t['copy'])} | {_x(r['reference_over_ours'])} | {_x(r['ours_over_mixup1'])} | "
                         f"{_x(xf['ours'])} | {_x(xf['mixup1'])} |")
        lines.append("")
    elif km is not None:
        lines += [str(km), ""]
    zt = res.get("zeta")
    if zt is not None:
        lines += ["### zeta-mixup (T = B, and T < B at B = 256) vs the paper's einsum and 1-mixup", ""]
    if isinstance(zt, list):
        lines += ["| B | T | D | method | ours ms | einsum ms | 1-mixup ms | einsum/ours | ours/1-mixup | "
                  "ours x floor | ours' floor / blend floor |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in zt:
            t = r["times_s"]
            tag = " (Table 9)" if r["table9"] else ""
            lines.append(f"| {r['B']} | {r['T']} | {r['D']}{tag} | {r['method']} | {_ms(t['ours'])} | "
                         f"{_ms(t.get('paper_einsum'))} | {_ms(t['mixup1'])} | {_x(r['paper_over_ours'])} | "
                         f"{_x(r['ours_over_mixup1'])} | {_x(r['x_floor']['ours'])} | "
                         f"{_x(r['exact_floor_over_mixup1_floor'])} |")
        lines += ["", "An exact T = B mix is a B x B x D product (2 B^2 D flops); with T - 1 <= B/48 the mix "
                  "is T - 1 gather passes instead. The last column is that floor over the blend's floor: "
                  "the best any implementation of the same computation can do against 1-mixup."]
        lines.append("")
    elif zt is not None:
        lines += [str(zt), ""]
    bd = res.get("breakdown")
    if bd is not None:
        lines += ["### Where the array layer's k-mixup time goes", ""]
    if isinstance(bd, dict):
        names = list(bd["solver"][0]["per_block_s"]) if bd["solver"] else []
        lines += ["Assignment solver, per k x k block (us), and per B=256 batch (disjoint halves):", "",
                  "| k | " + " | ".join(f"{n} us/block" for n in names) + " | scipy us/batch |",
                  "|---|" + "---|" * (len(names) + 1)]
        for r in bd["solver"]:
            lines.append(f"| {r['k']} | " + " | ".join(f"{r['per_block_s'][n] * 1e6:.3g}" for n in names)
                         + f" | {r['per_batch_s']['scipy'] * 1e6:.3g} |")
        lines += ["", "k-mixup stages at B=256 (ms):", "",
                  "| k | D | blocks | distance | solve+plan | blend | distance GFLOP/s | "
                  "distance x floor |", "|---|---|---|---|---|---|---|---|"]
        for s, dd in zip(bd["stages"], bd["distance"]):
            t = s["times_s"]
            lines.append(f"| {s['k']} | {s['D']} | {_ms(t['blocks'])} | {_ms(t['distance'])} | "
                         f"{_ms(t['solve+plan'])} | {_ms(t['blend'])} | {dd['GFLOPs']:.3g} | "
                         f"{_x(dd['x_floor'])} |")
        lines.append("")
    elif bd is not None:
        lines += [str(bd), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _versions() -> dict:
    import scipy

    v = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__}
    try:
        import nvidia.dali as dali

        v["dali"] = dali.__version__
    except ImportError:
        pass
    return v


#: the comparison suites (run by default) and the array layer's own suites
COMPARISON_SUITES = ("arrays", "iterator", "training")
ARRAY_SUITES = ("kmixup", "zeta", "breakdown")
ALL_SUITES = COMPARISON_SUITES + ARRAY_SUITES

#: (role, image size, batch, JPEG files, batches per block, rounds): full run, then --quick
ITERATOR_CONFIGS = {False: (("small", 32, 256, 1024, 20, 9), ("large", 224, 64, 256, 8, 9)),
                    True: (("small", 16, 32, 64, 2, 2), ("large", 32, 8, 32, 2, 2))}
#: (model, image size, batch, JPEG files, steps per block, rounds); ResNet-18 at 64x64 (ImageNet stem):
#: at 224x224 one step takes seconds on a 2-core CPU
TRAINING_CONFIGS = {False: (("small_cnn", 32, 256, 1024, 10, 5), ("resnet18", 64, 64, 256, 4, 5)),
                    True: (("small_cnn", 16, 32, 64, 1, 2), ("resnet18", 32, 8, 32, 1, 2))}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="dali-mixup bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: small sizes, few repeats (< 1 min)")
    p.add_argument("--out", default="bench-results", help="folder for results.json and results.md")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--suites", default=",".join(COMPARISON_SUITES),
                   help=f"comma-separated subset of {','.join(ALL_SUITES)}, or 'all' "
                        f"(default: {','.join(COMPARISON_SUITES)})")
    return p.parse_args(argv)


def gpu_for_torch(device: str) -> None:
    """On ``--device gpu`` the peers run on CUDA tensors: torch must see the GPU."""
    if device != "gpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no CUDA device (a CPU build of torch, or no GPU)")


def torch_timer(device: str, quick: bool) -> Callable:
    sync = loop.sync_for(device)
    if quick:
        return lambda fns, budget=None: interleaved(fns, sync, budget=0.2, min_rounds=2, max_rounds=3,
                                                    sample_target=0.005)
    return lambda fns, budget=None: interleaved(fns, sync, budget=budget or 3.0, min_rounds=5, max_rounds=15,
                                                sample_target=0.05)


def run_comparison(res: dict, suites: list, device: str, q: bool) -> None:
    """The comparison suites: array level, through the iterator, training throughput."""
    bw = res["floor"]["bandwidth_GBps"]
    if "arrays" in suites:
        tm = torch_timer(device, q)
        res["arrays"] = []
        for _, size, b, *_ in ITERATOR_CONFIGS[q]:
            res["arrays"].append(arrays.suite_arrays(device, tm, batch=b, size=size, bandwidth_GBps=bw))
            _log(f"arrays {size}x{size} B={b}: " + ", ".join(
                f"{r['name']} {r['time_s'] * 1e3:.2f} ms" for r in res["arrays"][-1]["rows"]))
    with tempfile.TemporaryDirectory(prefix="dali_mixup_bench_") as tmp:
        if "iterator" in suites:
            res["iterator"] = []
            for role, size, b, n, per_block, rounds in ITERATOR_CONFIGS[q]:
                c = loop.suite_iterator(device, batch=b, size=size, n_images=n, n_per_block=per_block,
                                        rounds=rounds, bandwidth_GBps=bw, tmp=Path(tmp))
                c["role"] = role
                res["iterator"].append(c)
                for r in c["rows"]:
                    _log(f"iterator {size}x{size} B={b} {r['variant']}: {r['time_per_batch_s'] * 1e3:.2f} ms "
                         f"({r['over_no_mixing']:.2f}x no mixing)")
        if "training" in suites:
            res["training"] = []
            for model, size, b, n, per_block, rounds in TRAINING_CONFIGS[q]:
                c = loop.suite_training(device, model=model, batch=b, size=size, n_images=n,
                                        n_per_block=per_block, rounds=rounds, tmp=Path(tmp))
                res["training"].append(c)
                for r in c["rows"]:
                    _log(f"training {model} {size}x{size} B={b} {r['variant']}: {r['images_per_s']:.0f} images/s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    if suites == ["all"]:
        suites = list(ALL_SUITES)
    unknown = set(suites) - set(ALL_SUITES)
    if unknown:
        print(f"dali-mixup bench: unknown suite(s) {sorted(unknown)}; choose from {', '.join(ALL_SUITES)}",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"device": args.device, "quick": args.quick, "cpus": os.cpu_count(), "suites": suites,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "platform": platform.platform(),
            "command": "dali-mixup bench " + " ".join(sys.argv[1:] if argv is None else argv),
            **_versions()}
    res: dict = {"meta": meta}
    try:
        be = Backend(args.device)
        gpu_for_torch(args.device)
    except Exception as e:  # no usable GPU (or a broken CuPy): an error, not a result
        meta["device_name"] = "none"
        res["status"] = f"{NOT_MEASURED_GPU}: {type(e).__name__}: {e}"
        for s in ("floor",) + ALL_SUITES:
            res[s] = NOT_MEASURED_GPU
        res["targets"] = evaluate_targets({})
        _write(out, res)
        print(f"dali-mixup bench: --device {args.device} cannot run here: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1
    meta["device_name"] = be.name
    warm_allocator()
    timer = Timer(be, args.quick)
    q = args.quick
    warm_up(be, 0.2 if q else 2.0)
    ds = (784,) if q else (784, 3072, 150528)
    t0 = time.perf_counter()
    res["floor"] = measure_floor(be, timer)
    _log(f"floor: {res['floor']['bandwidth_GBps']:.1f} GB/s, {res['floor']['sgemm_GFLOPs']:.0f} GFLOP/s")
    try:
        run_comparison(res, suites, args.device, q)
    except ImportError as e:  # DALI or torch missing: say so in the tables
        for s in COMPARISON_SUITES:
            if s in suites and s not in res:
                res[s] = f"not measured ({e.name or e} not installed)"
    if "kmixup" in suites:
        res["kmixup"] = suite_kmixup(be, timer, res["floor"], ds, (16,) if q else (16, 32, 64), B_DEFAULT)
    if "zeta" in suites:
        res["zeta"] = suite_zeta(be, timer, res["floor"], ds, (32,) if q else (32, 128, 256))
    if "breakdown" in suites:
        res["breakdown"] = suite_breakdown(be, timer, res["floor"], ds,
                                           (2, 16) if q else (2, 4, 8, 16, 32, 64, 128, 256), B_DEFAULT)
    res["floor_end"] = measure_floor(be, timer)
    _log(f"floor at the end: {res['floor_end']['bandwidth_GBps']:.1f} GB/s")
    meta["elapsed_s"] = time.perf_counter() - t0
    res["targets"] = evaluate_targets(res)
    _write(out, res)
    _log(f"wrote {out / 'results.json'} and {out / 'results.md'} in {meta['elapsed_s']:.1f} s")
    return 0


def _write(out: Path, res: dict) -> None:
    (out / "results.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (out / "results.md").write_text(to_markdown(res))


if __name__ == "__main__":
    sys.exit(main())
