"""Data-parallel properties of the training loaders, rank by rank, through what ``dali-mixup
train`` builds (:class:`dali_mixup.pipelines.train.Loaders` with ``rank`` / ``world``, the
ready-made pipelines inside): disjoint shards covering the data in every epoch (image folders
of JPEG files and ``--arrays``), independent mixing draws per rank, and label smoothing with
and without mixing."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from dali_mixup.pipelines import RankSeeds, rank_seeds, train

pytestmark = pytest.mark.dali

N_CLASSES, PER_CLASS = 4, 6          # 24 training samples: 2 ranks x 3 batches of 4
LEVELS = (40, 100, 160, 220)         # gray level of class c (class-coded data)


def ids_folder(root):
    """``train/<c>/*.jpg``: 24 flat gray JPEG images, image ``i`` of gray level ``8 * (i + 1)``
    (its id survives crops, flips and decoding); ``val/<c>/0.jpg`` one per class."""
    for c in range(N_CLASSES):
        for split, n in (("train", PER_CLASS), ("val", 1)):
            os.makedirs(os.path.join(root, split, f"c{c}"), exist_ok=True)
            for i in range(n):
                sid = c * PER_CLASS + i if split == "train" else 0
                Image.fromarray(np.full((12, 12), 8 * (sid + 1), np.uint8), mode="L").save(
                    os.path.join(root, split, f"c{c}", f"{i:02d}.jpg"), quality=95)
    return str(root)


def classes_folder(root):
    """Like :func:`ids_folder`, but every image of class ``c`` has the gray level LEVELS[c]."""
    for c in range(N_CLASSES):
        for split, n in (("train", PER_CLASS), ("val", 1)):
            os.makedirs(os.path.join(root, split, f"c{c}"), exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((12, 12), LEVELS[c], np.uint8), mode="L").save(
                    os.path.join(root, split, f"c{c}", f"{i:02d}.jpg"), quality=95)
    return str(root)


def ids_npz(path, levels=None):
    """``--arrays`` file: 24 flat 6x6 images (id- or class-coded, as above), 8 validation."""
    y = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    v = (8 * (np.arange(len(y)) + 1)) if levels is None else np.asarray(levels)[y]
    x = np.broadcast_to(v[:, None, None, None], (len(y), 6, 6, 1)).astype(np.uint8)
    np.savez(path, x_train=x, y_train=y, x_val=x[::3], y_val=y[::3])
    return str(path)


def loaders(rank, world=2, **kw):
    cfg = dict(gray=True, size=6, batch_size=4, flip=True, crop_scale=(0.5, 1.0), width=4,
               seed=3, progress=False, out="")
    cfg.update(kw)
    return train.Loaders(train.TrainConfig(**cfg), rank, world, 0)


def gray_levels(images):
    """Per-sample gray level (0..255) of normalised flat images ``[B, 1, H, W]``."""
    return (images.reshape(images.shape[0], -1).mean(1) * 127.5 + 127.5).numpy()


def epochs_of_ids(it, n_epochs):
    out = []
    for _ in range(n_epochs):
        ids = []
        for b in it:
            ids += [int(round(v / 8.0)) - 1 for v in gray_levels(b[0]["images"])]
        it.reset()
        out.append(ids)
    return out


@pytest.fixture(scope="module")
def ids_dir(tmp_path_factory):
    return ids_folder(tmp_path_factory.mktemp("ids"))


@pytest.fixture(scope="module")
def classes_dir(tmp_path_factory):
    return classes_folder(tmp_path_factory.mktemp("classes"))


@pytest.fixture(scope="module")
def data_sources(ids_dir, tmp_path_factory):
    return {"image folder": dict(data=ids_dir),
            "arrays": dict(arrays=ids_npz(tmp_path_factory.mktemp("npz") / "ids.npz"))}


def test_rank_seeds_share_the_reader_seed_and_differ_in_the_pipeline_seed():
    seeds = [rank_seeds(1234, r) for r in range(4)]
    assert seeds[0] == RankSeeds(pipeline_seed=1234, reader_seed=1234)
    assert {s.reader_seed for s in seeds} == {1234}
    assert len({s.pipeline_seed for s in seeds}) == 4
    assert rank_seeds(5, 3) == (5 + 3 * 7919, 5)
    with pytest.raises(ValueError, match="rank must be >= 0, got -1"):
        rank_seeds(0, -1)
    with pytest.raises(TypeError, match="seed must be an int, got float"):
        rank_seeds(0.5, 0)


@pytest.mark.parametrize("source", ["image folder", "arrays"])
def test_two_ranks_read_disjoint_shards_covering_the_data_every_epoch(data_sources, source):
    """The training loaders of rank 0 and rank 1 (mixing none: every sample keeps its id):
    in each of 3 epochs the two shards are disjoint and together hold all 24 samples once,
    and the split changes between epochs (a reshuffle of the whole set, shared by the ranks)."""
    got = [epochs_of_ids(loaders(r, **data_sources[source]).train_it, 3) for r in (0, 1)]
    for e in range(3):
        a, b = got[0][e], got[1][e]
        assert len(a) == len(b) == 12
        assert sorted(a + b) == list(range(24)), f"epoch {e}: {sorted(a)} + {sorted(b)}"
    assert len({frozenset(got[0][e]) for e in range(3)}) > 1, "the shards never changed"


def lams(it, n_epochs=2):
    """lam of every training batch, read off the soft labels: per batch, the label values
    strictly between 0 and 1 are lam and 1 - lam (pairs of different classes); folded to
    ``min(lam, 1 - lam)`` and rounded."""
    out = []
    for _ in range(n_epochs):
        for b in it:
            y = b[0]["labels"].numpy()
            inner = y[(y > 1e-6) & (y < 1 - 1e-6)]
            if inner.size:
                out.append(round(float(min(inner.min(), 1 - inner.min())), 5))
        it.reset()
    return out


@pytest.mark.parametrize("source", ["image folder", "arrays"])
def test_two_ranks_draw_different_mixing(data_sources, source):
    """mixup under the training loaders of two ranks: the lam sequences have nothing in
    common (each rank draws from its own pipeline seed), and each rank repeats its own draws
    when built again (the seed is derived, not random)."""
    r0, r1 = (lams(loaders(r, mixing="mixup", **data_sources[source]).train_it) for r in (0, 1))
    assert len(r0) >= 4 and len(r1) >= 4
    assert not set(r0) & set(r1), f"ranks share lam draws: {sorted(set(r0) & set(r1))}"
    assert lams(loaders(0, mixing="mixup", **data_sources[source]).train_it) == r0


def _class_of(level):
    return int(np.argmin([abs(level - v) for v in LEVELS]))


@pytest.mark.parametrize("source", ["image folder", "arrays"])
@pytest.mark.parametrize("rank", [0, 1])
def test_label_smoothing_without_mixing(classes_dir, tmp_path, source, rank):
    """mixing none, label_smoothing 0.1, 4 classes: every label row is
    ``0.9 * one_hot(class) + 0.1 / 4``, the class read off the image."""
    eps, C = 0.1, N_CLASSES
    src = (dict(data=classes_dir) if source == "image folder"
           else dict(arrays=ids_npz(tmp_path / "c.npz", LEVELS)))
    it = loaders(rank, label_smoothing=eps, **src).train_it
    rows = 0
    for b in it:
        y = b[0]["labels"].numpy()
        for level, row in zip(gray_levels(b[0]["images"]), y):
            want = np.full(C, eps / C)
            want[_class_of(level)] += 1 - eps
            np.testing.assert_allclose(row, want, rtol=0, atol=1e-6)
            rows += 1
    assert rows == 12


@pytest.mark.parametrize("source", ["image folder", "arrays"])
def test_label_smoothing_with_mixing_matches_the_mixed_images(classes_dir, tmp_path, source):
    """mixup + label_smoothing 0.2: every row is ``0.8 * (lam e_i + (1 - lam) e_j) + 0.2 / 4``,
    and the weights it gives the classes blend the class gray levels into the mixed image."""
    eps, C = 0.2, N_CLASSES
    src = (dict(data=classes_dir) if source == "image folder"
           else dict(arrays=ids_npz(tmp_path / "c.npz", LEVELS)))
    it = loaders(1, mixing="mixup", label_smoothing=eps, **src).train_it
    mixed = 0
    for b in it:
        y = b[0]["labels"].numpy().astype(np.float64)
        np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
        w = (y - eps / C) / (1 - eps)                      # the unsmoothed mixed label
        assert (w > -1e-5).all() and ((w > 1e-5).sum(1) <= 2).all()
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(gray_levels(b[0]["images"]), w @ np.asarray(LEVELS, float),
                                   rtol=0, atol=1.5)  # JPEG: +-1 gray level
        mixed += int(((w > 1e-5).sum(1) == 2).sum())
    assert mixed > 0
