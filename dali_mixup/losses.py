"""Small helpers for PyTorch users of ``DALIGenericIterator`` (imports torch lazily)."""
from __future__ import annotations


def soft_target_cross_entropy(logits, target):
    """Mean over the batch of ``-sum_c target_c * log_softmax(logits)_c``.

    ``logits`` is ``[B, C]``; ``target`` is the float ``[B, C]`` soft-label batch the mixing
    operators produce (rows summing to 1). Equal to ``lam * CE(y) + (1 - lam) * CE(y_partner)``
    for mixup (both reference codes). Class-id targets (``[B]`` or ``[B, 1]`` integers, what a
    validation pipeline yields) are rejected: use ``torch.nn.functional.cross_entropy`` for them.

    Raises:
        ValueError: ``target`` is not a floating-point tensor of the logits' shape ``[B, C]``.
    """
    import torch

    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError("soft_target_cross_entropy: argument 'logits' expected a [B, C] tensor, "
                         f"got {_describe(logits)}")
    if not isinstance(target, torch.Tensor) or not target.is_floating_point() \
            or target.shape != logits.shape:
        hint = ""
        if isinstance(target, torch.Tensor) and target.shape[:1] == logits.shape[:1] and (
                target.ndim == 1 or (target.ndim == 2 and target.shape[1] == 1)):
            hint = " (class ids? use torch.nn.functional.cross_entropy for them)"
        raise ValueError("soft_target_cross_entropy: argument 'target' expected float soft labels "
                         f"of the logits' shape {list(logits.shape)}, got {_describe(target)}{hint}")
    return torch.sum(-target * torch.log_softmax(logits, dim=-1), dim=-1).mean()


def _describe(x) -> str:
    shape = getattr(x, "shape", None)
    if shape is None:
        return type(x).__name__
    return f"{type(x).__name__} of shape {list(shape)} and dtype {getattr(x, 'dtype', '?')}"
