"""A short soak: resident memory stays flat over many pipeline iterations (full run: docs/operators.md)."""
import pytest

import nvidia.dali  # noqa: F401  (a missing DALI fails loudly)

from dali_mixup.tools.soak import soak


@pytest.mark.parametrize("op", ["mixup", "k_mixup", "zeta_mixup"])
def test_memory_stays_flat(op):
    r = soak(op, 600, batch_size=32, shape=(16, 16, 3), warmup=150)
    assert r["growth_pct"] < 5, r
