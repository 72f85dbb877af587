"""Random quantities of the DALI path, tested for their distribution where they are produced.

Comparing the pipeline with the array layer on the same draws cannot see a wrong draw (both
would use it), so each quantity is tested against its law over many batches of a real
pipeline: lam ~ Beta(alpha, alpha) (KS test), CutMix box centres uniform over the image,
coins firing at rate ``prob``, and zeta partners uniform without replacement.
"""
from __future__ import annotations

import numpy as np
import pytest

from scipy import stats

import dali_mixup.fn as mfn
from dali_mixup.core.config import PairConfig
from dali_mixup.dali import _device, _graph
from nvidia.dali import fn, pipeline_def, types

pytestmark = pytest.mark.dali

B = 64
P_MIN = 1e-3  # a correct law fails one of these tests with probability ~1e-3 each


def _run(graph, n_batches, *, bs=B, shape=(2, 2, 1), seed=11):
    """Outputs of ``graph(images, labels)`` over ``n_batches`` batches (lists of arrays)."""

    @pipeline_def(batch_size=bs, num_threads=1, device_id=None, seed=seed, prefetch_queue_depth=1)
    def pipe():
        x = fn.random.uniform(range=[0.0, 1.0], shape=list(shape))
        x = fn.reshape(x, layout="HWC")
        y = fn.cast(fn.random.uniform(range=[0.0, 2.5], shape=[1]), dtype=types.INT32)
        return graph(x, y)

    p = pipe()
    p.build()
    return [[np.stack([np.array(t[i]) for i in range(len(t))]) for t in p.run()] for _ in range(n_batches)]


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_lam_is_beta_alpha_alpha(alpha):
    outs = _run(lambda x, y: mfn.mixup(x, y, num_classes=3, alpha=alpha, lam_mode="sample",
                                       return_info=True), 12)
    lam = np.concatenate([o[3] for o in outs]).astype(np.float64)
    assert lam.size == 12 * B
    p = stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue
    assert p > P_MIN, f"lam does not follow Beta({alpha}, {alpha}): KS p = {p:.2g}"
    if alpha != 1.0:  # a uniform lam (the Beta quantile skipped) must be rejected
        assert stats.kstest(lam, stats.uniform.cdf).pvalue < P_MIN


def test_k_mixup_batch_lam_is_beta_across_batches():
    outs = _run(lambda x, y: mfn.k_mixup(x, y, k=4, num_classes=3, alpha=0.3, return_info=True), 300,
                bs=8)
    lam = np.array([o[3][0] for o in outs], np.float64)
    assert all(np.all(o[3] == o[3][0]) for o in outs)  # lam_mode "batch": one per batch
    assert stats.kstest(lam, stats.beta(0.3, 0.3).cdf).pvalue > P_MIN


@pytest.mark.parametrize("prob", [0.3, 0.8])
def test_coins_fire_at_rate_prob(prob):
    outs = _run(lambda x, y: mfn.mixup(x, y, num_classes=3, prob=prob, lam_mode="sample",
                                       return_info=True), 10)
    partner = np.concatenate([o[2] for o in outs])
    own = np.concatenate([np.arange(B) for _ in outs])
    mixed = int((partner != own).sum())
    # a sample is mixed when its own coin fires (disjoint pairs: never its own partner)
    assert stats.binomtest(mixed, partner.size, prob).pvalue > P_MIN


def test_cutmix_box_centres_and_lam_are_uniform_and_beta():
    """Box centres recovered from the plan the GPU path ships: uniform over H and W."""
    h = w = 997
    cfg = PairConfig.cutmix(alpha=0.7, num_classes=3, lam_mode="sample", correct_lam=False)

    def graph(x, y):
        draws = fn.random.uniform(range=[0.0, 1.0], shape=[8], dtype=types.FLOAT64)
        planner = _device.PairPlanner(cfg, costs=None, has_features=False, layout="HWC", n_extra=0,
                                   n_masks=0, return_info=True)
        out = _graph.python(planner, dict(shapes=fn.constant(idata=[h, w, 1], dtype=types.INT64),
                                          labels=y, draws=draws))
        return out["plan"], out["lam"]

    outs = _run(graph, 10)
    plan = np.concatenate([o[0] for o in outs])
    lam = np.concatenate([o[1] for o in outs]).astype(np.float64)
    assert stats.kstest(lam, stats.beta(0.7, 0.7).cdf).pvalue > P_MIN
    y1, y2, x1, x2 = (plan[:, 4 + j].astype(np.int64) for j in range(4))
    ch = (h * np.sqrt(1.0 - lam)).astype(np.int64)
    cw = (w * np.sqrt(1.0 - lam)).astype(np.int64)
    cy = np.where(y1 > 0, y1 + ch // 2, y2 - ch // 2)  # never clipped on both sides
    cx = np.where(x1 > 0, x1 + cw // 2, x2 - cw // 2)
    for c, n in ((cy, h), (cx, w)):
        assert c.min() >= 0 and c.max() < n
        assert stats.kstest((c + 0.5) / n, stats.uniform.cdf).pvalue > P_MIN


def test_zeta_partners_are_uniform_without_replacement():
    T, bs = 5, 16
    outs = _run(lambda x, y: mfn.zeta_mixup(x, y, num_classes=3, T=T, return_info=True), 200, bs=bs)
    index = np.concatenate([o[2] for o in outs]).astype(np.int64)
    own = np.concatenate([np.arange(bs) for _ in outs])
    assert np.all(index[:, 0] == own)
    partners = index[:, 1:]
    assert np.all(partners != own[:, None])
    assert all(len(set(r)) == T - 1 for r in partners)  # without replacement
    for t in range(T - 1):  # each column: uniform over the B - 1 others
        offset = (partners[:, t] - own) % bs  # 1 .. bs-1
        counts = np.bincount(offset, minlength=bs)[1:]
        assert stats.chisquare(counts).pvalue > P_MIN
