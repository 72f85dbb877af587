"""Shared test helpers: small DALI CPU pipelines over in-memory batches.

The tests are grouped by feature: ``core/`` (the array layer), ``dali/`` (the DALI operators),
``pipelines/`` (ready-made pipelines, training, demo), ``tools/`` (command, Docker, docs,
packaging). Every test under ``dali/`` carries the ``dali`` marker; elsewhere modules and
tests that build DALI pipelines mark themselves.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def clustered(rng, n, d, centers=4, spread=0.05, scale=10.0):
    """n points in R^d around `centers` well-separated cluster centres; returns (x, cluster id)."""
    c = rng.normal(size=(centers, d)) * scale
    ids = rng.integers(0, centers, size=n)
    return (c[ids] + rng.normal(size=(n, d)) * spread).astype(np.float32), ids


def run_dali(graph, batches, *, seed=42, num_threads=1, layout="HWC", batch_size=None,
             pipeline_only=False, **pipe_kwargs):
    """Build a CPU pipeline whose external sources "x" and "y" feed ``graph(images, labels)``.

    ``batches`` is a list of (images list, labels list); returns (outputs, pipeline) where
    outputs holds one tuple per batch, each a tuple of lists of NumPy arrays (one per output).
    """
    from nvidia.dali import fn, pipeline_def

    bs = batch_size or max(len(b[0]) for b in batches)

    @pipeline_def(batch_size=bs, num_threads=num_threads, device_id=None, seed=seed,
                  prefetch_queue_depth=1, **pipe_kwargs)
    def pipe():
        x = fn.external_source(name="x", layout=layout)
        y = fn.external_source(name="y")
        return graph(x, y)

    p = pipe()
    p.build()
    outs = [run_batch(p, imgs, labels) for imgs, labels in batches]
    return outs, p


def run_batch(p, imgs, labels):
    p.feed_input("x", list(imgs))
    p.feed_input("y", list(labels))
    o = p.run()
    return tuple([np.array(t[i]) for i in range(len(t))] for t in o)


def pytest_collection_modifyitems(config, items):
    dali_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dali") + os.sep
    for item in items:
        if str(item.path).startswith(dali_dir):
            item.add_marker(pytest.mark.dali)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
