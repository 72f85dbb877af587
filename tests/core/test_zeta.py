"""zeta-mixup, array layer: exact weights, the paper's theorems, mixing invariants."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import dali_mixup as dm
from dali_mixup import zeta as zm


@pytest.mark.parametrize("T,gamma,w1", [(32, 2.8, 0.80258), (512, 2.8, 0.80191), (32, 2.4, 0.72575)])
def test_dominant_weight_matches_the_reference_code(T, gamma, w1):
    w = dm.zeta_weights(T, gamma)
    assert w[0] == pytest.approx(w1, abs=5e-6)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(w) < 0)


@given(T=st.integers(2, 2000), gamma=st.floats(1.72865, 20.0))
def test_theorem1_one_weight_dominates(T, gamma):
    w = dm.zeta_weights(T, gamma)
    assert w[0] > w[1:].sum()


def test_theorem1_bound_is_tight():
    """Just below gamma_min the infinite sum is > 2, so for a long enough T domination fails."""
    w = dm.zeta_weights(200_000, 1.70)
    assert w[0] < w[1:].sum()


@pytest.mark.filterwarnings("ignore:.*Theorem 1")
@given(lam=st.floats(0.51, 0.999))
def test_theorem2_T2_is_mixup(lam):
    gamma = math.log2(lam / (1 - lam))
    w = dm.zeta_weights(2, gamma)
    assert w[0] == pytest.approx(lam, rel=1e-12)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 7))
    res = dm.zeta_mixup(x, np.arange(6) % 3, gamma=gamma, T=2, num_classes=3, rng=rng)
    p = res.index[:, 1]
    np.testing.assert_allclose(res.images, lam * x + (1 - lam) * x[p], rtol=1e-10)


@given(B=st.integers(1, 40), T=st.one_of(st.none(), st.integers(1, 60)),
       seed=st.integers(0, 2**32 - 1), method=st.sampled_from(["gather", "matmul"]))
def test_index_weights_and_convex_combination(B, T, seed, method):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, 2, 3)).astype(np.float32)
    y = rng.integers(0, 5, size=B)
    res = dm.zeta_mixup(x, y, T=T, num_classes=5, method=method, rng=rng)
    t = B if T is None else min(T, B)
    assert res.index.shape == (B, t) and res.weights.shape == (B, t)
    np.testing.assert_array_equal(res.index[:, 0], np.arange(B))
    for row in res.index:  # partners drawn without replacement
        assert len(set(row.tolist())) == t
    np.testing.assert_allclose(res.weights.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(res.weights[0], dm.zeta_weights(t, 2.8), rtol=1e-6)
    want = np.einsum("bt,btij->bij", res.weights, x[res.index])
    np.testing.assert_allclose(res.images, want, rtol=1e-5, atol=1e-5)
    onehot = np.eye(5, dtype=np.float32)[y]
    np.testing.assert_allclose(res.labels, np.einsum("bt,btc->bc", res.weights, onehot[res.index]),
                               atol=1e-6)
    np.testing.assert_allclose(res.labels.sum(1), 1.0, atol=1e-5)
    # convexity: every output pixel lies inside its sources' range
    assert np.all(res.images <= x.max(0) + 1e-5) and np.all(res.images >= x.min(0) - 1e-5)


def test_dominant_class_is_the_sample_itself(rng):
    """Theorem 1 on labels: the top class of each output is the sample's own class."""
    B = 64
    y = rng.integers(0, 10, size=B)
    res = dm.zeta_mixup(rng.normal(size=(B, 3)), y, num_classes=10, rng=rng)
    np.testing.assert_array_equal(res.labels.argmax(1), y)
    assert np.all(res.labels.max(1) > 0.5)


def test_gather_and_matmul_agree(rng):
    x = rng.normal(size=(24, 3, 5, 5)).astype(np.float32)
    d = zm.draw(rng, 24)
    a = dm.zeta_mixup(x, np.zeros(24, np.int64), T=6, num_classes=1, draws=d, method="gather")
    b = dm.zeta_mixup(x, np.zeros(24, np.int64), T=6, num_classes=1, draws=d, method="matmul")
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_allclose(a.images, b.images, rtol=1e-5, atol=1e-6)


def test_partners_are_uniform(rng):
    """Each other sample is equally likely as a partner (chi-square-free check on counts)."""
    B, T, n = 8, 3, 4000
    u = rng.random((n, B, B))
    counts = np.zeros((B, B))
    for i in range(n):
        idx = zm.partners(u[i], B, T)
        np.add.at(counts, (np.repeat(np.arange(B), T - 1), idx[:, 1:].ravel()), 1)
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(B, dtype=bool)]
    expected = n * (T - 1) / (B - 1)
    assert np.all(np.abs(off - expected) < 5 * math.sqrt(expected))


def test_gamma_range_is_sampled_once_per_batch(rng):
    x = rng.normal(size=(16, 4))
    gs = [dm.zeta_mixup(x, np.zeros(16, np.int64), gamma=(1.8, 4.0), num_classes=1, rng=rng).gamma
          for _ in range(50)]
    assert min(gs) >= 1.8 and max(gs) <= 4.0 and len(set(gs)) == 50
    res = dm.zeta_mixup(x, np.zeros(16, np.int64), gamma=(3.0, 3.0), num_classes=1, rng=rng)
    assert res.gamma == 3.0


def test_small_gamma_warns_and_nonpositive_gamma_fails(rng):
    x = rng.normal(size=(4, 2))
    with pytest.warns(UserWarning, match="Theorem 1"):
        dm.zeta_mixup(x, np.zeros(4, np.int64), gamma=1.2, num_classes=1, rng=rng)
    with pytest.raises(ValueError, match=r"zeta_mixup: argument 'gamma' expected finite values > 0"):
        dm.zeta_mixup(x, np.zeros(4, np.int64), gamma=0.0, num_classes=1)
    with pytest.raises(ValueError, match=r"argument 'gamma' expected a \(low, high\) range with low <= high"):
        dm.zeta_mixup(x, np.zeros(4, np.int64), gamma=(3.0, 2.0), num_classes=1)


def test_batch_of_one_is_unchanged(rng):
    x = rng.integers(0, 255, size=(1, 4, 4, 3), dtype=np.uint8)
    res = dm.zeta_mixup(x, np.array([2]), num_classes=3, dtype="uint8", rng=rng)
    np.testing.assert_array_equal(res.images, x)
    np.testing.assert_array_equal(res.labels, [[0, 0, 1]])
@pytest.mark.parametrize("m,n", [(32, 150528), (256, 3072), (7, 70001), (3, 100), (40, 64 * 3 + 5)])
def test_split_matmul_equals_one_product(m, n):
    """The column-split product (zeta-mixup's mix) gives the plain product: every piece is one
    BLAS call on its columns, including unaligned widths and products too small to split."""
    from dali_mixup.core._threads import split_matmul

    rng = np.random.default_rng(m * n)
    w = rng.random((m, m), dtype=np.float32)
    x = rng.random((m, n), dtype=np.float32)
    out = np.full_like(x, np.nan)
    assert split_matmul(w, x, out) is out
    np.testing.assert_allclose(out, w.astype(np.float64) @ x.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_parallel_pool_survives_fork_and_reports_errors():
    """run_parallel after a fork works in the child (its own pool), and a task's exception
    reaches the caller instead of being lost in a pool thread."""
    import multiprocessing as mp

    from dali_mixup.core import _threads as cost

    w = np.eye(64, dtype=np.float32)
    x = np.arange(64 * 4000, dtype=np.float32).reshape(64, 4000)  # 33 MFLOP: split when >= 2 cores
    cost.run_parallel([lambda: None, lambda: None])  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:  # a child queueing work on the parent's dead threads would hang
        assert pool.apply_async(_split_in_child, (w, x)).get(timeout=60) is True

    def boom():
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        cost.run_parallel([boom, lambda: None])
    with pytest.raises(RuntimeError, match="task failed"):
        cost.run_parallel([lambda: None, boom])


def _split_in_child(w, x):
    from dali_mixup.core import _threads as cost

    out = cost.split_matmul(w, x, np.empty_like(x))
    cost.run_parallel([lambda: None, lambda: None])
    return bool(np.array_equal(out, x))
