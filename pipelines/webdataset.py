"""WebDataset tar shards -> mixed images and soft labels, read by DALI's ``fn.readers.webdataset``.

A sample is the files of one tar archive that share a name up to the first dot (WebDataset's
convention): an image (``.jpg``, ``.jpeg``, ``.png``, ...) and its class id as decimal text
(``.cls``, e.g. ``b"7"``, a trailing newline allowed)::

    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    from dali_mixup.pipelines.webdataset import open_webdataset, webdataset_pipeline
    train, val = open_webdataset("shards/train-{000..099}.tar", "shards/val-{000..009}.tar")
    pipe, names = webdataset_pipeline(train, batch_size=128, size=224, mixing="k_mixup",
                                      shard_id=rank, num_shards=world, reader_seed=1234)
    it = DALIGenericIterator(pipe, names, reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.DROP)

Shard specifications (``dali-mixup train --data SPEC``): a brace pattern
(``shards/train-{000..099}.tar``, ``{a,b}`` lists too), one ``.tar`` file, or a folder of
``.tar`` files; a folder with ``train/`` and ``val/`` (or ``valid``, ``validation``, ``test``)
subfolders of ``.tar`` files gives both splits, otherwise the validation shards are given
(``--val-data SPEC``).

Before any pipeline is built every archive is listed once (:func:`scan_shards`): a file that
is not a tar archive, a sample without an image or without a ``.cls``, a ``.cls`` that is not
a class id, and an image whose header is not one of a readable format are errors naming the
archive and the member. The listing also gives DALI its index files (written to
``$DALI_MIXUP_CACHE``, default ``~/.cache/dali-mixup``), so the reader does not list the archives
again.

Sharding: DALI's reader splits the samples of all archives (in the order given) into
``num_shards`` contiguous parts, one per rank (``shard_id``); with ``training=True`` the order
of the archives is reshuffled after every epoch with ``shuffle_after_epoch_seed=reader_seed``
(the same on every rank, so the parts stay disjoint and cover the data), and samples are
shuffled within each rank's prefetch buffer (``initial_fill``) with the pipeline seed. The
graph after the reader is the image-folder one: decode, random resized crop + flip (training)
or resize + centre crop (validation), CHW float32, then the mixing.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import tarfile
from dataclasses import dataclass

from dali_mixup.tools.imageformat import stream_problem
from dali_mixup.tools.usage import UsageError

from .common import MixConfig, apply_mixing, rank_seeds, resolve_device

#: image extensions of a sample (the first one present is read)
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm", "pgm", "pnm")
#: the validation split names looked for beside ``train/``
VAL_SPLITS = ("val", "valid", "validation", "test")
#: longest ``.cls`` accepted (bytes): up to 7 digits and a newline
CLS_BYTES = 8
_CLS = re.compile(rb"^[0-9]{1,7}\s*$")


class ShardError(UsageError):
    """A WebDataset shard specification or archive that cannot be used; the message names it."""


@dataclass(frozen=True)
class Shards:
    """Scanned WebDataset archives: paths, their DALI index files, samples per archive and
    every sample's class id (in archive order)."""

    paths: tuple
    index_paths: tuple
    counts: tuple
    labels: tuple

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1


# ----------------------------------------------------------------------------- specifications


def expand_braces(spec: str) -> list[str]:
    """Shell-style brace expansion: ``{000..012}`` (zero padding kept), ``{3..5}``, ``{a,b}``.

    >>> expand_braces("s/train-{00..02}.tar")
    ['s/train-00.tar', 's/train-01.tar', 's/train-02.tar']
    """
    m = re.search(r"\{([^{}]*)\}", spec)
    if m is None:
        return [spec]
    body, head, tail = m.group(1), spec[:m.start()], spec[m.end():]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.groups()
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        lo, hi = int(a), int(b)
        step = 1 if hi >= lo else -1
        items = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    elif "," in body:
        items = body.split(",")
    else:
        raise ShardError(f"shard pattern {spec!r}: cannot expand {{{body}}}; expected "
                         f"{{000..099}} or {{a,b}}")
    return [x for item in items for x in expand_braces(head + item + tail)]


def _tars_in(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(folder), "*.tar")))


def is_webdataset(spec) -> bool:
    """Whether ``spec`` names WebDataset shards: a brace pattern or path ending in ``.tar``, a
    folder holding ``.tar`` files and no subfolders, or a folder whose ``train/`` holds ``.tar``
    files (an image folder with a stray archive beside its class folders stays an image folder)."""
    if spec is None:
        return False
    spec = os.fspath(spec)
    if spec.endswith(".tar") or ("{" in spec and ".tar" in spec):
        return True
    if not os.path.isdir(spec):
        return False
    if _tars_in(os.path.join(spec, "train")):
        return True
    return bool(_tars_in(spec)) and not any(e.is_dir() for e in os.scandir(spec))


def resolve_shards(spec: str, arg: str = "--data") -> list[str]:
    """The archive paths of a specification (brace pattern, ``.tar`` file, folder of ``.tar``)."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        paths = _tars_in(spec)
        if not paths:
            raise ShardError(f"{arg} {spec}: no .tar files in this folder")
        return paths
    paths = expand_braces(spec)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ShardError(f"{arg} {spec}: {len(missing)} of {len(paths)} shard(s) do not exist "
                         f"(first: {missing[0]})")
    return paths


def open_webdataset(data: str, val_data: str | None = None, *, check_images: bool = True,
                    log=None) -> tuple[Shards, Shards]:
    """``(train, val)`` shards: ``data`` and ``val_data``, or ``data/train`` and
    ``data/<val split>`` when ``data`` is a folder with those subfolders. ``log`` gets a
    one-line summary."""
    tr = os.path.join(data, "train") if os.path.isdir(os.fspath(data)) else None
    if val_data is None:
        splits = [s for s in VAL_SPLITS if tr and _tars_in(os.path.join(data, s))]
        if not (tr and _tars_in(tr) and splits):
            raise ShardError(f"--data {data}: WebDataset shards need validation shards: give "
                             f"--val-data SPEC, or a folder with train/ and one of "
                             f"{', '.join(VAL_SPLITS)} holding .tar files")
        data, val_data = tr, os.path.join(data, splits[0])
    train = scan_shards(resolve_shards(data, "--data"), check_images=check_images)
    val = scan_shards(resolve_shards(val_data, "--val-data"), check_images=check_images)
    if log is not None:
        log(f"data: WebDataset, train {len(train)} samples in {len(train.paths)} shard(s), val "
            f"{len(val)} samples in {len(val.paths)} shard(s), "
            f"{max(train.num_classes, val.num_classes)} classes (class ids 0..)")
    return train, val


# ----------------------------------------------------------------------------- scanning


def _index_path(path: str) -> str:
    from dali_mixup.tools.filecheck import cache_dir

    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    folder = os.path.join(cache_dir(), "wds-index")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, key.hexdigest()[:20] + ".idx")


def scan_archive(path: str, *, check_images: bool = True):
    """``(labels, index_lines)`` of one archive; every problem named (:class:`ShardError`)."""
    samples: dict[str, dict] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                base = os.path.basename(m.name)
                if base.startswith(".") or "." not in base:
                    continue
                dot = m.name.find(".", m.name.rfind("/") + 1)
                key, ext = m.name[:dot], m.name[dot + 1:]
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                samples[key][ext] = m
            labels, lines = [], []
            for key in order:
                parts = samples[key]
                img = next((e for e in IMAGE_EXTS if e in parts), None)
                if img is None:
                    raise ShardError(f"WebDataset shard {path}: sample {key!r} has no image "
                                     f"(.{', .'.join(IMAGE_EXTS)}); it has {sorted(parts)}")
                if "cls" not in parts:
                    raise ShardError(f"WebDataset shard {path}: sample {key!r} has no .cls "
                                     f"(its class id); it has {sorted(parts)}")
                raw = tar.extractfile(parts["cls"]).read(CLS_BYTES + 1)
                if len(raw) > CLS_BYTES or not _CLS.match(raw):
                    raise ShardError(f"WebDataset shard {path}: {key}.cls holds {raw[:20]!r}; "
                                     f"expected a class id as decimal text, e.g. b'7'")
                labels.append(int(raw))
                if check_images:
                    problem = stream_problem(tar.extractfile(parts[img]), parts[img].size)
                    if problem:
                        raise ShardError(f"WebDataset shard {path}: {key}.{img}: {problem}")
                lines.append(" ".join(f"{e} {parts[e].offset_data} {parts[e].size} {parts[e].name}"
                                      for e in parts))
    except (tarfile.TarError, EOFError) as e:
        raise ShardError(f"WebDataset shard {path}: not a readable tar archive ({e})") from None
    except OSError as e:
        raise ShardError(f"WebDataset shard {path}: cannot be read ({e.strerror or e})") from None
    if not labels:
        raise ShardError(f"WebDataset shard {path}: no samples (image + .cls) in this archive")
    return labels, lines


def scan_shards(paths, *, check_images: bool = True) -> Shards:
    """List every archive (:func:`scan_archive`) and write its DALI index file."""
    labels, counts, index = [], [], []
    for p in paths:
        lab, lines = scan_archive(p, check_images=check_images)
        idx = _index_path(p)
        with open(idx + ".tmp", "w") as f:
            f.write(f"v1.2 {len(lines)}\n" + "\n".join(lines) + "\n")
        os.replace(idx + ".tmp", idx)
        labels += lab
        counts.append(len(lab))
        index.append(idx)
    return Shards(tuple(paths), tuple(index), tuple(counts), tuple(labels))


# ----------------------------------------------------------------------------- the pipeline


def _class_ids(raw):
    """DALI graph: ``.cls`` bytes (decimal text, ``<= CLS_BYTES``) -> int32 class id ``[1]``.

    The text is padded with zeros to ``CLS_BYTES``; its ``L`` digits ``d_i`` weighted by
    ``10^(CLS_BYTES - 1 - i)`` sum to ``id * 10^(CLS_BYTES - L)``, divided back exactly.
    """
    import numpy as np
    from nvidia.dali import fn, types

    w = CLS_BYTES
    c = fn.cast(fn.pad(raw, shape=[w], fill_value=0), dtype=types.INT32)
    digit = fn.cast((c >= 48) & (c <= 57), dtype=types.INT32)
    weights = types.Constant(np.array([10 ** (w - 1 - i) for i in range(w)], np.int32))
    scaled = fn.reductions.sum((c - 48) * digit * weights)
    shift = fn.lookup_table(w - fn.reductions.sum(digit), keys=list(range(w + 1)),
                            values=[float(10 ** k) for k in range(w + 1)], dtype=types.INT32)
    return fn.reshape(scaled // shift, shape=[1])


def webdataset_pipeline(shards: Shards, *, batch_size: int, size: int = 224,
                        training: bool = True, num_classes: int | None = None,
                        mixing: str = "none", alpha: float = 1.0, k: int = 16, gamma=2.8,
                        T: int | None = None, cost: str = "sqeuclidean",
                        label_smoothing: float = 0.0, device: str = "cpu", shard_id: int = 0,
                        num_shards: int = 1, reader_seed: int = 1234,
                        pad_last_batch: bool = True, seed: int | None = None,
                        num_threads: int = 2, gray: bool = False,
                        crop_scale: tuple = (0.08, 1.0), flip: bool = True, mean=None, std=None,
                        local_rank: int = 0, initial_fill: int = 1024,
                        enable_checkpointing: bool = False, checkpoint: bytes | None = None):
    """Build the training or validation pipeline of WebDataset shards.

    Arguments as for :func:`dali_mixup.pipelines.imagefolder.imagefolder_pipeline` (``source``
    is a :class:`Shards` from :func:`open_webdataset` / :func:`scan_shards`), plus
    ``num_classes`` (default: the largest class id + 1) and ``initial_fill`` (the reader's
    shuffle buffer, per rank). ``reader_seed`` orders the archives each epoch and must be the
    same on every rank; ``seed`` (augmentation and mixing) defaults to
    ``rank_seeds(reader_seed, shard_id).pipeline_seed`` (+1 for validation).

    Returns ``(pipeline, ["images", "labels"])``; the reader is named ``"Reader"``.
    """
    from nvidia.dali import fn, pipeline_def

    from .imagefolder import MEAN_RGB, STD_RGB, decode_and_augment

    if not (0 <= shard_id < num_shards):
        raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
    device_id = resolve_device(device, local_rank)
    num_classes = shards.num_classes if num_classes is None else int(num_classes)
    mix = MixConfig(mixing=mixing if training else "none", alpha=alpha, k=k, gamma=gamma, T=T,
                    cost=cost, label_smoothing=label_smoothing)
    mean = list(mean if mean is not None else ((127.5,) if gray else MEAN_RGB))
    std = list(std if std is not None else ((127.5,) if gray else STD_RGB))
    if seed is None:
        seed = rank_seeds(reader_seed, shard_id).pipeline_seed + (0 if training else 1)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                  enable_checkpointing=enable_checkpointing, checkpoint=checkpoint)
    def graph():
        shuffle = dict(random_shuffle=True, initial_fill=initial_fill, shuffle_after_epoch=True,
                       shuffle_after_epoch_seed=reader_seed) if training else {}
        jpegs, raw = fn.readers.webdataset(
            paths=list(shards.paths), index_paths=list(shards.index_paths),
            ext=[";".join(IMAGE_EXTS), "cls"], missing_component_behavior="error",
            name="Reader", shard_id=shard_id, num_shards=num_shards,
            pad_last_batch=pad_last_batch, **shuffle)
        labels = _class_ids(raw)
        images = decode_and_augment(jpegs, training=training, size=size, gray=gray, device=device,
                                    crop_scale=crop_scale, flip=flip, mean=mean, std=std)
        if not training:
            return images, labels
        return apply_mixing(images, labels, mix, num_classes, layout="CHW")

    return graph(), ["images", "labels"]
