"""k-mixup and mixup, array layer: exact checks against independent computations."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import dali_mixup as dm
from dali_mixup import kmixup as km

from conftest import clustered


def _blocks(plan):
    for b in range(plan.left.shape[0]):
        m = int(plan.sizes[b])
        yield plan.left[b, :m], plan.right[b, :m]


def _check_optimal(x, plan, partner, metric):
    """Each block's matching has the optimal total cost (scipy on an independent float64 cdist)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    for left, right in _blocks(plan):
        c = cdist(flat[left], flat[right], metric=metric)
        r, col = linear_sum_assignment(c)
        best = c[r, col].sum()
        pos = {int(s): j for j, s in enumerate(right)}
        ours = sum(c[i, pos[int(partner[s])]] for i, s in enumerate(left))
        assert ours == pytest.approx(best, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("data", ["random", "clustered"])
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("pairing", ["disjoint", "permutation"])
@pytest.mark.parametrize("B,k", [(64, 16), (50, 8), (33, 5), (7, 16)])
def test_each_block_matching_is_optimal(data, metric, pairing, B, k, rng):
    if data == "random":
        x = rng.normal(size=(B, 3, 4, 4)).astype(np.float32)
    else:
        x, _ = clustered(rng, B, 48)
    draws = km.draw(rng, B, 1.0)
    res = dm.k_mixup(x, np.zeros(B, np.int64), k=k, num_classes=2, cost=metric, pairing=pairing,
                     draws=draws)
    plan = km.plan_blocks(draws.u, B, k, pairing)
    assert res.k == plan.k == min(k, B // 2 if pairing == "disjoint" else B)
    _check_optimal(x, plan, res.partner, metric)


def test_costs_differ_between_metrics_on_clustered_data(rng):
    """On clustered data, W2 (squared) and plain Euclidean matchings disagree sometimes."""
    diffs = 0
    for _ in range(20):
        x, _ = clustered(rng, 64, 2, centers=3, spread=1.5, scale=3.0)
        d = km.draw(rng, 64, 1.0)
        a = dm.k_mixup(x, np.zeros(64, np.int64), k=32, num_classes=1, draws=d, cost="sqeuclidean")
        b = dm.k_mixup(x, np.zeros(64, np.int64), k=32, num_classes=1, draws=d, cost="euclidean")
        diffs += int(np.sum(a.partner != b.partner))
    assert diffs > 0


@given(B=st.integers(0, 40), k=st.integers(1, 50), seed=st.integers(0, 2**32 - 1),
       lam_mode=st.sampled_from(["batch", "block", "sample"]))
def test_disjoint_pairing_is_an_involution_without_self_matches(B, k, seed, lam_mode):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, 5)).astype(np.float32)
    y = rng.integers(0, 4, size=B)
    res = dm.k_mixup(x, y, k=k, num_classes=4, lam_mode=lam_mode, rng=rng)
    p = res.partner
    idx = np.arange(B)
    if B >= 2:
        assert np.all(p != idx), "disjoint pairing never mixes a sample with itself"
        even = idx if B % 2 == 0 else idx[np.arange(B) != _odd(p)]
        assert np.all(p[p[even]] == even)
    else:
        assert np.array_equal(p, idx)
        np.testing.assert_array_equal(res.images, x)
    # outputs are the stated convex combinations, labels sum to 1
    lam = res.lam[:, None]
    np.testing.assert_allclose(res.images, lam * x + (1 - lam) * x[p], rtol=1e-6, atol=1e-6)
    onehot = np.eye(4, dtype=np.float32)[y]
    np.testing.assert_allclose(res.labels, lam * onehot + (1 - lam) * onehot[p], atol=1e-6)
    np.testing.assert_allclose(res.labels.sum(1), 1.0, atol=1e-6)
    assert np.all((res.lam >= 0) & (res.lam <= 1))


def _odd(p):
    """The odd sample of an odd batch is the one whose partner does not point back."""
    idx = np.arange(len(p))
    return idx[p[p] != idx][0] if np.any(p[p] != idx) else -1


def test_lam_modes(rng):
    B, k = 32, 8
    x = rng.normal(size=(B, 6)).astype(np.float32)
    d = km.draw(rng, B, 0.4)
    y = np.zeros(B, np.int64)
    batch = dm.k_mixup(x, y, k=k, num_classes=1, lam_mode="batch", draws=d)
    assert np.all(batch.lam == np.float32(d.lam[0]))
    sample = dm.k_mixup(x, y, k=k, num_classes=1, lam_mode="sample", draws=d)
    np.testing.assert_array_equal(sample.lam, d.lam.astype(np.float32))
    block = dm.k_mixup(x, y, k=k, num_classes=1, lam_mode="block", draws=d)
    plan = km.plan_blocks(d.u, B, k, "disjoint")
    for left, right in _blocks(plan):
        want = np.float32(d.lam[left[0]])
        assert np.all(block.lam[left] == want) and np.all(block.lam[right] == want)
    assert len(np.unique(block.lam)) == plan.left.shape[0]


def test_permutation_pairing_follows_the_reference_code(rng):
    """Reference: source blocks are consecutive slices, targets the same slices of a permutation."""
    B, k = 24, 8
    x = rng.normal(size=(B, 10)).astype(np.float32)
    d = km.draw(rng, B, 1.0)
    res = dm.k_mixup(x, np.zeros(B, np.int64), k=k, num_classes=1, pairing="permutation",
                     cost="euclidean", draws=d)
    perm = np.argsort(d.u[:, 0], kind="stable")
    for i in range(B // k):
        blk = slice(i * k, (i + 1) * k)
        c = cdist(x[blk], x[perm[blk]])
        _, ix = linear_sum_assignment(c)
        np.testing.assert_array_equal(res.partner[blk], perm[blk][ix])


def test_permutation_pairing_with_k_equal_B_mixes_nothing(rng):
    """The reference scheme's defect: with k = B every sample matches itself."""
    B = 16
    x = rng.normal(size=(B, 4)).astype(np.float32)
    res = dm.k_mixup(x, np.arange(B) % 3, k=B, num_classes=3, pairing="permutation", rng=rng)
    np.testing.assert_array_equal(res.partner, np.arange(B))
    np.testing.assert_array_equal(res.images, x)
    np.testing.assert_array_equal(res.labels, np.eye(3, dtype=np.float32)[np.arange(B) % 3])


def test_features_drive_the_matching(rng):
    """The cost is computed on `features` when given: matching on a 1-D feature is sorting."""
    B = 20
    x = rng.normal(size=(B, 3, 2, 2)).astype(np.float32)
    f = rng.normal(size=(B, 1)).astype(np.float32)
    d = km.draw(rng, B, 1.0)
    res = dm.k_mixup(x, np.zeros(B, np.int64), k=10, num_classes=1, features=f, draws=d)
    plan = km.plan_blocks(d.u, B, 10, "disjoint")
    _check_optimal(f, plan, res.partner, "sqeuclidean")
    left, right = next(_blocks(plan))
    # in 1-D, optimal transport matches sorted order to sorted order
    np.testing.assert_array_equal(res.partner[left[np.argsort(f[left, 0])]], right[np.argsort(f[right, 0])])


def test_mixup_is_k1(rng):
    B = 11
    x = rng.integers(0, 256, size=(B, 4, 4, 3), dtype=np.uint8)
    d = km.draw(rng, B, 0.2)
    a = dm.mixup(x, np.arange(B) % 5, num_classes=5, draws=d)
    b = dm.k_mixup(x, np.arange(B) % 5, k=1, num_classes=5, draws=d)
    assert a.k == 1
    np.testing.assert_array_equal(a.partner, b.partner)
    np.testing.assert_array_equal(a.images, b.images)


@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32", "float64"])
def test_dtypes(dtype, rng):
    B = 10
    x = (rng.random((B, 8, 8, 3)) * 255).astype(dtype)
    res = dm.k_mixup(x, np.arange(B) % 2, k=4, num_classes=2, rng=rng)
    assert res.images.dtype == (np.float64 if dtype == "float64" else np.float32)
    assert res.labels.dtype == np.float32  # labels are float32 whatever the images
    xf = x.astype(res.images.dtype)
    lam = res.lam.reshape(B, 1, 1, 1)
    np.testing.assert_allclose(res.images, lam * xf + (1 - lam) * xf[res.partner], rtol=1e-6)


def test_uint8_output_rounds_and_clips(rng):
    B = 12
    x = rng.integers(0, 256, size=(B, 5, 5, 3), dtype=np.uint8)
    d = km.draw(rng, B, 1.0)
    f = dm.k_mixup(x, np.zeros(B, np.int64), k=3, num_classes=1, draws=d)
    u = dm.k_mixup(x, np.zeros(B, np.int64), k=3, num_classes=1, draws=d, dtype="uint8")
    assert u.images.dtype == np.uint8
    np.testing.assert_array_equal(u.images, np.clip(np.round(f.images), 0, 255).astype(np.uint8))
    h = dm.k_mixup(x, np.zeros(B, np.int64), k=3, num_classes=1, draws=d, dtype="float16")
    assert h.images.dtype == np.float16
    with pytest.raises(ValueError, match=r"k_mixup: argument 'dtype' expected 'uint8' only for uint8"):
        dm.k_mixup(x.astype(np.float32), np.zeros(B, np.int64), k=3, num_classes=1, dtype="uint8")


def test_soft_label_input_and_smoothing(rng):
    B, C = 8, 5
    x = rng.normal(size=(B, 3)).astype(np.float32)
    soft = rng.dirichlet(np.ones(C), size=B).astype(np.float32)
    d = km.draw(rng, B, 1.0)
    res = dm.k_mixup(x, soft, k=2, draws=d)
    lam = res.lam[:, None]
    np.testing.assert_allclose(res.labels, lam * soft + (1 - lam) * soft[res.partner], atol=1e-6)
    ids = np.arange(B) % C
    sm = dm.k_mixup(x, ids, k=2, num_classes=C, label_smoothing=0.1, draws=d)
    base = np.full((B, C), 0.1 / C, np.float32)
    base[np.arange(B), ids] += 0.9
    np.testing.assert_allclose(sm.labels, lam * base + (1 - lam) * base[sm.partner], atol=1e-6)
    np.testing.assert_allclose(sm.labels.sum(1), 1, atol=1e-6)


def test_same_rng_seed_same_result(rng):
    x = rng.normal(size=(16, 12)).astype(np.float32)
    y = np.arange(16) % 4
    a = dm.k_mixup(x, y, k=4, num_classes=4, rng=np.random.default_rng(7))
    b = dm.k_mixup(x, y, k=4, num_classes=4, rng=np.random.default_rng(7))
    c = dm.k_mixup(x, y, k=4, num_classes=4, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.partner, c.partner) or a.lam[0] != c.lam[0]


def test_huge_values_do_not_overflow_the_cost(rng):
    """|x|^2 overflows float32 at ~1e19: the cost is rescaled and the matching stays optimal."""
    B = 16
    x = (rng.normal(size=(B, 8)) * 1e25).astype(np.float32)
    d = km.draw(rng, B, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # handled: no overflow warning reaches the user
        res = dm.k_mixup(x, np.zeros(B, np.int64), k=8, num_classes=1, draws=d)
    _check_optimal(x, km.plan_blocks(d.u, B, 8, "disjoint"), res.partner, "sqeuclidean")


def test_identical_samples_tie_everywhere(rng):
    x = np.ones((10, 4, 4), np.float32)
    res = dm.k_mixup(x, np.arange(10) % 2, k=5, num_classes=2, rng=rng)
    np.testing.assert_allclose(res.images, x, rtol=1e-6)  # lam + (1 - lam) rounds within an ulp
    assert np.all(res.partner != np.arange(10))


@pytest.mark.parametrize("shape", [(12, 5), (40, 3, 4, 4)])
def test_match_only_costs_differ_by_row_and_column_constants(shape, rng):
    """The reduced matching cost is the squared distance less |a_r|^2 + |c_c|^2, on NumPy and
    under array_api_strict, so every assignment's total moves by the same constant."""
    import array_api_strict as xps

    from dali_mixup.core.cost import block_costs

    x = rng.normal(size=shape).reshape(shape[0], -1)
    plan = km.plan_blocks(rng.random((shape[0], 2)), shape[0], 4, "disjoint")
    full = block_costs(x, plan.left, plan.right, cost="sqeuclidean", xp=np)
    a, c = x[plan.left], x[plan.right]
    expect = full - (a * a).sum(-1)[:, :, None] - (c * c).sum(-1)[:, None, :]
    red = block_costs(x, plan.left, plan.right, cost="sqeuclidean", xp=np, match_only=True)
    np.testing.assert_allclose(red, expect, atol=1e-9)
    red_strict = block_costs(xps.asarray(x), plan.left, plan.right, cost="sqeuclidean", xp=xps,
                             match_only=True)
    np.testing.assert_allclose(np.asarray(red_strict), expect, atol=1e-9)
    # the euclidean cost is not separable: match_only leaves it whole
    np.testing.assert_array_equal(
        block_costs(x, plan.left, plan.right, cost="euclidean", xp=np, match_only=True),
        block_costs(x, plan.left, plan.right, cost="euclidean", xp=np))
