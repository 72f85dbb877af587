"""The array layer's pair operators (k-mixup, mixup, CutMix, mix) in one place.

Each public function (:func:`dali_mixup.k_mixup`, :func:`~dali_mixup.mixup`,
:func:`~dali_mixup.cutmix`, :func:`~dali_mixup.mix`) builds its
:class:`~dali_mixup.core.config.PairConfig` and calls :func:`mix_batch`, which runs the one chain
every pair operator shares::

    draws -> blocks -> block costs (k > 1) -> assignment -> plan -> apply
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _checks
from .apply import PairArrays, blend, mix_pair_masks, mix_pairs
from ._backend import numpy_view, to_numpy, torch_fields, torch_on_host
from .cost import block_costs
from .draws import draw_mix, draw_pairs
from .images import as_batch, check_extra, finalize, flat_features, work_dtype
from .labels import soft_labels
from .plan import pair_plan, plan_blocks


@dataclass(frozen=True)
class PairResult:
    """What every pair operator returns (``MixupResult`` and ``MixResult`` are this class).

    Attributes:
        images: mixed batch ``[B, ...]``.
        labels: soft labels ``[B, num_classes]``, float32.
        partner: ``[B]`` int64, the sample each output was mixed with (itself: not mixed).
        lam: ``[B]`` the label weight of the sample itself (the uncovered area for CutMix).
        k: the block size actually used.
        cut: ``[B]`` bool, True where CutMix was applied (all False for k-mixup / mixup).
        boxes: ``[B, 4]`` (y1, y2, x1, x2) of the pasted partner region (zero when none).
        extra: the ``extra`` arrays, mixed with the same partners and weights.
        masks: the integer ``masks``, each output (or pixel) taking its dominant source's.
    """

    images: Any
    labels: Any
    partner: Any
    lam: Any
    k: int
    cut: Any = None
    boxes: Any = None
    extra: tuple = ()
    masks: tuple = ()


def spatial_axes(layout: str, ndim: int, op: str) -> tuple[int, int]:
    """Positions of H and W in a sample of ``ndim`` dimensions with the given layout."""
    if not isinstance(layout, str) or len(layout) != ndim or "H" not in layout or "W" not in layout \
            or layout.index("H") > layout.index("W"):
        raise _checks.fail(op, "layout", f"a sample layout of {ndim} dimensions containing H before W "
                           "(e.g. 'HWC' or 'CHW')", layout)
    return layout.index("H"), layout.index("W")


def check_spatial(op: str, arg: str, shape: tuple, image_shape: tuple, axes: tuple[int, int]) -> None:
    """An ``extra``/``masks`` sample must have the images' dims and H, W (to take the same box)."""
    ah, aw = axes
    if len(shape) != len(image_shape) or shape[ah] != image_shape[ah] or shape[aw] != image_shape[aw]:
        raise _checks.fail(op, arg, f"samples with the images' layout and height/width (image sample "
                           f"shape {tuple(image_shape)}; other sizes may differ)", f"shape {tuple(shape)}")


def mix_batch(cfg, images, labels, *, layout: str | None = None, features=None,
              extra: Sequence = (), masks: Sequence = (), rng: np.random.Generator | None = None,
              draws=None) -> PairResult:
    """Run a pair operator on a whole batch (NumPy, CuPy, torch or any array-API arrays).

    Args:
        cfg: the operator's :class:`~dali_mixup.core.config.PairConfig`.
        images: ``[B, ...]`` uint8, float16, float32 or float64.
        labels: class ids ``[B]`` / ``[B, 1]`` with ``cfg.num_classes``, or float ``[B, C]``.
        layout: sample layout with H and W (CutMix only).
        features: optional ``[B, ...]`` array the k-mixup cost is computed on.
        extra, masks: more per-sample arrays mixed with the same plan.
        rng, draws: randomness (``draws`` overrides ``rng``; a fresh Generator if both None).
    """
    if torch_on_host(images, labels, features, extra, masks):  # NumPy's fast paths on views
        return torch_fields(mix_batch(cfg, numpy_view(images), numpy_view(labels), layout=layout,
                                      features=numpy_view(features), extra=numpy_view(extra),
                                      masks=numpy_view(masks), rng=rng, draws=draws))
    op = cfg.op
    xp, images, in_name = as_batch(images, op)
    b = images.shape[0]
    axes = spatial_axes(layout, images.ndim - 1, op) if cfg.uses_cutmix else None
    wd = work_dtype(xp, in_name)
    device = getattr(images, "device", None)
    y = soft_labels(labels, b, num_classes=cfg.num_classes, label_smoothing=cfg.label_smoothing,
                    dtype=xp.float32, xp=xp, op=op, device=device)
    extra, masks = check_extra(extra, b, xp, op, "extra"), check_extra(masks, b, xp, op, "masks")
    if axes is not None:
        for arg, arrs in (("extra", extra), ("masks", masks)):
            for j, a in enumerate(arrs):
                check_spatial(op, f"{arg}[{j}]", tuple(a.shape[1:]), tuple(images.shape[1:]), axes)
    if draws is None:
        rng = rng if rng is not None else np.random.default_rng()
        draws = (draw_mix(rng, b, cfg.mixup_alpha, cfg.cutmix_alpha) if cfg.uses_cutmix
                 else draw_pairs(rng, b, cfg.mixup_alpha))
    arg = "features" if features is not None else "images"
    feats = flat_features(features if features is not None else images, b, xp, op, arg) \
        if cfg.k > 1 else None
    blocks = plan_blocks(draws.u, b, cfg.k, cfg.pairing)
    costs = None
    if blocks.k > 1:
        costs = to_numpy(block_costs(feats, blocks.left, blocks.right, cost=cfg.cost, xp=xp,
                                     op=op, arg=arg, match_only=True))
    hw = (images.shape[1 + axes[0]], images.shape[1 + axes[1]]) if axes is not None else (1, 1)
    plan = pair_plan(cfg, draws, blocks, costs, b, hw)
    pa = PairArrays.from_plan(plan, xp, wd, device)
    mixed = mix_pairs(xp.astype(images, wd, copy=False), pa, cutmix=cfg.uses_cutmix, axes=axes, xp=xp)
    return PairResult(
        images=finalize(mixed, in_name, cfg.dtype, xp, op), labels=blend(y, pa.partner, pa.lam, xp),
        partner=pa.partner, lam=pa.lam, k=plan.k, cut=pa.cut, boxes=pa.boxes,
        extra=tuple(mix_pairs(xp.astype(e, wd), pa, cutmix=cfg.uses_cutmix, axes=axes, xp=xp)
                    for e in extra),
        masks=tuple(mix_pair_masks(m, pa, cutmix=cfg.uses_cutmix, axes=axes, xp=xp) for m in masks))
