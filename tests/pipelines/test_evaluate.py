"""dali_mixup.pipelines.evaluate on constructed cases with known answers, and against independent code."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dali_mixup.pipelines import evaluate as E
from dali_mixup.pipelines.demo import schedule
from dali_mixup.pipelines.train import stratified_subset


def _ece_loop(conf, correct, n_bins=15):
    """Guo et al.'s formulation, written independently: bins (lo, hi] from linspace."""
    edges = np.linspace(0, 1, n_bins + 1)
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if lo == 0:
            m |= conf == 0
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return total


# ----------------------------------------------------------------------------- calibration


def test_perfectly_calibrated_predictor_has_ece_zero():
    # in every bin the accuracy equals the confidence: 0.6 right 6 times in 10, 0.9 9 in 10,
    # 1.0 always right
    conf = np.r_[np.full(10, 0.6), np.full(20, 0.9), np.full(5, 1.0)]
    correct = np.r_[np.arange(10) < 6, np.arange(20) < 18, np.ones(5, bool)]
    assert E.expected_calibration_error(conf, correct, 15) == pytest.approx(0.0, abs=1e-15)


def test_ece_known_values():
    # always 100% confident, right 70% of the time: ECE = 0.3
    assert E.expected_calibration_error(np.ones(10), np.arange(10) < 7) == pytest.approx(0.3)
    # two bins: 0.95 (right 1 in 2: gap 0.45) and 0.25 (right 1 in 2: gap 0.25), equal weight
    ece = E.expected_calibration_error([0.95, 0.95, 0.25, 0.25], [1, 0, 1, 0])
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.25)
    # one bin (M = 1): ECE is |accuracy - mean confidence|
    assert E.expected_calibration_error([0.2, 0.4, 0.9], [1, 1, 1], 1) == pytest.approx(0.5)


def test_ece_matches_an_independent_loop_and_bin_edges(rng):
    conf = rng.uniform(0.1, 1.0, 2000)
    correct = rng.uniform(size=2000) < conf ** 2
    for m in (1, 10, 15):
        assert E.expected_calibration_error(conf, correct, m) == pytest.approx(
            _ece_loop(conf, correct, m), abs=1e-12)
    # right-closed bins: m / 15 belongs to bin m - 1; 0 to bin 0
    counts, _, _ = E.reliability_bins([0.0, 1 / 15, 2 / 15, 1.0], [1, 1, 1, 1], 15)
    assert counts[0] == 2 and counts[1] == 1 and counts[14] == 1 and counts.sum() == 4


def test_reliability_bins_add_up_over_parts(rng):
    conf, correct = rng.uniform(size=300), rng.uniform(size=300) < 0.5
    whole = E.reliability_bins(conf, correct)
    parts = [E.reliability_bins(conf[i:i + 100], correct[i:i + 100]) for i in (0, 100, 200)]
    for k in range(3):
        np.testing.assert_allclose(sum(p[k] for p in parts), whole[k])
    assert E.ece_from_bins(*whole) == pytest.approx(E.expected_calibration_error(conf, correct))
    with pytest.raises(ValueError):
        E.reliability_bins([1.2], [1])


def test_nll_known_value_and_torch():
    probs = np.array([[0.5, 0.5], [0.1, 0.9], [0.8, 0.2]])
    y = np.array([0, 1, 1])
    assert E.nll(probs, y) == pytest.approx(-(math.log(0.5) + math.log(0.9) + math.log(0.2)) / 3)
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    assert E.nll(torch.softmax(logits, 1).numpy(), t.numpy()) == pytest.approx(
        F.cross_entropy(logits, t).item(), rel=1e-12)


# ----------------------------------------------------------------------------- seeds


def test_paired_difference_against_student_t():
    d = E.paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    # t_{0.975, 2} = 4.302652729911275, std 1, n 3
    assert d["mean"] == 2.0 and d["std"] == pytest.approx(1.0) and d["n"] == 3
    assert d["half_width"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert not d["beyond_noise"]
    assert E.paired_difference([1.0, 1.1, 0.9], [0.0, 0.0, 0.0])["beyond_noise"]
    one = E.paired_difference([0.9], [0.5])
    assert one["mean"] == pytest.approx(0.4) and not one["beyond_noise"]
    assert E.mean_std([2.0, 4.0]) == (3.0, pytest.approx(math.sqrt(2)))
    assert E.mean_std([5.0]) == (5.0, 0.0)


# ----------------------------------------------------------------------------- perturbations


def _linear_model(seed=0, d=12, c=3):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, c)).double()


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 2, 2, generator=g, dtype=torch.float64) * 2 - 1  # in [-1, 1]
    return x


def test_pixel_scale_of_the_pipelines_normalisation():
    s, lo, hi = E.pixel_scale([127.5], [127.5])
    assert s == pytest.approx([2 / 255]) and lo == pytest.approx([-1]) and hi == pytest.approx([1])
    s, lo, hi = E.pixel_scale([0.0], [1.0], pixel_range=(0.0, 1.0))
    assert s == pytest.approx([1 / 255]) and lo == [0] and hi == [1]


def test_noise_with_sigma_zero_leaves_images_and_accuracy_unchanged():
    model, x = _linear_model(), _data()
    y = model(x).argmax(1)
    xn = E.gaussian_noise(x, 0.0, scale=2 / 255, lo=-1, hi=1)
    assert xn is x
    assert (model(xn).argmax(1) == y).all()


def test_noise_statistics_clip_and_reproducibility():
    x = torch.zeros(200, 3, 16, 16, dtype=torch.float64)
    scale = np.array([1.0, 2.0, 4.0]) / 255
    g = torch.Generator().manual_seed(3)
    xn = E.gaussian_noise(x, 8.0, scale=scale, generator=g)
    for c in range(3):  # std = sigma * scale per channel
        assert xn[:, c].std().item() == pytest.approx(8.0 * scale[c], rel=0.02)
    again = E.gaussian_noise(x, 8.0, scale=scale, generator=torch.Generator().manual_seed(3))
    assert torch.equal(xn, again)
    clipped = E.gaussian_noise(x, 255.0, scale=1 / 255, lo=-0.5, hi=0.25)
    assert clipped.min() == -0.5 and clipped.max() == 0.25


def test_fgsm_with_eps_zero_leaves_accuracy_unchanged():
    model, x = _linear_model(), _data()
    y = torch.randint(0, 3, (x.shape[0],), generator=torch.Generator().manual_seed(2))
    xa = E.fgsm(model, x, y, 0.0, scale=2 / 255, lo=-1, hi=1)
    assert xa is x
    assert torch.equal(model(xa).argmax(1), model(x).argmax(1))


def test_fgsm_step_equals_the_analytic_gradient_sign():
    # logits = W x + b: d CE / d x = W^T (softmax - onehot), computed here by hand
    model, x = _linear_model(1), _data(seed=5)
    y = torch.randint(0, 3, (x.shape[0],), generator=torch.Generator().manual_seed(4))
    W = model[1].weight.detach()
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    grad = ((p - F.one_hot(y, 3).double()) @ W).reshape(x.shape)
    eps, scale = 4.0, 2 / 255
    xa = E.fgsm(model, x, y, eps, scale=scale)
    torch.testing.assert_close(xa, x + eps * scale * grad.sign())
    assert all(q.grad is None for q in model.parameters())  # parameter grads untouched
    # clipping to the pixel range, per channel
    xc = E.fgsm(model, x, y, 255.0, scale=1 / 255, lo=[-1, -0.5, 0], hi=[1, 0.5, 0.1])
    assert xc[:, 0].min() >= -1 and xc[:, 1].abs().max() <= 0.5 and xc[:, 2].min() >= 0
    assert xc[:, 2].max() <= 0.1


def test_fgsm_lowers_the_accuracy_of_a_trained_linear_model():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 2, 2, generator=g, dtype=torch.float64)
    y = (x.reshape(400, -1).sum(1) > 0).long()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]))
        model[1].bias.zero_()
    clean = (model(x).argmax(1) == y).double().mean().item()
    adv = (model(E.fgsm(model, x, y, 0.5 * 255, scale=1 / 255)).argmax(1) == y).double().mean()
    assert clean == 1.0 and adv.item() < 0.5  # every sample within 0.5 * 4 of the boundary moves


def test_evaluate_robustness_against_direct_computation():
    model, x = _linear_model(2), _data(n=90, seed=7)
    y = torch.randint(0, 3, (90,), generator=torch.Generator().manual_seed(8))
    batches = [(x[i:i + 32], y[i:i + 32].int().reshape(-1, 1)) for i in range(0, 90, 32)]
    kw = dict(sigmas=(0.0, 16.0), epsilons=(0.0, 8.0), scale=2 / 255, lo=-1, hi=1, n_bins=15,
              noise_draws=2, seed=5)
    sums = E.evaluate_robustness(model, batches, **kw)
    r = E.finalize(sums)
    with torch.no_grad():
        logits = model(x)
    p = torch.softmax(logits, 1).numpy()
    ok = p.argmax(1) == y.numpy()
    assert r["count"] == 90
    assert r["acc"] == pytest.approx(ok.mean())
    assert r["nll"] == pytest.approx(F.cross_entropy(logits, y).item())
    assert r["ece"] == pytest.approx(_ece_loop(p.max(1), ok, 15))
    # sigma = 0 and eps = 0 give the clean accuracy exactly
    assert r["noise_acc"][0] == r["acc"] and r["fgsm_acc"][0] == r["acc"]
    xa = E.fgsm(model, x, y, 8.0, scale=2 / 255, lo=-1, hi=1)  # FGSM is per sample
    assert r["fgsm_acc"][1] == pytest.approx((model(xa).argmax(1) == y).double().mean().item())
    assert r["noise_acc_mean"] == r["noise_acc"][1] and r["fgsm_acc_mean"] == r["fgsm_acc"][1]
    # the same seed gives the same noisy accuracy; the model is left in its mode
    model.train()
    assert E.finalize(E.evaluate_robustness(model, batches, **kw))["noise_acc"] == r["noise_acc"]
    assert model.training
    assert sum(r["bins"]["count"]) == 90
    filled = [(c, a) for c, a in zip(r["bins"]["confidence"], r["bins"]["accuracy"]) if c is not None]
    assert filled and all(0 <= a <= 1 for _, a in filled)


def test_all_reduce_sums_reduces_every_additive_entry():
    model, x = _linear_model(), _data(n=20)
    y = torch.zeros(20, dtype=torch.long)
    sums = E.evaluate_robustness(model, [(x, y)], sigmas=(0.0, 8.0), epsilons=(0.0,))
    two = E.all_reduce_sums(sums, lambda v: 2 * v)
    r1, r2 = E.finalize(sums), E.finalize(two)
    assert r2["count"] == 40 and r2["acc"] == r1["acc"] and r2["ece"] == pytest.approx(r1["ece"])
    assert r2["sigmas"] == [0.0, 8.0]
    assert E.all_reduce_sums(sums, None) is sums


# ----------------------------------------------------------------------------- protocol


def test_stratified_subset_and_schedule():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    idx = stratified_subset(labels, 0.1, seed=3)
    assert np.bincount(labels[idx]).tolist() == [1, 2, 3, 4]
    assert np.array_equal(idx, stratified_subset(labels, 0.1, seed=3))
    assert not np.array_equal(idx, stratified_subset(labels, 0.5, seed=4)[:10])
    assert stratified_subset(labels, 1.0).tolist() == list(range(100))
    assert np.bincount(labels[stratified_subset(labels, 0.01)]).tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError):
        stratified_subset(labels, 0.0)
    # the digits: 22 steps per epoch on 1438 images, 2 on 143: 220 epochs, validated every 11
    assert schedule(1438, 143, 64, 20) == (220, 11)
    assert schedule(1438, 1438, 64, 20) == (20, 1)
    with pytest.raises(ValueError):
        schedule(1438, 50, 64, 20)
