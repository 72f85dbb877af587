"""Shared pieces of the ready-made pipelines: device choice, the mixing step, sharding maths.

Everything DALI is imported lazily so ``import dali_mixup.pipelines`` stays cheap.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

#: The mixings of the ready-made pipelines, named as the operators (``fn.k_mixup`` ...).
MIXINGS = ("none", "mixup", "k_mixup", "zeta_mixup", "cutmix", "mix")
#: Earlier spellings, still accepted (scripts, saved results configs) and mapped to MIXINGS.
MIXING_ALIASES = {"kmixup": "k_mixup", "zeta": "zeta_mixup", "mixup_cutmix": "mix"}
DEVICES = ("cpu", "gpu")


def canonical_mixing(name: str) -> str:
    """The :data:`MIXINGS` name of ``name``, which may be an alias (``"kmixup"`` -> ``"k_mixup"``)."""
    name = MIXING_ALIASES.get(name, name)
    if name not in MIXINGS:
        raise ValueError(f"mixing must be one of {', '.join(MIXINGS)} "
                         f"(or an alias: {', '.join(MIXING_ALIASES)}), got {name!r}")
    return name


def mixing_arg(name: str) -> str:
    """``argparse`` type of ``--mixing``: an alias becomes its canonical name."""
    import argparse

    try:
        return canonical_mixing(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class DeviceError(RuntimeError):
    """``device="gpu"`` was asked for on a machine where DALI or torch sees no CUDA GPU."""


def _dali_gpu_count() -> int:
    try:
        from nvidia.dali import backend
        return int(backend.GetCUDADeviceCount())
    except Exception:  # no driver, no libcuda: no GPU for DALI
        return 0


def _torch_has_cuda() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def resolve_device(device: str, local_rank: int = 0):
    """Return the DALI ``device_id`` for ``device`` (``None`` for CPU pipelines).

    ``"gpu"`` fails here, before any pipeline is built, when no CUDA GPU is visible to DALI or
    torch, instead of failing later inside the decoder with an opaque CUDA error. With a GPU,
    CuPy (the GPU python operators) then allocates from PyTorch's caching allocator
    (:func:`dali_mixup.gpu.share_torch_allocator`).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return None
    dali_n = _dali_gpu_count()
    torch_ok = _torch_has_cuda()
    if dali_n < 1 or not torch_ok:
        raise DeviceError(
            "device='gpu' needs a CUDA GPU, but none is usable here "
            f"(DALI sees {dali_n} CUDA device(s), torch.cuda.is_available() = {torch_ok}). "
            "Run with --device cpu (same code, CPU pipelines), or install a CUDA build of "
            "torch and run on a machine with an NVIDIA GPU.")
    from dali_mixup.gpu import share_torch_allocator

    share_torch_allocator()
    return local_rank % dali_n


@dataclass(frozen=True)
class MixConfig:
    """Which mixing a training pipeline applies, with its parameters.

    Attributes:
        mixing: ``"none"`` (ERM, one-hot labels), ``"mixup"``, ``"k_mixup"``, ``"zeta_mixup"``,
            ``"cutmix"`` or ``"mix"`` (timm-style: per batch mixup or CutMix, each with
            probability 1/2): the operator of that name. The aliases of
            :data:`MIXING_ALIASES` are accepted and stored as the canonical name.
        alpha: lam ~ Beta(alpha, alpha) for mixup / k-mixup / CutMix.
        k: k-mixup block size (clamped by the operator to what the batch allows).
        gamma: zeta-mixup exponent, or a ``(low, high)`` range sampled per batch.
        T: zeta-mixup samples per mix (None: the whole batch).
        cost: k-mixup cost, a name of :data:`dali_mixup.core.cost.COSTS`.
        label_smoothing: applied to one-hot labels (also for ``"none"``).
    """

    mixing: str = "none"
    alpha: float = 1.0
    k: int = 16
    gamma: float | tuple = 2.8
    T: int | None = None
    cost: str = "sqeuclidean"
    label_smoothing: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "mixing", canonical_mixing(self.mixing))


def apply_mixing(images, labels, mix: MixConfig, num_classes: int, *, seed=None,
                 return_info: bool = False, layout: str | None = None):
    """Mix a batch inside a pipeline; returns ``(images, soft_labels[, info...])``.

    ``labels`` are class ids from a reader / external source. Soft labels are float32 ``[C]``
    per sample for every mixing (one-hot, optionally smoothed, for ``"none"``), so the
    training loop is the same for all of them. With ``return_info`` a third output is the
    partner index (k-mixup / mixup, int32) or the zeta index row, and a fourth the lam /
    weights. ``layout``: the images' sample layout when the caller knows it (the ready-made
    pipelines always do: ``"CHW"``), so the mixed images carry it without a copy.
    """
    from nvidia.dali import fn, types

    import dali_mixup.fn as mfn

    m = mix.mixing
    if m == "none":
        eps = float(mix.label_smoothing)
        soft = fn.one_hot(labels, num_classes=num_classes, dtype=types.FLOAT,
                          on_value=1.0 - eps + eps / num_classes, off_value=eps / num_classes)
        soft = fn.reshape(soft, shape=[num_classes])
        if images.device == "gpu":
            soft = soft.gpu()
        return (images, soft, None, None) if return_info else (images, soft)
    if m == "mixup":
        return mfn.mixup(images, labels, alpha=mix.alpha, num_classes=num_classes,
                         label_smoothing=mix.label_smoothing, return_info=return_info, seed=seed, layout=layout)
    if m == "k_mixup":
        return mfn.k_mixup(images, labels, k=mix.k, alpha=mix.alpha, num_classes=num_classes,
                           cost=mix.cost, label_smoothing=mix.label_smoothing,
                           return_info=return_info, seed=seed, layout=layout)
    if m == "cutmix":
        return mfn.cutmix(images, labels, alpha=mix.alpha, num_classes=num_classes,
                          label_smoothing=mix.label_smoothing, return_info=return_info, seed=seed, layout=layout)
    if m == "mix":
        return mfn.mix(images, labels, mixup_alpha=mix.alpha, cutmix_alpha=mix.alpha,
                       switch_prob=0.5, num_classes=num_classes,
                       label_smoothing=mix.label_smoothing, return_info=return_info, seed=seed, layout=layout)
    return mfn.zeta_mixup(images, labels, gamma=mix.gamma, T=mix.T, num_classes=num_classes,
                          label_smoothing=mix.label_smoothing, return_info=return_info, seed=seed, layout=layout)


class RankSeeds(NamedTuple):
    """The two seeds of one rank's training pipeline (see :func:`rank_seeds`)."""

    pipeline_seed: int  #: DALI pipeline ``seed``: augmentation and mixing draws (per rank)
    reader_seed: int    #: the reader's shuffle ``seed`` (the same on every rank)


#: the step between the pipeline seeds of consecutive ranks (a prime, so that runs whose seeds
#: differ by a small number do not give one rank another run's draws)
RANK_SEED_STRIDE = 7919


def rank_seeds(seed: int, rank: int) -> RankSeeds:
    """Seeds of rank ``rank``'s pipeline in a data-parallel run seeded with ``seed``.

    Returns ``(pipeline_seed, reader_seed)`` = ``(seed + 7919 * rank, seed)``:

    * ``reader_seed`` is **shared**: every rank's reader shuffles the whole dataset with it and
      keeps its own shard of the permutation, so the shards stay disjoint and cover the data
      in every epoch (``shuffle_after_epoch``). Different reader seeds per rank would give
      overlapping shards from the second epoch on.
    * ``pipeline_seed`` **differs per rank**: the random crops, flips and the mixing draws
      (lam, partners, zeta weights) are drawn from it, so ranks draw independently. One
      pipeline seed on every rank would give every rank the same lam and partner sequence.

    ::

        pipeline_seed, reader_seed = rank_seeds(seed, rank)
        pipe, names = imagefolder_pipeline(folder, batch_size=128, shard_id=rank,
                                           num_shards=world, reader_seed=reader_seed,
                                           seed=pipeline_seed, mixing="k_mixup")

    The ready-made pipelines derive their pipeline seed this way from ``reader_seed`` and
    ``shard_id`` when no ``seed`` is given (validation pipelines add 1).
    """
    for name, v in (("seed", seed), ("rank", rank)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"rank_seeds: {name} must be an int, got {type(v).__name__} {v!r}")
    if rank < 0:
        raise ValueError(f"rank_seeds: rank must be >= 0, got {rank}")
    if seed < 0:
        raise ValueError(f"rank_seeds: seed must be >= 0, got {seed}")
    return RankSeeds(int(seed) + RANK_SEED_STRIDE * int(rank), int(seed))


def shard_bounds(n: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """``[begin, end)`` of shard ``shard_id``: the split DALI's readers use."""
    return (n * shard_id) // num_shards, (n * (shard_id + 1)) // num_shards


def steps_per_epoch(n: int, batch_size: int, num_shards: int, policy: str) -> int:
    """Batches every rank gets per epoch under a last-batch policy.

    Shards differ by at most one sample; under ``"drop"`` every rank takes the number of full
    batches of the *smallest* shard, so all ranks step together in data-parallel training.
    """
    smallest = n // num_shards
    largest = -(-n // num_shards)
    if policy == "drop":
        return smallest // batch_size
    return -(-largest // batch_size)
