"""The DALI operators in real CPU pipelines: same results as the array layer for the same draws."""
from __future__ import annotations

import numpy as np
import pytest

from nvidia.dali import fn, pipeline_def, types

import dali_mixup as dm
import dali_mixup.fn as mfn
from dali_mixup import kmixup as km, zeta as zm

from conftest import clustered, run_dali

SEED = 77


def _dali_draws(kind, batch_sizes, *, alpha=1.0, max_bs=None):
    """Replay an operator's draws: one DALI uniform operator seeded with the operator's seed."""
    max_bs = max_bs or max(batch_sizes)

    @pipeline_def(batch_size=max_bs, num_threads=1, device_id=None, seed=1, prefetch_queue_depth=1)
    def pipe():
        n = fn.external_source(name="n")
        if kind == "k":
            v = fn.random.uniform(range=[0.0, 1.0], shape=[3], dtype=types.FLOAT64, seed=SEED)
        else:
            v = fn.random.uniform(range=[0.0, 1.0], shape=[max_bs + 1], seed=SEED)
        return v, n

    p = pipe()
    p.build()
    out = []
    for b in batch_sizes:
        p.feed_input("n", [np.zeros(1, np.uint8)] * b)
        v, _ = p.run()
        v = np.stack([np.array(v[i]) for i in range(b)]) if b else np.zeros((0, 3))
        if kind == "k":
            out.append(km.KMixupDraws(v[:, :2], km.beta_quantile(alpha, v[:, 2])))
        else:
            out.append(zm.ZetaDraws(v[:, :max_bs], v[:, max_bs].astype(np.float64)))
    return out


def _images(rng, b, dtype=np.uint8, shape=(6, 5, 3)):
    if dtype == np.uint8:
        return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(b)]
    return [rng.normal(size=shape).astype(dtype) for _ in range(b)]


@pytest.mark.parametrize("op", ["k_mixup", "mixup"])
@pytest.mark.parametrize("pairing,lam_mode", [("disjoint", "batch"), ("disjoint", "block"),
                                              ("permutation", "sample")])
def test_k_mixup_pipeline_equals_array_layer(op, pairing, lam_mode, rng):
    sizes = [16, 9, 1, 2, 16]
    batches = [(_images(rng, b), [np.array([rng.integers(0, 4)], np.int32) for _ in range(b)])
               for b in sizes]
    kw = dict(num_classes=4, lam_mode=lam_mode, alpha=0.5)
    if op == "k_mixup":
        kw.update(k=3, pairing=pairing, cost="euclidean")

    def graph(x, y):
        return getattr(mfn, op)(x, y, return_info=True, seed=SEED, **kw)

    outs, _ = run_dali(graph, batches, batch_size=16)
    for (imgs, labels), out, d in zip(batches, outs, _dali_draws("k", sizes, alpha=0.5)):
        ref = getattr(dm, op)(np.stack(imgs), np.stack(labels), draws=d, **kw)
        got_img, got_lab, partner, lam = out
        np.testing.assert_array_equal(np.stack(partner), ref.partner)
        np.testing.assert_array_equal(np.stack(lam), ref.lam)
        # on CPU the operator blends with the array layer's own code: bitwise equal
        np.testing.assert_array_equal(np.stack(got_img), ref.images)
        np.testing.assert_array_equal(np.stack(got_lab), ref.labels)
        assert got_img[0].dtype == np.float32 and got_lab[0].shape == (4,)


@pytest.mark.parametrize("T,method", [(None, None), (3, "gather"), (5, "matmul")])
def test_zeta_pipeline_equals_array_layer(T, method, rng):
    sizes = [12, 7, 1, 12]
    batches = [(_images(rng, b, np.float32), [rng.dirichlet(np.ones(3)).astype(np.float32)
                                              for _ in range(b)]) for b in sizes]

    def graph(x, y):
        return mfn.zeta_mixup(x, y, T=T, gamma=(2.0, 3.0), method=method, return_info=True, seed=SEED)

    outs, _ = run_dali(graph, batches, batch_size=12)
    for (imgs, labels), out, d in zip(batches, outs, _dali_draws("z", sizes, max_bs=12)):
        ref = dm.zeta_mixup(np.stack(imgs), np.stack(labels), T=T, gamma=(2.0, 3.0), draws=d,
                            method=method)
        got_img, got_lab, index, weights = out
        np.testing.assert_array_equal(np.stack(index), ref.index)
        np.testing.assert_allclose(np.stack(weights), ref.weights, rtol=1e-6)
        # on CPU the operator mixes with the array layer's own code: bitwise equal
        np.testing.assert_array_equal(np.stack(got_img), ref.images)
        np.testing.assert_array_equal(np.stack(got_lab), ref.labels)


@pytest.mark.parametrize("op,kw", [("k_mixup", dict(k=4)), ("mixup", {}), ("zeta_mixup", {})])
def test_layout_dtype_and_uint8_round_trip(op, kw, rng):
    imgs = _images(rng, 8)
    labels = [np.array([i % 3], np.int32) for i in range(8)]

    def graph(x, y):
        f = getattr(mfn, op)(x, y, num_classes=3, seed=SEED, **kw)
        u = getattr(mfn, op)(x, y, num_classes=3, seed=SEED, dtype="uint8", **kw)
        h = getattr(mfn, op)(x, y, num_classes=3, seed=SEED, dtype="float16", **kw)
        return f[0], u[0], h[0], f[1]

    (out,), p = run_dali(graph, [(imgs, labels)], layout="HWC")
    f, u, h, lab = out
    assert u[0].dtype == np.uint8 and h[0].dtype == np.float16
    np.testing.assert_array_equal(np.stack(u), np.clip(np.round(np.stack(f)), 0, 255).astype(np.uint8))
    np.testing.assert_allclose(np.stack(h), np.stack(f), rtol=1e-3)
    np.testing.assert_allclose(np.stack(lab).sum(1), 1.0, atol=1e-6)
    # layouts survive (the CPU k-mixup output takes them over from the input)
    p.feed_input("x", imgs)
    p.feed_input("y", labels)
    outs = p.run()
    assert [o.layout() for o in outs[:3]] == ["HWC", "HWC", "HWC"]


@pytest.mark.parametrize("op", ["k_mixup", "mixup", "zeta_mixup"])
def test_same_seed_same_batches_other_seed_other_batches(op, rng):
    batches = [(_images(rng, 10), [np.array([i % 5], np.int32) for i in range(10)]) for _ in range(3)]

    def run(seed, threads):
        outs, _ = run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=5), batches,
                           seed=seed, num_threads=threads)
        return [np.stack(o[0]) for o in outs] + [np.stack(o[1]) for o in outs]

    a, b, c = run(3, 1), run(3, 2), run(4, 1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_file_reader_pipeline(tmp_path, rng):
    """readers.file -> decode -> k-mixup: outputs are the stated blends of the decoded images."""
    from PIL import Image

    for c in range(3):
        (tmp_path / f"c{c}").mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(
                tmp_path / f"c{c}" / f"{i}.png")

    @pipeline_def(batch_size=7, num_threads=1, device_id=None, seed=11)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(tmp_path), random_shuffle=True, seed=3)
        img = fn.decoders.image(jpegs, device="cpu")
        mixed, soft, partner, lam = mfn.k_mixup(img, labels, k=2, num_classes=3, return_info=True)
        # float32 declared on the source: the output takes the layout without a cast
        chw = fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW")
        mixed_chw = mfn.mixup(chw, labels, num_classes=3)[0]
        return img, labels, mixed, soft, partner, lam, mixed_chw

    p = pipe()
    p.build()
    for _ in range(3):
        outs = p.run()
        assert outs[2].layout() == "HWC" and outs[6].layout() == "CHW"
        img, labels, mixed, soft, partner, lam, mixed_chw = (
            np.stack([np.array(t[i]) for i in range(len(t))]) for t in outs)
        assert mixed_chw.shape == (7, 3, 8, 8) and mixed_chw.dtype == np.float32
        assert np.all(partner != np.arange(7))
        lam4 = lam.reshape(-1, 1, 1, 1)
        np.testing.assert_allclose(mixed, lam4 * img + (1 - lam4) * img[partner], rtol=1e-6, atol=1e-4)
        onehot = np.eye(3, dtype=np.float32)[labels.reshape(-1)]
        np.testing.assert_allclose(soft, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[partner],
                                   atol=1e-6)


def test_k_mixup_on_features_is_optimal_in_a_pipeline(rng):
    """The matching in the pipeline is optimal on `features` (here the image resized to 2x2)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    x, _ = clustered(rng, 16, 48)
    imgs = [a.reshape(4, 4, 3) for a in x]
    labels = [np.array([0], np.int32)] * 16

    def graph(img, y):
        feats = fn.resize(img, size=[2, 2])
        return mfn.k_mixup(img, y, k=4, num_classes=1, features=feats, return_info=True, seed=SEED) + (feats,)

    (out,), _ = run_dali(graph, [(imgs, labels)])
    feats = np.stack(out[4]).reshape(16, -1).astype(np.float64)
    partner = np.stack(out[2])
    plan = km.plan_blocks(_dali_draws("k", [16])[0].u, 16, 4, "disjoint")
    for b in range(plan.left.shape[0]):
        left, right = plan.left[b], plan.right[b]
        c = cdist(feats[left], feats[right], "sqeuclidean")
        r, col = linear_sum_assignment(c)
        pos = {int(s): j for j, s in enumerate(right)}
        assert sum(c[i, pos[int(partner[s])]] for i, s in enumerate(left)) == pytest.approx(
            c[r, col].sum(), rel=1e-5)


def test_soft_label_input(rng):
    imgs = _images(rng, 6, np.float32)
    soft = [rng.dirichlet(np.ones(4)).astype(np.float32) for _ in range(6)]
    (out,), _ = run_dali(lambda x, y: mfn.k_mixup(x, y, k=2, return_info=True), [(imgs, soft)])
    lab, partner, lam = np.stack(out[1]), np.stack(out[2]), np.stack(out[3])
    s = np.stack(soft)
    np.testing.assert_allclose(lab, lam[:, None] * s + (1 - lam[:, None]) * s[partner], atol=1e-6)


def test_batch_of_one_passes_through(rng):
    imgs = _images(rng, 1)
    for op in ("k_mixup", "mixup", "zeta_mixup"):
        (out,), _ = run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=2, dtype="uint8"),
                             [(imgs, [np.array([1], np.int32)])])
        np.testing.assert_array_equal(out[0][0], imgs[0])
        np.testing.assert_array_equal(out[1][0], [0.0, 1.0])


def test_pipeline_continues_over_many_batch_sizes(rng):
    sizes = [5, 1, 3, 8, 2, 7]
    batches = [(_images(rng, b), [np.array([0], np.int32)] * b) for b in sizes]
    outs, _ = run_dali(lambda x, y: mfn.zeta_mixup(x, y, num_classes=1, T=3) + mfn.k_mixup(x, y, num_classes=1, k=2),
                       batches, batch_size=8)
    assert [len(o[0]) for o in outs] == sizes and [len(o[2]) for o in outs] == sizes


@pytest.mark.parametrize("op", ["mixup", "k_mixup"])
def test_large_float_samples_equal_the_array_layer(op, rng, monkeypatch):
    """Samples of >= 16 KiB: mixup blends the sample list without stacking it (k-mixup stacks
    in block order for its costs); both stay bitwise equal to the array layer, extras and
    masks included."""
    from dali_mixup.core import _fast

    used = []
    real = _fast.blend_samples
    monkeypatch.setattr(_fast, "blend_samples", lambda *a, **k: (used.append(1), real(*a, **k))[1])
    shape = (48, 48, 3)  # 27 KiB of float32
    assert np.prod(shape) * 4 >= _fast.SAMPLE_BYTES
    sizes = [12, 7]
    batches = [(_images(rng, b, np.float32, shape), [np.array([rng.integers(0, 4)], np.int32)
                                                     for _ in range(b)]) for b in sizes]
    kw = dict(num_classes=4, lam_mode="sample", alpha=0.5) | (dict(k=3) if op == "k_mixup" else {})

    def graph(x, y):
        m = fn.cast(x * 10.0, dtype=types.INT32)  # rounds to nearest
        return getattr(mfn, op)(x, y, extra=[x * 2.0], masks=[m], return_info=True, seed=SEED, **kw)

    outs, _ = run_dali(graph, batches, batch_size=12)
    for (imgs, labels), out, d in zip(batches, outs, _dali_draws("k", sizes, alpha=0.5)):
        x = np.stack(imgs)
        ref = getattr(dm, op)(x, np.stack(labels), extra=[x * 2.0], masks=[np.round(x * 10.0).astype(np.int32)],
                              draws=d, **kw)
        got_img, got_lab, got_extra, got_mask, partner, lam = out
        np.testing.assert_array_equal(np.stack(partner), ref.partner)
        np.testing.assert_array_equal(np.stack(got_img), ref.images)
        np.testing.assert_array_equal(np.stack(got_lab), ref.labels)
        np.testing.assert_array_equal(np.stack(got_extra), ref.extra[0])
        np.testing.assert_array_equal(np.stack(got_mask), ref.masks[0])
    assert len(used) == (len(sizes) if op == "mixup" else 0)
