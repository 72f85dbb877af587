"""Regressions for defects found in review: each failed before its fix."""
from __future__ import annotations

import numpy as np
import pytest

import dali_mixup as dm

from conftest import run_dali

pytest.importorskip("nvidia.dali")
import dali_mixup.fn as mfn  # noqa: E402
from nvidia.dali import fn, pipeline_def, types  # noqa: E402


def _ids(n, c=2):
    return [np.array([i % c], np.int32) for i in range(n)]


@pytest.mark.parametrize("op,kw", [("k_mixup", {"k": 2}), ("mixup", {}), ("zeta_mixup", {}),
                                   ("cutmix", {})])
def test_dtype_float32_casts_float64_images(op, kw, rng):
    imgs = [rng.normal(size=(4, 4, 3)) for _ in range(6)]  # float64
    (out,), _ = run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=2, dtype="float32", **kw),
                         [(imgs, _ids(6))])
    assert out[0][0].dtype == np.float32


@pytest.mark.parametrize("op,kw", [("k_mixup", {"k": 2}), ("mixup", {}), ("zeta_mixup", {}),
                                   ("mix", {})])
def test_uint8_output_of_float_images_is_an_error(op, kw, rng):
    imgs = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(4)]
    with pytest.raises(RuntimeError, match=f"{op}: argument 'dtype' expected 'uint8' only for uint8 "
                                           r"images, got \"'uint8' for float32 images\""):
        run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=2, dtype="uint8", **kw),
                 [(imgs, _ids(4))])


def test_int64_images_with_features_are_rejected(rng):
    imgs = [np.ones((4, 4, 3), np.int64) for _ in range(4)]

    def graph(x, y):
        return mfn.k_mixup(x, y, k=2, num_classes=2, features=fn.cast(x, dtype=types.FLOAT))

    with pytest.raises(RuntimeError, match=r"k_mixup: argument 'images' expected images of dtype uint8, "
                                           r"float16, float32, float64, got 'dtype int64'"):
        run_dali(graph, [(imgs, _ids(4))])


def _declared_f16_pipeline(graph, imgs, labels):
    @pipeline_def(batch_size=len(imgs), num_threads=1, device_id=None, seed=3)
    def pipe():
        x = fn.external_source(name="x", dtype=types.FLOAT16, layout="HWC")
        y = fn.external_source(name="y")
        return graph(x, y)

    p = pipe()
    p.build()
    p.feed_input("x", imgs)
    p.feed_input("y", labels)
    return [np.stack([np.array(t[i]) for i in range(len(t))]) for t in p.run()]


def test_float16_extras_in_zeta_and_cutmix(rng):
    imgs = [rng.normal(size=(4, 4, 3)).astype(np.float16) for _ in range(6)]
    for op in ("zeta_mixup", "cutmix"):
        out = _declared_f16_pipeline(lambda x, y: getattr(mfn, op)(x, y, num_classes=2, extra=[x]),
                                     imgs, _ids(6))
        np.testing.assert_allclose(out[2], out[0], rtol=1e-6)


def test_cutmix_masks_must_share_the_images_layout(rng):
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"cutmix: argument 'masks\[0\]' expected samples with the "
                                         r"images' layout and height/width.*got 'shape \(8, 8\)'"):
        dm.cutmix(x, y, num_classes=1, masks=[np.zeros((4, 8, 8), np.uint8)])
    with pytest.raises(ValueError, match=r"cutmix: argument 'extra\[0\]' expected samples with the images'"):
        dm.cutmix(x, y, num_classes=1, extra=[np.zeros((4, 3, 8, 9), np.float32)])
    imgs = [np.ascontiguousarray(a.transpose(1, 2, 0)) for a in x]

    def graph(img, lab):
        mask = fn.cast(img[:, :, 0] > 0, dtype=types.UINT8)  # HW, not HWC
        return mfn.cutmix(img, lab, num_classes=1, masks=[mask])

    with pytest.raises(RuntimeError, match=r"cutmix: argument 'masks\[0\]' expected samples with the images'"):
        run_dali(graph, [(imgs, _ids(4, 1))], layout="HWC")


def test_narrow_integer_labels_do_not_wrap(rng):
    r = dm.mixup(rng.random((4, 3)).astype(np.float32), np.array([0, 1, 255, 0], np.uint8),
                 num_classes=300, prob=0.0)
    np.testing.assert_array_equal(r.labels.sum(1), 1.0)
    assert np.flatnonzero(r.labels[2]).tolist() == [255]


def test_seed_errors_name_the_operator():
    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(name="x")
        return mfn.zeta_mixup(x, x, num_classes=2, seed=-1)

    with pytest.raises(ValueError, match=r"zeta_mixup: argument 'seed' expected an integer >= 0, got -1"):
        pipe()


def test_label_smoothing_on_float_labels_warns(rng):
    soft = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    with pytest.warns(UserWarning, match="label_smoothing=0.1 applies to class-id labels"):
        r = dm.mixup(rng.random((4, 2)).astype(np.float32), soft, label_smoothing=0.1, prob=0.0)
    np.testing.assert_array_equal(r.labels, soft)


@pytest.mark.parametrize("op,kw", [("k_mixup", {"k": 3}), ("mixup", {}), ("zeta_mixup", {})])
def test_float64_images_stay_float64_with_their_layout(op, kw, rng):
    """The CPU operators blend on the host: float64 stays float64 (the array layer's policy),
    the output takes the input's layout (a python operator's output has none), and the
    values are the array layer's for the pipeline's own partners and weights."""
    imgs = [rng.normal(size=(4, 5, 3)) for _ in range(7)]  # float64
    labels = _ids(7)

    def graph(x, y):
        return getattr(mfn, op)(x, y, num_classes=2, return_info=True, **kw)

    (out,), p = run_dali(graph, [(imgs, labels)], layout="HWC")
    mixed = np.stack(out[0])
    x = np.stack(imgs)
    assert mixed.dtype == np.float64
    if op == "zeta_mixup":
        index, weights = np.stack(out[2]), np.stack(out[3]).astype(np.float64)
        ref = np.einsum("it,it...->i...", weights, x[index])
        np.testing.assert_allclose(mixed, ref, rtol=1e-6, atol=1e-6)  # weights come back as float32
    else:
        partner, lam = np.stack(out[2]), np.stack(out[3]).astype(np.float64)
        lam4 = lam.reshape(-1, 1, 1, 1)
        np.testing.assert_allclose(mixed, lam4 * x + (1 - lam4) * x[partner], rtol=1e-6, atol=1e-6)
    p.feed_input("x", imgs)
    p.feed_input("y", labels)
    assert p.run()[0].layout() == "HWC"
