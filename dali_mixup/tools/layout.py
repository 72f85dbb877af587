"""The layout of an image dataset folder, found once, the same for every command.

Two layouts are accepted (``train``, ``preview``, ``calibrate`` and ``demo --data`` all read
them through :func:`open_dataset`):

* ``DIR/<class>/...``: one folder of class folders, split into training and validation by
  ``val_fraction`` (stratified, seeded);
* ``DIR/train/<class>/...`` + ``DIR/<val>/<class>/...``: the validation split is the folder
  named by ``val_split`` or else the first of :data:`VAL_SPLITS` that exists
  (``val``, ``valid``, ``validation``, ``test``). ``DIR/train`` alone is split by
  ``val_fraction``.

Split names never become classes. Classes are the training split's class folders, sorted by
name (as torchvision's ImageFolder); images are found recursively below each class folder by
extension (:data:`IMAGE_EXTENSIONS`, what DALI's decoder reads).

Checks, each naming the folder: a missing path, a file instead of a folder, an unreadable
folder, no class folders, no images, a single class, a validation class that has no training
images are errors (:class:`DataError`); an empty class folder (left out), a class without
validation images, images outside class folders and unused folders beside the splits are
warnings (training can go on). :meth:`DataLayout.summary` is the one line printed at start.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from .usage import UsageError

__all__ = ["IMAGE_EXTENSIONS", "VAL_SPLITS", "DataError", "ImageFolder", "DataLayout",
           "check_folder", "scan_layout", "split_stratified", "open_dataset"]

#: file extensions taken as images (what DALI's ``fn.decoders.image`` decodes)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pnm", ".ppm",
                    ".pgm", ".pbm", ".jp2")
#: accepted names of the validation split beside ``DIR/train``, in order of preference
VAL_SPLITS = ("val", "valid", "validation", "test")


class DataError(UsageError):
    """A dataset folder that cannot be used as it is; the message names the folder."""


@dataclass(frozen=True)
class ImageFolder:
    """Image files of one split: absolute paths, their class ids and the class names.

    ``labels[i]`` indexes ``classes``; every split of one dataset shares the same ``classes``.
    """

    root: str
    files: tuple
    labels: tuple
    classes: tuple

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> list[int]:
        """Images per class, ``[num_classes]``."""
        n = [0] * len(self.classes)
        for c in self.labels:
            n[c] += 1
        return n


@dataclass(frozen=True)
class DataLayout:
    """A dataset folder, read: the two splits, how they were found and what was noticed."""

    root: str
    train: ImageFolder
    val: ImageFolder
    #: ``"classes"`` (``DIR/<class>``, split by ``val_fraction``), ``"train-only"``
    #: (``DIR/train``, split by ``val_fraction``) or ``"splits"`` (``DIR/train`` + ``DIR/<val>``)
    kind: str
    val_fraction: float | None = None
    warnings: tuple = field(default_factory=tuple)
    left_out: tuple = field(default_factory=tuple)  # bad files left out (path, reason)

    @property
    def classes(self) -> tuple:
        return self.train.classes

    def summary(self) -> str:
        """One line: images and classes per split, where they come from, the class names."""
        def side(name, f):
            n = sum(1 for c in f.counts() if c)
            return f"{name} {len(f)} images in {n} classes"

        if self.kind == "splits":
            where = f"{self.train.root} + {self.val.root}"
        else:
            where = f"{self.train.root}, split by --val-fraction {self.val_fraction:g}"
        names = ", ".join(self.classes[:12]) + (f", ... ({len(self.classes)})"
                                                if len(self.classes) > 12 else "")
        extra = f"; {len(self.left_out)} bad files left out" if self.left_out else ""
        return (f"data: {side('train', self.train)}, {side('val', self.val)} ({where}); "
                f"classes: {names}{extra}")

    @property
    def pool(self) -> tuple:
        """The training images before a ``val_fraction`` split (all of ``DIR/train`` or
        ``DIR``): the sample calibration reads."""
        return self.train.files + (self.val.files if self.kind != "splits" else ())


# ----------------------------------------------------------------------------- scanning


def _subdirs(path: str) -> list[str]:
    """Sorted names of the visible subfolders of ``path`` (a clear error when unreadable)."""
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if not e.name.startswith(".")
                          and e.is_dir(follow_symlinks=True))
    except OSError as e:
        raise DataError(f"cannot read folder {path}: {e.strerror or e}") from None


def _loose_images(path: str) -> int:
    with os.scandir(path) as it:
        return sum(1 for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _images_below(cdir: str) -> list[str]:
    """Image files below ``cdir`` (recursively, sorted walk; unreadable folders are errors)."""
    def fail(e: OSError):
        raise DataError(f"cannot read folder {e.filename}: {e.strerror or e}")

    out = []
    for dp, dns, fns in os.walk(cdir, onerror=fail, followlinks=True):
        dns[:] = sorted(d for d in dns if not d.startswith("."))
        out.extend(os.path.join(dp, f) for f in sorted(fns)
                   if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    return out


@dataclass
class _Survey:
    """What is on disk: split roots and their class folders' images (nothing validated)."""

    root: str
    kind: str
    train_root: str
    val_root: str | None
    train: dict          # class name -> image paths
    val: dict | None
    notes: list          # warnings found while looking


def _survey_split(root: str, notes: list) -> dict:
    classes = _subdirs(root)
    if not classes:
        n = _loose_images(root)
        hint = (f" ({n} images lie directly in it: put each class's images in a folder "
                f"{root}/<class>/)" if n else "")
        raise DataError(f"{root} has no class folders (expected {root}/<class>/<image>){hint}")
    loose = _loose_images(root)
    if loose:
        notes.append(f"{loose} image file(s) directly in {root} are in no class folder: left out")
    return {c: _images_below(os.path.join(root, c)) for c in classes}


def check_folder(data, arg: str = "--data") -> str:
    """The absolute path of ``data``, or a :class:`DataError` when it is missing or not a folder
    (the cheap first check, before any other work)."""
    if data is None or str(data) == "":
        raise DataError(f"{arg}: expected a dataset folder, got {data!r}")
    root = os.path.abspath(os.fspath(data))
    if not os.path.exists(root):
        raise DataError(f"{arg} {data}: no such folder")
    if not os.path.isdir(root):
        raise DataError(f"{arg} {data}: expected a folder (DIR/<class>/<image> or DIR/train + "
                        f"DIR/val), got a file")
    return root


def _survey(data, val_split: str | None, arg: str) -> _Survey:
    root = check_folder(data, arg)
    subs = _subdirs(root)
    notes: list = []
    if val_split is not None:
        if val_split == "train" or "/" in val_split or val_split in ("", ".", ".."):
            raise DataError(f"--val-split {val_split!r}: expected the name of the validation "
                            f"folder beside {root}/train")
        if "train" not in subs:
            raise DataError(f"--val-split {val_split}: expected a training split {root}/train "
                            f"beside it; folders there: {', '.join(subs) or 'none'}")
        if val_split not in subs:
            raise DataError(f"--val-split {val_split}: no folder {root}/{val_split}; folders "
                            f"there: {', '.join(subs)}")
    if "train" in subs:
        val = val_split or next((v for v in VAL_SPLITS if v in subs), None)
        others = [s for s in subs if s not in ("train", val)]
        if val is None and others:
            raise DataError(
                f"{root} has a train folder and {', '.join(others)} but no validation split "
                f"named {', '.join(VAL_SPLITS)}: name it with --val-split NAME (or move the "
                f"class folders of {root}/train up to split {root} by --val-fraction)")
        if others:
            notes.append(f"folder(s) {', '.join(os.path.join(root, o) for o in others)} beside "
                         f"the train and {val} splits: not used")
        tr = os.path.join(root, "train")
        train = _survey_split(tr, notes)
        if val is None:
            return _Survey(root, "train-only", tr, None, train, None, notes)
        va = os.path.join(root, val)
        return _Survey(root, "splits", tr, va, train, _survey_split(va, notes), notes)
    split_names = [v for v in VAL_SPLITS if v in subs]
    if split_names:
        raise DataError(f"{root} has a {split_names[0]} split folder but no train folder: "
                        f"expected {root}/train + {root}/{split_names[0]}, or "
                        f"{root}/<class>/<image>")
    return _Survey(root, "classes", root, None, _survey_split(root, notes), None, notes)


# ----------------------------------------------------------------------------- assembling


def split_stratified(folder: ImageFolder, val_fraction: float = 0.2, seed: int = 0):
    """Deterministic stratified train/validation split of one folder (no files are moved):
    ``round(n_c * val_fraction)`` validation images of each class ``c`` of ``n_c``, at least one
    and at most ``n_c - 1`` when ``n_c > 1`` (a class of one image stays in training)."""
    import numpy as np

    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val-fraction: expected a number in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(folder.labels, dtype=np.int64)
    val = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) > 1:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val[rng.permutation(idx)[:n_val]] = True

    def pick(mask):
        ids = np.flatnonzero(mask)
        return ImageFolder(folder.root, tuple(folder.files[i] for i in ids),
                           tuple(folder.labels[i] for i in ids), folder.classes)

    return pick(~val), pick(val)


def _folder(root: str, per_class: dict, classes: tuple) -> ImageFolder:
    files, labels = [], []
    for cid, name in enumerate(classes):
        for f in per_class.get(name, ()):
            files.append(f)
            labels.append(cid)
    return ImageFolder(root, tuple(files), tuple(labels), classes)


def _assemble(s: _Survey, val_fraction: float, seed: int, drop=frozenset(),
              left_out=()) -> DataLayout:
    notes = list(s.notes)
    train = {c: [f for f in fs if f not in drop] for c, fs in s.train.items()}
    val = None if s.val is None else {c: [f for f in fs if f not in drop] for c, fs in s.val.items()}
    empty = [c for c, fs in train.items() if not fs]
    classes = tuple(c for c, fs in train.items() if fs)
    if not classes:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of "
                        f"{s.train_root}")
    if empty:
        notes.append(f"class folder(s) with no images, left out of the classes: "
                     f"{', '.join(os.path.join(s.train_root, c) for c in empty)}")
    if len(classes) < 2:
        raise DataError(f"{s.train_root} has one class with images ({classes[0]}): a classifier "
                        f"needs at least 2 class folders with images")
    if val is not None:
        orphans = [c for c, fs in val.items() if fs and c not in classes]
        if orphans:
            raise DataError(
                "validation class folder(s) without training images (the model would have no "
                "output for them): " + ", ".join(
                    f"{os.path.join(s.val_root, c)} ({len(val[c])} images; "
                    f"{os.path.join(s.train_root, c)} {'is empty' if c in train else 'missing'})"
                    for c in orphans))
        tr = _folder(s.train_root, train, classes)
        va = _folder(s.val_root, val, classes)
        if len(va) == 0:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of "
                            f"{s.val_root}")
    else:
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"--val-fraction: expected a number in (0, 1), got {val_fraction}")
        tr, va = split_stratified(_folder(s.train_root, train, classes), val_fraction, seed)
    missing = [c for c, n in zip(classes, va.counts()) if n == 0]
    if missing:
        where = (f"in {s.val_root}" if s.val_root else
                 "after the --val-fraction split (a class needs 2 images to have one there)")
        notes.append(f"class(es) with no validation images {where}: {', '.join(missing)}")
    return DataLayout(s.root, tr, va, s.kind, None if s.kind == "splits" else val_fraction,
                      tuple(notes), tuple(left_out))


def scan_layout(data, *, val_split: str | None = None, val_fraction: float = 0.2, seed: int = 0,
                arg: str = "--data") -> DataLayout:
    """Find and check the layout of ``data`` (see the module docstring); no file is opened.

    Raises:
        DataError: the folder cannot be used (the message names it; ``arg`` is the option
            that gave ``data``, for the message).
    """
    return _assemble(_survey(data, val_split, arg), val_fraction, seed)


def open_dataset(data, *, val_split: str | None = None, val_fraction: float = 0.2,
                 seed: int = 0, check_images: bool = True, skip_bad_images: bool = False,
                 threads: int | None = None, log=print, warn=None,
                 arg: str = "--data") -> DataLayout:
    """:func:`scan_layout`, then the image check of every file
    (:func:`dali_mixup.tools.filecheck.check_images`, cached), then the one summary line.

    Bad files stop with a :class:`DataError` listing every one of them, or with
    ``skip_bad_images`` are left out (and listed as a warning). ``log`` receives the summary
    line, ``warn`` each warning (default: ``warning: ...`` on stderr); either may be None.
    """
    if warn is None:
        def warn(msg):
            print(f"warning: {msg}", file=sys.stderr, flush=True)
    survey = _survey(data, val_split, arg)
    layout = _assemble(survey, val_fraction, seed)
    if check_images:
        from .filecheck import check_images as check

        files = [f for fs in survey.train.values() for f in fs]
        if survey.val is not None:
            files += [f for fs in survey.val.values() for f in fs]
        bad = check(files, threads=threads)
        if bad:
            listing = "\n".join(f"  {p}: {why}" for p, why in sorted(bad.items()))
            if not skip_bad_images:
                raise DataError(
                    f"{len(bad)} of the {len(files)} image files cannot be decoded (leave them "
                    f"out with --skip-bad-images, or fix or remove them):\n{listing}")
            layout = _assemble(survey, val_fraction, seed, drop=frozenset(bad),
                               left_out=tuple(sorted(bad.items())))
            if warn is not None:
                warn(f"left out {len(bad)} image file(s) that cannot be decoded "
                     f"(--skip-bad-images):\n{listing}")
    if warn is not None:
        for note in layout.warnings:
            warn(note)
    if log is not None:
        log(layout.summary())
    return layout
