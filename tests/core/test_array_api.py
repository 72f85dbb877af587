"""The array layer is backend-neutral: array_api_strict and torch give NumPy's results."""
from __future__ import annotations

import numpy as np
import pytest

import dali_mixup as dm
from dali_mixup import kmixup as km, zeta as zm
from dali_mixup.core.draws import draw_mix

import array_api_strict as xps

from conftest import clustered


def _np(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.from_dlpack(a)


def _backends():
    import torch

    return {
        "array_api_strict": (lambda a: xps.asarray(a), xps),
        "torch": (lambda a: torch.from_numpy(np.ascontiguousarray(a)), torch),
    }


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
@pytest.mark.parametrize("pairing", ["disjoint", "permutation"])
@pytest.mark.parametrize("lam_mode", ["batch", "block", "sample"])
def test_k_mixup_same_draws_same_result(backend, pairing, lam_mode, rng):
    conv, _ = _backends()[backend]
    B = 37
    x, _ = clustered(rng, B, 27)
    x = x.reshape(B, 3, 3, 3)
    y = rng.integers(0, 6, size=B)
    d = km.draw(rng, B, 0.7)
    ref = dm.k_mixup(x, y, k=6, num_classes=6, pairing=pairing, lam_mode=lam_mode, draws=d)
    got = dm.k_mixup(conv(x), conv(y), k=6, num_classes=6, pairing=pairing, lam_mode=lam_mode, draws=d)
    np.testing.assert_array_equal(_np(got.partner), ref.partner)
    np.testing.assert_array_equal(_np(got.lam), ref.lam)
    np.testing.assert_allclose(_np(got.images), ref.images, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_np(got.labels), ref.labels, atol=1e-7)
    assert got.k == ref.k == 6


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
@pytest.mark.parametrize("op,kw", [("cutmix", dict(k=4)), ("mix", dict(switch_prob=0.5, lam_mode="sample"))])
def test_cutmix_and_mix_same_draws_same_result(backend, op, kw, rng):
    conv, _ = _backends()[backend]
    B = 24
    x = rng.normal(size=(B, 3, 7, 6)).astype(np.float32)
    y = rng.integers(0, 5, size=B)
    d = draw_mix(rng, B, 1.0, 1.0)
    ref = getattr(dm, op)(x, y, num_classes=5, draws=d, **kw)
    got = getattr(dm, op)(conv(x), conv(y), num_classes=5, draws=d, **kw)
    for name in ("partner", "lam", "boxes", "cut"):
        np.testing.assert_array_equal(_np(getattr(got, name)), getattr(ref, name))
    np.testing.assert_allclose(_np(got.images), ref.images, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_np(got.labels), ref.labels, atol=1e-7)


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
@pytest.mark.parametrize("T,method", [(None, "matmul"), (4, "gather"), (4, "matmul")])
def test_zeta_mixup_same_draws_same_result(backend, T, method, rng):
    conv, _ = _backends()[backend]
    B = 20
    x = rng.integers(0, 256, size=(B, 4, 4, 3)).astype(np.uint8)
    y = rng.dirichlet(np.ones(4), size=B).astype(np.float32)
    d = zm.draw(rng, B)
    ref = dm.zeta_mixup(x, y, T=T, gamma=(2.0, 3.5), draws=d, method=method, dtype="uint8")
    got = dm.zeta_mixup(conv(x), conv(y), T=T, gamma=(2.0, 3.5), draws=d, method=method, dtype="uint8")
    np.testing.assert_array_equal(_np(got.index), ref.index)
    np.testing.assert_array_equal(_np(got.weights), ref.weights)
    assert np.max(np.abs(_np(got.images).astype(int) - ref.images.astype(int))) <= 1
    np.testing.assert_allclose(_np(got.labels), ref.labels, atol=1e-6)


def test_strict_namespace_errors_are_the_same(rng):
    x = xps.asarray(rng.normal(size=(4, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=r"k_mixup: argument 'labels' expected class ids in \[0, 2\]"):
        dm.k_mixup(x, xps.asarray(np.array([0, 1, 2, 3])), k=2, num_classes=3)
    with pytest.raises(ValueError, match=r"argument 'images' expected images of dtype uint8, float16"):
        dm.k_mixup(xps.asarray(np.ones((4, 3), np.int64)), xps.asarray(np.zeros(4, np.int64)),
                   num_classes=1)


@pytest.mark.parametrize("op,kw", [("k_mixup", dict(k=4)), ("mixup", {}), ("cutmix", dict(layout="CHW")),
                                   ("zeta_mixup", dict(T=3))])
def test_torch_cpu_batches_take_the_numpy_path_and_come_back_as_torch(op, kw, rng, monkeypatch):
    """torch CPU tensors are mixed on NumPy views (bitwise NumPy's result) and returned as
    torch tensors; a batch that needs gradients keeps the torch expressions."""
    import dataclasses

    import torch

    from dali_mixup.core import _fast

    fast = []
    for name in ("blend_numpy", "zeta_mix_numpy"):
        real = getattr(_fast, name)
        monkeypatch.setattr(_fast, name, lambda *a, _r=real, **k: (fast.append(1), _r(*a, **k))[1])

    f = getattr(dm, op)
    x = rng.normal(size=(12, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, size=12)
    e = x * 2.0
    ref = f(x, y, num_classes=4, extra=[e], rng=np.random.default_rng(0), **kw)
    fast.clear()
    got = f(torch.from_numpy(x), torch.from_numpy(y), num_classes=4, extra=[torch.from_numpy(e)],
            rng=np.random.default_rng(0), **kw)
    assert fast  # the NumPy fast paths ran
    for field in dataclasses.fields(ref):
        a, b = getattr(ref, field.name), getattr(got, field.name)
        for ra, ga in (zip(a, b) if isinstance(a, tuple) else [(a, b)]):
            if isinstance(ra, np.ndarray):
                assert isinstance(ga, torch.Tensor), field.name
                np.testing.assert_array_equal(ga.numpy(), ra)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    fast.clear()
    res = f(xt, torch.from_numpy(y), num_classes=4, rng=np.random.default_rng(0), **kw)
    assert not fast
    res.images.sum().backward()
    assert xt.grad is not None and float(xt.grad.sum()) == pytest.approx(x.size, rel=1e-4)
    np.testing.assert_allclose(res.images.detach().numpy(), ref.images, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["mixup", "zeta_mixup"])
def test_torch_dtypes_numpy_cannot_view_get_the_dtype_error(op):
    import torch

    x = torch.zeros((4, 3, 2, 2), dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=rf"{op}: argument 'images' expected images of dtype .*bfloat16"):
        getattr(dm, op)(x, torch.arange(4) % 2, num_classes=2)
