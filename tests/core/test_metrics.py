"""dali_mixup.tools.metrics on constructed cases with known answers."""
from types import SimpleNamespace

import numpy as np
import pytest

import dali_mixup as dm
from dali_mixup import kmixup
from dali_mixup.tools import metrics as M


def _two_point(x, partner, lam):
    lam = np.asarray(lam, dtype=np.float64)
    mixed = lam[:, None] * x + (1 - lam[:, None]) * x[partner]
    return SimpleNamespace(images=mixed, partner=np.asarray(partner), lam=lam)


def test_xi_two_points_known_value():
    # two points 10 apart, lam = 0.3: each output is 3 from its nearest source, 7 from itself
    x = np.array([[0.0, 0.0], [6.0, 8.0]])
    r = _two_point(x, [1, 0], [0.3, 0.3])
    assert M.perturbation_distances(x, r.images, M.sources_of(r)) == pytest.approx([3.0, 3.0])
    assert M.xi(x, r) == pytest.approx(3.0)
    assert M.xi(x, r, reference="self") == pytest.approx(7.0)


def test_xi_mixed_pairs_rms():
    # pairs at distances 2 and 4 with lam 0.5 and 0.9: d = 1, 1, 0.4, 0.4 -> xi = sqrt(1.16 / 2)
    x = np.array([[0.0], [2.0], [10.0], [14.0]])
    r = _two_point(x, [1, 0, 3, 2], [0.5, 0.5, 0.9, 0.9])
    assert M.xi(x, r) == pytest.approx(np.sqrt((1 + 1 + 0.16 + 0.16) / 4))


def test_xi_self_matched_sample_is_zero():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 5.0]])
    r = _two_point(x, [0, 1, 2], [0.4, 0.4, 0.4])
    assert M.xi(x, r) == 0.0


def test_xi_of_k_mixup_result_matches_definition():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 7))
    r = dm.k_mixup(x, np.zeros(64, int), k=8, alpha=0.7, num_classes=2, lam_mode="sample", rng=rng)
    lam, p = np.asarray(r.lam), np.asarray(r.partner)
    want = np.sqrt(np.mean(np.minimum(lam, 1 - lam) ** 2 * np.sum((x - x[p]) ** 2, axis=1)))
    assert M.xi(x, r) == pytest.approx(want, rel=1e-5)  # float32 images


def test_xi_of_zeta_t2_is_second_weight_times_distance():
    # T = 2: output = w1 x_i + w2 x_j, nearest source x_i at w2 |x_i - x_j|
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3))
    r = dm.zeta_mixup(x, np.zeros(16, int), gamma=2.8, T=2, num_classes=2, rng=rng)
    idx = np.asarray(r.index)
    w2 = 2 ** -2.8 / (1 + 2 ** -2.8)
    d = np.linalg.norm(x - x[idx[:, 1]], axis=1)
    assert M.perturbation_distances(x, r.images, M.sources_of(r)) == pytest.approx(w2 * d, rel=1e-9)


def test_sources_of_rejects_other_objects():
    with pytest.raises(TypeError, match="partner"):
        M.sources_of(object())


def test_cross_cluster_fraction_constructed():
    c = np.array([0, 0, 1, 1])
    assert M.cross_cluster_fraction(c, [1, 0, 3, 2]) == 0.0
    assert M.cross_cluster_fraction(c, [2, 3, 0, 1]) == 1.0
    assert M.cross_cluster_fraction(c, [2, 0, 0, 2]) == 0.5
    # self-matches are not matches: left out by default, counted as intra-cluster otherwise
    assert M.cross_cluster_fraction(c, [0, 1, 0, 3]) == 1.0
    assert M.cross_cluster_fraction(c, [0, 1, 0, 3], exclude_self=False) == 0.25


def test_lemma_3_3_count_constructed():
    # r = (2, 2, 1), s = (1, 4, 0): 1/2 (1 + 2 + 1) = 2
    assert M.lemma_3_3_count([0, 0, 1, 1, 2], [0, 1, 1, 1, 1]) == 2
    assert M.lemma_3_3_count([3, 1, 2], [2, 3, 1]) == 0


def _clustered(rng, n, centres, p, radius=1.0):
    c = rng.choice(len(p), size=n, p=p)
    u = rng.normal(size=(n, centres.shape[1]))
    u *= radius * rng.uniform(0, 1, (n, 1)) / np.linalg.norm(u, axis=1, keepdims=True)
    return centres[c] + u, c


def _lemma_vs_operator(x, c, k, seed, cost):
    draws = kmixup.draw(np.random.default_rng(seed), x.shape[0], 1.0)
    plan = kmixup.plan_blocks(draws.u, x.shape[0], k, "disjoint")
    r = dm.k_mixup(x, c, k=k, num_classes=4, draws=draws, cost=cost)
    partner = np.asarray(r.partner)
    want = sum(M.lemma_3_3_count(c[plan.left[b]], c[plan.right[b]]) for b in range(plan.left.shape[0]))
    got = int(np.sum(c[plan.left] != c[partner[plan.left]]))
    assert M.cross_cluster_fraction(c, partner) == pytest.approx(2 * got / x.shape[0])
    return got, want


SQUARE = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])


@pytest.mark.parametrize("centres, cost", [(100.0 * np.eye(4), "sqeuclidean"), (SQUARE, "euclidean")])
def test_k_mixup_cross_cluster_matches_equal_lemma_3_3(centres, cost):
    # balls of radius 1, centres >= 100 apart: OT has exactly 1/2 sum|r_i - s_i| cross matches
    rng = np.random.default_rng(1)
    for seed, k in [(0, 4), (1, 16), (2, 64), (3, 8), (4, 32)]:
        x, c = _clustered(rng, 128, centres, [0.4, 0.3, 0.2, 0.1])
        got, want = _lemma_vs_operator(x, c, k, seed, cost)
        assert got == want


def test_lemma_3_3_is_only_a_lower_bound_under_the_squared_cost():
    # Corners of a square: one diagonal cross match (100^2 + 100^2) costs the same as two side
    # matches, so the W2^2 matching may take two where Lemma 3.3 counts one.
    rng = np.random.default_rng(1)
    pairs = [_lemma_vs_operator(*_clustered(rng, 128, SQUARE, [0.4, 0.3, 0.2, 0.1]), k, seed,
                                "sqeuclidean") for seed, k in [(0, 4), (1, 16), (2, 64), (3, 8)]]
    assert all(got >= want for got, want in pairs)
    assert any(got > want for got, want in pairs)


def test_theorem_3_4_rate_value_and_k_mixup_fraction():
    assert M.theorem_3_4_rate([0.5, 0.5], 8) == pytest.approx(0.25)
    # For large k the expected fraction is sqrt(2/pi) times the rate (normal approximation of
    # |r_i - s_i|). Measure it with the operator on well separated, equidistant clusters.
    p = [0.5, 0.3, 0.2]
    centres = 50.0 * np.eye(3)
    rng = np.random.default_rng(5)
    k = 32
    fr = []
    for _ in range(40):
        x, c = _clustered(rng, 512, centres, p)
        r = dm.k_mixup(x, c, k=k, num_classes=3, rng=rng)
        fr.append(M.cross_cluster_fraction(c, r.partner))
    r_, s_ = rng.multinomial(k, p, size=100000), rng.multinomial(k, p, size=100000)
    exact = np.mean(np.abs(r_ - s_).sum(axis=1) / 2) / k  # E[Lemma 3.3 count] / k
    assert np.mean(fr) == pytest.approx(exact, rel=0.08)
    assert np.mean(fr) == pytest.approx(np.sqrt(2 / np.pi) * M.theorem_3_4_rate(p, k), rel=0.1)
    # 1-mixup matches across clusters at 1 - sum p_i^2 = 0.62, 32-mixup at ~0.13
    r1 = dm.mixup(x, c, num_classes=3, rng=rng)
    assert M.cross_cluster_fraction(c, r1.partner) == pytest.approx(1 - np.sum(np.square(p)), abs=0.08)


def test_local_id_line_plane_and_gaussian():
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, (300, 1))
    line = t @ np.array([[1.0, 2.0, 3.0]])
    assert set(M.local_intrinsic_dimension(line, n_neighbors=10)) == {1}
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0].T
    plane = rng.uniform(-1, 1, (400, 2)) @ basis
    assert set(M.local_intrinsic_dimension(plane, n_neighbors=30)) == {2}
    g = rng.normal(size=(400, 4))
    assert set(M.local_intrinsic_dimension(g, n_neighbors=400)) == {4}


def test_local_id_five_percent_threshold_exact():
    # the four corners (+-1, +-s): covariance eigenvalues 1 and s^2, counted when s^2 > 0.05
    corners = lambda s: np.array([[1, s], [1, -s], [-1, s], [-1, -s]], dtype=float)  # noqa: E731
    assert set(M.local_intrinsic_dimension(corners(0.2), n_neighbors=4)) == {1}   # 0.04
    assert set(M.local_intrinsic_dimension(corners(0.25), n_neighbors=4)) == {2}  # 0.0625
    assert set(M.local_intrinsic_dimension(corners(0.2), n_neighbors=4, threshold=0.03)) == {2}
    assert set(M.local_intrinsic_dimension(np.ones((5, 3)), n_neighbors=3)) == {0}


def test_local_id_reference_set_and_errors():
    ref = np.c_[np.linspace(0, 1, 50), np.zeros(50)]
    q = np.array([[0.5, 0.0], [0.1, 0.0]])
    assert list(M.local_intrinsic_dimension(q, n_neighbors=8, reference=ref)) == [1, 1]
    with pytest.raises(ValueError, match="n_neighbors"):
        M.local_intrinsic_dimension(q, n_neighbors=3)
    with pytest.raises(ValueError, match="threshold"):
        M.local_intrinsic_dimension(ref, threshold=1.5)


def test_label_error_constructed():
    y = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    le = M.label_error(y, p)
    assert le.cross_entropy == pytest.approx([-np.log(0.9), -0.5 * np.log(0.2) - 0.5 * np.log(0.8), np.log(2)])
    assert le.entropy == pytest.approx([-(0.9 * np.log(0.9) + 0.1 * np.log(0.1)),
                                        -(0.2 * np.log(0.2) + 0.8 * np.log(0.8)), np.log(2)])
    assert list(le.disagree) == [False, True, True]  # ties go to the first class
    assert le.rate == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="N, C"):
        M.label_error(y, p[:2])


def test_knn_oracle_and_label_error_of_mixup_on_two_clusters():
    # classes are two far clusters; the oracle votes 15 of 15 near each (+1 smoothing)
    rng = np.random.default_rng(2)
    ref = np.r_[rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 20]
    lab = np.r_[np.zeros(200, int), np.ones(200, int)]
    oracle = M.knn_oracle(ref, lab, 2)
    np.testing.assert_allclose(oracle(np.array([[0.0, 0.0], [20.0, 20.0]])), [[16 / 17, 1 / 17], [1 / 17, 16 / 17]])
    # a clean sample: label error 0
    clean = M.label_error(np.eye(2)[lab], oracle, ref)
    assert clean.rate == 0.0
    assert clean.mean_cross_entropy == pytest.approx(-np.log(16 / 17))
