"""The pipeline tests get an image-check cache of their own (nothing is written to the
user's ~/.cache)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _image_check_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DALI_MIXUP_CACHE", str(tmp_path_factory.mktemp("cache")))
