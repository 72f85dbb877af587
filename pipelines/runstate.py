"""The parts of :func:`dali_mixup.pipelines.train.run` that make a run stoppable and resumable.

* :func:`open_run`: the run folder of a new run (never an existing run's without
  ``overwrite``), or the checkpoint and configuration of the run to continue (``resume``);
* :class:`StopRequest`: Ctrl-C (SIGINT) or SIGTERM during training ends the current step, the
  state is saved and the run stops with :class:`TrainingStopped`;
* :func:`training_state` / :func:`restore_training_state`: what ``last.pt`` holds;
* :func:`model_weights`: what ``best.pt`` holds.

Files and formats: :mod:`dali_mixup.pipelines.checkpoint`.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading

from .checkpoint import (TRAINING_FORMAT, VERSION, WEIGHTS_FORMAT, RunError, encode_dali,
                         find_resume, load_checkpoint, prepare_run_folder, write_json_atomic)

#: configuration entries a resumed run may change: where results go and how the run is shown,
#: its threads, and the evaluation after training. Every other entry is the run's own.
RESUME_FREE = ("resume", "overwrite", "out", "progress", "plot", "torch_threads", "dali_threads",
               "extra", "eval_robustness", "noise_sigmas", "fgsm_eps", "noise_draws", "ece_bins",
               "check_images")


class TrainingStopped(KeyboardInterrupt):
    """Training stopped on Ctrl-C / SIGTERM after its state was saved to :attr:`path`."""

    def __init__(self, path: str | None, epoch: int, step: int):
        super().__init__(path)
        self.path, self.epoch, self.step = path, epoch, step


def plain(v):
    """JSON-able form of a configuration value (tuples become lists, recursively)."""
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    return v


def config_dict(cfg) -> dict:
    """A :class:`~dali_mixup.pipelines.train.TrainConfig` as plain JSON-able values."""
    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def resumed_config(cfg, saved: dict, path: str):
    """The configuration of a resumed run: ``saved`` (the run's own), with the entries of
    :data:`RESUME_FREE` taken from ``cfg``.

    An entry of ``cfg`` that is not its default and differs from the run's is an error naming
    it (a resumed run keeps its data, model, optimizer, schedule and seeds).
    """
    cls = type(cfg)
    default = cls()
    merged, conflicts = {}, []
    for f in dataclasses.fields(cls):
        mine, dflt = plain(getattr(cfg, f.name)), plain(getattr(default, f.name))
        if f.name in RESUME_FREE:
            merged[f.name] = getattr(cfg, f.name)
            continue
        theirs = saved.get(f.name, dflt)
        if mine != dflt and mine != theirs:
            conflicts.append(f"{f.name} = {mine!r} (the run has {theirs!r})")
        merged[f.name] = tuple(theirs) if isinstance(getattr(default, f.name), tuple) else theirs
    if conflicts:
        raise RunError(f"--resume {path}: a resumed run keeps its configuration, but "
                         f"{'; '.join(conflicts)}; leave these out, or start a new run "
                         f"(another --name, or --overwrite)")
    return cls(**merged)


def on_rank0(fn, rank: int, world: int):
    """``fn()`` on rank 0, its result (or its exception) sent to every rank."""
    out, err = None, None
    if rank == 0:
        try:
            out = fn()
        except Exception as e:  # raised on every rank below, so that no rank waits forever
            err = e
    if world > 1:
        import torch.distributed as dist

        box = [(out, err)]
        dist.broadcast_object_list(box, src=0)
        out, err = box[0]
    if err is not None:
        raise err
    return out


def open_run(cfg, rank: int, world: int):
    """``(cfg, folder, state)`` of the run about to start.

    ``folder``: the run folder (``OUT/NAME``; the checkpoint's folder when resuming; None
    when ``cfg.out`` is empty: nothing is written). ``state``: the training checkpoint to
    continue from, or None. A new run's folder is created (an existing run's is an error
    unless ``cfg.overwrite``) and its ``config.json`` written, on rank 0.
    """
    if cfg.resume is not None and cfg.overwrite:
        raise RunError(f"--resume {cfg.resume} and --overwrite: give one of them (continue "
                         f"the run, or replace it)")
    if not cfg.out:
        if cfg.resume is not None:
            raise RunError(f"--resume {cfg.resume} needs a run folder; --out is empty")
        return cfg, None, None
    name = cfg.name or cfg.mixing
    folder = os.path.abspath(os.path.join(cfg.out, name))

    def decide():
        path = find_resume(cfg.resume, folder) if cfg.resume is not None else None
        if path is None:
            if cfg.data is None and cfg.arrays is None:
                raise RunError(f"--resume {cfg.resume}: no checkpoint in {folder} to continue, "
                               f"and no --data / --arrays to start a new run")
            prepare_run_folder(folder, overwrite=cfg.overwrite)
            write_json_atomic(config_dict(cfg), os.path.join(folder, "config.json"))
            return None, folder
        state = load_checkpoint(path)
        return state, os.path.dirname(os.path.abspath(path))

    state, folder = on_rank0(decide, rank, world)
    if state is None:
        return cfg, folder, None
    new = resumed_config(cfg, state["config"], state["path"])
    if state["world_size"] != world:
        raise RunError(f"--resume {state['path']}: the run was trained by "
                         f"{state['world_size']} rank(s), this process group has {world}; "
                         f"resume with the same number (torchrun --nproc_per_node=...)")
    if state["epoch"] >= new.epochs:
        raise RunError(f"--resume {state['path']}: the run has finished its {new.epochs} "
                         f"epoch(s); nothing to continue (start a new run: another --name, or "
                         f"--overwrite)")
    return new, folder, state


def training_state(*, epoch: int, step: int, model, optimizer, scheduler, dali: list,
                   cfg, history: list, best: dict | None, loss_sum: float, seen: int,
                   world: int, loaders) -> dict:
    """The content of ``last.pt`` (``epoch`` epochs done, ``step`` steps of the next)."""
    import torch

    state = dict(format=TRAINING_FORMAT, version=VERSION, epoch=int(epoch),
                 step_in_epoch=int(step), model=model.state_dict(),
                 optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                 torch_rng=torch.get_rng_state(), dali=dali, config=config_dict(cfg),
                 history=list(history), best=best, loss_sum=float(loss_sum), seen=int(seen),
                 world_size=int(world), classes=list(loaders.classes),
                 in_channels=int(loaders.in_channels), image_size=int(loaders.image_size))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return state


def restore_training_state(state: dict, model, optimizer, scheduler) -> None:
    """Load ``last.pt``'s model, optimizer, scheduler and random states (in that order: the
    scheduler's constructor has already set the first learning rate, the optimizer's state
    then brings the saved one)."""
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])


def model_weights(*, model, cfg, loaders, epoch: int, val_acc: float) -> dict:
    """The content of ``best.pt``: the weights and what rebuilding the model needs."""
    return dict(format=WEIGHTS_FORMAT, version=VERSION, model=model.state_dict(),
                config=config_dict(cfg), classes=list(loaders.classes),
                in_channels=int(loaders.in_channels), image_size=int(loaders.image_size),
                epoch=int(epoch), val_acc=float(val_acc))


def gather_dali(loaders, world: int) -> list:
    """Every rank's DALI pipeline checkpoints, indexed by rank (a collective under torchrun)."""
    mine = {"train": encode_dali(loaders.train_it.checkpoints()),
            "val": encode_dali(loaders.val_it.checkpoints())}
    if world == 1:
        return [mine]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, mine)
    return out


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM during training: the current step ends, then the run stops.

    Used as a context manager around the training loop (it installs its signal handlers in
    the main thread and puts the previous ones back on exit). The first signal sets a flag
    that :meth:`requested` reports; a second Ctrl-C raises ``KeyboardInterrupt`` at once. With
    several ranks the flag is combined over all ranks (an all-reduce every ``every`` steps and
    at every epoch's end) so that every rank stops at the same step.
    """

    def __init__(self, world: int = 1, device=None, every: int = 20, stream=None):
        self.world, self.device, self.every = world, device, every
        self.flag, self._old = False, {}
        self.stream = stream if stream is not None else sys.stderr

    def _handle(self, signum, frame):
        if self.flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.flag = True
        print("\nstopping after this step, saving the training state "
              "(Ctrl-C again stops at once, without saving)", file=self.stream, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}
        return False

    def requested(self, step: int | None = None) -> bool:
        """Whether to stop now; ``step`` (0-based, within the epoch): the step just done
        (ranks compare flags only every ``every`` steps), None at an epoch's end."""
        if self.world == 1:
            return self.flag
        if step is not None and (step + 1) % self.every:
            return False
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if self.flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)
