"""Figure helpers shared by the training curves, the demo's figures and the batch preview.

matplotlib is imported only here, on first use, with the non-interactive Agg backend.
"""
from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def finish(fig, path: str, axes=(), *, tight: bool = True, **savefig) -> str:
    """Grid every axis of ``axes``, lay out, write ``path`` (110 dpi unless given), close."""
    for ax in axes:
        ax.grid(alpha=0.3)
    if tight:
        fig.tight_layout()
    fig.savefig(path, **{"dpi": 110, **savefig})
    pyplot().close(fig)
    return path
