"""``python -m benchmarks.gpu_check``: the same as ``dali-mixup gpu-check`` (:mod:`dali_mixup.gpu.check`),
kept for source checkouts."""
from __future__ import annotations

import sys

from dali_mixup.gpu.check import main

if __name__ == "__main__":
    sys.exit(main())
