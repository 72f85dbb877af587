"""The k-mixup cost registry against independent computations (scipy's cdist).

The batches have spread norms and clustered structure, so that each cost's optimal matching
differs from every other cost's: swapping two entries of the registry fails these tests.
"""
from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from dali_mixup.core.cost import COSTS, block_costs, gathered_costs

#: an independent reference for every registered cost (a new cost needs its own here)
REFERENCE = {"sqeuclidean": "sqeuclidean", "euclidean": "euclidean", "cosine": "cosine"}


def test_every_cost_has_an_independent_reference():
    assert set(REFERENCE) == set(COSTS)


def _batch(seed: int, nb: int = 6, k: int = 5, d: int = 8):
    """Clustered rows with norms spread over two orders of magnitude, and block indices."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d)) * 4
    x = centres[rng.integers(0, 3, size=2 * nb * k)] + rng.normal(size=(2 * nb * k, d))
    x *= rng.uniform(0.1, 10.0, size=(2 * nb * k, 1))
    idx = rng.permutation(2 * nb * k).reshape(2, nb, k)
    return x, idx[0], idx[1]


def _assignments(costs: np.ndarray) -> np.ndarray:
    return np.stack([linear_sum_assignment(c)[1] for c in costs])


def _reference(name, x, left, right):
    return np.stack([cdist(x[lb], x[rb], metric=REFERENCE[name]) for lb, rb in zip(left, right)])


@pytest.fixture(scope="module")
def discriminating():
    """A batch whose optimal assignments differ between every two costs (found once, seeded)."""
    for seed in range(200):
        x, left, right = _batch(seed)
        sols = {n: _assignments(_reference(n, x, left, right)) for n in COSTS}
        names = list(sols)
        if all(not np.array_equal(sols[a], sols[b]) for i, a in enumerate(names) for b in names[i + 1:]):
            return x, left, right, sols
    raise AssertionError("no discriminating batch among 200 seeds")


@pytest.mark.parametrize("name", list(COSTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_route_gives_the_references_costs(name, dtype, discriminating):
    x, left, right, _ = discriminating
    want = _reference(name, x, left, right)
    xt = x.astype(dtype)
    tol = dict(rtol=2e-4, atol=2e-3 * want.max()) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    routes = {
        "NumPy batch": block_costs(xt, left, right, cost=name, xp=np),
        "NumPy blocks": gathered_costs(xt[left], xt[right], cost=name, xp=np),
        "array API": np.asarray(block_costs(xps.asarray(xt), left, right, cost=name, xp=xps)),
    }
    for route, got in routes.items():
        np.testing.assert_allclose(got, want, **tol, err_msg=route)


@pytest.mark.parametrize("name", list(COSTS))
def test_each_cost_finds_its_own_optimal_matching(name, discriminating):
    """The matching of each cost, full or ``match_only``, on every route, is the reference's,
    and differs from every other cost's."""
    x, left, right, sols = discriminating
    for match_only in (False, True):
        for got in (block_costs(x, left, right, cost=name, xp=np, match_only=match_only),
                    np.asarray(block_costs(xps.asarray(x), left, right, cost=name, xp=xps, match_only=match_only))):
            np.testing.assert_array_equal(_assignments(got), sols[name])
    assert all(not np.array_equal(sols[name], sols[o]) for o in COSTS if o != name)


@pytest.mark.parametrize("name", list(COSTS))
@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array-api"])
def test_overflowing_terms_are_rescaled_for_every_cost(name, xp, discriminating):
    """float32 values whose squares overflow: the terms are checked (not the combined cost),
    the blocks rescaled, and the matching is the one of the data at a sane scale."""
    x, left, right, sols = discriminating
    big = (x * (1e25 / np.abs(x).max())).astype(np.float32)
    with np.errstate(over="raise"):
        got = np.asarray(block_costs(xp.asarray(big), left, right, cost=name, xp=xp))
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(_assignments(got), sols[name])


@pytest.mark.parametrize("name", list(COSTS))
def test_nan_in_the_data_is_named_for_every_cost(name, discriminating):
    x, left, right, _ = discriminating
    bad = x.copy()
    bad[left[0, 0], 3] = np.nan
    with pytest.raises(ValueError, match=r"k_mixup: argument 'features' expected finite values .* got 'NaN or Inf'"):
        block_costs(bad, left, right, cost=name, xp=np, arg="features")


def test_the_operators_and_the_command_line_offer_exactly_the_registry():
    from dali_mixup.core.config import PairConfig

    for name in COSTS:
        assert PairConfig.k_mixup(k=2, cost=name).cost == name
    with pytest.raises(ValueError, match="argument 'cost' expected one of " + ", ".join(
            repr(n) for n in COSTS).replace("'", "'?")):
        PairConfig.k_mixup(k=2, cost="manhattan")


def test_the_operators_doc_lists_exactly_the_registry():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operators.md").read_text()
    table = doc[doc.index("<!-- costs:start -->"):doc.index("<!-- costs:end -->")]
    rows = [ln for ln in table.splitlines() if ln.startswith('| `"')]
    assert [ln.split("`")[1].strip('"') for ln in rows] == list(COSTS)
    for ln, (name, entry) in zip(rows, COSTS.items()):
        assert ("`-2 <a, c>`" in ln) == entry.separable, name


def test_cosine_is_blind_to_scale_and_one_for_a_zero_sample():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 3.0]])
    c = np.array([[5.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    got = block_costs(np.concatenate([a, c]), np.array([[0, 1, 2]]), np.array([[3, 4, 5]]), cost="cosine", xp=np)[0]
    s = 1 - 1 / np.sqrt(2)
    np.testing.assert_allclose(got, [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [s, s, 1.0]], atol=1e-12)
