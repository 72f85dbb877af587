"""The device-side python operators (the GPU path) run on any array-API backend.

On a GPU, DALI hands ``_KMixupCosts`` and ``_ZetaOthers`` lists of CuPy arrays. No GPU is
available here, so they are run on lists of ``array_api_strict`` arrays: any NumPy-only call
would fail. Their results are then fed to the host operators exactly as the pipeline does.
"""
from __future__ import annotations

import numpy as np
import pytest

from dali_mixup import fn as mfn, kmixup as km, zeta as zm
from dali_mixup._backend import to_numpy

from conftest import clustered

xps = pytest.importorskip("array_api_strict")


def _opts(**kw):
    o = km.validate(k=kw.pop("k", 4), alpha=1.0, num_classes=3, cost=kw.pop("cost", "sqeuclidean"),
                    pairing=kw.pop("pairing", "disjoint"), lam_mode="sample", label_smoothing=0.0,
                    dtype=None)
    o["has_features"] = False
    return o


@pytest.mark.parametrize("pairing", ["disjoint", "permutation"])
@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("B", [1, 2, 9, 16])
def test_device_cost_rows_give_the_host_result(pairing, cost, B, rng):
    opts = _opts(pairing=pairing, cost=cost)
    x, _ = clustered(rng, B, 12)
    feats = [a.reshape(2, 2, 3) for a in x]
    u = [rng.random(2) for _ in range(B)]
    lam = [np.float32(v) for v in rng.beta(1, 1, size=B)]
    labels = [np.array([i % 3], np.int32) for i in range(B)]
    shapes = [np.array(f.shape) for f in feats]
    rows = mfn._KMixupCosts("k_mixup", opts)([xps.asarray(f) for f in feats], [xps.asarray(a) for a in u])
    rows = [to_numpy(r) for r in rows]
    draws = [np.array([a[0], a[1], l]) for a, l in zip(u, lam)]
    via_device = mfn._PairParams("k_mixup", opts, "costs", "kmixup", aux="shapes", with_masks=False)(
        rows, labels, draws, shapes)
    on_host = mfn._PairParams("k_mixup", opts, "images", "kmixup", aux=None, with_masks=False)(
        feats, labels, draws)
    for a, b in zip(via_device, on_host):
        np.testing.assert_allclose(np.stack(a), np.stack(b), rtol=1e-6)


@pytest.mark.parametrize("method", ["gather", "matmul"])
def test_device_zeta_mix_matches_numpy(method, rng):
    B, T = 10, 4
    imgs = [rng.integers(0, 256, size=(3, 4, 2), dtype=np.uint8) for _ in range(B)]
    d = zm.draw(rng, B)
    index, weights, _ = zm.plan(d, B, T, (2.8, 2.8))
    idx = [index[i].astype(np.int32) for i in range(B)]
    w = [weights.astype(np.float32)] * B
    op = mfn._ZetaOthers({"method": method, "dtype": None})
    got = op([xps.asarray(a) for a in imgs], [xps.asarray(a) for a in idx], [xps.asarray(a) for a in w])
    want = op(imgs, idx, w)
    x = np.stack(imgs).astype(np.float32)
    ref = np.einsum("bt,btijk->bijk", np.broadcast_to(weights[1:], (B, T - 1)), x[index[:, 1:]])
    np.testing.assert_allclose(np.stack([to_numpy(a) for a in got]), np.stack(want), rtol=1e-6)
    np.testing.assert_allclose(np.stack(want), ref, rtol=1e-5, atol=1e-4)


def test_cost_rows_route_through_a_pipeline(monkeypatch, rng):
    """The GPU wiring (cost operator -> host solver -> blend) in a CPU pipeline: same batches."""
    from nvidia.dali import fn as dfn

    from conftest import run_dali

    imgs = [rng.normal(size=(3, 3, 2)).astype(np.float32) for _ in range(11)]
    labels = [np.array([i % 3], np.int32) for i in range(11)]

    def graph(x, y):
        return mfn.k_mixup(x, y, k=3, num_classes=3, pairing="permutation", return_info=True, seed=5)

    (want,), _ = run_dali(graph, [(imgs, labels)])

    def device_route(op, opts, images, features, u, dfn_, f16):  # noqa: ARG001
        rows = dfn.python_function(images, u, function=mfn._KMixupCosts(op, opts, f16), device="cpu",
                                   batch_processing=True, num_outputs=1)
        return rows, "costs"

    monkeypatch.setattr(mfn, "_pair_source", device_route)
    (got,), _ = run_dali(graph, [(imgs, labels)])
    for a, b in zip(want, got):
        np.testing.assert_array_equal(np.stack(a), np.stack(b))
