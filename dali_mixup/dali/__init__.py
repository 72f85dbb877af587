"""The DALI layer: mixing operators to call inside ``@pipeline_def`` on DataNodes.

Each operator is a plain function, like ``nvidia.dali.auto_aug``'s: it validates its
arguments when the graph is built (a frozen config from :mod:`dali_mixup.core.config`), draws its
randomness with one DALI random operator (so the pipeline ``seed`` governs it and
checkpointing restores it), and lets python operators plan and mix with the array layer's own
code (:mod:`dali_mixup.core.plan`, :mod:`dali_mixup.core.apply`). ``import dali_mixup.fn as mfn`` gives
the same functions.

* CPU images: one python operator checks, plans and mixes; the result equals the array layer
  bitwise for the same draws.
* GPU images: the plan is made on the host from the images' shapes (and, for k > 1, from the
  ``[B, k]`` cost rows a GPU operator computes); a GPU operator mixes with CuPy on DALI's
  stream; a CPU operator raises what the GPU operator reported, so no GPU operator ever raises.

Outputs keep the input's layout: pass ``layout=`` (e.g. ``"CHW"``) to set it directly, or
leave it None to have it taken over from the input at run time (one extra copy of the batch).
Images may be uint8, float16, float32 or float64 on either device; results are float32
(float64 for float64 images) unless ``dtype`` asks otherwise.
"""
from __future__ import annotations

from ..core.config import PairConfig, ZetaConfig
from . import _graph

__all__ = ["k_mixup", "mixup", "mix", "cutmix", "zeta_mixup"]


def k_mixup(images, labels, *, k: int = 16, alpha: float = 1.0, num_classes: int | None = None,
            cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
            label_smoothing: float = 0.0, features=None, dtype: str | None = None,
            prob: float = 1.0, extra=(), masks=(), layout: str | None = None,
            return_info: bool = False, seed: int | None = None):
    """k-mixup inside a DALI pipeline (Greenewald et al., TMLR 2023).

    Args:
        images: DataNode, a batch of one shape per batch (any layout), on CPU or GPU;
            uint8, float16, float32 or float64.
        labels: DataNode (CPU or GPU) of class ids (scalar or shape (1,)) with ``num_classes``,
            or float label vectors of length C.
        k: block size of the optimal-transport matching; clamped to what the batch allows.
        alpha: lam ~ Beta(alpha, alpha).
        num_classes: number of classes, required for class-id labels.
        cost: a name of :data:`dali_mixup.core.cost.COSTS`: ``"sqeuclidean"`` (the paper's W2, the
            default), ``"euclidean"`` (the reference code), ...
        pairing: ``"disjoint"`` (every sample mixed with another) or ``"permutation"``
            (the reference code; self-matches possible).
        lam_mode: ``"batch"``, ``"block"`` or ``"sample"``: how many lambdas are drawn.
        label_smoothing: applied to one-hot labels before mixing (default 0).
        features: optional DataNode the cost is computed on (e.g. a downsampled image).
        dtype: output images: None/"float32" (float64 stays float64), "float16", "float64",
            or "uint8" for uint8 images.
        prob: probability that a lam group (batch, block or sample) is mixed at all.
        extra: DataNodes blended with the same partners and weights (float results).
        masks: integer DataNodes (segmentation maps): each output takes its dominant
            sample's map (the one with weight >= 0.5).
        layout: the images' sample layout (e.g. ``"CHW"``), set on the output directly;
            None takes it over from the input at run time (one extra copy).
        return_info: also return ``partner`` (int32) and ``lam`` per sample (CPU nodes).
        seed: seed of this operator's one random operator (default: derived from the
            pipeline seed).

    Returns:
        ``(images, labels, *extra, *masks)``, then ``(partner, lam)`` with ``return_info``.
        Images keep their layout and device; labels are float32 ``[C]`` per sample, on the
        images' device.
    """
    cfg = PairConfig.k_mixup(k=k, alpha=alpha, num_classes=num_classes, cost=cost, pairing=pairing,
                             lam_mode=lam_mode, label_smoothing=label_smoothing, dtype=dtype, prob=prob)
    return _graph.pairs(cfg, images, labels, features=features, extra=extra, masks=masks,
                        layout=layout, return_info=return_info, seed=seed)


def mixup(images, labels, *, alpha: float = 1.0, num_classes: int | None = None,
          lam_mode: str = "batch", label_smoothing: float = 0.0, dtype: str | None = None,
          prob: float = 1.0, extra=(), masks=(), layout: str | None = None,
          return_info: bool = False, seed: int | None = None):
    """Standard mixup inside a DALI pipeline: :func:`k_mixup` with k = 1 (random disjoint pairs).

    Arguments and outputs as for :func:`k_mixup`.
    """
    cfg = PairConfig.mixup(alpha=alpha, num_classes=num_classes, lam_mode=lam_mode,
                           label_smoothing=label_smoothing, dtype=dtype, prob=prob)
    return _graph.pairs(cfg, images, labels, extra=extra, masks=masks, layout=layout,
                        return_info=return_info, seed=seed)


def mix(images, labels, *, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0, prob: float = 1.0,
        switch_prob: float = 0.5, k: int = 1, cost: str = "sqeuclidean", pairing: str = "disjoint",
        lam_mode: str = "batch", correct_lam: bool = True, num_classes: int | None = None,
        label_smoothing: float = 0.0, features=None, dtype: str | None = None, extra=(), masks=(),
        layout: str | None = None, return_info: bool = False, seed: int | None = None):
    """mixup or CutMix per lam group inside a DALI pipeline, as timm's ``Mixup``.

    CutMix boxes are cut in H and W, found from ``layout`` or, when it is None, from the
    layout the images carry (``"HWC"`` from the decoders, ``"CHW"`` from
    ``crop_mirror_normalize``).

    Args:
        images, labels, num_classes, label_smoothing, dtype, features, return_info, seed:
            as for :func:`k_mixup`.
        mixup_alpha, cutmix_alpha: Beta parameters; 0 disables that method.
        prob: probability that a lam group is mixed at all (applied once, never twice).
        switch_prob: probability of CutMix instead of mixup when both alphas are > 0.
        k, cost, pairing: partners from k-mixup's optimal-transport matching (k > 1) or random
            disjoint pairs (k = 1).
        lam_mode: ``"batch"``, ``"block"`` or ``"sample"``: what shares lam, box and coins.
        correct_lam: label weight from the clipped box area (timm's default).
        extra: DataNodes with the images' layout, mixed with the same partners, boxes, weights.
        masks: integer DataNodes with the images' layout and dims (e.g. HW1 for HWC): each pixel
            takes the value of its dominant source.
        layout: the images' sample layout, with H before W (e.g. ``"CHW"``); None reads it
            from the graph at run time.

    Returns:
        ``(images, labels, *extra, *masks)``, then ``(partner, lam)`` with ``return_info``.
    """
    cfg = PairConfig.mix(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                         switch_prob=switch_prob, k=k, cost=cost, pairing=pairing, lam_mode=lam_mode,
                         correct_lam=correct_lam, num_classes=num_classes,
                         label_smoothing=label_smoothing, dtype=dtype)
    return _graph.pairs(cfg, images, labels, features=features, extra=extra, masks=masks,
                        layout=layout, return_info=return_info, seed=seed)


def cutmix(images, labels, *, alpha: float = 1.0, prob: float = 1.0, k: int = 1,
           cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
           correct_lam: bool = True, num_classes: int | None = None, label_smoothing: float = 0.0,
           features=None, dtype: str | None = None, extra=(), masks=(), layout: str | None = None,
           return_info: bool = False, seed: int | None = None):
    """CutMix (Yun et al. 2019) inside a DALI pipeline; with k > 1 partners come from OT.

    Arguments and outputs as for :func:`mix` (``alpha`` is the CutMix Beta parameter).
    """
    cfg = PairConfig.cutmix(alpha=alpha, prob=prob, k=k, cost=cost, pairing=pairing,
                            lam_mode=lam_mode, correct_lam=correct_lam, num_classes=num_classes,
                            label_smoothing=label_smoothing, dtype=dtype)
    return _graph.pairs(cfg, images, labels, features=features, extra=extra, masks=masks,
                        layout=layout, return_info=return_info, seed=seed)


def zeta_mixup(images, labels, *, gamma: float | tuple[float, float] = 2.8, T: int | None = None,
               num_classes: int | None = None, label_smoothing: float = 0.0,
               dtype: str | None = None, method: str | None = None, prob: float = 1.0,
               extra=(), masks=(), layout: str | None = None, return_info: bool = False,
               seed: int | None = None):
    """zeta-mixup inside a DALI pipeline (Abhishek et al., Eq. 5-6).

    Args:
        images: DataNode, a batch of one shape (any layout), on CPU or GPU.
        labels: DataNode of class ids with ``num_classes``, or float label vectors.
        gamma: p-series exponent, or a ``(low, high)`` range sampled once per batch.
        T: samples per mix (None: the whole batch, as in the paper).
        num_classes: number of classes, required for class-id labels.
        label_smoothing: applied to one-hot labels before mixing (default 0).
        dtype: output images, as for :func:`k_mixup`.
        method: ``"gather"`` or ``"matmul"`` for the mix; None picks by T and B.
        prob: probability that the batch is mixed at all.
        extra: DataNodes mixed with the same index and weights.
        masks: integer DataNodes; each output keeps its own (the sample itself dominates).
        layout: the images' sample layout, as for :func:`k_mixup`.
        return_info: also return ``index`` (int32 ``[T]``, entry 0 the sample itself) and
            ``weights`` (``[T]``) per sample (CPU nodes).
        seed: seed of this operator's one random operator (default: derived from the
            pipeline seed).

    Returns:
        ``(images, labels, *extra, *masks)``, then ``(index, weights)`` with ``return_info``.
    """
    cfg = ZetaConfig.zeta_mixup(gamma=gamma, T=T, method=method, prob=prob, num_classes=num_classes,
                                label_smoothing=label_smoothing, dtype=dtype)
    return _graph.zeta(cfg, images, labels, extra=extra, masks=masks, layout=layout,
                       return_info=return_info, seed=seed)
