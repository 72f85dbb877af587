"""Image batches in and out: dtype policy and shape checks (backend-neutral).

The math runs in float32; float64 input stays float64. Results are float32 (float64 for
float64 input) unless ``dtype`` asks for ``"float16"``, or ``"uint8"`` for uint8 input
(rounded to nearest, ties to even, and clipped to [0, 255]).
"""
from __future__ import annotations

import math

from ._checks import IMAGE_DTYPES, fail


def dtype_name(xp, dtype) -> str:
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64"):
        if hasattr(xp, name) and dtype == getattr(xp, name):
            return name
    return str(dtype)


def work_dtype(xp, in_name: str):
    return xp.float64 if in_name == "float64" else xp.float32


def as_batch(images, op: str, arg: str = "images"):
    """Check a stacked batch ``[B, ...]``; return ``(xp, images, dtype name)``."""
    import array_api_compat

    try:
        xp = array_api_compat.array_namespace(images)
    except TypeError:
        raise fail(op, arg, "an array (NumPy, CuPy, torch or any array API namespace)",
                   type(images).__name__) from None
    if images.ndim < 1:
        raise fail(op, arg, "a batch with a leading batch dimension [B, ...]", "a 0-d array")
    name = dtype_name(xp, images.dtype)
    if name not in IMAGE_DTYPES:
        raise fail(op, arg, "images of dtype " + ", ".join(IMAGE_DTYPES), f"dtype {name}")
    return xp, images, name


def flat_features(x, batch_size: int, xp, op: str, arg: str = "features"):
    """``[B, ...]`` -> ``[B, D]`` in the working float dtype."""
    if x.ndim < 1 or x.shape[0] != batch_size:
        got = "a 0-d array" if x.ndim < 1 else f"a batch of {x.shape[0]}"
        raise fail(op, arg, f"a batch of {batch_size} samples, as many as 'images'", got)
    name = dtype_name(xp, x.dtype)
    if name not in IMAGE_DTYPES:
        raise fail(op, arg, "dtype " + ", ".join(IMAGE_DTYPES), f"dtype {name}")
    return xp.reshape(xp.astype(x, work_dtype(xp, name), copy=False), (batch_size, math.prod(x.shape[1:])))


def finalize(out, in_name: str, dtype: str | None, xp, op: str):
    """Cast the float result to the requested output dtype."""
    if dtype is None or dtype == dtype_name(xp, out.dtype):
        return out
    if dtype == "uint8":
        if in_name != "uint8":
            raise fail(op, "dtype", "'uint8' only for uint8 images", f"'uint8' for {in_name} images")
        return xp.astype(xp.clip(xp.round(out), 0, 255), xp.uint8)
    if not hasattr(xp, dtype):  # float16 is not in the array API standard (array_api_strict)
        raise fail(op, "dtype", f"an output dtype this array library has ({xp.__name__} has no {dtype})",
                   dtype)
    return xp.astype(out, getattr(xp, dtype))


def check_extra(arrays, batch_size: int, xp, op: str, arg: str) -> list:
    """Extra per-sample arrays must be batches of ``batch_size`` in the images' namespace."""
    if not isinstance(arrays, (list, tuple)):
        raise fail(op, arg, "a list or tuple of arrays [B, ...]", type(arrays).__name__)
    out = []
    for j, a in enumerate(arrays):
        a = xp.asarray(a)
        if a.ndim < 1 or a.shape[0] != batch_size:
            raise fail(op, f"{arg}[{j}]", f"a batch of {batch_size} samples, as many as 'images'",
                       f"shape {tuple(a.shape)}")
        out.append(a)
    return out
