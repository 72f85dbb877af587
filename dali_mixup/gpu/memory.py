"""GPU memory of the GPU python operators: CuPy allocations through PyTorch's caching allocator.

The GPU operators (:mod:`dali_mixup.dali._device`) allocate their batch-sized temporaries
with CuPy (at B = 256, 3 x 224 x 224 float32: the stacked batch and the partner gather,
~0.15 GB each). CuPy's default memory pool keeps freed blocks for its own reuse, so in a
training process that memory would be reserved twice: once in CuPy's pool, once in
PyTorch's caching allocator, neither able to use the other's.

The choice made here: share one allocator. :func:`share_torch_allocator` routes every CuPy
allocation of the process through ``torch.cuda.caching_allocator_alloc``. CuPy calls the
hooks of its ``PythonFunctionAllocator`` as ``malloc(size, device_id)`` and
``free(ptr, device_id)`` (CuPy 12 to 14); the stream handed to torch is CuPy's current one,
which inside a GPU python operator is DALI's stream (DALI makes it current around the call).

Stream association: torch's caching allocator tags each block with the stream it was
allocated on and reuses a freed block only for allocations on that same stream. Blocks the
operators free on DALI's stream therefore serve the operators' next batches, not the model's
allocations on its own stream, until torch's out-of-memory retry or
``torch.cuda.empty_cache()`` returns them to the device. Bounding and emptying CuPy's own pool
after each batch was the alternative; it costs a device synchronisation per batch and still
reserves the peak twice.

The ready-made pipelines call it for ``device="gpu"``; call it yourself once, before the first
pipeline runs, when you build your own GPU pipelines in a PyTorch process. ``dali-mixup
gpu-check`` checks on a GPU machine that torch's allocated memory grows while CuPy's pool
stays empty. Not measured on GPU where this was written.
"""
from __future__ import annotations

#: what the hooks were asked for in this process (calls and bytes), read by the GPU check
COUNTS = {"malloc": 0, "bytes": 0}


def torch_malloc(size: int, device_id: int) -> int:
    """CuPy's ``malloc`` hook: ``size`` bytes on ``device_id`` from torch's caching allocator,
    on CuPy's current stream (DALI's, inside a GPU python operator); returns the pointer."""
    import cupy
    import torch

    stream = cupy.cuda.get_current_stream(device_id).ptr
    ptr = torch.cuda.caching_allocator_alloc(size, device_id, stream)
    COUNTS["malloc"] += 1
    COUNTS["bytes"] += size
    return ptr


def torch_free(ptr: int, device_id: int) -> None:  # noqa: ARG001 - CuPy's hook signature
    """CuPy's ``free`` hook: the block goes back to torch's caching allocator (which knows its
    device and stream)."""
    import torch

    torch.cuda.caching_allocator_delete(ptr)


def share_torch_allocator() -> bool:
    """Make CuPy allocate from PyTorch's caching allocator; False (and nothing changed) when
    CuPy or a CUDA-enabled torch is missing."""
    try:
        import cupy
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    cupy.cuda.set_allocator(cupy.cuda.memory.PythonFunctionAllocator(torch_malloc, torch_free).malloc)
    return True
