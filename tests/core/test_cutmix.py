"""CutMix, prob / switch_prob, extra tensors and masks: exact where possible, binomial otherwise."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import dali_mixup as dm
from dali_mixup import kmixup as km
from dali_mixup.core.draws import draw_mix
from dali_mixup.core.plan import boxes

from conftest import clustered


def _binomial_ok(hits, n, p, z=5.0):
    return abs(hits - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


@given(seed=st.integers(0, 2**32 - 1), H=st.integers(1, 20), W=st.integers(1, 20),
       lam_mode=st.sampled_from(["batch", "block", "sample"]))
def test_box_area_matches_lambda_and_pixels(seed, H, W, lam_mode):
    """correct_lam: lam = 1 - box area / (H W); pixels inside the box are the partner's."""
    rng = np.random.default_rng(seed)
    B = 6
    x = rng.normal(size=(B, 2, H, W)).astype(np.float32)
    y = rng.integers(0, 3, size=B)
    res = dm.cutmix(x, y, num_classes=3, layout="CHW", lam_mode=lam_mode, rng=rng)
    for i in range(B):
        y1, y2, x1, x2 = res.boxes[i]
        area = (y2 - y1) * (x2 - x1)
        assert res.lam[i] == pytest.approx(1 - area / (H * W), abs=1e-6)
        want = x[i].copy()
        want[:, y1:y2, x1:x2] = x[res.partner[i], :, y1:y2, x1:x2]
        np.testing.assert_array_equal(res.images[i], want)
    onehot = np.eye(3, dtype=np.float32)[y]
    np.testing.assert_allclose(res.labels, res.lam[:, None] * onehot + (1 - res.lam[:, None]) * onehot[res.partner],
                               atol=1e-6)


def test_box_sampling_follows_the_cutmix_paper():
    """Unclipped boxes have sides int(H sqrt(1 - lam)) (up to the centre rounding)."""
    lam = np.array([0.0, 0.19, 0.75, 0.96, 1.0])
    bx = boxes(100, 60, lam, np.full((5, 2), 0.5))
    cut = np.sqrt(1 - lam)
    np.testing.assert_array_equal(bx[:, 1] - bx[:, 0], 2 * ((100 * cut).astype(int) // 2))
    np.testing.assert_array_equal(bx[:, 3] - bx[:, 2], 2 * ((60 * cut).astype(int) // 2))
    # a corner centre is clipped to the image
    corner = boxes(10, 10, np.array([0.0]), np.array([[0.0, 0.99]]))
    assert corner.tolist() == [[0, 5, 4, 10]]


def test_correct_lam_off_keeps_the_drawn_lambda(rng):
    x = rng.normal(size=(8, 3, 9, 9)).astype(np.float32)
    d = draw_mix(rng, 8, 0.0, 1.0)
    res = dm.cutmix(x, np.zeros(8, np.int64), num_classes=1, correct_lam=False, lam_mode="sample", draws=d)
    mixed = np.asarray(res.partner) != np.arange(8)
    np.testing.assert_allclose(res.lam[mixed], d.lam_cut[mixed].astype(np.float32))


def test_lam_modes_share_boxes(rng):
    x = rng.normal(size=(16, 3, 12, 12)).astype(np.float32)
    res = dm.cutmix(x, np.zeros(16, np.int64), num_classes=1, lam_mode="batch", rng=rng)
    assert len({tuple(b) for b in res.boxes}) == 1
    d = draw_mix(rng, 16, 0.0, 1.0)
    res = dm.cutmix(x, np.zeros(16, np.int64), num_classes=1, lam_mode="block", k=4, draws=d)
    bp = km.plan_blocks(d.u, 16, 4, "disjoint")
    for b in range(bp.left.shape[0]):
        members = np.concatenate([bp.left[b], bp.right[b]])
        assert len({tuple(res.boxes[i]) for i in members}) == 1


def test_ot_partners_come_from_the_assignment(rng):
    """cutmix(k > 1) pairs samples exactly as k-mixup does for the same pairing draws."""
    x, _ = clustered(rng, 32, 3 * 4 * 4)
    x = x.reshape(32, 3, 4, 4)
    d = draw_mix(rng, 32, 0.0, 1.0)
    a = dm.cutmix(x, np.zeros(32, np.int64), num_classes=1, k=8, draws=d)
    b = dm.k_mixup(x, np.zeros(32, np.int64), num_classes=1, k=8, draws=km.KMixupDraws(d.u, d.lam))
    skip = np.asarray(a.partner) == np.arange(32)  # a zero-area box leaves a sample alone
    np.testing.assert_array_equal(np.asarray(a.partner)[~skip], b.partner[~skip])


@pytest.mark.parametrize("lam_mode,groups", [("batch", 1), ("sample", 16)])
def test_switch_frequency_is_binomial(lam_mode, groups):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 3, 8, 8)).astype(np.float32)
    n, cut = 300, 0
    for _ in range(n):
        res = dm.mix(x, np.zeros(16, np.int64), num_classes=1, switch_prob=0.3, lam_mode=lam_mode,
                     rng=rng)
        share_cut = res.cut | (np.asarray(res.lam) == 1)  # degenerate boxes count as CutMix draws
        cut += int(np.sum(res.cut)) if groups > 1 else int(bool(np.any(res.cut)))
        assert share_cut.sum() >= res.cut.sum()
    assert _binomial_ok(cut, n * groups, 0.3, z=5.5)


@pytest.mark.parametrize("op", ["mixup", "k_mixup", "mix", "cutmix"])
@pytest.mark.parametrize("lam_mode,groups", [("batch", 1), ("sample", 16)])
def test_prob_is_applied_exactly_once(op, lam_mode, groups):
    """The fraction of mixed groups is prob (kornia applied it twice: prob^2)."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(16, 3, 8, 8)).astype(np.float32)
    kw = dict(num_classes=1, lam_mode=lam_mode, prob=0.4)
    if op in ("mix", "cutmix"):
        kw["layout"] = "CHW"
    if op == "k_mixup":
        kw["k"] = 4
    n, hit = 250, 0
    for _ in range(n):
        res = getattr(dm, op)(x, np.zeros(16, np.int64), rng=rng, **kw)
        mixed = np.asarray(res.partner) != np.arange(16)
        if op in ("mix", "cutmix"):
            mixed |= np.asarray(res.cut)
        hit += int(mixed.sum()) if groups > 1 else int(mixed.any())
    if groups > 1:
        # per sample: a sample is mixed if its own coin says so (pairs in sample mode are
        # not symmetric in coins), minus the rare zero-area CutMix boxes
        assert _binomial_ok(hit, n * groups, 0.4, z=6)
        assert hit < n * groups * 0.5
    else:
        assert _binomial_ok(hit, n, 0.4)


def test_zeta_prob_per_batch(rng):
    x = rng.normal(size=(8, 4))
    mixed = sum(int(dm.zeta_mixup(x, np.zeros(8, np.int64), num_classes=1, prob=0.25, rng=rng).index.shape[1] > 1)
                for _ in range(400))
    assert _binomial_ok(mixed, 400, 0.25)


def test_extra_tensors_and_integer_masks(rng):
    B = 10
    x = rng.normal(size=(B, 3, 6, 6)).astype(np.float32)
    view2 = rng.normal(size=(B, 3, 6, 6)).astype(np.float32)
    seg = rng.integers(0, 5, size=(B, 1, 6, 6)).astype(np.uint8)
    y = np.zeros(B, np.int64)
    # mixup / k-mixup: extras blended with the same lam; masks from the dominant sample
    r = dm.k_mixup(x, y, k=2, num_classes=1, lam_mode="sample", extra=[view2], masks=[seg], rng=rng)
    lam = r.lam.reshape(B, 1, 1, 1)
    np.testing.assert_allclose(r.extra[0], lam * view2 + (1 - lam) * view2[r.partner], rtol=1e-6)
    dom = np.where(r.lam >= 0.5, np.arange(B), r.partner)
    np.testing.assert_array_equal(r.masks[0], seg[dom])
    assert r.masks[0].dtype == np.uint8
    # CutMix: extras get the same box; masks take the pasted region's values
    c = dm.cutmix(x, y, num_classes=1, lam_mode="sample", extra=[view2], masks=[seg], rng=rng)
    for i in range(B):
        y1, y2, x1, x2 = c.boxes[i]
        want_v = view2[i].copy()
        want_v[:, y1:y2, x1:x2] = view2[c.partner[i], :, y1:y2, x1:x2]
        np.testing.assert_array_equal(c.extra[0][i], want_v)
        want_m = seg[i].copy()
        want_m[:, y1:y2, x1:x2] = seg[c.partner[i], :, y1:y2, x1:x2]
        np.testing.assert_array_equal(c.masks[0][i], want_m)
    # zeta: extras with the same weights, masks unchanged (the sample itself dominates)
    z = dm.zeta_mixup(x, y, num_classes=1, T=4, extra=[view2], masks=[seg], rng=rng)
    np.testing.assert_allclose(z.extra[0], np.einsum("bt,btchw->bchw", z.weights, view2[z.index]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(z.masks[0], seg)


def test_mix_argument_errors():
    x = np.zeros((4, 3, 4, 4), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"mix: argument 'mixup_alpha' expected mixup_alpha > 0 or cutmix_alpha > 0, got 'both 0'"):
        dm.mix(x, y, num_classes=1, mixup_alpha=0, cutmix_alpha=0)
    with pytest.raises(ValueError, match=r"cutmix: argument 'prob' expected a probability in \[0, 1\], got 1.5"):
        dm.cutmix(x, y, num_classes=1, prob=1.5)
    with pytest.raises(ValueError, match=r"mix: argument 'switch_prob' expected a probability in \[0, 1\]"):
        dm.mix(x, y, num_classes=1, switch_prob=-0.1)
    with pytest.raises(ValueError, match=r"cutmix: argument 'layout' expected a sample layout of 3 dimensions containing H before W"):
        dm.cutmix(x, y, num_classes=1, layout="HW")
    with pytest.raises(ValueError, match=r"k_mixup: argument 'extra\[0\]' expected a batch of 4 samples"):
        dm.k_mixup(x, y, num_classes=1, extra=[np.zeros((3, 2))])


def test_cutmix_masks_must_share_the_images_layout(rng):
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"cutmix: argument 'masks\[0\]' expected samples with the "
                                         r"images' layout and height/width.*got 'shape \(8, 8\)'"):
        dm.cutmix(x, y, num_classes=1, masks=[np.zeros((4, 8, 8), np.uint8)])
    with pytest.raises(ValueError, match=r"cutmix: argument 'extra\[0\]' expected samples with the images'"):
        dm.cutmix(x, y, num_classes=1, extra=[np.zeros((4, 3, 8, 9), np.float32)])


def test_public_names_are_the_functions_and_one_result_class():
    """dm.cutmix / dm.mix are the functions (their modules are named cut and switch, so no
    submodule import can shadow them); the pair operators share one result class."""
    import importlib

    assert importlib.import_module("dali_mixup.cut").cutmix is dm.cutmix
    assert importlib.import_module("dali_mixup.switch").mix is dm.mix
    assert callable(dm.cutmix) and callable(dm.mix)
    assert dm.MixResult is dm.MixupResult is dm.PairResult
    assert importlib.import_module("dali_mixup.losses").soft_target_cross_entropy
