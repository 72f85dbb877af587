"""CuPy allocations through PyTorch's caching allocator, driven by the real CuPy and torch.

CuPy's ``PythonFunctionAllocatorMemory`` (what its ``PythonFunctionAllocator`` makes for each
allocation) runs without a GPU: it calls our hooks exactly as CuPy does on a GPU. torch's own
``caching_allocator_alloc`` / ``caching_allocator_delete`` run too, checking their arguments;
only the calls that need a CUDA device are replaced: torch's device switch and raw allocator,
and CuPy's current-stream lookup (which asks the driver for the current device).
"""
from __future__ import annotations

import gc
import sys

import cupy
import pytest
import torch
from cupy.cuda import memory as cupy_memory

from dali_mixup.gpu import memory as gpu_memory
from dali_mixup.gpu import share_torch_allocator

DALI_STREAM = 0xDA11


@pytest.fixture
def torch_device_calls(monkeypatch):
    """torch's CUDA device calls, recorded: raw alloc / delete and the device switch."""
    calls = []
    monkeypatch.setattr(torch.cuda, "_exchange_device", lambda d: calls.append(("device", d)) or 0)
    monkeypatch.setattr(torch.cuda, "_maybe_exchange_device", lambda d: d)
    monkeypatch.setattr(torch._C, "_cuda_cudaCachingAllocator_raw_alloc",
                        lambda size, stream: calls.append(("alloc", size, stream)) or 0x7000, raising=False)
    monkeypatch.setattr(torch._C, "_cuda_cudaCachingAllocator_raw_delete",
                        lambda ptr: calls.append(("delete", ptr)), raising=False)
    stream = cupy.cuda.Stream(null=True)
    stream.ptr = DALI_STREAM  # CuPy's current stream inside a DALI GPU operator

    def current(device_id=-1):
        calls.append(("current stream of", device_id))
        return stream

    monkeypatch.setattr(cupy.cuda, "get_current_stream", current)
    yield calls
    stream.ptr = 0  # borrowed: never destroyed


def test_cupy_calls_the_hooks_with_size_and_device_and_torch_gets_cupys_current_stream(torch_device_calls):
    mem = cupy_memory.PythonFunctionAllocatorMemory(4096, gpu_memory.torch_malloc, gpu_memory.torch_free, 0)
    assert mem.ptr == 0x7000
    assert torch_device_calls == [("current stream of", 0), ("device", 0), ("alloc", 4096, DALI_STREAM)]
    del mem
    gc.collect()
    assert torch_device_calls[-1] == ("delete", 0x7000)


def test_share_torch_allocator_installs_cupys_python_function_allocator(monkeypatch):
    before = cupy.cuda.get_allocator()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        assert share_torch_allocator() is True
        installed = cupy.cuda.get_allocator()
        assert isinstance(installed.__self__, cupy_memory.PythonFunctionAllocator)
    finally:
        cupy.cuda.set_allocator(before)


def test_nothing_changes_without_cuda_torch_or_cupy(monkeypatch):
    before = cupy.cuda.get_allocator()
    assert torch.cuda.is_available() is False  # the CPU build of the test environment
    assert share_torch_allocator() is False and cupy.cuda.get_allocator() == before
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert share_torch_allocator() is False
