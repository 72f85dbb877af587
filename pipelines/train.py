"""Training entry point: PyTorch over ``DALIGenericIterator`` with mixed batches and soft labels.

One process::

    dali-mixup train --data DIR --mixing k_mixup --k 16 --epochs 30 --model resnet18 --size 32
    dali-mixup train --arrays digits --mixing zeta_mixup --epochs 20       # in-memory arrays

Data parallel (one process per rank, each reading a disjoint shard; gloo on CPU, nccl on GPU)::

    torchrun --standalone --nproc_per_node=2 -m dali_mixup.pipelines.train --data DIR --mixing k_mixup

``DIR`` is ``DIR/train`` + a validation split (``DIR/val``, ``valid``, ``validation`` or
``test``, or ``--val-split NAME``; all ``<class>/<image>``) or one ``<class>/<image>`` folder
split into train/validation (``--val-fraction``), read and checked by
:func:`dali_mixup.tools.layout.open_dataset` (one summary line; every image file checked before DALI
reads it, ``--skip-bad-images`` / ``--no-check-images``). Every epoch ends with a validation
pass on the unmixed validation pipeline (the ranks' shards together cover every validation
image exactly once; ``--val-every N``: every N epochs and after the last). ``--data`` may
also name WebDataset tar shards (``'shards/train-{000..099}.tar'``, a ``.tar``, a folder of
``.tar`` files; validation shards with ``--val-data``): :mod:`dali_mixup.pipelines.webdataset`.

Rank 0 writes the run folder ``OUT/NAME`` (:mod:`dali_mixup.pipelines.checkpoint`):
``config.json``, ``last.pt`` (every epoch and on Ctrl-C), ``best.pt``, ``results.json`` (config,
history, final and best accuracy, throughput) and ``curves.png``. An existing run folder is
never written over without ``--overwrite``; ``--resume PATH|auto`` continues a stopped run
bit for bit.

``--train-fraction F`` trains on a stratified random subset of the training images (the
scarce-data setting; the subset is drawn with ``--subset-seed``, default ``--seed``).
``--eval-robustness`` ends the run with :mod:`dali_mixup.pipelines.evaluate` on the validation set: NLL,
ECE (``--ece-bins``), accuracy under additive Gaussian noise (``--noise-sigmas``) and under
white-box FGSM (``--fgsm-eps``), both on the 0..255 pixel scale, stored under ``robustness``.

Last batch: training uses ``LastBatchPolicy.DROP`` with ``pad_last_batch=True`` readers (every
rank runs the same ``floor(floor(N / W) / B)`` steps, so data-parallel ranks never wait for
one another), validation ``LastBatchPolicy.PARTIAL`` (every sample exactly once).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from dali_mixup.core.cost import COSTS

from .common import MIXING_ALIASES, MIXINGS, MixConfig, mixing_arg, resolve_device, steps_per_epoch
from .webdataset import is_webdataset
from .evaluate import FGSM_EPS, NOISE_SIGMAS


@dataclass
class TrainConfig:
    data: str | None = None          # image folder (DIR/train + DIR/val, or one folder split)
    val_split: str | None = None     # name of DIR's validation split (default: val, valid, ...)
    check_images: bool = True        # check every image file before training (cached)
    skip_bad_images: bool = False    # leave out files that fail the check instead of stopping
    arrays: str | None = None        # "digits" or an .npz with x_train, y_train, x_val, y_val
    val_fraction: float = 0.2
    split_seed: int = 0
    mixing: str = "none"
    alpha: float = 1.0
    k: int = 16
    gamma: float = 2.8
    T: int | None = None
    cost: str = "sqeuclidean"
    label_smoothing: float = 0.0
    model: str = "small_cnn"
    width: int = 32                  # small_cnn channels
    size: int = 32
    gray: bool = False
    crop_scale: tuple = (0.08, 1.0)
    flip: bool = True
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    device: str = "cpu"
    dali_threads: int = 2
    torch_threads: int | None = None
    out: str = "runs"
    name: str | None = None
    progress: bool = True
    plot: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes copied into the results
    train_fraction: float = 1.0      # stratified subset of the training images (scarce data)
    subset_seed: int | None = None   # seed of that subset (default: seed)
    val_every: int = 1               # validate every N epochs (and after the last)
    eval_robustness: bool = False    # NLL, ECE, noise and FGSM accuracy after training
    noise_sigmas: tuple = NOISE_SIGMAS  # Gaussian noise std, 0..255 pixel scale
    fgsm_eps: tuple = FGSM_EPS          # FGSM step, 0..255 pixel scale
    noise_draws: int = 3             # noisy copies of each validation image per sigma
    ece_bins: int = 15
    # run folder OUT/NAME, checkpoints and resume (dali_mixup.pipelines.checkpoint)
    resume: str | None = None        # last.pt, its run folder, or "auto" (OUT/NAME's, if any)
    overwrite: bool = False          # replace the files of an existing run folder OUT/NAME
    checkpoints: bool = True         # last.pt every epoch and on Ctrl-C (the demo's many short runs: off)
    val_data: str | None = None      # validation shards when --data names WebDataset shards

    def __post_init__(self):
        # an earlier spelling (a saved results config, an old script) becomes the operator's name
        # (an unknown name is rejected by run(), before any work)
        self.mixing = MIXING_ALIASES.get(self.mixing, self.mixing)


# ----------------------------------------------------------------------------- distributed


def _dist_env():
    """(rank, world, local_rank) from torchrun's environment (1 process: 0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _init_distributed(device: str):
    import torch.distributed as dist

    rank, world, local = _dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "gpu" else "gloo")
    return rank, world, local


# ----------------------------------------------------------------------------- data


def stratified_subset(labels, fraction: float, seed: int = 0):
    """Sorted indices of a stratified random subset: ``max(1, round(n_c * fraction))`` of
    the ``n_c`` samples of every class ``c`` (all of them for ``fraction = 1``)."""
    import numpy as np

    labels = np.asarray(labels).reshape(-1)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(labels.size)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.append(rng.permutation(idx)[:max(1, int(round(idx.size * fraction)))])
    return np.sort(np.concatenate(keep))


def _load_arrays(cfg: TrainConfig):
    import numpy as np

    from .arrays import digits_split

    if cfg.arrays == "digits":
        return digits_split(cfg.val_fraction, cfg.split_seed)
    with np.load(cfg.arrays) as z:
        missing = {"x_train", "y_train", "x_val", "y_val"} - set(z.files)
        if missing:
            raise ValueError(f"{cfg.arrays}: missing arrays {sorted(missing)}")
        return z["x_train"], z["y_train"], z["x_val"], z["y_val"]


def _check_batch(batch_size: int, world: int, n_train: int, where: str):
    """Training drops the last partial batch: every rank needs one full batch of its shard."""
    if n_train // world < batch_size:
        from dali_mixup.tools.usage import UsageError

        fits = n_train // world
        raise UsageError(
            f"--batch-size {batch_size}: larger than the {n_train} training images of {where}"
            + (f" shared by {world} ranks ({fits} per rank)" if world > 1 else "")
            + f": no full batch per epoch; expected at most {fits}")


def _dali_checkpoint(dali_state: dict | None, which: str, enabled: bool = True) -> dict:
    """Pipeline arguments: checkpointing on (unless not ``enabled``), restored from
    ``dali_state[which]`` when given."""
    from .checkpoint import decode_dali

    cp = None if dali_state is None else decode_dali(dali_state[which])[0]
    return dict(enable_checkpointing=enabled or cp is not None, checkpoint=cp)


class Loaders:
    """Training and validation iterators of this rank, plus what the model needs to know."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int, local_rank: int, log=None,
                 dali_state: dict | None = None):
        import numpy as np
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        from .evaluate import pixel_scale

        subset_seed = cfg.seed if cfg.subset_seed is None else cfg.subset_seed
        mix = dict(mixing=cfg.mixing, alpha=cfg.alpha, k=cfg.k, gamma=cfg.gamma, T=cfg.T,
                   cost=cfg.cost, label_smoothing=cfg.label_smoothing)
        common = dict(batch_size=cfg.batch_size, device=cfg.device, shard_id=rank,
                      num_shards=world, reader_seed=1234 + cfg.seed,
                      num_threads=cfg.dali_threads, local_rank=local_rank)
        if (cfg.data is None) == (cfg.arrays is None):
            raise ValueError("give exactly one of --data DIR or --arrays digits|FILE.npz")
        if cfg.data is not None and is_webdataset(cfg.data):
            self._webdataset(cfg, world, log, mix, common, dali_state)
        elif cfg.data is not None:
            from .imagefolder import imagefolder_pipeline, load_imagefolders

            from .imagefolder import MEAN_RGB, STD_RGB, ImageFolder, NamedDecodeErrors

            train, val = load_imagefolders(cfg.data, cfg.val_fraction, cfg.split_seed,
                                           val_split=cfg.val_split, check_images=cfg.check_images,
                                           skip_bad_images=cfg.skip_bad_images, log=log,
                                           warn=None if log is not None else (lambda m: None))
            if cfg.train_fraction < 1.0:
                ids = stratified_subset(train.labels, cfg.train_fraction, subset_seed)
                train = ImageFolder(train.root, tuple(train.files[i] for i in ids),
                                    tuple(train.labels[i] for i in ids), train.classes)
            _check_batch(cfg.batch_size, world, len(train), train.root)
            img = dict(size=cfg.size, gray=cfg.gray)
            tp, tnames = imagefolder_pipeline(train, training=True, crop_scale=cfg.crop_scale,
                                              flip=cfg.flip, **img, **mix, **common,
                                              **_dali_checkpoint(dali_state, "train", cfg.checkpoints))
            vp, vnames = imagefolder_pipeline(val, training=False, **img, **common,
                                              **_dali_checkpoint(dali_state, "val", cfg.checkpoints))
            # decoder errors name the file (NamedDecodeErrors)
            self.train_it = NamedDecodeErrors(lambda: DALIGenericIterator(
                tp, tnames, reader_name="Reader", last_batch_policy=LastBatchPolicy.DROP), train)
            self.val_it = NamedDecodeErrors(lambda: DALIGenericIterator(
                vp, vnames, reader_name="Reader", last_batch_policy=LastBatchPolicy.PARTIAL), val)
            self.classes = list(train.classes)
            self.n_train, self.n_val = len(train), len(val)
            self.in_channels, self.image_size = (1 if cfg.gray else 3), cfg.size
            self.steps = steps_per_epoch(len(train), cfg.batch_size, world, "drop")
            # the pipeline's normalisation (its defaults), for the robustness evaluation
            self.pixel = pixel_scale((127.5,) if cfg.gray else MEAN_RGB,
                                     (127.5,) if cfg.gray else STD_RGB)
        else:
            from .arrays import arrays_pipeline

            xt, yt, xv, yv = _load_arrays(cfg)
            if cfg.train_fraction < 1.0:
                ids = stratified_subset(yt, cfg.train_fraction, subset_seed)
                xt, yt = xt[ids], yt[ids]
            _check_batch(cfg.batch_size, world, len(yt), f"--arrays {cfg.arrays}")
            ch = xt.shape[-1] if xt.ndim == 4 else 1
            if xt.dtype == np.uint8:  # normalised with 127.5 / 127.5 by the pipeline
                self.pixel = pixel_scale((127.5,) * ch, (127.5,) * ch)
            else:  # taken as they are: the data's own range is the pixel range
                self.pixel = pixel_scale((0.0,) * ch, (1.0,) * ch,
                                         pixel_range=(float(xt.min()), float(xt.max())))
            nc = int(max(yt.max(), yv.max())) + 1
            tp, tnames = arrays_pipeline(xt, yt, training=True, num_classes=nc, **mix, **common,
                                         **_dali_checkpoint(dali_state, "train", cfg.checkpoints))
            vp, vnames = arrays_pipeline(xv, yv, training=False, num_classes=nc, **common,
                                         **_dali_checkpoint(dali_state, "val", cfg.checkpoints))
            self.train_it = DALIGenericIterator(tp, tnames)
            self.val_it = DALIGenericIterator(vp, vnames)
            self.classes = [str(c) for c in range(nc)]
            self.n_train, self.n_val = len(yt), len(yv)
            self.in_channels = xt.shape[-1] if xt.ndim == 4 else 1
            self.image_size = xt.shape[1]
            self.steps = tp.epoch_source.steps
        if self.steps < 1:
            raise ValueError(f"batch size {cfg.batch_size} x {world} rank(s) is larger than the "
                             f"{self.n_train} training samples: no full batch per epoch")

    def _webdataset(self, cfg: TrainConfig, world: int, log, mix: dict, common: dict,
                    dali_state: dict | None):
        """WebDataset tar shards (``--data SPEC``, ``--val-data SPEC``):
        :mod:`dali_mixup.pipelines.webdataset`."""
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        from .evaluate import pixel_scale
        from .imagefolder import MEAN_RGB, STD_RGB
        from .webdataset import ShardError, open_webdataset, webdataset_pipeline

        if cfg.train_fraction < 1.0:
            raise ShardError(f"--train-fraction {cfg.train_fraction:g}: not available for "
                             f"WebDataset shards (the reader reads whole archives)")
        train, val = open_webdataset(cfg.data, cfg.val_data, check_images=cfg.check_images,
                                     log=log)
        _check_batch(cfg.batch_size, world, len(train), cfg.data)
        nc = max(train.num_classes, val.num_classes)
        img = dict(size=cfg.size, gray=cfg.gray, num_classes=nc)
        tp, tnames = webdataset_pipeline(train, training=True, crop_scale=cfg.crop_scale,
                                         flip=cfg.flip, **img, **mix, **common,
                                         **_dali_checkpoint(dali_state, "train", cfg.checkpoints))
        vp, vnames = webdataset_pipeline(val, training=False, **img, **common,
                                         **_dali_checkpoint(dali_state, "val", cfg.checkpoints))
        self.train_it = DALIGenericIterator(tp, tnames, reader_name="Reader",
                                            last_batch_policy=LastBatchPolicy.DROP)
        self.val_it = DALIGenericIterator(vp, vnames, reader_name="Reader",
                                          last_batch_policy=LastBatchPolicy.PARTIAL)
        self.classes = [str(c) for c in range(nc)]
        self.n_train, self.n_val = len(train), len(val)
        self.in_channels, self.image_size = (1 if cfg.gray else 3), cfg.size
        self.steps = steps_per_epoch(len(train), cfg.batch_size, world, "drop")
        self.pixel = pixel_scale((127.5,) if cfg.gray else MEAN_RGB,
                                 (127.5,) if cfg.gray else STD_RGB)


# ----------------------------------------------------------------------------- training


class Progress:
    """Training progress: a tqdm bar on a terminal, plain lines otherwise.

    On a terminal the bar moves every step and the validation epochs print a line above it.
    Where the stream is not a terminal (CI logs, ``docker run`` without ``-t``, a pipe) no bar
    is drawn (its carriage-return redraws would flood the log): every epoch prints one line
    instead (:attr:`lines` is True).
    """

    def __init__(self, name: str, total: int, *, enabled: bool = True, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled, self.lines, self.bar = enabled, enabled and not tty, None
        if tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=name, unit="step", dynamic_ncols=True, leave=False,
                            file=self.stream)

    def step(self, **postfix):
        """One training step (the bar only)."""
        if self.bar is not None:
            self.bar.set_postfix(**postfix, refresh=False)
            self.bar.update(1)

    def line(self, text: str):
        """A line of text: above the bar on a terminal, a plain line otherwise."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.enabled:
            print(text, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return f


def evaluate(model, val_it, device, world: int):
    """Hard-label cross-entropy and accuracy over the whole validation set (all ranks)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    stats = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    with torch.no_grad():
        for batch in val_it:
            x = batch[0]["images"].to(device, non_blocking=True)
            y = batch[0]["labels"].reshape(-1).long().to(device)
            logits = model(x)
            stats[0] += F.cross_entropy(logits, y, reduction="sum").double()
            stats[1] += (logits.argmax(1) == y).sum().double()
            stats[2] += y.numel()
    val_it.reset()
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(stats)
    loss, correct, count = stats.tolist()
    return loss / max(count, 1), correct / max(count, 1), int(count)


def _sync_buffers(model, world: int) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank.

    DDP copies them from rank 0 at the start of each training forward pass, so after the last
    step of an epoch every rank still holds the statistics of its own last batch; validation
    (whose shards move between ranks from one pass to the next) and checkpoints use rank 0's.
    """
    if world > 1:
        import torch.distributed as dist

        for b in model.buffers():
            dist.broadcast(b, src=0)


def run(cfg: TrainConfig, *, log=print) -> dict:
    """Train and validate with ``cfg``; returns the results dict (rank 0 also writes files)."""
    import torch

    from dali_mixup.losses import soft_target_cross_entropy

    from .checkpoint import save_atomic, write_json_atomic
    from .models import build_model
    from .runstate import (StopRequest, TrainingStopped, gather_dali, model_weights, open_run,
                           restore_training_state, training_state)

    MixConfig(mixing=cfg.mixing)  # validates the name before any work
    if cfg.val_every < 1:
        raise ValueError(f"val_every must be >= 1, got {cfg.val_every}")
    resolve_device(cfg.device)  # a clear error now, not a CUDA error inside DALI
    rank, world, local = _init_distributed(cfg.device)
    if cfg.device == "gpu":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # one core per rank is left to DALI's threads: oversubscribed OpenMP threads make small
    # models many times slower on a few cores
    torch.set_num_threads(cfg.torch_threads or max(1, (ncpu or 1) // world - 1))
    cfg, folder, state = open_run(cfg, rank, world)  # new run folder, or the run to continue
    torch.manual_seed(cfg.seed)

    loaders = Loaders(cfg, rank, world, local, log=log if rank == 0 else None,
                      dali_state=None if state is None else state["dali"][rank])
    model = build_model(cfg.model, loaders.in_channels, len(loaders.classes),
                        loaders.image_size, cfg.width).to(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local] if cfg.device == "gpu" else None)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")
    steps = loaders.steps
    total = steps * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(total, int(round(cfg.warmup_epochs * steps))))

    name = cfg.name or cfg.mixing
    show = cfg.progress and rank == 0
    history, best = [], None
    start_epoch, start_step = 1, 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    if state is not None:  # continue where the run stopped
        restore_training_state(state, model, opt, sched)
        history, best = list(state["history"]), state["best"]
        start_epoch, start_step = state["epoch"] + 1, state["step_in_epoch"]
        loss_sum += state["loss_sum"]
        seen = state["seen"]
        if rank == 0:
            log(f"[{name}] resumed from {state['path']}: epoch {start_epoch}, step "
                f"{start_step} of {steps}")

    def save_last(done_epochs: int, step: int) -> str | None:
        """``last.pt``: the state after ``done_epochs`` epochs and ``step`` steps of the next."""
        if folder is None or not cfg.checkpoints:
            return None
        dali = gather_dali(loaders, world)  # a collective: every rank takes part
        path = os.path.join(folder, "last.pt")
        if rank == 0:
            save_atomic(training_state(epoch=done_epochs, step=step, model=model, optimizer=opt,
                                       scheduler=sched, dali=dali, cfg=cfg, history=history,
                                       best=best, loss_sum=loss_sum.item(), seen=seen,
                                       world=world, loaders=loaders), path)
        return path

    t_start = time.perf_counter()
    progress = Progress(name, total - (start_epoch - 1) * steps - start_step, enabled=show)
    t_train, t0 = 0.0, time.perf_counter()
    stop = StopRequest(world, device) if folder is not None else None
    with stop if stop is not None else contextlib.nullcontext():
        for epoch in range(start_epoch, cfg.epochs + 1):
            net.train()
            t_ep = time.perf_counter()
            first = start_step if epoch == start_epoch else 0
            for i, batch in enumerate(loaders.train_it, start=first):
                if i >= steps:  # a larger shard's extra full batch: drained, not trained on
                    continue
                x = batch[0]["images"].to(device, non_blocking=True)
                y = batch[0]["labels"].to(device, non_blocking=True)
                loss = soft_target_cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.detach().double() * x.shape[0]
                seen += x.shape[0]
                if progress.bar is not None:
                    rate = seen * world / max(t_train + time.perf_counter() - t_ep, 1e-9)
                    progress.step(epoch=f"{epoch}/{cfg.epochs}", loss=f"{loss.item():.3f}", img_s=f"{rate:.0f}")
                if stop is not None and stop.requested(i):
                    progress.close()
                    raise TrainingStopped(save_last(epoch - 1, i + 1), epoch, i + 1)
            loaders.train_it.reset()
            t_train += time.perf_counter() - t_ep
            _sync_buffers(model, world)  # every rank validates and saves rank 0's model
            if epoch % cfg.val_every and epoch != cfg.epochs:  # the next record covers this epoch too
                if progress.lines:  # this rank's running mean since the last validation
                    progress.line(f"[{name}] epoch {epoch}/{cfg.epochs}  train loss "
                                  f"{loss_sum.item() / max(seen, 1):.4f}  {seen * world / max(t_train, 1e-9):.0f} img/s")
            else:
                stats = torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64,
                                                            device=device)])
                if world > 1:
                    import torch.distributed as dist
                    dist.all_reduce(stats)
                train_loss = (stats[0] / stats[1].clamp(min=1)).item()
                val_loss, val_acc, n_val = evaluate(model, loaders.val_it, device, world)
                rec = dict(epoch=epoch, step=epoch * steps, train_loss=train_loss, val_loss=val_loss,
                           val_acc=val_acc, train_samples=int(stats[1].item()), val_samples=n_val,
                           train_time_s=t_train, epoch_time_s=time.perf_counter() - t0,
                           train_samples_per_s=stats[1].item() / max(t_train, 1e-9),
                           lr=opt.param_groups[0]["lr"])
                history.append(rec)
                loss_sum = torch.zeros((), dtype=torch.float64, device=device)
                seen, t_train, t0 = 0, 0.0, time.perf_counter()
                progress.line(f"[{name}] epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f}  "
                              f"val loss {val_loss:.4f}  val acc {val_acc:.4f}  "
                              f"{rec['train_samples_per_s']:.0f} img/s")
                if best is None or val_acc > best["val_acc"]:
                    best = dict(epoch=epoch, val_acc=val_acc)
                    if rank == 0 and folder is not None:
                        save_atomic(model_weights(model=model, cfg=cfg, loaders=loaders,
                                                  epoch=epoch, val_acc=val_acc),
                                    os.path.join(folder, "best.pt"))
            path = save_last(epoch, 0)
            if stop is not None and epoch != cfg.epochs and stop.requested():
                progress.close()
                raise TrainingStopped(path, epoch + 1, 0)
    progress.close()
    robustness = None
    if cfg.eval_robustness:
        robustness = _eval_robustness(model, loaders, cfg, device, rank, world)
    results = dict(
        name=name, config=_jsonable(asdict(cfg)), world_size=world, device=cfg.device,
        classes=loaders.classes, num_train=loaders.n_train, num_val=loaders.n_val,
        steps_per_epoch=steps, history=history,
        final_val_acc=history[-1]["val_acc"], best_val_acc=max(h["val_acc"] for h in history),
        best_epoch=best["epoch"],
        final_train_loss=history[-1]["train_loss"],
        total_time_s=time.perf_counter() - t_start,
        mean_train_samples_per_s=sum(h["train_samples"] for h in history)
        / max(sum(h["train_time_s"] for h in history), 1e-9),
        torch_threads=torch.get_num_threads(), **cfg.extra)
    if robustness is not None:
        results["robustness"] = robustness
    if rank == 0 and folder is not None:
        results.update(run_dir=folder, checkpoint_path=os.path.join(folder, "last.pt") if cfg.checkpoints else None,
                       best_path=os.path.join(folder, "best.pt"))
        results["results_path"] = write_json_atomic(results, os.path.join(folder, "results.json"))
        if cfg.plot:
            results["plot_path"] = plot_history({name: history},
                                                os.path.join(folder, "curves.png"))
    loaders = None  # the DALI pipelines go now, not with the closure above
    return results


def _eval_robustness(model, loaders, cfg: TrainConfig, device, rank: int, world: int) -> dict:
    """:func:`dali_mixup.pipelines.evaluate.evaluate_robustness` over this rank's validation shard, summed
    over all ranks, finalised."""
    import torch

    from .evaluate import all_reduce_sums, evaluate_robustness, finalize

    scale, lo, hi = loaders.pixel
    batches = ((b[0]["images"], b[0]["labels"]) for b in loaders.val_it)
    sums = evaluate_robustness(model, batches, sigmas=tuple(cfg.noise_sigmas),
                               epsilons=tuple(cfg.fgsm_eps), scale=scale, lo=lo, hi=hi,
                               n_bins=cfg.ece_bins, noise_draws=cfg.noise_draws,
                               seed=1_000_003 * cfg.seed + 7919 * rank + 17, device=device)
    loaders.val_it.reset()
    reduce = None
    if world > 1:
        import torch.distributed as dist

        def reduce(v):
            t = torch.as_tensor(v, dtype=torch.float64, device=device)
            dist.all_reduce(t)
            return t.cpu().numpy()
    out = finalize(all_reduce_sums(sums, reduce))
    out.update(noise_draws=cfg.noise_draws, ece_bins=cfg.ece_bins,
               units="sigma and eps on the 0..255 pixel scale, clipped to the pixel range")
    return out


def _jsonable(d):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def plot_history(histories: dict, path: str) -> str:
    """Learning curves (train/val loss, val accuracy per epoch) of one or more runs -> PNG."""
    from .plots import finish, pyplot

    fig, (a1, a2) = pyplot().subplots(1, 2, figsize=(10, 3.8))
    for i, (name, hist) in enumerate(histories.items()):
        ep = [h["epoch"] for h in hist]
        c = f"C{i}"
        a1.plot(ep, [h["train_loss"] for h in hist], c, ls="--", label=f"{name} train")
        a1.plot(ep, [h["val_loss"] for h in hist], c, label=f"{name} val")
        a2.plot(ep, [100 * h["val_acc"] for h in hist], c, marker="o", ms=3, label=name)
    a1.set(xlabel="epoch", ylabel="cross-entropy",
           title="loss (dashed: training batches, as mixed)")
    a2.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy")
    a1.legend(fontsize=7)
    a2.legend(fontsize=8)
    return finish(fig, path, (a1, a2))


# ----------------------------------------------------------------------------- CLI


def format_robustness(r: dict) -> str:
    """A few lines for one run's ``robustness`` results."""
    noise = "  ".join(f"{s:g}: {100 * a:.2f}%" for s, a in zip(r["sigmas"], r["noise_acc"]))
    adv = "  ".join(f"{e:g}: {100 * a:.2f}%" for e, a in zip(r["epsilons"], r["fgsm_acc"]))
    return (f"validation ({r['count']} images): acc {100 * r['acc']:.2f}%  NLL {r['nll']:.4f}  "
            f"ECE ({r['ece_bins']} bins) {100 * r['ece']:.2f}%\n"
            f"  Gaussian noise, acc by sigma (0..255 scale): {noise}\n"
            f"  FGSM, acc by eps (0..255 scale): {adv}")



#: smallest --size: the models' pooling needs a few pixels, and a random resized crop of a
#: 1-pixel image is not a picture
MIN_SIZE = 8


def build_parser(prog: str = "dali-mixup train") -> argparse.ArgumentParser:
    from dali_mixup.tools.usage import ArgumentParser, add_dataset_arguments, float_range, int_range

    p = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    d = TrainConfig()
    pos_int, nonneg_int = int_range(1), int_range(0)
    positive, nonneg = float_range(0, lo_open=True), float_range(0)
    src = p.add_argument_group("data")
    add_dataset_arguments(src, data_help="image folder: DIR/train + a validation split (DIR/val, valid, "
                          "validation or test; or --val-split), or DIR/<class>/<image> split by "
                          "--val-fraction; or WebDataset shards: 'train-{000..099}.tar', a .tar, a "
                          "folder of .tar files (see --val-data)")
    src.add_argument("--arrays", metavar="digits|FILE.npz",
                     help="in-memory arrays instead: 'digits' (scikit-learn) or an .npz with "
                     "x_train, y_train, x_val, y_val")
    src.add_argument("--val-fraction", type=float_range(0, 1, lo_open=True, hi_open=True),
                     default=d.val_fraction, help="validation share of a DIR/<class> folder "
                     "(or of the digits)")
    src.add_argument("--size", type=int_range(MIN_SIZE), default=d.size,
                     help="image size (image folders)")
    src.add_argument("--gray", action="store_true", help="decode to one channel")
    src.add_argument("--crop-scale", type=float_range(0, 1, lo_open=True), nargs=2,
                     default=list(d.crop_scale),
                     metavar=("LO", "HI"), help="random resized crop area range")
    src.add_argument("--no-flip", dest="flip", action="store_false", help="no random flip")
    src.add_argument("--train-fraction", type=float_range(0, 1, lo_open=True),
                     default=d.train_fraction,
                     help="train on a stratified random subset of this fraction of the training "
                     "images (scarce data)")
    src.add_argument("--subset-seed", type=nonneg_int, default=None,
                     help="seed of that subset (default: --seed)")
    mx = p.add_argument_group("mixing")
    mx.add_argument("--mixing", type=mixing_arg, choices=MIXINGS, default=d.mixing,
                    help="the operator that mixes (aliases: kmixup, zeta, mixup_cutmix)")
    mx.add_argument("--alpha", type=positive, default=d.alpha, help="Beta(alpha, alpha)")
    mx.add_argument("--k", type=pos_int, default=d.k, help="k-mixup block size")
    mx.add_argument("--gamma", type=positive, default=d.gamma, help="zeta-mixup exponent")
    mx.add_argument("--T", type=pos_int, default=None,
                    help="zeta-mixup samples per mix (default: the whole batch)")
    mx.add_argument("--cost", choices=tuple(COSTS), default=d.cost,
                    help="k-mixup matching cost")
    mx.add_argument("--label-smoothing", type=float_range(0, 1, hi_open=True),
                    default=d.label_smoothing, help="applied to the one-hot labels")
    tr = p.add_argument_group("training")
    tr.add_argument("--model", choices=("small_cnn", "resnet18"), default=d.model,
                    help="the classifier")
    tr.add_argument("--width", type=pos_int, default=d.width, help="small_cnn channels")
    tr.add_argument("--epochs", type=pos_int, default=d.epochs, help="training epochs")
    tr.add_argument("--batch-size", type=pos_int, default=d.batch_size, help="per rank")
    tr.add_argument("--optimizer", choices=("sgd", "adamw"), default=d.optimizer,
                    help="SGD (momentum 0.9, Nesterov) or AdamW")
    tr.add_argument("--lr", type=positive, default=d.lr,
                    help="peak learning rate (linear warm-up, then cosine decay)")
    tr.add_argument("--weight-decay", type=nonneg, default=d.weight_decay, help="L2 weight decay")
    tr.add_argument("--warmup-epochs", type=nonneg, default=d.warmup_epochs,
                    help="epochs of linear learning-rate warm-up")
    tr.add_argument("--seed", type=nonneg_int, default=d.seed,
                    help="seed of the weights, the reader's shuffle and the pipelines")
    tr.add_argument("--device", choices=("cpu", "gpu"), default=d.device,
                    help="where DALI and torch run")
    tr.add_argument("--dali-threads", type=pos_int, default=d.dali_threads,
                    help="DALI CPU threads per pipeline")
    tr.add_argument("--torch-threads", type=pos_int, default=None,
                    help="default: CPUs per rank - 1 (at least 1)")
    ev = p.add_argument_group("evaluation")
    ev.add_argument("--val-every", type=pos_int, default=d.val_every,
                    help="validate every N epochs (and after the last)")
    ev.add_argument("--eval-robustness", action="store_true",
                    help="after training: NLL, ECE, accuracy under Gaussian noise and FGSM on "
                    "the validation set")
    ev.add_argument("--noise-sigmas", type=nonneg, nargs="+", default=list(d.noise_sigmas),
                    metavar="S", help="Gaussian noise std on the 0..255 pixel scale")
    ev.add_argument("--fgsm-eps", type=nonneg, nargs="+", default=list(d.fgsm_eps),
                    metavar="E", help="FGSM step on the 0..255 pixel scale")
    ev.add_argument("--noise-draws", type=pos_int, default=d.noise_draws,
                    help="noisy copies of each validation image per sigma")
    ev.add_argument("--ece-bins", type=pos_int, default=d.ece_bins,
                    help="bins of the expected calibration error")
    out = p.add_argument_group("output")
    out.add_argument("--out", default=d.out, help="the run folder is OUT/NAME (config.json, "
                     "last.pt, best.pt, results.json, curves.png)")
    out.add_argument("--name", default=None, help="run name (default: the mixing)")
    # checkpoints and resume (dali_mixup.pipelines.checkpoint)
    out.add_argument("--resume", metavar="PATH|auto", default=None,
                     help="continue a stopped run from PATH (its last.pt or run folder), or "
                     "'auto': from OUT/NAME/last.pt when there is one; the run's own "
                     "configuration is used (--data etc. may be left out)")
    out.add_argument("--overwrite", action="store_true",
                     help="replace the files of an existing run folder OUT/NAME")
    src.add_argument("--val-data", metavar="SPEC", default=None,
                     help="validation shards when --data names WebDataset shards (a brace "
                     "pattern 'val-{000..009}.tar', a .tar file or a folder of .tar files)")
    out.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar or per-epoch lines")
    return p


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=a.data, arrays=a.arrays, val_fraction=a.val_fraction, mixing=a.mixing,
        val_split=a.val_split, check_images=a.check_images, skip_bad_images=a.skip_bad_images,
        alpha=a.alpha, k=a.k, gamma=a.gamma, T=a.T, cost=a.cost,
        label_smoothing=a.label_smoothing, model=a.model, width=a.width, size=a.size, gray=a.gray,
        crop_scale=tuple(a.crop_scale), flip=a.flip, epochs=a.epochs, batch_size=a.batch_size,
        optimizer=a.optimizer, lr=a.lr, weight_decay=a.weight_decay,
        warmup_epochs=a.warmup_epochs, seed=a.seed, device=a.device,
        dali_threads=a.dali_threads, torch_threads=a.torch_threads, out=a.out, name=a.name,
        progress=a.progress, train_fraction=a.train_fraction, subset_seed=a.subset_seed,
        val_every=a.val_every, eval_robustness=a.eval_robustness,
        noise_sigmas=tuple(a.noise_sigmas), fgsm_eps=tuple(a.fgsm_eps),
        noise_draws=a.noise_draws, ece_bins=a.ece_bins, resume=a.resume, overwrite=a.overwrite,
        val_data=a.val_data)


def main(argv: list[str] | None = None) -> int:
    from dali_mixup.tools.usage import UsageError, report

    p = build_parser()
    a = p.parse_args(argv)
    if (a.data is None) == (a.arrays is None) and not (a.resume and a.data is None):
        p.error("give exactly one of --data DIR or --arrays digits|FILE.npz, got "
                + ("both" if a.data is not None else "neither"))
    if a.crop_scale[0] > a.crop_scale[1]:
        p.error(f"argument --crop-scale: expected LO <= HI, got {a.crop_scale[0]:g} "
                f"{a.crop_scale[1]:g}")
    if a.val_split is not None and a.data is None:
        p.error("argument --val-split: needs --data DIR")
    if a.arrays is not None and a.arrays != "digits" and not os.path.isfile(a.arrays):
        p.error(f"argument --arrays: expected 'digits' or an .npz file, got {a.arrays!r} "
                f"(no such file)")
    from .checkpoint import RunError
    from .common import DeviceError
    from .runstate import TrainingStopped
    if a.data is not None and not is_webdataset(a.data):
        from dali_mixup.tools.layout import scan_layout

        try:  # a mistyped or unusable folder is named before a run folder is made (no file read)
            scan_layout(a.data, val_split=a.val_split, val_fraction=a.val_fraction)
        except UsageError as e:
            return report(p.prog, e, a.debug)
    try:
        res = run(config_from_args(a))
    except (UsageError, DeviceError, RunError) as e:
        return report(p.prog, e, a.debug)
    except TrainingStopped as e:
        if e.path and int(os.environ.get("RANK", "0")) == 0:
            print(f"{p.prog}: stopped at epoch {e.epoch}, step {e.step}; state saved to "
                  f"{e.path}; continue with: {p.prog} --resume {os.path.dirname(e.path)}",
                  file=sys.stderr)
        return 130
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{res['name']}: final val acc {100 * res['final_val_acc']:.2f}%  "
              f"best {100 * res['best_val_acc']:.2f}%  ({res['num_val']} val images, "
              f"{res['world_size']} rank(s), {res['total_time_s']:.1f} s, "
              f"{res['mean_train_samples_per_s']:.0f} train img/s)")
        if "robustness" in res:
            print(format_robustness(res["robustness"]))
        if "results_path" in res:
            print(f"results: {res['results_path']}" + (f"  curves: {res['plot_path']}"
                                                       if "plot_path" in res else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
