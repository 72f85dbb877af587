"""In-memory arrays pipeline: NumPy images and labels (CIFAR, digits, ...) through ``external_source``.

::

    from dali_mixup.pipelines.arrays import arrays_pipeline
    pipe, names = arrays_pipeline(x_train, y_train, batch_size=128, mixing="k_mixup", k=16,
                                  shard_id=rank, num_shards=world)
    it = DALIGenericIterator(pipe, names)     # ends the epoch itself (StopIteration)

``images`` are ``[N, H, W, C]`` (or ``[N, H, W]``) uint8 or float arrays, ``labels`` ``[N]``
integer class ids. Every epoch the whole array is permuted with ``seed + epoch`` (the same
permutation on every rank) and cut into ``num_shards`` contiguous shards, like the file
reader's ``shuffle_after_epoch``: the shards are disjoint within an epoch and reshuffled
across epochs. Every shard has ``ceil(N / W)`` samples (the shorter ones are padded with the
first samples of the permutation, so all ranks run the same number of steps); validation
shards are exact (``dali_mixup.pipelines.common.shard_bounds``, every sample once). The last batch
of an epoch is partial (``drop_last=False``) or dropped (``drop_last=True``, the default for
training). The images are normalised to CHW float32 with ``mean`` / ``std`` on the 0..255 scale
(uint8) or taken as they are (float), then mixed as in :mod:`dali_mixup.pipelines.imagefolder`.
"""
from __future__ import annotations

import numpy as np

from .common import MixConfig, apply_mixing, rank_seeds, resolve_device, shard_bounds


class EpochShardSource:
    """Batch-mode ``external_source`` callable: this shard's batches, reshuffled per epoch."""

    def __init__(self, images, labels, batch_size, shard_id, num_shards, seed, shuffle,
                 drop_last):
        self.images, self.labels = images, labels
        self.batch_size, self.shard_id, self.num_shards = batch_size, shard_id, num_shards
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        n = len(labels)
        # training: equal shards (padded) so that every rank runs the same number of steps;
        # validation: exact shards, every sample exactly once over all ranks
        self.pad = shuffle
        lo, hi = shard_bounds(n, shard_id, num_shards)
        self.shard_size = -(-n // num_shards) if self.pad else hi - lo
        full = self.shard_size // batch_size
        self.steps = full if drop_last else -(-self.shard_size // batch_size)

    def shard_indices(self, epoch: int) -> np.ndarray:
        """Indices of this shard's samples in ``epoch``, in the order they are served."""
        n = len(self.labels)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        if not self.pad:
            lo, hi = shard_bounds(n, self.shard_id, self.num_shards)
            return order[lo:hi]
        s = self.shard_size
        padded = np.concatenate([order, order[: s * self.num_shards - n]])
        return padded[self.shard_id * s:(self.shard_id + 1) * s]

    def __call__(self, info):
        if info.iteration >= self.steps:
            raise StopIteration
        idx = self.shard_indices(info.epoch_idx)
        idx = idx[info.iteration * self.batch_size:(info.iteration + 1) * self.batch_size]
        return list(self.images[idx]), list(self.labels[idx])


def arrays_pipeline(images, labels, *, batch_size: int, training: bool = True,
                    mixing: str = "none", alpha: float = 1.0, k: int = 16, gamma=2.8,
                    T: int | None = None, cost: str = "sqeuclidean",
                    label_smoothing: float = 0.0, device: str = "cpu", shard_id: int = 0,
                    num_shards: int = 1, reader_seed: int = 1234, seed: int | None = None,
                    drop_last: bool | None = None, num_classes: int | None = None,
                    mean=None, std=None, num_threads: int = 2, local_rank: int = 0,
                    enable_checkpointing: bool = False, checkpoint: bytes | None = None):
    """Build the pipeline over in-memory arrays. Returns ``(pipeline, output_names)``.

    Arguments as for :func:`dali_mixup.pipelines.imagefolder.imagefolder_pipeline`, plus ``drop_last``
    (default: ``True`` for training, ``False`` for validation) and ``num_classes`` (default
    ``labels.max() + 1``). Validation (``training=False``) does not shuffle or mix and outputs
    int32 class ids. Iterate with ``DALIGenericIterator(pipe, names)`` (no ``reader_name``):
    the source ends each epoch itself.

    Seeds: ``reader_seed`` orders every epoch's permutation and must be the same on every
    rank; ``seed`` (augmentation and mixing draws) defaults to
    ``rank_seeds(reader_seed, shard_id).pipeline_seed`` (+1 for validation), different per
    rank (:func:`dali_mixup.pipelines.common.rank_seeds`). ``enable_checkpointing`` /
    ``checkpoint``: DALI's pipeline checkpointing (``pipe.checkpoint()``, or
    ``DALIGenericIterator.checkpoints()``, restored by passing it back as ``checkpoint``):
    the source resumes at the saved epoch and batch, the mixing at its saved random state.
    """
    from nvidia.dali import fn, pipeline_def, types

    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1).astype(np.int32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be [N, H, W(, C)] with N = len(labels) = {len(labels)}, "
                         f"got shape {images.shape}")
    if not (0 <= shard_id < num_shards):
        raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
    device_id = resolve_device(device, local_rank)
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    channels = images.shape[-1]
    if mean is None:
        mean = [127.5] * channels if images.dtype == np.uint8 else [0.0] * channels
    if std is None:
        std = [127.5] * channels if images.dtype == np.uint8 else [1.0] * channels
    mix = MixConfig(mixing=mixing if training else "none", alpha=alpha, k=k, gamma=gamma, T=T,
                    cost=cost, label_smoothing=label_smoothing)
    drop_last = training if drop_last is None else drop_last
    source = EpochShardSource(images, labels[:, None], batch_size, shard_id, num_shards,
                              reader_seed, shuffle=training, drop_last=drop_last)
    if seed is None:
        seed = rank_seeds(reader_seed, shard_id).pipeline_seed + (0 if training else 1)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                  enable_checkpointing=enable_checkpointing, checkpoint=checkpoint)
    def graph():
        x, y = fn.external_source(source=source, num_outputs=2, batch=True, batch_info=True,
                                  layout=["HWC", ""], dtype=[None, types.INT32])
        if device == "gpu":
            x = x.gpu()
        x = fn.crop_mirror_normalize(x, mean=list(mean), std=list(std), dtype=types.FLOAT,
                                     output_layout="CHW")
        if not training:
            return x, y
        return apply_mixing(x, y, mix, num_classes, layout="CHW")

    pipe = graph()
    pipe.epoch_source = source  # for tests / introspection
    return pipe, ["images", "labels"]


def digits_split(val_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes, shipped inside the
    package), as uint8 ``[N, 8, 8, 1]`` images (0..16 scaled to 0..255) and int labels, split
    into stratified train / validation parts. Returns ``(x_train, y_train, x_val, y_val)``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        val[rng.permutation(idx)[: int(round(len(idx) * val_fraction))]] = True
    return x[~val], y[~val], x[val], y[val]
