"""What only a GPU process needs: CuPy allocating from PyTorch's caching allocator, and the
installed GPU check (``dali-mixup gpu-check``, :mod:`dali_mixup.gpu.check`)."""
from __future__ import annotations

from .memory import share_torch_allocator

__all__ = ["share_torch_allocator"]
