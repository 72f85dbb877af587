"""Soak run: many iterations of each operator in a CPU pipeline; resident memory must stay flat.

    python -m dali_mixup.tools.soak --iterations 10000          # the full run (docs/operators.md has the result)

Resident memory is read from /proc/self/statm after a warm-up and at the end; growth is
reported relative to the warm-up level.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pipeline(op: str, batch_size: int, shape, num_classes: int):
    from nvidia.dali import fn, pipeline_def

    from .. import fn as mfn

    ops = {
        "mixup": lambda x, y: mfn.mixup(x, y, num_classes=num_classes),
        "k_mixup": lambda x, y: mfn.k_mixup(x, y, k=16, num_classes=num_classes),
        "zeta_mixup": lambda x, y: mfn.zeta_mixup(x, y, num_classes=num_classes),
    }
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(batch_size)]
    labels = [np.array([i % num_classes], np.int32) for i in range(batch_size)]

    @pipeline_def(batch_size=batch_size, num_threads=2, device_id=None, seed=0)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        y = fn.external_source(source=lambda: labels, batch=True)
        return ops[op](x, y)

    p = pipe()
    p.build()
    return p


def soak(op: str, iterations: int, *, batch_size: int = 64, shape=(32, 32, 3), warmup: int = 200):
    p = _pipeline(op, batch_size, shape, 10)
    for _ in range(min(warmup, iterations)):
        p.run()
    start = rss_mib()
    trace = []
    t0 = time.perf_counter()
    for i in range(iterations):
        p.run()
        if (i + 1) % max(1, iterations // 10) == 0:
            trace.append(round(rss_mib(), 1))
    end = rss_mib()
    return {"op": op, "iterations": iterations, "batch_size": batch_size, "rss_start_mib": round(start, 1),
            "rss_end_mib": round(end, 1), "growth_pct": round(100 * (end - start) / start, 2),
            "seconds": round(time.perf_counter() - t0, 1), "rss_trace_mib": trace}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dali-mixup soak", description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ops", default="mixup,k_mixup,zeta_mixup")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    results = [soak(op, args.iterations, batch_size=args.batch_size) for op in args.ops.split(",")]
    for r in results:
        print(f"{r['op']:>11}: {r['iterations']} iterations, RSS {r['rss_start_mib']} -> "
              f"{r['rss_end_mib']} MiB ({r['growth_pct']:+.2f}%), {r['seconds']} s; "
              f"every 10%: {r['rss_trace_mib']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if all(r["growth_pct"] < 5 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
