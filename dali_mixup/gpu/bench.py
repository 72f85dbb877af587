"""The GPU check's short benchmark (``dali-mixup gpu-check``, step 5).

Time per batch through ``DALIGenericIterator`` at 32x32 / B=256 and 224x224 / B=64 for no
mixing, ``fn.mixup``, ``fn.k_mixup``, ``fn.zeta_mixup``, ``fn.cutmix``, DALI-native mixup
(``batch_permutation`` + ``permute_batch`` + arithmetic) and mixup in the training loop on the
GPU tensors, with torch's peak GPU memory per variant (CuPy's allocations included: they go
through torch's caching allocator), and images per second of a small CNN trained from the
ready-made GPU pipeline. All variants read the same host batches, so the host-to-device copy
is in every row. Not measured on a GPU where this was written.
"""
from __future__ import annotations

import gc
import time

import numpy as np


def _bench_pipeline(variant: str, hw: int, b: int, seed: int = 3, device: str = "gpu"):
    """The pipeline of one benchmark variant (``device="cpu"``: the same graph on the CPU, which
    the tests run)."""
    from nvidia.dali import fn, pipeline_def, types

    from dali_mixup.pipelines.common import MixConfig, apply_mixing

    rng = np.random.default_rng(0)
    host = [rng.integers(0, 256, size=(hw, hw, 3), dtype=np.uint8) for _ in range(b)]
    labels = [np.array([i % 10], np.int32) for i in range(b)]

    def on(node):
        return node.gpu() if device == "gpu" else node

    @pipeline_def(batch_size=b, num_threads=4, device_id=0 if device == "gpu" else None, seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: host, batch=True, layout="HWC")
        y = fn.external_source(source=lambda: labels, batch=True, dtype=types.INT32)
        x = fn.crop_mirror_normalize(on(x), mean=[127.5] * 3, std=[63.75] * 3, dtype=types.FLOAT,
                                     output_layout="CHW")
        if variant == "DALI-native mixup":
            lam = fn.random.beta(alpha=1.0, beta=1.0)
            perm = fn.batch_permutation()
            onehot = fn.one_hot(y, num_classes=10, dtype=types.FLOAT)
            mixed = x * on(lam) + fn.permute_batch(x, indices=perm) * on(1.0 - lam)
            soft = onehot * lam + fn.permute_batch(onehot, indices=perm) * (1.0 - lam)
            return mixed, on(soft)
        mixing = {"none": "none", "in-loop mixup (torch)": "none"}.get(variant, variant.replace("fn.", ""))
        return apply_mixing(x, y, MixConfig(mixing=mixing, k=16), 10, layout="CHW")

    p = pipe()
    return p


def _sync(device: str) -> None:
    import torch

    if device == "gpu":
        torch.cuda.synchronize()


def time_variant(variant: str, hw: int, b: int, batches: int, device: str = "gpu") -> dict:
    import torch
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    pipe = _bench_pipeline(variant, hw, b, device=device)
    it = DALIGenericIterator(pipe, ["images", "labels"], size=-1)
    loop = variant.startswith("in-loop")
    where = "cuda" if device == "gpu" else "cpu"
    gen = torch.Generator(device=where).manual_seed(0)
    beta = torch.distributions.Beta(torch.tensor(1.0, device=where), torch.tensor(1.0, device=where))

    def step():
        d = next(it)[0]
        x, yy = d["images"], d["labels"]
        if loop:
            perm = torch.randperm(x.shape[0], device=where, generator=gen)
            lam = beta.sample()
            x = lam * x + (1 - lam) * x[perm]
            yy = lam * yy + (1 - lam) * yy[perm]
        return x, yy

    for _ in range(3):
        step()
    _sync(device)
    if device == "gpu":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    _sync(device)
    ms = (time.perf_counter() - t0) / batches * 1e3
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "gpu" else float("nan")
    it = pipe = None  # the pipeline goes before the next variant's
    gc.collect()
    return {"variant": variant, "size": f"{hw}x{hw}", "batch": b, "ms_per_batch": round(ms, 3),
            "torch_peak_mib": round(peak, 1)}


VARIANTS = ("none", "fn.mixup", "fn.k_mixup", "fn.zeta_mixup", "fn.cutmix", "DALI-native mixup",
            "in-loop mixup (torch)")


def benchmark(quick: bool) -> list:
    rows = []
    for hw, b in ((32, 256), (224, 64)):
        for v in VARIANTS:
            try:
                rows.append(time_variant(v, hw, b, batches=10 if quick else 40))
            except Exception as e:  # noqa: BLE001 - recorded with its reason
                rows.append({"variant": v, "size": f"{hw}x{hw}", "batch": b, "error": f"{type(e).__name__}: {e}"[:500]})
            print(f"  bench {rows[-1]}", flush=True)
    return rows


def training_throughput(quick: bool, device: str = "gpu", n: int = 4096, batch_size: int = 256) -> list:
    """Images per second of a small CNN trained on 32x32 batches of the ready-made GPU pipeline
    (``device="cpu"``: the same on the CPU, which the tests run on a few batches)."""
    import torch
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from dali_mixup.losses import soft_target_cross_entropy
    from dali_mixup.pipelines.arrays import arrays_pipeline

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n) % 10
    where = "cuda" if device == "gpu" else "cpu"
    rows = []
    for mixing in ("none", "k_mixup"):
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(), torch.nn.Linear(64, 10)).to(where)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        pipe, names = arrays_pipeline(x, y, batch_size=batch_size, mixing=mixing, k=16, device=device, seed=5)
        it = DALIGenericIterator(pipe, names)
        seen, t0 = 0, None
        for i, batch in enumerate(it):
            if i == 2:
                _sync(device)
                t0 = time.perf_counter()
            loss = soft_target_cross_entropy(model(batch[0]["images"]), batch[0]["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += batch[0]["images"].shape[0] if i >= 2 else 0
            if quick and i == 8:
                break
        _sync(device)
        rows.append({"mixing": mixing, "images_per_s": round(seen / (time.perf_counter() - t0), 1)})
        del it, pipe
        print(f"  train {rows[-1]}", flush=True)
    return rows
