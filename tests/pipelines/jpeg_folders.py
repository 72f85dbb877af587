"""Helpers of the dataset-folder tests: folders of real JPEG files, and the results a
training run wrote."""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

#: a tiny, quick training run
TRAIN_ARGS = ["--epochs", "1", "--batch-size", "4", "--size", "8", "--width", "4",
              "--no-progress"]


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


def results_of(out):
    """The results JSON a training run wrote somewhere under ``out`` (the one with a history)."""
    for dp, _, fns in os.walk(out):
        for f in sorted(fns):
            if f.endswith(".json"):
                with open(os.path.join(dp, f)) as fh:
                    d = json.load(fh)
                if isinstance(d, dict) and "history" in d:
                    return d
    raise AssertionError(f"no results JSON under {out}")
