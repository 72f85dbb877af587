"""Numerics: convexity per pixel, uint8 round trips, float16 without overflow."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import dali_mixup as dm
from dali_mixup import kmixup as km

from conftest import clustered

OPS = ["k_mixup", "mixup", "cutmix", "mix", "zeta_mixup"]


def _sources(res, op, B):
    if op == "zeta_mixup":
        return np.asarray(res.index)
    return np.stack([np.arange(B), np.asarray(res.partner)], axis=1)


@pytest.mark.parametrize("op", OPS)
@given(B=st.integers(1, 12), seed=st.integers(0, 2**32 - 1), as_uint8=st.booleans())
def test_outputs_stay_inside_their_sources_range(op, B, seed, as_uint8):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(B, 3, 5, 4), dtype=np.uint8)
    kw = {"k": 3} if op == "k_mixup" else {}
    res = getattr(dm, op)(x, np.zeros(B, np.int64), num_classes=1, rng=rng,
                          dtype="uint8" if as_uint8 else None, **kw)
    src = x[_sources(res, op, B)].astype(np.float64)  # [B, S, ...]
    out = np.asarray(res.images, dtype=np.float64)
    assert np.all(out >= src.min(axis=1) - 1e-3) and np.all(out <= src.max(axis=1) + 1e-3)


@pytest.mark.parametrize("op", OPS)
def test_uint8_round_trip_when_nothing_is_mixed(op, rng):
    x = rng.integers(0, 256, size=(9, 4, 4, 3), dtype=np.uint8)
    kw = {"layout": "HWC"} if op in ("cutmix", "mix") else {}
    res = getattr(dm, op)(x, np.arange(9) % 2, num_classes=2, prob=0.0, dtype="uint8", rng=rng, **kw)
    np.testing.assert_array_equal(res.images, x)
    np.testing.assert_array_equal(res.labels, np.eye(2, dtype=np.float32)[np.arange(9) % 2])


def test_float16_distances_do_not_overflow(rng):
    """|x|^2 of a 3x32x32 float16 image near 65504 is ~1e13: fine in float32, inf in float16."""
    x, _ = clustered(rng, 16, 3 * 32 * 32, scale=20000.0, spread=100.0)
    x16 = np.clip(x, -65504, 65504).astype(np.float16)
    d = km.draw(rng, 16, 1.0)
    res = dm.k_mixup(x16, np.zeros(16, np.int64), k=8, num_classes=1, draws=d)
    assert np.all(np.isfinite(res.images))
    ref = dm.k_mixup(x16.astype(np.float64), np.zeros(16, np.int64), k=8, num_classes=1, draws=d)
    np.testing.assert_array_equal(res.partner, ref.partner)
