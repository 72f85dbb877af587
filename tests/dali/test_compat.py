"""The DALI internals read by ``dali_mixup.dali._compat``: this fails when a DALI release
changes them (then update ``_compat`` and its ``CHECKED`` versions)."""
from __future__ import annotations

import pytest

import nvidia.dali
from nvidia.dali import fn, pipeline_def, types

from dali_mixup.dali import _compat

pytestmark = pytest.mark.dali


def test_the_installed_dali_is_a_checked_release():
    major, minor = (int(p) for p in nvidia.dali.__version__.split(".")[:2])
    assert (major, minor) in _compat.CHECKED


def test_internals_read_by_compat(tmp_path):
    seen = {}
    (tmp_path / "0").mkdir()

    @pipeline_def(batch_size=3, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(name="x", dtype=types.FLOAT16)
        z = fn.cast(x, dtype=types.FLOAT)
        _, labels = fn.readers.file(file_root=str(tmp_path))
        seen.update(declared=_compat.declared_dtype(x), cast=_compat.declared_dtype(z),
                    plain=_compat.declared_dtype(fn.random.uniform()),
                    reader=_compat.source_schema(labels), other=_compat.source_schema(z),
                    max_batch=_compat.max_batch_size())
        return z

    pipe()
    assert seen == dict(declared=types.FLOAT16, cast=types.FLOAT, plain=None,
                        reader="readers__File", other="Cast", max_batch=3)
