"""NumPy / CuPy glue: the only place that knows which array library is which.

The math modules speak the array API and never import CuPy. What remains backend-specific is
moving small arrays to the host and stacking the per-sample lists DALI hands a python operator.
"""
from __future__ import annotations

import numpy as np


def is_cupy(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def to_numpy(x) -> np.ndarray:
    """Host NumPy copy of a small array from any backend (NumPy, CuPy, torch, array-api-strict)."""
    if isinstance(x, np.ndarray):
        return x
    if is_cupy(x):
        return x.get()  # synchronises DALI's stream, which is current in a GPU python op
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    return np.from_dlpack(x)


def namespace_of(sample):
    """Array-API namespace of a python-operator input sample (NumPy on CPU, CuPy on GPU).

    The array-api-compat wrappers give CuPy the standard's spelling (``device=``, ``concat``,
    ``matrix_transpose``), so the math modules never need a CuPy branch.
    """
    import array_api_compat

    return array_api_compat.array_namespace(sample)


def stack(samples, xp):
    """Stack a DALI batch (a list of per-sample arrays) into one ``[B, ...]`` array."""
    return xp.stack(samples) if len(samples) else None


def unstack(batch) -> list:
    """One ``[B, ...]`` array -> the list of per-sample views DALI accepts as an output."""
    return [batch[i, ...] for i in range(batch.shape[0])]
