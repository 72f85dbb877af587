"""``dali-mixup gpu-check``: the first command to run on a GPU machine.

    dali-mixup gpu-check [--out gpu-check] [--quick] [--no-bench]

1. **The stack**: DALI, CuPy and torch import; their CUDA builds agree with each other and
   with the driver (:mod:`dali_mixup.gpu.versions`); a GPU is usable by all three. Anything
   missing is named in one line, with what to install, and the exit status is 1.
2. **Parity**: every DALI operator's GPU graph against its CPU graph on the same host batches
   and the same seed: the same plan (partners / mixing index, lam, soft labels) and images equal
   to float32 rounding. k-mixup's matching is compared by its total cost within a tolerance,
   not partner by partner: cuBLAS and the CPU BLAS round the costs differently, so near ties
   may be broken differently.
3. **What users run**: every mixing of the ready-made GPU pipeline
   (:func:`dali_mixup.pipelines.arrays.arrays_pipeline`, ``device="gpu"``) through
   ``DALIGenericIterator``, against the CPU pipeline; with CuPy allocating through torch's
   caching allocator: the allocator hooks ran, torch's allocated memory grew and CuPy's own
   pool stayed empty.
4. **The guard**: a GPU operator made to fail must not raise inside DALI; its failure reaches
   the user as the CPU operator's error; the failed pipeline is deleted and collected, and the
   next pipeline still runs on the device (a destroyed DALI stream would stop it).
5. **A short benchmark**: time per batch through ``DALIGenericIterator`` at 32x32 / B=256 and
   224x224 / B=64 for no mixing, ``fn.mixup``, ``fn.k_mixup``, ``fn.zeta_mixup``, ``fn.cutmix``,
   DALI-native mixup (``batch_permutation`` + ``permute_batch`` + arithmetic) and mixup in the
   training loop on the GPU tensors; torch's peak GPU memory per variant; one training
   throughput row.

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out`` with the reason for every
failure; exits 0 only when every check passed. Sized for under 6 minutes on one GPU (not
measured on a GPU where this was written).
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

#: parity cases: name -> (operator of ``dali_mixup.fn``, keyword arguments)
OPERATORS = {
    "mixup": ("mixup", dict(lam_mode="sample")),
    "k_mixup": ("k_mixup", dict(k=8, lam_mode="block")),
    "k_mixup features": ("k_mixup", dict(k=4, features="self")),
    "cutmix": ("cutmix", dict(lam_mode="sample")),
    "mix k=4 layout": ("mix", dict(k=4, layout="CHW", lam_mode="sample")),
    "zeta_mixup": ("zeta_mixup", dict()),
    "zeta_mixup gather": ("zeta_mixup", dict(T=3, method="gather")),
}
#: relative tolerance on k-mixup's total matching cost, GPU against CPU
COST_RTOL = 1e-4
INSTALL = "pip install 'dali-mixup[gpu-cu12]' (CUDA 12) or 'dali-mixup[gpu-cu13]' (CUDA 13)"


class NoGPU(RuntimeError):
    """The stack cannot run the GPU path here; the message is the one-line reason."""


# ------------------------------------------------------------------------------ 1. the stack


def stack_check() -> dict:
    """Facts about DALI, CuPy, torch and the device; raises :class:`NoGPU` with one line."""
    from . import versions

    missing = []
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        missing.append("NVIDIA DALI is not installed")
    try:
        import cupy
    except ImportError as e:
        if (e.name or "").split(".")[0] == "cupy":
            missing.append("CuPy is not installed")
        else:
            missing.append(f"CuPy is installed but does not import ({e})")
        cupy = None
    try:
        import torch
    except ImportError:
        missing.append("PyTorch is not installed (install the CUDA build of torch for your driver first)")
        torch = None
    if missing:
        raise NoGPU("; ".join(missing) + f": {INSTALL}")
    found = versions.installed()
    facts = {"versions": versions.describe(found), "torch": torch.__version__, "cupy": cupy.__version__,
             "dali": nvidia.dali.__version__}
    wrong = versions.mismatch(found)
    if wrong:
        raise NoGPU(wrong)
    problems = []
    if torch.version.cuda is None:
        problems.append(f"torch {torch.__version__} is a CPU build")
    elif not torch.cuda.is_available():
        problems.append("torch.cuda.is_available() is False")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            problems.append("CuPy sees no CUDA device")
    except Exception as e:  # noqa: BLE001 - no driver / no device: named, not raised
        problems.append(f"CuPy sees no CUDA device ({type(e).__name__}: {e})")
    from nvidia.dali import backend

    try:
        dali_n = int(backend.GetCUDADeviceCount())
    except Exception:  # noqa: BLE001
        dali_n = 0
    if dali_n < 1:
        problems.append("DALI sees no CUDA device")
    if problems:
        raise NoGPU("no usable GPU: " + "; ".join(problems))
    facts["device"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return facts


# ------------------------------------------------------------------------------ helpers


def _host(t) -> np.ndarray:
    t = t.as_cpu() if hasattr(t, "as_cpu") else t
    return np.stack([np.array(t[i]) for i in range(len(t))])


def _row(name: str, fn) -> dict:
    """Run one check; a failure is recorded with its reason, never raised."""
    t0 = time.perf_counter()
    row = {"check": name, "ok": False}
    try:
        detail = fn()
        row.update(ok=True, detail=detail or "")
    except Exception as e:  # noqa: BLE001 - recorded as a failed check
        row["error"] = f"{type(e).__name__}: {e}"[:2000]
    row["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"  {'ok    ' if row['ok'] else 'FAILED'} {name}" + ("" if row["ok"] else f": {row['error'][:300]}"),
          flush=True)
    return row


def parity_pipeline(op: str, kw: dict, device: str, images: list, labels: list, seed: int = 11):
    """A pipeline feeding the same host batch to ``dali_mixup.fn.<op>`` on ``device``."""
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
        return getattr(mfn, op)(x, y, num_classes=10, return_info=True, seed=seed, **args)

    p = pipe()
    p.build()
    return p


def matching_cost(x: np.ndarray, partner: np.ndarray) -> float:
    """Total squared distance of each sample to its partner."""
    d = (x - x[partner]).reshape(len(x), -1).astype(np.float64)
    return float((d * d).sum())


def _batch(rng, b=64, shape=(3, 32, 32)):
    images = [rng.normal(size=shape).astype(np.float32) * (1 + (i % 4)) for i in range(b)]
    labels = [np.array([i % 10], np.int32) for i in range(b)]
    return images, labels


# ------------------------------------------------------------------------------ 2. parity


def parity(op: str, kw: dict, batches: int = 3, devices=("gpu", "cpu")) -> str:
    """``devices``: the two pipelines compared (the tests run ``("cpu", "cpu")`` without a GPU)."""
    images, labels = _batch(np.random.default_rng(0))
    gpu = parity_pipeline(op, kw, devices[0], images, labels)
    cpu = parity_pipeline(op, kw, devices[1], images, labels)
    x = np.stack(images)
    notes = []
    for _ in range(batches):
        g, c = [_host(t) for t in gpu.run()], [_host(t) for t in cpu.run()]
        if op == "k_mixup" and "features" not in kw:  # the same cost, maybe other near-tie partners
            cg, cc = matching_cost(x, g[2]), matching_cost(x, c[2])
            if abs(cg - cc) > COST_RTOL * cc:
                raise AssertionError(f"matching cost GPU {cg:.6g} vs CPU {cc:.6g}")
            lam = g[3].astype(np.float64).reshape(-1, 1, 1, 1)
            np.testing.assert_allclose(g[0], lam * x + (1 - lam) * x[g[2]], rtol=1e-4, atol=1e-4)
            notes.append(f"cost {cg:.6g} vs {cc:.6g}; {int((g[2] != c[2]).sum())} partners differ")
            continue
        np.testing.assert_array_equal(g[2], c[2])  # partner / index: the same plan
        for a, b in ((g[0], c[0]), (g[1], c[1]), (g[3], c[3])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    return "; ".join(notes)


# ------------------------------------------------------------------------------ 3. ready-made


def ready_made(mixing: str, batches: int = 3, devices=("gpu", "cpu")) -> str:
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from dali_mixup.pipelines.arrays import arrays_pipeline

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(512, 32, 32, 3), dtype=np.uint8)
    y = np.arange(512) % 10
    out = []
    for device in devices:
        pipe, names = arrays_pipeline(x, y, batch_size=64, mixing=mixing, k=8, device=device, seed=21)
        it = DALIGenericIterator(pipe, names)
        got = []
        for i, batch in enumerate(it):
            if i == batches:
                break
            images, soft = batch[0]["images"], batch[0]["labels"]
            if device == "gpu" and (images.device.type != "cuda" or soft.device.type != "cuda"):
                raise AssertionError(f"GPU pipeline gave tensors on {images.device} / {soft.device}")
            got.append((images.cpu().numpy(), soft.cpu().numpy()))
        out.append(got)
        del it, pipe
    if len(out[0]) != batches or len(out[1]) != batches:
        raise AssertionError(f"{len(out[0])} and {len(out[1])} batches, not {batches}")
    for (gi, gs), (ci, cs) in zip(*out):
        np.testing.assert_allclose(gs.sum(1), 1.0, rtol=1e-5)
        if mixing == "k_mixup":
            if not (np.isfinite(gi).all() and gi.shape == ci.shape):
                raise AssertionError("k_mixup GPU images not finite or of another shape")
            continue
        np.testing.assert_allclose(gs, cs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gi, ci, rtol=1e-4, atol=1e-4)
    return f"{batches} batches"


def allocator_check(before: dict) -> str:
    import cupy
    import torch

    from . import memory

    calls = memory.COUNTS["malloc"] - before["malloc"]
    grew = torch.cuda.memory_stats().get("allocated_bytes.all.allocated", 0) - before["torch"]
    pool = cupy.get_default_memory_pool()
    if calls < 1:
        raise AssertionError("CuPy never called the torch allocator hooks")
    if grew < memory.COUNTS["bytes"] - before["bytes"]:
        raise AssertionError(f"torch's allocated bytes grew by {grew}, less than the hooks asked for")
    if pool.used_bytes() or pool.total_bytes():
        raise AssertionError(f"CuPy's own pool holds {pool.total_bytes()} bytes")
    return f"{calls} CuPy allocations through torch ({(memory.COUNTS['bytes'] - before['bytes']) / 2**20:.0f} MiB)"


# ------------------------------------------------------------------------------ 4. the guard


def guard() -> str:
    import torch

    from ..dali import _device

    images, labels = _batch(np.random.default_rng(2), b=16)
    real = _device.PairApply.run

    def injected(self, a):
        raise RuntimeError("injected failure")

    _device.PairApply.run = injected
    try:
        pipe = parity_pipeline("mixup", {}, "gpu", images, labels)
        try:
            pipe.run()
            raise AssertionError("the injected failure did not reach the user")
        except Exception as e:  # noqa: BLE001 - the error a user sees
            if "the GPU operator failed: RuntimeError: injected failure" not in str(e):
                raise AssertionError(f"the error does not name the failure: {str(e)[:300]}") from e
    finally:
        _device.PairApply.run = real
    del pipe
    gc.collect()
    torch.cuda.synchronize()
    parity("mixup", {}, batches=2)  # the next pipeline still runs, and right
    torch.cuda.synchronize()
    return "error raised on the CPU; next pipeline ran"


# ------------------------------------------------------------------------------ report


def write(out: Path, res: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    lines = ["# GPU check", "", f"Date: {res['date']}", ""]
    if res.get("refused"):
        lines += [f"**No GPU check ran:** {res['refused']}", ""]
    else:
        s = res["stack"]
        lines += [f"Device: {s.get('device')}; torch {s.get('torch')}, CuPy {s.get('cupy')}, DALI {s.get('dali')}",
                  f"CUDA: {s.get('versions')}", "", "| check | result | s |", "|---|---|---|"]
        for c in res.get("checks", []):
            result = "ok" + (f" ({c['detail']})" if c.get("detail") else "") if c["ok"] else \
                "FAILED: " + c.get("error", "").replace("|", "/").replace("\n", " ")[:300]
            lines.append(f"| {c['check']} | {result} | {c.get('seconds', '')} |")
        if res.get("bench"):
            lines += ["", "Time per batch through DALIGenericIterator (torch peak GPU memory):", "",
                      "| size | B | variant | ms / batch | torch peak MiB |", "|---|---|---|---|---|"]
            for r in res["bench"]:
                lines.append(f"| {r['size']} | {r['batch']} | {r['variant']} | "
                             f"{r.get('ms_per_batch', 'FAILED: ' + r.get('error', '')[:120])} | "
                             f"{r.get('torch_peak_mib', '')} |")
        if res.get("training"):
            lines += ["", "| training (small CNN, 32x32, B=256) | images / s |", "|---|---|"]
            lines += [f"| {r['mixing']} | {r.get('images_per_s', r.get('error', ''))} |" for r in res["training"]]
        lines += ["", f"Elapsed: {res.get('elapsed_s', 0):.0f} s", ""]
    (out / "gpu_check.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dali-mixup gpu-check",
                                description="The GPU path run for real on this machine's GPU: stack, parity, "
                                            "ready-made pipelines, the guard, a short benchmark.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="gpu-check", help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--quick", action="store_true", help="fewer batches in the benchmark")
    p.add_argument("--no-bench", action="store_true", help="checks only, no benchmark")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(a.out)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    try:
        res["stack"] = stack_check()
    except NoGPU as e:
        res["refused"] = str(e)
        write(out, res)
        print(f"dali-mixup gpu-check: {e}", file=sys.stderr)
        return 1
    import torch

    from . import memory, share_torch_allocator

    share_torch_allocator()
    before = {"malloc": memory.COUNTS["malloc"], "bytes": memory.COUNTS["bytes"],
              "torch": torch.cuda.memory_stats().get("allocated_bytes.all.allocated", 0)}
    print(f"GPU check on {res['stack']['device']} ({res['stack']['versions']})", flush=True)
    checks = [_row(f"{name}: GPU == CPU", lambda op=op, kw=kw: parity(op, kw)) for name, (op, kw) in OPERATORS.items()]
    from dali_mixup.pipelines.common import MIXINGS

    checks += [_row(f"ready-made {m} pipeline through DALIGenericIterator: GPU == CPU", lambda m=m: ready_made(m))
               for m in MIXINGS if m != "none"]
    checks.append(_row("CuPy allocates through torch's caching allocator", lambda: allocator_check(before)))
    checks.append(_row("a failing GPU operator: error on the CPU, DALI's stream intact", guard))
    res["checks"] = checks
    if not a.no_bench:
        from .bench import benchmark, training_throughput

        res["bench"] = benchmark(a.quick)
        try:
            res["training"] = training_throughput(a.quick)
        except Exception as e:  # noqa: BLE001
            res["training"] = [{"mixing": "-", "error": f"{type(e).__name__}: {e}"[:500]}]
    res["elapsed_s"] = time.perf_counter() - t0
    write(out, res)
    failed = [c["check"] for c in checks if not c["ok"]] + [
        f"bench {r['variant']} {r['size']}" for r in res.get("bench", []) if "error" in r] + [
        "training" for r in res.get("training", []) if "error" in r]
    print(f"dali-mixup gpu-check: {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)}; "
          f"see {out / 'gpu_check.md'}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
