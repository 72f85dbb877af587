"""Argument and data validation shared by every operator: the one place for messages.

Every message has the same shape, after torchvision's MixUp/CutMix errors::

    k_mixup: argument 'alpha' expected a finite number > 0, got -1.0

Argument checks run when an operator is created (graph-build time in DALI); data checks run
on each batch.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Sequence

#: Theorem 1 of the zeta-mixup paper: for gamma >= GAMMA_MIN one weight dominates the rest.
GAMMA_MIN = 1.72865

IMAGE_DTYPES = ("uint8", "float16", "float32", "float64")
PAIRINGS = ("disjoint", "permutation")
LAM_MODES = ("batch", "block", "sample")
OUT_DTYPES = (None, "float16", "float32", "float64", "uint8")
#: Tolerance for "soft labels sum to 1".
LABEL_SUM_TOL = 1e-3


def fail(op: str, arg: str, expected: str, got: Any) -> ValueError:
    """Build the standard error: operator, argument, what was expected, what was received."""
    return ValueError(f"{op}: argument '{arg}' expected {expected}, got {got!r}")


def nonfinite_cost_data(op: str, arg: str, *, device: bool = False) -> ValueError:
    """k-mixup's cost met NaN or Inf in ``arg``. ``device``: costs made on the GPU, which neither
    checks nor rescales values whose squares overflow (that needs a device-to-host read per
    batch), so the message names that cause too."""
    if device:
        return fail(op, arg, "finite values (the k-mixup cost needs them; on the GPU their squares "
                    "must also fit the working dtype: scale values above ~1e18 down)",
                    "NaN or Inf, or values too large to square")
    return fail(op, arg, "finite values (the k-mixup cost needs them)", "NaN or Inf")


def is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_int(op: str, arg: str, v: Any, *, minimum: int, allow_none: bool = False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise fail(op, arg, f"an integer >= {minimum}" + (" or None" if allow_none else ""), v)
    return int(v)


def check_positive(op: str, arg: str, v: Any) -> float:
    if not is_number(v) or not math.isfinite(v) or v <= 0:
        raise fail(op, arg, "a finite number > 0", v)
    return float(v)


def check_prob(op: str, arg: str, v: Any) -> float:
    if not is_number(v) or not (0.0 <= v <= 1.0):
        raise fail(op, arg, "a probability in [0, 1]", v)
    return float(v)


def check_choice(op: str, arg: str, v: Any, choices: Sequence[Any]):
    if v not in choices:
        raise fail(op, arg, "one of " + ", ".join(repr(c) for c in choices), v)
    return v


def check_smoothing(op: str, v: Any) -> float:
    if not is_number(v) or not (0.0 <= v < 1.0):
        raise fail(op, "label_smoothing", "a number in [0, 1)", v)
    return float(v)


def check_num_classes(op: str, v: Any):
    return check_int(op, "num_classes", v, minimum=1, allow_none=True)


def check_gamma(op: str, v: Any) -> tuple[float, float]:
    """gamma as a float or a (low, high) range; returns (low, high), equal for a float."""
    if is_number(v):
        low = high = float(v)
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(is_number(g) for g in v):
        low, high = float(v[0]), float(v[1])
        if low > high:
            raise fail(op, "gamma", "a (low, high) range with low <= high", tuple(v))
    else:
        raise fail(op, "gamma", "a number > 0 or a (low, high) pair of numbers", v)
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0:
        raise fail(op, "gamma", "finite values > 0", v)
    if low < GAMMA_MIN:
        warnings.warn(
            f"{op}: gamma={v!r} goes below {GAMMA_MIN}; Theorem 1 of the zeta-mixup paper "
            "(one sample dominates each mix) no longer holds",
            stacklevel=3,
        )
    return low, high


def check_dtype(op: str, v: Any):
    if v is not None and not isinstance(v, str):
        v = getattr(v, "__name__", None) or str(v)
    return check_choice(op, "dtype", v, OUT_DTYPES)


# --------------------------------------------------------------------------- data checks


def check_batch_shapes(op: str, arg: str, shapes: Sequence[tuple]) -> None:
    """All samples of one batch must share one shape."""
    if not shapes or len(set(map(tuple, shapes))) == 1:  # the common case, at C speed
        return
    first = tuple(shapes[0])
    for i, s in enumerate(shapes):
        if tuple(s) != first:
            raise fail(op, arg, f"every sample of the batch with one shape {first} (sample 0)",
                       f"shape {tuple(s)} at sample {i}")


def check_image_dtype(op: str, arg: str, dtype_name: str) -> None:
    if dtype_name not in IMAGE_DTYPES:
        raise fail(op, arg, "images of dtype " + ", ".join(IMAGE_DTYPES), f"dtype {dtype_name}")


def check_batch_sizes(op: str, n_images: int, arg: str, n_other: int) -> None:
    if n_images != n_other:
        raise fail(op, arg, f"a batch of {n_images} samples, as many as 'images'",
                   f"a batch of {n_other}")
