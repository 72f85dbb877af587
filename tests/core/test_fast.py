"""The NumPy fast paths equal the plain array-API expressions they stand in for."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dali_mixup.core import _fast
from dali_mixup.core.apply import blend_reference, zeta_mix_reference
from dali_mixup.core.plan import mixing_matrix, zeta_weights


def _case(seed: int, b: int, shape: tuple, dtype, uniform: bool):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b,) + shape).astype(dtype)
    partner = rng.integers(0, b, size=b)  # repeats and self-matches allowed
    lam = np.full(b, rng.random()) if uniform else rng.random(b)
    return x, partner, lam


cases = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 12),
                  st.lists(st.integers(1, 7), min_size=0, max_size=3).map(tuple),
                  st.sampled_from([np.float32, np.float64]), st.booleans())


@settings(max_examples=60, deadline=None)
@given(cases)
def test_blend_numpy_is_bitwise_the_plain_blend(case):
    x, partner, lam = _case(*case)
    ref = blend_reference(x, partner, lam, np)
    np.testing.assert_array_equal(_fast.blend_numpy(x, partner, lam), ref)
    np.testing.assert_array_equal(_fast.blend_numpy(x, partner, lam, out=np.empty_like(x)), ref)


@settings(max_examples=60, deadline=None)
@given(cases)
def test_blend_samples_is_bitwise_the_plain_blend_of_the_stack(case):
    x, partner, lam = _case(*case)
    samples = [np.ascontiguousarray(s) for s in x]
    out = np.full_like(x, np.nan)
    got = _fast.blend_samples(samples, partner, lam, out=out)
    assert got is out
    np.testing.assert_array_equal(got, blend_reference(x, partner, lam, np))


def test_large_batches_are_split_over_threads_with_the_same_result(monkeypatch):
    x, partner, lam = _case(3, 9, (4, 5), np.float32, False)
    ref = blend_reference(x, partner, lam, np)
    calls = []
    real = _fast.run_parallel
    monkeypatch.setattr(_fast, "PARALLEL_BYTES", 1)  # every batch counts as large
    monkeypatch.setattr(_fast, "parallel_parts", lambda: 3)
    monkeypatch.setattr(_fast, "run_parallel", lambda tasks: (calls.append(len(tasks)), real(tasks)))
    np.testing.assert_array_equal(_fast.blend_samples(list(x), partner, lam, np.empty_like(x)), ref)
    np.testing.assert_array_equal(_fast.blend_numpy(x, partner, lam, out=np.empty_like(x)), ref)
    assert calls == [3, 3]


@pytest.mark.parametrize("T", [2, 3, 6])
def test_zeta_gather_is_bitwise_and_matmul_within_rounding(T):
    rng = np.random.default_rng(T)
    b = 8
    x = rng.normal(size=(b, 3, 4)).astype(np.float32)
    index = np.stack([np.arange(b)] + [rng.permutation(b) for _ in range(T - 1)], axis=1)
    w = zeta_weights(T, 2.4)
    ref = zeta_mix_reference(x, index, w.astype(np.float32), np)
    gather = _fast.zeta_mix_numpy(x, index, w, "gather", include_self=True)
    np.testing.assert_array_equal(gather, ref)
    W = mixing_matrix(index, w, include_self=True)
    matmul = _fast.zeta_mix_numpy(x, index, w, "matmul", include_self=True, W=W)
    np.testing.assert_allclose(matmul, ref, rtol=1e-5, atol=1e-6)


def _blocks(rng, b, k, nb):
    idx = rng.permutation(b)[: 2 * nb * k].reshape(2, nb, k)
    return idx[0], idx[1]


@pytest.mark.parametrize("branch", ["small", "whole blocks", "column slices", "threads"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_cost_terms_equal_the_plain_expression(branch, dtype, monkeypatch):
    """Each route of the NumPy cost terms (all blocks at once, a block at a time, slices of
    columns, blocks over threads) gives the array-API expression's norms and Gram products."""
    from dali_mixup.core.cost import terms

    rng = np.random.default_rng(5)
    b, k, nb, d = 24, 4, 3, 600
    x = (rng.normal(size=(b, d)) * rng.uniform(0.1, 10, size=(b, 1))).astype(dtype)  # spread norms
    left, right = _blocks(rng, b, k, nb)
    x64 = x.astype(np.float64)
    ref = terms(x64[left], x64[right], np)
    limits = {"small": (1 << 40, 1 << 40, 1e30), "whole blocks": (0, 1 << 40, 1e30),
              "column slices": (0, 1, 1e30), "threads": (0, 1 << 40, 0)}[branch]
    for name, value in zip(("_SMALL_BYTES", "_SLICE_BYTES", "_PARALLEL_GRAM_FLOPS"), limits):
        monkeypatch.setattr(_fast, name, value)
    monkeypatch.setattr(_fast, "parallel_parts", lambda: 2)
    tol = dict(rtol=1e-4, atol=1e-2) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-8)
    g = np.einsum("bkd,bjd->bkj", x64[left], x64[right])  # independent of matmul
    np.testing.assert_allclose(ref[2], g, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ref[0], (x64[left] ** 2).sum(-1), rtol=1e-12)
    for got in (_fast.numpy_terms(x, left, right), _fast.gathered_terms(x[left], x[right])):
        for t, want in zip(got, ref):
            np.testing.assert_allclose(t, want, **tol)
    for got in (_fast.numpy_terms(x, left, right, norms=False), _fast.gathered_terms(x[left], x[right], norms=False)):
        assert got[0] is None and got[1] is None
        np.testing.assert_allclose(got[2], g, **tol)


def test_numpy_blas_is_set_to_one_thread_and_kept(monkeypatch, rng):
    """Our first product sets NumPy's own BLAS to one thread and leaves it there: restoring it
    after each product let OpenBLAS's idle thread spin against the training loop."""
    import dali_mixup as dm
    from dali_mixup.core import _threads

    ctls = _threads._numpy_blas()
    assert ctls, "NumPy's OpenBLAS not found by threadpoolctl"
    saved = [c.num_threads for c in ctls]
    try:
        for c in ctls:
            c.set_num_threads(2)
        monkeypatch.setitem(_threads._blas_state, "pinned", False)
        x = rng.normal(size=(32, 3, 4, 4)).astype(np.float32)
        dm.k_mixup(x, np.arange(32) % 4, k=8, num_classes=4, rng=np.random.default_rng(0))
        assert [c.num_threads for c in ctls] == [1] * len(ctls)
        dm.zeta_mixup(x, np.arange(32) % 4, num_classes=4, rng=np.random.default_rng(0))
        assert [c.num_threads for c in ctls] == [1] * len(ctls)
    finally:
        for c, n in zip(ctls, saved):
            c.set_num_threads(n)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), b=st.integers(1, 9), layout=st.sampled_from(["HWC", "CHW", "HW"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_paste_numpy_equals_the_plain_cutmix_expression(seed, b, layout, dtype):
    """CutMix and mix rows: the pasted box or the blend, as x * (1 - M) + x[partner] * M."""
    from dali_mixup.core.apply import expand, paste, pixel_share

    rng = np.random.default_rng(seed)
    dims = {"H": int(rng.integers(1, 9)), "W": int(rng.integers(1, 9)), "C": 3}
    x = rng.normal(size=(b,) + tuple(dims[c] for c in layout)).astype(dtype)
    axes = (layout.index("H"), layout.index("W"))
    h, w = dims["H"], dims["W"]
    partner = rng.integers(0, b, size=b)
    cut = rng.random(b) < 0.6
    share = np.where(cut, 0.0, rng.random(b)).astype(dtype)
    y = np.sort(rng.integers(0, h + 1, size=(b, 2)), axis=1)
    xx = np.sort(rng.integers(0, w + 1, size=(b, 2)), axis=1)
    boxes = np.where(cut[:, None], np.concatenate([y, xx], axis=1), 0)
    m = expand(pixel_share(share, cut, boxes, h, w, np), axes, x.ndim - 1, np)
    ref = paste(x, partner, m, np)
    np.testing.assert_array_equal(_fast.paste_numpy(x, partner, share, cut, boxes, axes), ref)
    buf = np.empty_like(x)
    assert _fast.paste_numpy(x, partner, share, cut, boxes, axes, out=buf) is buf
    np.testing.assert_array_equal(buf, ref)
