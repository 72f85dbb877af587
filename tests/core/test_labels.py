"""Labels (dali_mixup/core/labels.py): class ids -> one-hot of any integer width, soft labels as given."""
from __future__ import annotations

import numpy as np
import pytest

import dali_mixup as dm


def test_narrow_integer_labels_do_not_wrap(rng):
    r = dm.mixup(rng.random((4, 3)).astype(np.float32), np.array([0, 1, 255, 0], np.uint8),
                 num_classes=300, prob=0.0)
    np.testing.assert_array_equal(r.labels.sum(1), 1.0)
    assert np.flatnonzero(r.labels[2]).tolist() == [255]


def test_label_smoothing_on_float_labels_warns(rng):
    soft = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    with pytest.warns(UserWarning, match="label_smoothing=0.1 applies to class-id labels"):
        r = dm.mixup(rng.random((4, 2)).astype(np.float32), soft, label_smoothing=0.1, prob=0.0)
    np.testing.assert_array_equal(r.labels, soft)
