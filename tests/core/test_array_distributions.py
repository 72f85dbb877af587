"""Random quantities of the array layer, tested for their law over many batches.

Comparing backends on the same draws cannot see a wrong draw (every backend would use it), so
each random quantity of ``mixup``, ``k_mixup``, ``cutmix``, ``mix`` and ``zeta_mixup`` is read
from the operators' results over many batches drawn with a seeded ``rng`` and tested against
its law, at non-default arguments: lam ~ Beta(alpha, alpha) per lam group (KS test), coins
firing at rate ``prob`` and ``switch_prob`` (binomial test), CutMix box centres uniform over
H and W (chi-square), partners uniform over the other samples, zeta-mixup's ranks a uniform
permutation and gamma uniform over its range. Where a test's power matters, it also checks
that a nearby wrong law is rejected.
"""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from scipy import stats

import dali_mixup as dm

P_MIN = 1e-3  # a correct law fails one of these tests with probability ~1e-3 each


def _ks(values, law) -> float:
    return stats.kstest(np.asarray(values, np.float64), law.cdf).pvalue


def _images(rng, b, shape=(2, 3, 3)):
    return rng.normal(size=(b,) + shape).astype(np.float32)


def _lam_groups(op, lam_mode, n_batches, *, b=16, k=4, alpha=0.3, seed=0):
    """One lam per lam group and batch, checking that each group shares one lam."""
    rng = np.random.default_rng(seed)
    kw = dict(k=k) if op == "k_mixup" else {}
    group = {"batch": b, "block": 2 * (k if op == "k_mixup" else 1), "sample": 1}[lam_mode]
    out = []
    for _ in range(n_batches):
        res = getattr(dm, op)(_images(rng, b), np.zeros(b, np.int64), num_classes=1, alpha=alpha,
                              lam_mode=lam_mode, rng=rng, **kw)
        assert np.all(res.partner != np.arange(b))  # disjoint pairs, even B: everyone mixed
        counts = Counter(np.asarray(res.lam, np.float64).tolist())
        assert set(counts.values()) == {group}, (lam_mode, counts)
        out.extend(counts)
    return np.array(out)


@pytest.mark.parametrize("op", ["mixup", "k_mixup"])
@pytest.mark.parametrize("lam_mode,n_batches", [("batch", 400), ("block", 200), ("sample", 40)])
def test_lam_is_beta_alpha_alpha_per_lam_group(op, lam_mode, n_batches):
    lam = _lam_groups(op, lam_mode, n_batches, alpha=0.3)
    assert lam.size >= 400
    p = _ks(lam, stats.beta(0.3, 0.3))
    assert p > P_MIN, f"{op} lam ({lam_mode}) is not Beta(0.3, 0.3): KS p = {p:.2g}"
    assert _ks(lam, stats.uniform) < P_MIN  # the test tells Beta(0.3) from a uniform
    assert _ks(lam, stats.beta(0.6, 0.6)) < P_MIN


def test_k_mixup_permutation_pairing_lam_is_beta():
    """pairing="permutation": self-matched samples keep lam = 1, the others are Beta(2.5, 2.5)."""
    rng = np.random.default_rng(3)
    lam, selfs, n = [], 0, 0
    for _ in range(150):
        res = dm.k_mixup(_images(rng, 12), np.zeros(12, np.int64), num_classes=1, k=3, alpha=2.5,
                         pairing="permutation", lam_mode="sample", rng=rng)
        own = np.asarray(res.partner) == np.arange(12)
        np.testing.assert_array_equal(np.asarray(res.lam)[own], 1.0)
        lam.extend(np.asarray(res.lam, np.float64)[~own])
        selfs, n = selfs + int(own.sum()), n + 12
    assert _ks(lam, stats.beta(2.5, 2.5)) > P_MIN
    assert _ks(lam, stats.beta(1.5, 1.5)) < P_MIN
    # with k = 3 a sample meets itself only when the permutation maps it into its own block
    # and the assignment picks it: far below a third, at least occasionally
    assert 0 < selfs < n / 3


def _mixed_fraction(op, lam_mode, prob, n_batches, *, b=16, seed=1, **kw):
    """(mixed groups, groups) over ``n_batches`` batches; a group is mixed when its samples
    have another partner (disjoint pairs, even B: a mixed group has no self-partner)."""
    rng = np.random.default_rng(seed)
    k = kw.get("k", 1)
    size = {"batch": b, "block": 2 * k, "sample": 1}[lam_mode]
    hits = total = 0
    for _ in range(n_batches):
        res = getattr(dm, op)(_images(rng, b), np.zeros(b, np.int64), num_classes=1,
                              lam_mode=lam_mode, prob=prob, rng=rng, **kw)
        mixed = np.asarray(res.partner) != np.arange(b)
        unmixed_lam = np.asarray(res.lam)[~mixed]
        np.testing.assert_array_equal(unmixed_lam, 1.0)
        if lam_mode == "sample":
            hits, total = hits + int(mixed.sum()), total + b
        elif lam_mode == "batch":
            assert mixed.all() or not mixed.any()
            hits, total = hits + int(mixed.all()), total + 1
        else:  # block: count mixed samples, each block has `size` of them
            assert int(mixed.sum()) % size == 0
            hits, total = hits + int(mixed.sum()) // size, total + b // size
    return hits, total


@pytest.mark.parametrize("op,kw", [("mixup", dict(alpha=0.5)), ("k_mixup", dict(k=4, alpha=2.0)),
                                   ("cutmix", dict(alpha=0.5, layout="CHW")),
                                   ("mix", dict(mixup_alpha=0.4, cutmix_alpha=2.0, switch_prob=0.3))])
@pytest.mark.parametrize("lam_mode,prob,n_batches", [("batch", 0.35, 300), ("block", 0.7, 150),
                                                     ("sample", 0.2, 40)])
def test_prob_is_the_fraction_of_mixed_lam_groups(op, kw, lam_mode, prob, n_batches):
    hits, total = _mixed_fraction(op, lam_mode, prob, n_batches, **kw)
    p = stats.binomtest(hits, total, prob).pvalue
    assert p > P_MIN, f"{op}: {hits}/{total} groups mixed at prob {prob} (p = {p:.2g})"
    assert stats.binomtest(hits, total, prob ** 2).pvalue < P_MIN  # prob applied twice: caught


H, W = 41, 29  # coprime, non-square: a row/column mix-up changes the centres' range


def _cutmix_runs(n_batches, *, b=32, alpha=0.4, seed=2, op="cutmix", **kw):
    rng = np.random.default_rng(seed)
    lam, bx, cut = [], [], []
    for _ in range(n_batches):
        x = _images(rng, b, (1, H, W))
        f = getattr(dm, op)
        if op == "cutmix":
            kw["alpha"] = alpha
        res = f(x, np.zeros(b, np.int64), num_classes=1, layout="CHW", lam_mode="sample",
                correct_lam=False, rng=rng, **kw)
        lam.append(np.asarray(res.lam, np.float64))
        bx.append(np.asarray(res.boxes, np.int64))
        cut.append(np.asarray(res.cut, bool))
    return np.concatenate(lam), np.concatenate(bx), np.concatenate(cut)


def _centres(lam, bx):
    """Box centres (row, column) recovered from the clipped boxes: a box of side
    ``2 (n sqrt(1 - lam) // 2)`` is never clipped on both sides."""
    ch = (H * np.sqrt(1.0 - lam)).astype(np.int64)
    cw = (W * np.sqrt(1.0 - lam)).astype(np.int64)
    y1, y2, x1, x2 = bx.T
    np.testing.assert_array_equal(np.minimum(y2 - y1, ch // 2 * 2), y2 - y1)
    cy = np.where(y1 > 0, y1 + ch // 2, y2 - ch // 2)
    cx = np.where(x1 > 0, x1 + cw // 2, x2 - cw // 2)
    # the unclipped sides are exactly the paper's int(n sqrt(1 - lam)) (rounded to even)
    inside = (cy - ch // 2 >= 0) & (cy + ch // 2 <= H)
    np.testing.assert_array_equal((y2 - y1)[inside], (ch // 2 * 2)[inside])
    return cy, cx


def test_cutmix_lam_is_beta_and_box_centres_are_uniform_over_h_and_w():
    lam, bx, cut = _cutmix_runs(40)
    assert cut.all()
    assert _ks(lam, stats.beta(0.4, 0.4)) > P_MIN  # correct_lam=False: the drawn lam
    assert _ks(lam, stats.uniform) < P_MIN
    # the pasted area is (about) 1 - lam: its fraction of the image follows the same law
    # where the box is not clipped
    cy, cx = _centres(lam, bx)
    for c, n in ((cy, H), (cx, W)):
        assert c.min() >= 0 and c.max() < n
        counts = np.bincount(c, minlength=n)
        assert counts.size == n
        p = stats.chisquare(counts).pvalue
        assert p > P_MIN, f"box centres not uniform over {n}: p = {p:.2g}"
    # row and column independent: a 4 x 4 grid of centre cells is uniform
    grid = np.bincount((cy * 4 // H) * 4 + cx * 4 // W, minlength=16)
    cells = np.outer(np.bincount(np.arange(H) * 4 // H, minlength=4),
                     np.bincount(np.arange(W) * 4 // W, minlength=4)).ravel()
    assert stats.chisquare(grid, cells / cells.sum() * grid.sum()).pvalue > P_MIN


def test_cutmix_box_area_with_correct_lam_off_is_one_minus_beta():
    lam, bx, _ = _cutmix_runs(40, alpha=3.0, seed=4)
    cy, cx = _centres(lam, bx)
    ch = (H * np.sqrt(1.0 - lam)).astype(np.int64) // 2 * 2
    cw = (W * np.sqrt(1.0 - lam)).astype(np.int64) // 2 * 2
    whole = (cy - ch // 2 >= 0) & (cy + ch // 2 <= H) & (cx - cw // 2 >= 0) & (cx + cw // 2 <= W)
    area = (bx[:, 1] - bx[:, 0]) * (bx[:, 3] - bx[:, 2])
    np.testing.assert_array_equal(area[whole], (ch * cw)[whole])
    assert _ks(lam, stats.beta(3.0, 3.0)) > P_MIN
    assert _ks(lam, stats.beta(1.5, 1.5)) < P_MIN


def test_mix_switch_prob_and_each_method_draws_lam_with_its_own_alpha():
    """Very different alphas: CutMix rows' lam ~ Beta(5), mixup rows' lam ~ Beta(0.2)."""
    lam, _, cut = _cutmix_runs(30, op="mix", seed=5, mixup_alpha=0.2, cutmix_alpha=5.0,
                               switch_prob=0.3)
    p = stats.binomtest(int(cut.sum()), cut.size, 0.3).pvalue
    assert p > P_MIN, f"{int(cut.sum())}/{cut.size} CutMix rows at switch_prob 0.3 (p = {p:.2g})"
    assert _ks(lam[cut], stats.beta(5.0, 5.0)) > P_MIN
    assert _ks(lam[~cut], stats.beta(0.2, 0.2)) > P_MIN
    assert _ks(lam[cut], stats.beta(0.2, 0.2)) < P_MIN  # each law rejects the other's draws
    assert _ks(lam[~cut], stats.beta(5.0, 5.0)) < P_MIN


@pytest.mark.parametrize("mixup_alpha,cutmix_alpha", [(0.0, 0.5), (0.5, 0.0)])
def test_mix_with_one_method_disabled_draws_only_the_other(mixup_alpha, cutmix_alpha):
    lam, _, cut = _cutmix_runs(20, op="mix", seed=6, mixup_alpha=mixup_alpha,
                               cutmix_alpha=cutmix_alpha, switch_prob=0.5)
    assert cut.all() if mixup_alpha == 0 else not cut.any()
    assert _ks(lam, stats.beta(0.5, 0.5)) > P_MIN


def _partner_counts(op, b, n_batches, seed, **kw):
    """counts[i, j]: how often sample j was sample i's partner."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((b, b), np.int64)
    for _ in range(n_batches):
        res = getattr(dm, op)(_images(rng, b), np.zeros(b, np.int64), num_classes=1, rng=rng, **kw)
        partner = np.asarray(res.partner)
        if kw.get("pairing", "disjoint") == "disjoint":
            assert np.all(partner != np.arange(b))  # every sample gets another
            paired = partner[partner] == np.arange(b)  # pairs, but for the odd sample's mate
            assert paired.sum() >= b - (b % 2) * 2
        counts[np.arange(b), partner] += 1
    return counts


@pytest.mark.parametrize("op,b,kw", [("mixup", 8, dict(alpha=0.5)), ("mixup", 7, dict(alpha=0.5)),
                                     ("cutmix", 6, dict(alpha=0.5)),
                                     ("k_mixup", 8, dict(k=2, alpha=0.5))])
def test_disjoint_partners_are_uniform_over_the_other_samples(op, b, kw):
    """By symmetry (i.i.d. batches) every sample's partner is uniform over the others, with an
    odd batch too (its odd sample is mixed with a random other one)."""
    counts = _partner_counts(op, b, 1200 // b * 3, seed=7, **kw)
    assert np.all(np.diag(counts) == 0)
    others = counts[~np.eye(b, dtype=bool)].reshape(b, b - 1)
    for i in range(b):
        p = stats.chisquare(others[i]).pvalue
        assert p > P_MIN, f"sample {i}'s partners {others[i]} are not uniform (p = {p:.2g})"


def test_permutation_partners_are_uniform_over_all_samples():
    """pairing="permutation", k = 1: each sample meets a uniform random sample, itself included."""
    counts = _partner_counts("k_mixup", 6, 600, seed=8, k=1, pairing="permutation")
    for i in range(6):
        assert stats.chisquare(counts[i]).pvalue > P_MIN


def _zeta_runs(n_batches, *, b, T, seed, **kw):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        res = dm.zeta_mixup(_images(rng, b), np.zeros(b, np.int64), num_classes=1, T=T, rng=rng, **kw)
        out.append(res)
    return out


def _ranks(res):
    """``ranks[i, j]``: the rank (1 = largest weight) of sample j in output i's mix, 0 if absent."""
    index = np.asarray(res.index)
    w = np.asarray(res.weights, np.float64)
    b, t = index.shape
    order = np.argsort(-w, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(1, t + 1)[None, :], axis=1)
    ranks = np.zeros((b, b), np.int64)
    ranks[np.arange(b)[:, None], index] = rank
    assert np.all((ranks > 0).sum(1) == t)  # T distinct samples per mix
    return ranks


@pytest.mark.parametrize("gamma", [1.8, (2.0, 3.5)])
def test_zeta_self_weight_dominates_and_partner_ranks_are_a_uniform_permutation(gamma):
    """T = B = 4: sample i has rank 1 and the three others a uniform permutation of ranks 2..4."""
    b = 4
    patterns = Counter()
    for res in _zeta_runs(300, b=b, T=None, seed=9, gamma=gamma):
        ranks = _ranks(res)
        np.testing.assert_array_equal(np.diag(ranks), 1)
        w = np.sort(np.asarray(res.weights, np.float64), axis=1)[:, ::-1]
        assert np.all(w[:, 0] > w[:, 1:].sum(1))  # Theorem 1 (gamma >= 1.72865)
        for i in range(b):
            patterns[tuple(ranks[i, np.arange(b) != i])] += 1
    assert set(patterns) == set(itertools.permutations(range(2, b + 1)))
    p = stats.chisquare(list(patterns.values())).pvalue
    assert p > P_MIN, f"partner ranks are not a uniform permutation: {dict(patterns)} (p = {p:.2g})"


def test_zeta_partners_are_uniform_ordered_samples_without_replacement():
    """T = 3 of B = 6: the (rank 2, rank 3) partners are uniform over the 20 ordered pairs of
    other samples."""
    b, T = 6, 3
    pairs = Counter()
    for res in _zeta_runs(200, b=b, T=T, seed=10, gamma=2.2):
        ranks = _ranks(res)
        for i in range(b):
            second, third = int(np.flatnonzero(ranks[i] == 2)[0]), int(np.flatnonzero(ranks[i] == 3)[0])
            assert i not in (second, third)
            pairs[((second - i) % b, (third - i) % b)] += 1
    assert len(pairs) == (b - 1) * (b - 2)
    assert stats.chisquare(list(pairs.values())).pvalue > P_MIN


def test_zeta_gamma_is_uniform_over_its_range():
    runs = _zeta_runs(500, b=5, T=3, seed=11, gamma=(1.9, 3.7))
    g = np.array([r.gamma for r in runs])
    assert _ks(g, stats.uniform(1.9, 1.8)) > P_MIN
    assert _ks(g, stats.uniform(1.9, 1.5)) < P_MIN
    for r in runs[:20]:  # the weights are the p-series of the reported gamma
        np.testing.assert_allclose(np.asarray(r.weights)[0], dm.zeta_weights(3, r.gamma), rtol=1e-6)


def test_zeta_prob_is_the_fraction_of_mixed_batches():
    runs = _zeta_runs(500, b=6, T=4, seed=12, prob=0.35)
    mixed = np.array([np.asarray(r.index).shape[1] > 1 for r in runs])
    for r, m in zip(runs, mixed):
        assert np.asarray(r.index).shape[1] == (4 if m else 1)
    hits = int(mixed.sum())
    assert stats.binomtest(hits, mixed.size, 0.35).pvalue > P_MIN
    assert stats.binomtest(hits, mixed.size, 0.35 ** 2).pvalue < P_MIN
