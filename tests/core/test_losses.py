"""soft_target_cross_entropy: the value against an independent computation, and its checks."""
from __future__ import annotations

import math
import re

import pytest
import torch

from dali_mixup.losses import soft_target_cross_entropy


def test_value_is_the_mean_soft_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.25, 0.75]])

    def ce(row, t):  # -sum t_c log softmax_c, by hand
        z = math.log(sum(math.exp(v) for v in row))
        return -sum(tc * (v - z) for v, tc in zip(row, t))

    expected = (ce([2.0, 0.0, -1.0], [0.7, 0.3, 0.0]) + ce([0.5, 0.5, 3.0], [0.0, 0.25, 0.75])) / 2
    assert soft_target_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # one-hot targets give the ordinary cross-entropy
    y = torch.tensor([0, 2])
    torch.testing.assert_close(soft_target_cross_entropy(logits, torch.eye(3)[y]),
                               torch.nn.functional.cross_entropy(logits, y))


@pytest.mark.parametrize("target, got", [
    (torch.tensor([[0], [2]], dtype=torch.int32), "shape [2, 1] and dtype torch.int32"),
    (torch.tensor([[0.0], [2.0]]), "shape [2, 1] and dtype torch.float32"),
    (torch.tensor([0, 2]), "shape [2] and dtype torch.int64"),
    (torch.eye(3, dtype=torch.int64)[:2], "shape [2, 3] and dtype torch.int64"),
    (torch.ones(2, 4) / 4, "shape [2, 4] and dtype torch.float32"),
])
def test_class_ids_and_mismatched_targets_are_rejected(target, got):
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"argument 'target' expected float soft labels of the "
                       r"logits' shape \[2, 3\], got Tensor of " + re.escape(got)):
        soft_target_cross_entropy(logits, target)


def test_class_ids_get_a_hint():
    with pytest.raises(ValueError, match="class ids\\? use torch.nn.functional.cross_entropy"):
        soft_target_cross_entropy(torch.zeros(4, 10), torch.zeros(4, 1, dtype=torch.int32))


def test_logits_must_be_2d():
    with pytest.raises(ValueError, match=r"argument 'logits' expected a \[B, C\] tensor, got "
                       r"Tensor of shape \[3\]"):
        soft_target_cross_entropy(torch.zeros(3), torch.zeros(3))
