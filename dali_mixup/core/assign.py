"""Exact assignment for a stack of small cost matrices, on the host.

Uses ``scipy.optimize.linear_sum_assignment`` (the field's well-kept solver; a shortest
augmenting path method, O(k^3)). Cost matrices are tiny (k x k, k <= a few hundred), so even
on the GPU path only these B*k floats travel to the host, never the images.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def solve_blocks(costs: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Optimal column for each row of each block.

    Args:
        costs: ``[n_blocks, k, k]`` host array; block ``b`` uses its top-left
            ``sizes[b] x sizes[b]`` corner.
        sizes: ``[n_blocks]`` true block sizes.

    Returns:
        ``[n_blocks, k]`` int64: ``cols[b, r]`` is the column matched to row ``r``
        (entries past ``sizes[b]`` are ``-1``).
    """
    nb, k = costs.shape[:2]
    costs = np.asarray(costs, dtype=np.float64)  # once, not inside every scipy call
    cols = np.full((nb, k), -1, dtype=np.int64)
    for b, m in enumerate(np.asarray(sizes).tolist()):
        rows, c = linear_sum_assignment(costs[b, :m, :m])
        cols[b, rows] = c
    return cols
