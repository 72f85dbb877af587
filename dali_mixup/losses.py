"""Small helpers for PyTorch users of ``DALIGenericIterator`` (imports torch lazily)."""
from __future__ import annotations


def soft_target_cross_entropy(logits, target):
    """Mean over the batch of ``-sum_c target_c * log_softmax(logits)_c``.

    ``target`` is the ``[B, C]`` soft-label batch the mixing operators produce. Equal to
    ``lam * CE(y) + (1 - lam) * CE(y_partner)`` for mixup (both reference codes).
    """
    import torch

    return torch.sum(-target * torch.log_softmax(logits, dim=-1), dim=-1).mean()
