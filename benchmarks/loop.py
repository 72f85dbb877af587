"""What a training loop sees: batches through ``DALIGenericIterator``, mixed in the loop or in
the pipeline, and training throughput with each choice.

Every pipeline is file reader + image decoder + ``crop_mirror_normalize`` (CHW float32, random
mirror) on JPEG files made for the run. The in-loop peers (:mod:`benchmarks.peers`) mix the
torch batches the no-mixing pipeline hands over; the in-pipeline variants mix inside DALI.

Timing: blocks of consecutive batches per variant, variants interleaved (the order rotates each
round), median over rounds. Before each block the process sleeps long enough for every
pipeline's prefetch to finish, and the batches prefetched meanwhile are taken untimed: a block
times only batches produced while it runs, and no pipeline works in another's block.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

NUM_CLASSES = 10
PREFETCH = 2  # DALI's default prefetch_queue_depth

#: in-pipeline variants, in table order; the first three are the baseline and the two floors
NO_MIXING = "no mixing"
PY_FLOOR = "python-operator floor (identity python_function)"
OP_FLOOR = "DALI per-operator cost (one fn.reshape)"
NATIVE = "DALI-native mixup (permute_batch + arithmetic)"
IN_PIPELINE = (NO_MIXING, PY_FLOOR, OP_FLOOR, NATIVE, "fn.mixup", "fn.k_mixup(k=16)", "fn.zeta_mixup",
               "fn.cutmix")


def make_image_files(root: Path, n: int, size: int = 32, classes: int = NUM_CLASSES) -> Path:
    """``n`` JPEG files of ``size`` x ``size`` in ``classes`` class folders (a file-reader tree)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % classes
        img = (rng.random((size, size, 3)) * 64 + c * 16).astype(np.uint8)
        Image.fromarray(img).save(root / f"class_{c:02d}" / f"img_{i:05d}.jpg", quality=90)
    return root


def identity(images, labels, draws):
    """The python-operator floor: the inputs of ``fn.mixup``'s python operator, returned as its
    two outputs (images, labels) unchanged."""
    return images, labels


def _draws_width() -> int:
    try:  # the width fn.mixup's random operator draws
        from dali_mixup.core.config import PairConfig
        from dali_mixup.dali._graph import pair_uniform_width

        return int(pair_uniform_width(PairConfig.mixup(num_classes=NUM_CLASSES)))
    except Exception:
        return 2


def build_pipeline(root: str, variant: str, *, device: str, batch: int, size: int, threads: int,
                   seed: int = 1234):
    """One pipeline: reader, decoder, crop_mirror_normalize to CHW float32, then ``variant``."""
    from nvidia.dali import fn, pipeline_def, types

    import dali_mixup.fn as mfn

    gpu = device == "gpu"
    width = _draws_width()

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=0 if gpu else None, seed=seed,
                  prefetch_queue_depth=PREFETCH)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=root, random_shuffle=True, seed=42, name="Reader")
        images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB)
        images = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="CHW", crop=(size, size),
            mean=[0.485 * 255, 0.456 * 255, 0.406 * 255], std=[0.229 * 255, 0.224 * 255, 0.225 * 255],
            mirror=fn.random.coin_flip())
        if variant == NO_MIXING:
            return images, labels
        if variant == PY_FLOOR:
            draws = fn.random.uniform(range=[0.0, 1.0], shape=[width], dtype=types.FLOAT64)
            if gpu:  # a GPU python operator takes GPU inputs only
                labels, draws = labels.gpu(), draws.gpu()
            out = fn.python_function(images, labels, draws, function=identity, batch_processing=True,
                                     num_outputs=2, device=images.device, output_layouts=["CHW", ""])
            return out[0], out[1]
        if variant == OP_FLOOR:
            return fn.reshape(images, layout="CHW"), labels
        if variant == NATIVE:
            perm = fn.batch_permutation()
            lam = fn.random.beta(alpha=1.0, beta=1.0)
            onehot = fn.one_hot(labels, num_classes=NUM_CLASSES, dtype=types.FLOAT)
            lam_img = lam.gpu() if gpu else lam
            mixed = lam_img * images + (1.0 - lam_img) * fn.permute_batch(images, indices=perm)
            soft = lam * onehot + (1.0 - lam) * fn.permute_batch(onehot, indices=perm)
            return mixed, soft
        if variant == "fn.mixup":
            return mfn.mixup(images, labels, num_classes=NUM_CLASSES, layout="CHW")
        if variant == "fn.k_mixup(k=16)":
            return mfn.k_mixup(images, labels, k=16, num_classes=NUM_CLASSES, layout="CHW")
        if variant == "fn.zeta_mixup":
            return mfn.zeta_mixup(images, labels, num_classes=NUM_CLASSES, layout="CHW")
        if variant == "fn.cutmix":
            return mfn.cutmix(images, labels, num_classes=NUM_CLASSES, layout="CHW")
        raise ValueError(f"unknown pipeline variant {variant!r}")

    p = pipe()
    p.build()
    return p


def iterator(pipe):
    """An endless ``DALIGenericIterator`` over ``pipe``, yielding ``{"images", "labels"}``."""
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    it = DALIGenericIterator([pipe], ["images", "labels"])
    return (batches[0] for batches in it)


def sync_for(device: str) -> Callable[[], None]:
    if device == "gpu":
        import torch

        return torch.cuda.synchronize
    return lambda: None


def labels_of(batch) -> "object":
    """Class ids ``[B]`` (int64) or soft labels ``[B, C]`` from an iterator batch, on the
    images' device (a CPU label node reaches the loop as a CPU tensor)."""
    y = batch["labels"]
    y = y.view(-1).long() if y.ndim <= 2 and (y.ndim == 1 or y.shape[-1] == 1) else y
    return y.to(batch["images"].device, non_blocking=True)


def run_blocks(variants: dict, *, n_per_block: int, rounds: int, sync: Callable[[], None],
               budget: float | None = None, pause: float | None = None) -> dict:
    """Seconds per batch of each variant: median over ``rounds`` interleaved blocks.

    ``variants`` maps a name to ``(iterator, step)``; ``step(batch)`` is what the loop does with
    a batch (nothing, mix it, or a training step). Several variants may share an iterator.
    ``pause``: seconds before each block (default: enough for the slowest block's prefetch).
    """
    names = list(variants)
    samples: dict = {n: [] for n in names}
    last: dict = {n: 0.05 for n in names}
    start = time.perf_counter()
    for r in range(rounds):
        rot = r % len(names)
        for name in names[rot:] + names[:rot]:
            it, step = variants[name]
            # every pipeline's in-flight batches finish in this pause, untimed
            time.sleep(pause if pause is not None else min(2.0, max(0.05, 1.5 * PREFETCH * max(last.values()))))
            for _ in range(PREFETCH):  # taken untimed: produced before this block
                next(it)
            sync()
            t0 = time.perf_counter()
            for _ in range(n_per_block):
                step(next(it))
            sync()
            t = (time.perf_counter() - t0) / n_per_block
            samples[name].append(t)
            last[name] = t
        if budget is not None and r >= 2 and time.perf_counter() - start > budget:
            break
    return {n: {"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s), "n_blocks": len(s),
                "blocks_s": s} for n, s in samples.items()}


def paired_added(t: dict, name: str, base: str) -> float:
    """Median over rounds of (``name``'s block - ``base``'s block of the same round): what
    ``name`` adds to ``base``, with the machine's slow drifts cancelled round by round."""
    return statistics.median(a - b for a, b in zip(t[name]["blocks_s"], t[base]["blocks_s"]))


def in_loop_step(peer, device: str) -> Callable:
    def step(batch):
        return peer(batch["images"], labels_of(batch))
    return step


def blend_bytes(batch: int, size: int) -> int:
    """Bytes the blend ``lam*x + (1-lam)*x[perm]`` must move: two batches read, one written."""
    return 3 * batch * 3 * size * size * 4


def suite_iterator(device: str, *, batch: int, size: int, n_images: int, n_per_block: int, rounds: int,
                   bandwidth_GBps: float, tmp: Path, budget: float | None = None) -> dict:
    """Per batch through ``DALIGenericIterator`` into the loop: the no-mixing pipeline, the two
    floors, DALI-native mixup and the dali-mixup operators in the pipeline; the peers in the
    loop on the no-mixing pipeline's batches."""
    from . import peers as P

    root = make_image_files(tmp / f"images{size}", n_images, size=size)
    threads = min(4, os.cpu_count() or 1)
    pipes = {v: build_pipeline(str(root), v, device=device, batch=batch, size=size, threads=threads)
             for v in IN_PIPELINE}
    its = {v: iterator(p) for v, p in pipes.items()}
    variants = {v: (its[v], lambda b: b) for v in IN_PIPELINE}
    loop_peers = P.in_loop_peers(NUM_CLASSES, k=16)
    for peer in loop_peers:
        variants["in loop: " + peer.label] = (its[NO_MIXING], in_loop_step(peer, device))
    sync = sync_for(device)
    for it, step in variants.values():  # warm-up: first batches allocate, peers compile
        for _ in range(2):
            step(next(it))
    t = run_blocks(variants, n_per_block=n_per_block, rounds=rounds, sync=sync, budget=budget)
    del its, pipes
    base = t[NO_MIXING]["median_s"]
    py_added = paired_added(t, PY_FLOOR, NO_MIXING)
    op_added = paired_added(t, OP_FLOOR, NO_MIXING)
    mem = blend_bytes(batch, size) / (bandwidth_GBps * 1e9)
    rows = []
    for name, v in t.items():
        added = paired_added(t, name, NO_MIXING)
        rows.append({
            "variant": name, "where": "loop" if name.startswith("in loop: ") else "pipeline",
            "source": next((p.source for p in loop_peers if "in loop: " + p.label == name), "dali-mixup"
                           if name.startswith("fn.") else "DALI"),
            "time_per_batch_s": v["median_s"], "min_s": v["min_s"], "max_s": v["max_s"],
            "n_blocks": v["n_blocks"], "blocks_s": v["blocks_s"], "over_no_mixing": v["median_s"] / base,
            "added_s": added,
            "added_over_python_floor": added / py_added if py_added > 0 else None,
            "added_over_blend_memory_floor": added / mem,
        })
    return {"B": batch, "image_size": size, "layout": "CHW", "dtype": "float32", "num_threads": threads,
            "n_images": n_images, "decoder": "mixed" if device == "gpu" else "cpu",
            "batches_per_block": n_per_block, "prefetch_queue_depth": PREFETCH,
            "floors": {"blend_memory_floor_s": mem, "python_operator_floor_added_s": py_added,
                       "dali_per_operator_added_s": op_added, "bandwidth_GBps": bandwidth_GBps},
            "rows": rows}


# ----------------------------------------------------------------------------- training


E2E_PIPELINE = (NO_MIXING, "fn.mixup", "fn.k_mixup(k=16)", "fn.zeta_mixup")


def _model(name: str, size: int):
    from dali_mixup.pipelines.models import SmallCNN, resnet18

    if name == "small_cnn":
        return SmallCNN(3, NUM_CLASSES, width=8)
    return resnet18(3, NUM_CLASSES, small_input=False)


MODEL_LABELS = {"small_cnn": "small CNN (width 8)", "resnet18": "ResNet-18 (ImageNet stem)"}


def suite_training(device: str, *, model: str, batch: int, size: int, n_images: int, n_per_block: int,
                   rounds: int, tmp: Path, budget: float | None = None) -> dict:
    """Training throughput (images/s): one SGD step per batch on ``model``, the batch mixed in
    the loop (peers) or in the pipeline (dali-mixup), or not at all."""
    return _suite_training(device, model=model, batch=batch, size=size, n_images=n_images,
                           n_per_block=n_per_block, rounds=rounds, tmp=tmp, budget=budget,
                           variants=E2E_PIPELINE, peers=True)


def _suite_training(device: str, *, model: str, batch: int, size: int, n_images: int, n_per_block: int,
                    rounds: int, tmp: Path, budget, variants: tuple, peers: bool) -> dict:
    import torch

    from . import peers as P

    root = tmp / f"images{size}"
    if not root.exists():
        make_image_files(root, n_images, size=size)
    threads = min(4, os.cpu_count() or 1)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    pipes = {v: build_pipeline(str(root), v, device=device, batch=batch, size=size, threads=threads)
             for v in variants}
    its = {v: iterator(p) for v, p in pipes.items()}
    torch.manual_seed(0)
    init = _model(model, size).state_dict()

    def trainer(mix=None):
        m = _model(model, size).to(dev)
        m.load_state_dict(init)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

        def step(b):
            x, y = b["images"], labels_of(b)
            if mix is not None:
                x, y = mix(x, y)
            loss = P.soft_target_loss(m(x), y, NUM_CLASSES)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return step

    steps = {v: (its[v], trainer()) for v in variants}
    for peer in P.in_loop_peers(NUM_CLASSES, k=16) if peers else ():
        steps["in loop: " + peer.label] = (its[NO_MIXING], trainer(peer))
    sync = sync_for(device)
    for it, step in steps.values():
        step(next(it))
    produce = 0.0  # the slowest pipeline's time for one batch: the pause lets prefetch finish
    for it in its.values():
        time.sleep(0.1)
        for _ in range(PREFETCH):
            next(it)
        t0 = time.perf_counter()
        next(it)
        produce = max(produce, time.perf_counter() - t0)
    t = run_blocks(steps, n_per_block=n_per_block, rounds=rounds, sync=sync, budget=budget,
                   pause=min(2.0, max(0.05, 2 * PREFETCH * produce)))
    del its, pipes
    base = t[NO_MIXING]["median_s"]
    rows = [{"variant": n, "where": "loop" if n.startswith("in loop: ") else "pipeline",
             "time_per_step_s": v["median_s"], "images_per_s": batch / v["median_s"],
             "over_no_mixing": v["median_s"] / base, "added_s": paired_added(t, n, NO_MIXING),
             "n_blocks": v["n_blocks"]} for n, v in t.items()]
    return {"model": model, "model_label": MODEL_LABELS[model], "B": batch, "image_size": size,
            "torch_threads": torch.get_num_threads(), "steps_per_block": n_per_block,
            "rows": rows}
