"""ImageFolder pipelines: ``root/<class>/<image>`` files -> mixed images and soft labels.

Training::

    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    from dali_mixup.pipelines.imagefolder import scan_imagefolder, imagefolder_pipeline
    folder = scan_imagefolder("data/train")
    pipe, names = imagefolder_pipeline(folder, batch_size=128, size=224, mixing="k_mixup", k=16)
    it = DALIGenericIterator(pipe, names, reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.DROP)

The graph: ``fn.readers.file`` (class subfolders become labels, sorted by name as torchvision
does) -> ``fn.decoders.image`` (``mixed`` on GPU, ``cpu`` otherwise) -> random resized crop
-> ``fn.crop_mirror_normalize`` (random flip, CHW float32) -> the chosen mixing. The
validation variant (``training=False``) resizes the shorter side, centre-crops, does not shuffle
and does not mix (labels stay int32 class ids).

Last batch: the reader is built with ``pad_last_batch=True`` by default. Each shard then ends
its epoch on its own samples (the last batch is padded by repeating the shard's last sample
instead of wrapping into the next epoch or into another shard), and ``DALIGenericIterator``
with ``reader_name="Reader"`` removes or keeps the padding according to its policy:

* ``LastBatchPolicy.PARTIAL``: ``ceil(s / B)`` batches, the last one holds ``s % B`` samples;
  every sample of the shard exactly once (use it for validation);
* ``LastBatchPolicy.DROP``: ``floor(s / B)`` full batches; the tail is dropped (training);
* ``LastBatchPolicy.FILL``: ``ceil(s / B)`` full batches; the last is filled with copies of
  the shard's last sample,

where ``s`` is this shard's size, ``floor(N * (i + 1) / W) - floor(N * i / W)`` for shard ``i``
of ``W``. With ``pad_last_batch=False`` the reader wraps around instead, so PARTIAL/DROP
epochs are no longer aligned with the shard's own samples.
"""
from __future__ import annotations

import os

from dali_mixup.tools.layout import IMAGE_EXTENSIONS, DataError, ImageFolder, open_dataset, split_stratified

from .common import MixConfig, apply_mixing, rank_seeds, resolve_device

# the extensions taken as images and the ImageFolder record: one definition, in dali_mixup.tools.layout
IMG_EXTENSIONS = IMAGE_EXTENSIONS

# ImageNet statistics on the 0..255 scale
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def scan_imagefolder(root: str, classes=None) -> ImageFolder:
    """List ``root/<class>/**/<image>`` like torchvision's ImageFolder (classes sorted by name;
    class folders without images are left out, with the other checks of
    :func:`dali_mixup.tools.layout.scan_layout`).

    ``classes`` fixes the class list (e.g. the training set's, for a validation folder).
    """
    from dali_mixup.tools.layout import _folder, _survey_split

    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise DataError(f"image folder {root} does not exist")
    per_class = _survey_split(root, [])
    if classes is None:
        classes = tuple(c for c, fs in per_class.items() if fs)
    folder = _folder(root, per_class, tuple(classes))
    if not len(folder):
        raise DataError(f"no images ({', '.join(IMG_EXTENSIONS)}) in the class folders of {root}")
    return folder


def split_imagefolder(folder: ImageFolder, val_fraction: float = 0.2, seed: int = 0):
    """Deterministic stratified train/validation split of one folder (no files are moved);
    :func:`dali_mixup.tools.layout.split_stratified`."""
    return split_stratified(folder, val_fraction, seed)


def load_imagefolders(data: str, val_fraction: float = 0.2, seed: int = 0, *,
                      val_split: str | None = None, check_images: bool = True,
                      skip_bad_images: bool = False, log=None, warn=None):
    """``(train, val)`` image folders of a dataset folder, as every command reads it:
    ``data/train`` + a validation split (``val_split``, else ``val``, ``valid``,
    ``validation`` or ``test``), or ``data/<class>`` split by ``val_fraction``
    (:func:`dali_mixup.tools.layout.open_dataset`: layout checks, then the image check of every
    file unless ``check_images=False``; ``log`` gets the one-line summary)."""
    layout = open_dataset(data, val_split=val_split, val_fraction=val_fraction, seed=seed,
                          check_images=check_images, skip_bad_images=skip_bad_images,
                          log=log, warn=warn)
    return layout.train, layout.val


class NamedDecodeErrors:
    """A ``DALIGenericIterator`` over the files of ``folder`` whose decoder errors name the
    file: a ``RuntimeError`` raised while iterating becomes a :class:`DataError` listing the
    files found bad (:func:`dali_mixup.tools.filecheck.explain_decode_error`), when any can be named.
    Everything else (``reset``, ``checkpoints``, ...) is the wrapped iterator's."""

    def __init__(self, make, folder: ImageFolder):
        """``make()`` builds the iterator (which already runs the pipeline: prefetching)."""
        self._files = folder.files
        self._it = self._named(make)

    def _named(self, call):
        try:
            return call()
        except RuntimeError as e:
            from dali_mixup.tools.filecheck import explain_decode_error

            msg = explain_decode_error(e, self._files)
            if msg is None:
                raise
            raise DataError(msg) from e

    def __iter__(self):
        return self

    def __next__(self):
        return self._named(lambda: next(self._it))

    def __getattr__(self, name):
        return getattr(self._it, name)


def _as_folder(source) -> ImageFolder:
    return source if isinstance(source, ImageFolder) else scan_imagefolder(source)


def decode_and_augment(jpegs, *, training: bool, size: int, gray: bool, device: str, crop_scale,
                       flip: bool, mean: list, std: list):
    """Inside a pipeline: decode encoded images (``"mixed"`` on the GPU), then a random resized
    crop and flip for training or a resize for validation, normalised to ``size x size`` CHW
    float. Shared by the image-folder and WebDataset pipelines."""
    from nvidia.dali import fn, types

    images = fn.decoders.image(jpegs, device="mixed" if device == "gpu" else "cpu",
                               output_type=types.GRAY if gray else types.RGB)
    if training:
        images = fn.random_resized_crop(images, size=[size, size], random_area=list(crop_scale),
                                        random_aspect_ratio=[3 / 4, 4 / 3])
        mirror = fn.random.coin_flip(probability=0.5) if flip else 0
    else:
        images = fn.resize(images, resize_shorter=size if size <= 32 else int(size * 8 / 7))
        mirror = 0
    return fn.crop_mirror_normalize(images, crop=[size, size], mirror=mirror, mean=mean, std=std,
                                    dtype=types.FLOAT, output_layout="CHW")


def imagefolder_pipeline(source, *, batch_size: int, size: int = 224, training: bool = True,
                         mixing: str = "none", alpha: float = 1.0, k: int = 16,
                         gamma=2.8, T: int | None = None, cost: str = "sqeuclidean",
                         label_smoothing: float = 0.0, device: str = "cpu",
                         shard_id: int = 0, num_shards: int = 1, reader_seed: int = 1234,
                         pad_last_batch: bool = True, seed: int | None = None,
                         num_threads: int = 2, gray: bool = False,
                         crop_scale: tuple = (0.08, 1.0), flip: bool = True,
                         mean=None, std=None, return_info: bool = False,
                         local_rank: int = 0, prefetch_queue_depth: int = 2,
                         enable_checkpointing: bool = False, checkpoint: bytes | None = None):
    """Build (not yet run) the training or validation pipeline of an image folder.

    Args:
        source: an :class:`ImageFolder` or a directory ``root/<class>/<image>``.
        batch_size: samples per batch per rank.
        size: output height and width.
        training: random resized crop + flip + mixing + shuffling; ``False`` gives the
            validation variant (resize, centre crop, no mixing, int32 labels, no shuffling).
        mixing, alpha, k, gamma, T, cost, label_smoothing: see :class:`~dali_mixup.pipelines.common.MixConfig`.
        device: ``"cpu"`` or ``"gpu"`` (decode ``mixed``, augment and mix on the GPU).
        shard_id, num_shards: this rank's shard (``RANK`` / ``WORLD_SIZE`` under torchrun).
        reader_seed: seed of the reader's shuffle; must be the same on every rank so that the
            shards stay disjoint after every reshuffle (``shuffle_after_epoch=True``).
        pad_last_batch: see the module docstring (default ``True``, the safe choice).
        seed: pipeline seed (augmentation and mixing draws); must differ per rank. Default:
            ``rank_seeds(reader_seed, shard_id).pipeline_seed`` = ``reader_seed + 7919 *
            shard_id`` (+1 for validation), see :func:`dali_mixup.pipelines.common.rank_seeds`.
        enable_checkpointing, checkpoint: DALI's pipeline checkpointing: save the state with
            ``DALIGenericIterator.checkpoints()`` (or ``pipe.checkpoint()``), restore it by
            passing it back as ``checkpoint`` (reader position and shuffle, augmentation and
            mixing draws continue where they stopped).
        gray: decode to one channel instead of RGB.
        crop_scale: ``random_area`` range of the random resized crop.
        flip: random horizontal flip in training.
        mean, std: per-channel normalisation on the 0..255 scale (default ImageNet's; 127.5
            and 127.5 per channel for ``gray``).
        return_info: training only: also output ``originals`` (the unmixed images),
            ``index`` (k-mixup/mixup: the partner, int32 scalar; zeta: int32 ``[T]``, entry 0
            the sample itself; none: the class id) and ``weight`` (lam, float32 scalar; zeta:
            the weights ``[T]``), for :mod:`dali_mixup.pipelines.preview`.

    Returns:
        ``(pipeline, output_names)``. Training outputs ``images`` (float32 ``[C, H, W]``) and
        ``labels`` (float32 soft ``[num_classes]``); validation outputs ``images`` and
        ``labels`` (int32 ``[1]``). The reader is named ``"Reader"``.
    """
    from nvidia.dali import fn, pipeline_def

    folder = _as_folder(source)
    device_id = resolve_device(device, local_rank)
    mix = MixConfig(mixing=mixing if training else "none", alpha=alpha, k=k, gamma=gamma, T=T,
                    cost=cost, label_smoothing=label_smoothing)
    num_classes = folder.num_classes
    channels = 1 if gray else 3
    if mean is None:
        mean = (127.5,) if gray else MEAN_RGB
    if std is None:
        std = (127.5,) if gray else STD_RGB
    mean, std = list(mean), list(std)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} value(s) for "
                         f"{'gray' if gray else 'RGB'} images, got {mean}, {std}")
    if not (0 <= shard_id < num_shards):
        raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
    if seed is None:
        seed = rank_seeds(reader_seed, shard_id).pipeline_seed + (0 if training else 1)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  seed=seed, prefetch_queue_depth=prefetch_queue_depth,
                  enable_checkpointing=enable_checkpointing, checkpoint=checkpoint)
    def graph():
        jpegs, labels = fn.readers.file(
            files=list(folder.files), labels=list(folder.labels), name="Reader",
            shard_id=shard_id, num_shards=num_shards, pad_last_batch=pad_last_batch,
            shuffle_after_epoch=training, seed=reader_seed)
        images = decode_and_augment(jpegs, training=training, size=size, gray=gray, device=device,
                                    crop_scale=crop_scale, flip=flip, mean=mean, std=std)
        if not training:
            return images, labels
        if return_info:
            mixed, soft, a, b = apply_mixing(images, labels, mix, num_classes, layout="CHW",
                                             return_info=True)
            if a is None:  # no mixing: identity partner, lam 1
                return mixed, soft, images, labels, labels
            return mixed, soft, images, a, b
        return apply_mixing(images, labels, mix, num_classes, layout="CHW")

    names = ["images", "labels"]
    if training and return_info:
        names += ["originals", "index", "weight"]
    return graph(), names
