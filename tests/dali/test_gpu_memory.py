"""CuPy allocations through PyTorch's caching allocator: the wiring, with recording fakes."""
from __future__ import annotations

import sys
import types

from dali_mixup.gpu_memory import share_torch_allocator


def _fakes(monkeypatch, cuda_available=True):
    calls = []
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(
        is_available=lambda: cuda_available,
        caching_allocator_alloc=lambda size, device, stream: calls.append(("alloc", size, device, stream)) or 4096,
        caching_allocator_delete=lambda ptr: calls.append(("delete", ptr)))

    class PythonFunctionAllocator:
        def __init__(self, malloc, free):
            self.malloc_fn, self.free_fn = malloc, free

        def malloc(self, size):  # CuPy calls the Python functions with the current device/stream
            ptr = self.malloc_fn(size, 0, 77)
            self.free_fn(ptr, 0, 77)
            return ptr

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(memory=types.SimpleNamespace(PythonFunctionAllocator=PythonFunctionAllocator),
                                      set_allocator=lambda f: calls.append(("set", f(256))))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return calls


def test_cupy_allocates_from_torch_on_cupys_stream(monkeypatch):
    calls = _fakes(monkeypatch)
    assert share_torch_allocator() is True
    assert calls == [("alloc", 256, 0, 77), ("delete", 4096), ("set", 4096)]


def test_nothing_changes_without_cuda_torch_or_cupy(monkeypatch):
    calls = _fakes(monkeypatch, cuda_available=False)
    assert share_torch_allocator() is False and calls == []
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert share_torch_allocator() is False
