"""GPU memory of the GPU python operators: CuPy allocations through PyTorch's caching allocator.

The GPU operators (:mod:`dali_mixup.dali._ops`) allocate their batch-sized temporaries with
CuPy (at B = 256, 3 x 224 x 224 float32: the stacked batch, the partner gather and the blend,
~0.15 GB each). CuPy's default memory pool keeps freed blocks for its own reuse, so in a
training process that memory is reserved twice: once in CuPy's pool, once in PyTorch's
caching allocator, neither able to use the other's.

The choice made here: share one allocator. :func:`share_torch_allocator` routes every CuPy
allocation of the process through ``torch.cuda.caching_allocator_alloc`` on the stream CuPy
is using (inside a GPU python operator, DALI's stream), so blocks the operators free return to
the allocator the model uses. Bounding and emptying CuPy's own pool after each batch was the
alternative; it costs a device synchronisation per batch and still reserves the peak twice.

The ready-made pipelines call it for ``device="gpu"``; call it yourself once,
before the first pipeline runs, when you build your own GPU pipelines in a PyTorch process.
Not measured on GPU: no GPU was available where this was written (``python -m
benchmarks.gpu_check`` runs the GPU pipelines with it on a machine that has one).
"""
from __future__ import annotations


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

    def malloc(size: int, device: int, stream: int) -> int:
        return torch.cuda.caching_allocator_alloc(size, device, stream)

    def free(ptr: int, device: int, stream: int) -> None:  # noqa: ARG001 - CuPy's signature
        torch.cuda.caching_allocator_delete(ptr)

    cupy.cuda.set_allocator(cupy.cuda.memory.PythonFunctionAllocator(malloc, free).malloc)
    return True
