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
    if not len(samples):
        return None
    if isinstance(samples[0], np.ndarray):
        return stack_host(samples)
    return xp.stack(samples)


def stack_host(samples, out: np.ndarray | None = None) -> np.ndarray:
    """``np.stack`` of a DALI batch of host arrays, optionally into ``out`` (a reused buffer,
    any float or integer dtype the samples cast to safely).

    ``np.stack`` makes a view per sample: ~80 us for 256 small samples against ~25 us here,
    and a python operator stacks its inputs on every batch.
    """
    shapes = {a.shape for a in samples}
    if len(shapes) != 1 or (out is not None and not out.flags.c_contiguous):
        return np.stack(samples, out=out)  # NumPy's own message names the mismatch
    (shape,) = shapes
    n = len(samples)
    if out is None:
        return np.array(samples)
    if not shape:  # 0-d samples cannot be concatenated
        out[...] = np.array(samples)
        return out
    np.concatenate(samples, axis=0, out=out.reshape((n * shape[0],) + shape[1:]))
    return out


def unstack(batch) -> list:
    """One ``[B, ...]`` array -> the list of per-sample views DALI accepts as an output."""
    return [batch[i, ...] for i in range(batch.shape[0])]


# ------------------------------------------------------------------------------ torch CPU


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def torch_on_host(images, *others) -> bool:
    """True when ``images`` is a torch CPU tensor and every torch tensor among ``others``
    (arrays or sequences of arrays) is on the CPU without autograd: then the array layer runs
    on NumPy views of them (:func:`numpy_view`) and hands torch tensors back
    (:func:`torch_fields`). Tensors that need gradients keep the torch expressions.

    Measured on a 2-core machine: mixup of a ``[64, 3, 224, 224]`` float32 torch batch took
    ~41 ms through torch's expressions (three batch-sized temporaries) against ~4 ms through
    the NumPy fast paths; ~1.3 against ~0.4 ms at ``[256, 3, 32, 32]``.
    """
    if not _is_torch(images):
        return False
    flat = [images]
    for o in others:
        flat.extend(o if isinstance(o, (list, tuple)) else [o])
    return all(x.device.type == "cpu" and not x.requires_grad and str(x.dtype) in _VIEWABLE
               for x in flat if _is_torch(x))


#: torch dtypes NumPy can view (others, bfloat16 among them, keep the torch path and its checks)
_VIEWABLE = {f"torch.{n}" for n in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16",
                                     "float32", "float64")}


def numpy_view(x):
    """A torch CPU tensor as a NumPy array sharing its memory; anything else as it is."""
    if isinstance(x, (list, tuple)):
        return type(x)(numpy_view(v) for v in x)
    return x.numpy() if _is_torch(x) else x


def torch_fields(result):
    """A result dataclass with every NumPy array field (and tuple of arrays) as a torch tensor
    sharing its memory."""
    import dataclasses

    import torch

    def back(v):
        if isinstance(v, np.ndarray):
            return torch.from_numpy(v if v.flags.writeable else v.copy())
        if isinstance(v, tuple):
            return tuple(back(a) for a in v)
        return v

    return dataclasses.replace(result, **{f.name: back(getattr(result, f.name))
                                          for f in dataclasses.fields(result)})
