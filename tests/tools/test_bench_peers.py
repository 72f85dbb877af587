"""The benchmark's in-loop peers compute exactly the mix their libraries compute.

Each re-implementation is checked against the reference formula for fixed draws and against
its own random draws replayed; kornia (a test dependency) is checked as the library itself.
The timm and torchvision wheels here need a CUDA torch, so the benchmark uses the real
libraries only where they import (its tables say which).
"""
import itertools

import numpy as np
import pytest

import torch

from benchmarks import peers as P

C = 10


def _batch(b=8, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, 3, size, size), generator=g), torch.tensor([3, 1, 4, 1, 5, 9, 2, 6][:b])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_timm_style_is_the_flip_mix_for_a_fixed_lam(smoothing):
    x, y = _batch()
    lam = 0.3
    xm, ym = P.timm_mixup_apply(x.clone(), y, lam, C, smoothing)
    assert torch.allclose(xm, lam * x + (1 - lam) * x.flip(0), atol=1e-6)
    off = smoothing / C
    oh = torch.full((8, C), off)
    oh[torch.arange(8), y] = 1 - smoothing + off
    assert torch.allclose(ym, lam * oh + (1 - lam) * oh.flip(0), atol=1e-7)
    # lam = 1 (prob missed): images untouched, targets the (smoothed) one-hot
    x2 = x.clone()
    xm, ym = P.timm_mixup_apply(x2, y, 1.0, C, smoothing)
    assert torch.equal(xm, x) and torch.allclose(ym, oh)


def test_timm_style_replays_timms_draws():
    x, y = _batch()
    peer = P.timm_mixup(C, alpha=0.4, prefer_library=False)
    assert peer.source == "re-implementation" and "re-implementation of timm.data.Mixup" in peer.label
    np.random.seed(7)
    xm, ym = peer(x.clone(), y)
    np.random.seed(7)
    assert np.random.rand() < 1.0
    lam = float(np.random.beta(0.4, 0.4))
    ref_x, ref_y = P.timm_mixup_apply(x.clone(), y, lam, C)
    assert torch.equal(xm, ref_x) and torch.equal(ym, ref_y)


def test_torchvision_style_mixup_is_the_roll_mix():
    x, y = _batch()
    lam = 0.7
    xm, ym = P.tv_mixup_apply(x, y, lam, C)
    assert torch.allclose(xm, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    oh = torch.nn.functional.one_hot(y, C).float()
    assert torch.allclose(ym, lam * oh + (1 - lam) * oh.roll(1, 0), atol=1e-7)
    peer = P.torchvision_mixup(C, alpha=0.5, prefer_library=False)
    torch.manual_seed(11)
    xm, ym = peer(x, y)
    torch.manual_seed(11)
    lam = float(torch.distributions.Beta(torch.tensor([0.5]), torch.tensor([0.5])).sample(()))
    rx, ry = P.tv_mixup_apply(x, y, lam, C)
    assert torch.equal(xm, rx) and torch.equal(ym, ry)


def test_torchvision_style_cutmix_pastes_the_predecessors_box():
    x, y = _batch(size=10)
    box, lam_adj = P.tv_cutmix_box(0.64, r_x=1, r_y=8, h=10, w=10)
    # r = 0.5 * sqrt(0.36) = 0.3 -> half sides 3; clipped at the borders
    assert box == (0, 5, 4, 10) and lam_adj == pytest.approx(1 - 4 * 5 / 100)
    xm, ym = P.tv_cutmix_apply(x, y, box, lam_adj, C)
    expect = x.clone()
    expect[:, :, 5:10, 0:4] = x.roll(1, 0)[:, :, 5:10, 0:4]
    assert torch.equal(xm, expect)
    oh = torch.nn.functional.one_hot(y, C).float()
    assert torch.allclose(ym, lam_adj * oh + (1 - lam_adj) * oh.roll(1, 0))


def test_kornia_peer_is_kornias_mix():
    x, _ = _batch()
    y = torch.arange(8)  # distinct labels: the partner label is the partner's index
    peer = P.kornia_mixup()
    assert peer is not None and peer.source == "library"
    torch.manual_seed(0)
    xm, t = peer(x, y)
    partner, lam = t[:, 1].long(), t[:, 2]
    assert torch.equal(t[:, 0].long(), y)
    lam4 = lam.view(-1, 1, 1, 1)
    assert torch.allclose(xm, x * (1 - lam4) + x[partner] * lam4, atol=1e-6)
    logits = torch.randn(8, C)
    ce = torch.nn.functional.cross_entropy
    expect = ((1 - lam) * ce(logits, y, reduction="none") + lam * ce(logits, partner, reduction="none")).mean()
    assert torch.allclose(P.soft_target_loss(logits, t, C), expect)


def test_authors_kmixup_reconstruction_matches_blockwise_optimal_pairs():
    b, k = 6, 3
    x, y = _batch(b=b, size=4, seed=2)
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    lam = 0.25
    xm, ym, partner = P.authors_kmixup_apply(x, y, perm, lam, k, C)
    flat = x.reshape(b, -1)
    for i in range(0, b, k):  # brute force: each block's permutation of smallest total distance
        cand = perm[i:i + k]
        best = min(itertools.permutations(range(k)),
                   key=lambda s: sum(float(torch.dist(flat[i + r], flat[cand[s[r]]])) for r in range(k)))
        assert partner[i:i + k].tolist() == [int(cand[s]) for s in best]
    assert torch.allclose(xm, lam * x + (1 - lam) * x[partner])
    oh = torch.nn.functional.one_hot(y, C).float()
    assert torch.allclose(ym, lam * oh + (1 - lam) * oh[partner])


def test_in_loop_peers_are_labelled_and_run():
    x, y = _batch()
    ps = P.in_loop_peers(C, k=4)
    names = [p.name for p in ps]
    assert names[:2] == ["timm", "torchvision"] and names[-1] == "authors_kmixup"
    for p in ps:
        assert p.source in ("library", "re-implementation", "reconstruction")
        if p.source == "re-implementation":
            assert "re-implementation" in p.label
        if p.source == "reconstruction":
            assert "reconstruction" in p.label
        xm, t = p(x.clone(), y)
        assert xm.shape == x.shape and torch.isfinite(xm).all()
        loss = P.soft_target_loss(torch.randn(8, C), t, C)
        assert torch.isfinite(loss)
