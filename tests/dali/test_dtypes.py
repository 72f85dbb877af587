"""The operators' image dtype policy in DALI pipelines: output ``dtype=``, float16 and float64
inputs, extras in the images' dtype (the array layer's policy, dali_mixup/core/images.py)."""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

import dali_mixup.fn as mfn

from conftest import run_dali

pytestmark = pytest.mark.dali


def _ids(n, c=2):
    return [np.array([i % c], np.int32) for i in range(n)]


@pytest.mark.parametrize("op,kw", [("k_mixup", {"k": 2}), ("mixup", {}), ("zeta_mixup", {}),
                                   ("cutmix", {})])
def test_dtype_float32_casts_float64_images(op, kw, rng):
    imgs = [rng.normal(size=(4, 4, 3)) for _ in range(6)]  # float64
    (out,), _ = run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=2, dtype="float32", **kw),
                         [(imgs, _ids(6))])
    assert out[0][0].dtype == np.float32


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


@pytest.mark.parametrize("op", ["k_mixup", "mixup", "zeta_mixup"])
def test_declared_float16_images_are_mixed_in_float32(op):
    """float16 extremes (+-65504): the cost and blend run in float32, nothing overflows."""
    imgs = [np.full((3, 3), 65504 * s, np.float16) for s in (1, -1, 1, -1)]

    @pipeline_def(batch_size=4, num_threads=1, device_id=None, seed=1)
    def pipe():
        x = fn.external_source(name="x", dtype=types.FLOAT16)
        y = fn.external_source(name="y")
        kw = {"k": 2} if op == "k_mixup" else {}
        return getattr(mfn, op)(x, y, num_classes=1, dtype="float16", **kw) + (
            getattr(mfn, op)(x, y, num_classes=1, **kw)[0],)

    p = pipe()
    p.build()
    p.feed_input("x", imgs)
    p.feed_input("y", _ids(4, 1))
    half, _, full = p.run()
    full = np.stack([np.array(t) for t in full])
    assert np.array(half[0]).dtype == np.float16 and full.dtype == np.float32
    assert np.all(np.isfinite(full)) and np.all(np.abs(full) <= 65504)
