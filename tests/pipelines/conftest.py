"""Fixtures of the pipeline tests: dataset folders of real JPEG files, and an image-check
cache of each test's own (nothing is written to the user's ~/.cache)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image


def write_jpegs(root, classes, n_per_class, size=16, seed=0):
    """``root/<class>/<i>.jpg``: ``n_per_class`` JPEG files per class (class ``c`` is brighter
    than class ``c - 1``, with noise), written by Pillow. Returns ``str(root)``."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(n_per_class):
            img = np.clip(40 + 60 * c + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(root, name, f"{i:03d}.jpg"), quality=90)
    return str(root)


@pytest.fixture(autouse=True)
def _image_check_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DALI_MIXUP_CACHE", str(tmp_path_factory.mktemp("cache")))
