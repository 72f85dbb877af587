"""Class ids -> one-hot, label smoothing, and soft-label checks (backend-neutral).

Labels come in one of two forms:

* integer class ids, shape ``[B]`` or ``[B, 1]``, together with ``num_classes``;
* float vectors, shape ``[B, C]`` (one-hot or already soft), used as given. Each row must be
  finite, non-negative and sum to 1 (within 1e-3): such labels are rejected rather than
  silently renormalised, because a row that does not sum to 1 is almost always a bug upstream.

Label smoothing applies to labels built from class ids (as in timm and torchvision);
float labels are taken as given.
"""
from __future__ import annotations

import warnings

from ._checks import LABEL_SUM_TOL, fail


def _is_integer(xp, a) -> bool:
    return xp.isdtype(a.dtype, "integral") or xp.isdtype(a.dtype, "bool")


def soft_labels(labels, batch_size: int, *, num_classes: int | None, label_smoothing: float,
                dtype, xp, op: str = "labels", device=None):
    """Return float labels ``[B, C]`` of ``dtype`` whose rows sum to 1.

    Args:
        labels: class ids ``[B]``/``[B, 1]`` (integer) or soft labels ``[B, C]`` (float).
        batch_size: B, the number of images the labels must match.
        num_classes: C; required for class ids, checked against the width of float labels.
        label_smoothing: eps in [0, 1): one-hot rows become ``(1 - eps) * onehot + eps / C``.
        dtype: the float dtype of the result (an ``xp`` dtype).
        xp: the array namespace.
        op: operator name used in error messages.
        device: the images' device (labels are moved there).
    """
    if labels is None or isinstance(labels, (str, bytes)):
        raise fail(op, "labels", "class ids [B] or float label vectors [B, C] (an array)",
                   type(labels).__name__)
    given = type(labels).__name__
    try:
        labels = xp.asarray(labels) if device is None else xp.asarray(labels, device=device)
    except (TypeError, ValueError, RuntimeError) as e:  # torch and others raise their own
        raise fail(op, "labels", "class ids [B] or float label vectors [B, C] (an array)",
                   f"{given} ({e})") from None
    if not (_is_integer(xp, labels) or xp.isdtype(labels.dtype, "numeric")):  # NumPy: str, object
        raise fail(op, "labels", "class ids [B] or float label vectors [B, C] (an array)",
                   f"{given} of dtype {labels.dtype}")
    if labels.ndim == 0 or labels.shape[0] != batch_size:
        got = "a scalar" if labels.ndim == 0 else f"a batch of {labels.shape[0]}"
        raise fail(op, "labels", f"a batch of {batch_size} labels, as many as 'images'", got)
    if _is_integer(xp, labels):
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = xp.reshape(labels, (batch_size,))
        if labels.ndim != 1:
            raise fail(op, "labels", "integer class ids of shape [B] or [B, 1]",
                       f"shape {tuple(labels.shape)}")
        if num_classes is None:
            raise fail(op, "num_classes", "an integer >= 1 when labels are class ids", None)
        if batch_size:
            lo, hi = int(xp.min(labels)), int(xp.max(labels))
            if lo < 0 or hi >= num_classes:
                bad = lo if lo < 0 else hi
                raise fail(op, "labels", f"class ids in [0, {num_classes - 1}] (num_classes="
                           f"{num_classes})", f"class id {bad}")
        # int64: a narrow label dtype (uint8 with C > 256) must not wrap around
        classes = xp.arange(num_classes, dtype=xp.int64, device=getattr(labels, "device", None))
        onehot = xp.astype(xp.astype(labels, xp.int64)[:, None] == classes[None, :], dtype)
        if label_smoothing > 0:
            onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
        return onehot

    if not xp.isdtype(labels.dtype, "real floating"):
        raise fail(op, "labels", "integer class ids or float label vectors", f"dtype {labels.dtype}")
    if labels.ndim != 2:
        raise fail(op, "labels", "float label vectors of shape [B, C]", f"shape {tuple(labels.shape)}")
    width = labels.shape[1]
    if num_classes is not None and width != num_classes:
        raise fail(op, "labels", f"float label vectors of width num_classes={num_classes}",
                   f"width {width}")
    if label_smoothing > 0:
        warnings.warn(f"{op}: label_smoothing={label_smoothing} applies to class-id labels; "
                      "float labels are used as given", stacklevel=3)
    soft = xp.astype(labels, dtype)
    if batch_size:
        if not bool(xp.all(xp.isfinite(soft))):
            raise fail(op, "labels", "finite float label values", "NaN or Inf")
        if bool(xp.any(soft < 0)):
            raise fail(op, "labels", "non-negative float label values", f"minimum {float(xp.min(soft))}")
        values = soft.detach() if hasattr(soft, "detach") else soft  # torch: check values, not the graph
        sums = xp.sum(xp.astype(values, xp.float64), axis=1)
        worst = float(xp.max(xp.abs(sums - 1.0)))
        if worst > LABEL_SUM_TOL:
            i = int(xp.argmax(xp.abs(sums - 1.0)))
            raise fail(op, "labels", f"float label rows that sum to 1 (within {LABEL_SUM_TOL})",
                       f"a row summing to {float(sums[i]):.6g} at sample {i}")
    return soft
