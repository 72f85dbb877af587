"""One command for a machine with a GPU: the GPU path run for real, then the GPU benchmarks.

    python -m benchmarks.gpu_check [--out gpu-check] [--quick]

1. The device: CuPy imports and sees a CUDA device (a missing or broken CuPy is an error).
2. Every DALI operator's GPU pipeline (images on the GPU, CuPy inside the python operators)
   runs a few batches and is compared with the CPU pipeline of the same seed: the same
   partners and weights (the plan is made on the host from the same draws), images and soft
   labels equal up to float32 rounding; bad inputs raise the CPU path's error on the host
   and the pipeline's CUDA stream survives (the next pipeline runs).
3. ``benchmarks.run --device gpu`` (the same suite as on CPU, CuPy arrays, DALI GPU pipelines).

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out`` and exits non-zero when there is
no usable GPU or any check fails. Sized to finish in under 8 minutes on one data-centre GPU
(not measured: no GPU was available where this was written).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

OPERATORS = {  # name -> (operator, keyword arguments)
    "mixup": ("mixup", dict(lam_mode="sample")),
    "k_mixup": ("k_mixup", dict(k=8, lam_mode="block")),
    "k_mixup features": ("k_mixup", dict(k=4, features="self")),
    "cutmix": ("cutmix", dict(lam_mode="sample")),
    "mix k=4 layout": ("mix", dict(k=4, layout="CHW", lam_mode="sample")),
    "zeta": ("zeta_mixup", dict()),
    "zeta gather": ("zeta_mixup", dict(T=3, method="gather")),
}


def device_check() -> dict:
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(f"CuPy is not installed (pip install 'dali-mixup[gpu]'): {e}") from e
    except Exception as e:  # a broken install: an error, never "not measured"
        raise RuntimeError(f"CuPy fails to import: {type(e).__name__}: {e}") from e
    n = cupy.cuda.runtime.getDeviceCount()
    if n < 1:
        raise RuntimeError("no CUDA device visible to CuPy")
    return {"device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "cupy": cupy.__version__}


def _pipeline(op: str, kw: dict, device: str, images, labels, seed: int = 5):
    from nvidia.dali import fn, pipeline_def, types

    import dali_mixup.fn as mfn

    @pipeline_def(batch_size=len(images), num_threads=2, device_id=0 if device == "gpu" else None,
                  seed=seed, prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="CHW", dtype=types.FLOAT)
        y = fn.external_source(source=lambda: labels, batch=True, dtype=types.INT32)
        x = x.gpu() if device == "gpu" else x
        args = dict(kw)
        if args.get("features") == "self":
            args["features"] = x[:, 0:4, 0:4]
        return getattr(mfn, op)(x, y, num_classes=10, return_info=True, **args)

    p = pipe()
    p.build()
    return p


def _host(t) -> np.ndarray:
    t = t.as_cpu() if hasattr(t, "as_cpu") else t
    return np.stack([np.array(t[i]) for i in range(len(t))])


def operator_checks(batches: int = 3) -> list:
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(3, 32, 32)).astype(np.float32) for _ in range(64)]
    labels = [np.array([i % 10], np.int32) for i in range(64)]
    rows = []
    for name, (op, kw) in OPERATORS.items():
        row = {"check": f"{name}: GPU == CPU", "ok": False}
        try:
            gpu, cpu = _pipeline(op, kw, "gpu", images, labels), _pipeline(op, kw, "cpu", images, labels)
            for _ in range(batches):
                g, c = [_host(t) for t in gpu.run()], [_host(t) for t in cpu.run()]
                np.testing.assert_array_equal(g[-2], c[-2])  # partner / index: the same plan
                for a, b in zip(g[:2] + [g[-1]], c[:2] + [c[-1]]):
                    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
            row["ok"] = True
        except Exception as e:  # noqa: BLE001 - recorded as a failed check
            row["error"] = f"{type(e).__name__}: {e}"[:2000]
        rows.append(row)
    row = {"check": "bad input raises on the host; the stream survives", "ok": False}
    try:
        bad = [np.ones((3, 8, 8), np.int16)] * 8
        try:
            _pipeline("mixup", {}, "gpu", bad, labels[:8]).run()
            row["error"] = "int16 images were accepted"
        except RuntimeError as e:
            assert "expected images of dtype" in str(e), str(e)
            _pipeline("mixup", {}, "gpu", images[:8], labels[:8]).run()  # DALI's stream still works
            row["ok"] = True
    except Exception as e:  # noqa: BLE001
        row["error"] = f"{type(e).__name__}: {e}"[:2000]
    rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu-check")
    p.add_argument("--quick", action="store_true", help="benchmarks in their quick form")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    try:
        res["device"] = device_check()
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)
        _write(out, res)
        print(f"gpu_check: {e}", file=sys.stderr)
        return 1
    res["checks"] = operator_checks()
    from . import run

    bench_args = ["--device", "gpu", "--out", str(out / "bench")] + (["--quick"] if a.quick else [])
    try:
        res["bench_rc"] = run.main(bench_args)
    except Exception:  # noqa: BLE001
        res["bench_rc"] = 1
        res["bench_error"] = traceback.format_exc()[-2000:]
    res["elapsed_s"] = time.perf_counter() - t0
    _write(out, res)
    ok = all(c["ok"] for c in res["checks"]) and res["bench_rc"] == 0
    print(f"gpu_check: {'all checks passed' if ok else 'FAILED'}; see {out / 'gpu_check.md'}")
    return 0 if ok else 1


def _write(out: Path, res: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    lines = ["# GPU check", "", f"Date: {res['date']}", ""]
    if "error" in res:
        lines += [f"**No GPU check ran:** {res['error']}", ""]
    else:
        lines += [f"Device: {res['device']['device']} (CuPy {res['device']['cupy']})", "",
                  "| check | result |", "|---|---|"]
        lines += [f"| {c['check']} | {'ok' if c['ok'] else 'FAILED: ' + c.get('error', '')[:200]} |"
                  for c in res.get("checks", [])]
        lines += ["", f"Benchmarks: `{res.get('bench_rc')}` (exit status), tables in `bench/results.md`.",
                  f"Elapsed: {res.get('elapsed_s', 0):.0f} s", ""]
    (out / "gpu_check.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
