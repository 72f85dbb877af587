"""Array-level time per batch: each in-loop peer on a torch batch (CPU or CUDA) and dali-mixup's
array layer on the same memory (NumPy or CuPy views of it, what its DALI operators mix), with the
blend's memory floor and a measured copy of the batch. The array layer on the torch CPU tensors
themselves is one more row."""
from __future__ import annotations

import numpy as np


def suite_arrays(device: str, timer, *, batch: int, size: int, bandwidth_GBps: float,
                 num_classes: int = 10) -> dict:
    import torch

    import dali_mixup as dm

    from . import peers as P

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    g = torch.Generator().manual_seed(size)
    x0 = torch.rand((batch, 3, size, size), generator=g).to(dev)
    y = (torch.arange(batch) % num_classes).to(dev)
    x = x0.clone()  # the in-place peers (timm) mix this one; values stay in [0, 1]
    rng = np.random.default_rng(size)
    fns = {}
    rows_meta = {}

    def add(name, label, source, f):
        fns[name] = f
        rows_meta[name] = (label, source)

    for peer in P.in_loop_peers(num_classes, k=16) + [P.torchvision_cutmix(num_classes)] + \
            [p for p in (P.kornia_cutmix(),) if p is not None]:
        add(peer.name, peer.label, peer.source, (lambda p: lambda: p(x, y))(peer))
    # the array layer on what its python operators hand it: NumPy views of the same batch on CPU
    if device == "gpu":  # CuPy views of the CUDA tensors, what the GPU operators mix with
        import cupy

        xa, ya = cupy.asarray(x0), cupy.asarray(y)
    else:
        xa, ya = x0.numpy(), y.numpy()
    add("dm.mixup", "dali_mixup.mixup", "dali-mixup", lambda: dm.mixup(xa, ya, num_classes=num_classes, rng=rng))
    add("dm.k_mixup", "dali_mixup.k_mixup(k=16)", "dali-mixup",
        lambda: dm.k_mixup(xa, ya, k=16, num_classes=num_classes, rng=rng))
    add("dm.zeta_mixup", "dali_mixup.zeta_mixup", "dali-mixup",
        lambda: dm.zeta_mixup(xa, ya, num_classes=num_classes, rng=rng))
    add("dm.cutmix", "dali_mixup.cutmix", "dali-mixup", lambda: dm.cutmix(xa, ya, num_classes=num_classes, rng=rng))
    if device != "gpu":  # the same call on the torch CPU tensors (the array layer's torch route)
        add("dm.mixup.torch", "dali_mixup.mixup on torch CPU tensors", "dali-mixup",
            lambda: dm.mixup(x0, y, num_classes=num_classes, rng=rng))
    add("copy", "copy of the batch (x.clone())", "floor", lambda: x0.clone())
    t = timer(fns, budget=4.0)
    nbytes = x0.numel() * x0.element_size()
    mem = 3 * nbytes / (bandwidth_GBps * 1e9)
    rows = [{"name": n, "label": rows_meta[n][0], "source": rows_meta[n][1], "time_s": s,
             "over_blend_memory_floor": s / mem} for n, s in t.items()]
    return {"B": batch, "image_size": size, "shape": list(x0.shape), "blend_memory_floor_s": mem,
            "rows": rows}
