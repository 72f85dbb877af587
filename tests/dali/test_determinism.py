"""Reproducibility, as docs/operators.md states it ("Randomness and reproducibility").

Each claim that can be checked on one CPU machine has a test; the ones held elsewhere:

* same seed, 1 or 2 DALI threads -> same batches (k_mixup, mixup, zeta_mixup):
  tests/dali/test_fn.py::test_same_seed_same_batches_other_seed_other_batches;
* the pipeline's draws replayed by the array layer give the pipeline's batch bitwise:
  tests/dali/test_fn.py::test_*_pipeline_equals_array_layer, tests/core/test_cutmix.py;
* NumPy, torch and array-api-strict (standing in for CuPy) give the same partners, lambdas,
  boxes, zeta index and weights: tests/core/test_array_api.py;
* a restored DALI checkpoint continues with identical batches: tests/dali/test_checkpoint.py;
* a training run gives the same numbers in a worker process as in this process:
  tests/pipelines/test_demo.py::test_demo_on_a_user_folder.
"""
from __future__ import annotations

import numpy as np
import pytest

import dali_mixup as dm
import dali_mixup.fn as mfn

from conftest import run_dali

OPS = {
    "k_mixup": dict(k=2),
    "mixup": {},
    "zeta_mixup": dict(gamma=(2.0, 3.5)),
    "cutmix": {},
    "mix": dict(switch_prob=0.5, lam_mode="sample"),
}


def _batches(rng, n=3, b=8):
    return [([rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(b)],
             [np.array([i % 3], np.int32) for i in range(b)]) for _ in range(n)]


def _run(op, batches, seed, threads=1):
    outs, _ = run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=3, return_info=True, **OPS[op]),
                       batches, seed=seed, num_threads=threads, layout="HWC")
    return [np.stack(t) for out in outs for t in out]  # images, labels, partner/index, lam/weights


@pytest.mark.parametrize("op", list(OPS))
def test_every_operator_same_seed_same_batches_and_draws(op, rng):
    """Two pipelines built with the same seed over the same inputs give bitwise the same
    images, soft labels and draws (partners, lambdas / zeta index, weights), whatever the
    thread count; another seed gives other batches."""
    batches = _batches(rng)
    a, b, c = _run(op, batches, seed=5), _run(op, batches, seed=5, threads=2), _run(op, batches, seed=6)
    assert len(a) == 3 * 4
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


@pytest.mark.parametrize("op", list(OPS))
def test_every_array_function_same_generator_seed_same_result(op, rng):
    x = rng.integers(0, 256, (8, 3, 6, 5), dtype=np.uint8)
    y = np.arange(8) % 3
    kw = dict(OPS[op], **({"layout": "CHW"} if op in ("cutmix", "mix") else {}))
    first, again = (getattr(dm, op)(x, y, num_classes=3, rng=np.random.default_rng(11), **kw)
                    for _ in range(2))
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
