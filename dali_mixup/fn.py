"""The DALI layer: mixing operators to call inside ``@pipeline_def`` on DataNodes.

Each operator is a plain function, like ``nvidia.dali.auto_aug``'s: it validates its arguments
when the graph is built, draws its randomness from DALI random operators (so the pipeline
``seed`` governs it and checkpointing restores it), lets a python operator compute the mixing
(the matching, lambdas and soft labels) with the array layer, and leaves the pixel blend to
DALI's own ``permute_batch`` and arithmetic operators, which keep the input layout and run on
the images' device.

Placement follows the images. On GPU the k-mixup distances are computed by a GPU python
operator with CuPy (batched matmul on DALI's stream); only the small ``[B, k]`` cost rows go
to the host for the exact assignment, and the blend stays on the GPU.
"""
from __future__ import annotations

import numpy as np

from . import _checks, kmixup as _km, zeta as _zeta
from ._backend import namespace_of, stack, to_numpy, unstack
from .images import dtype_name, flat_features
from .labels import soft_labels


def _dali():
    try:
        from nvidia.dali import fn as dfn, types
        from nvidia.dali.data_node import DataNode
        from nvidia.dali.pipeline import Pipeline
    except ImportError as e:  # pragma: no cover - exercised only without DALI
        raise ImportError("dali_mixup.fn needs NVIDIA DALI: pip install 'dali-mixup[dali]'") from e
    return dfn, types, DataNode, Pipeline


def _check_node(op: str, arg: str, node, DataNode) -> None:
    if not isinstance(node, DataNode):
        raise _checks.fail(op, arg, "a DALI DataNode (an operator output inside @pipeline_def)",
                           type(node).__name__)


def _source_op(node):
    return getattr(getattr(node, "source", None), "_op", None)


def _declared_dtype(node):
    """The output dtype the node's operator was asked for, when the graph says (else None)."""
    op = _source_op(node)
    return (getattr(op, "_init_args", None) or {}).get("dtype") or getattr(op, "_dtype", None)


def _check_label_source(op: str, labels, num_classes) -> None:
    """Readers produce integer labels: without num_classes that cannot work; say so now."""
    if num_classes is not None:
        return
    name = getattr(_source_op(labels), "schema_name", None) or ""
    if name.startswith("readers__"):
        raise _checks.fail(op, "num_classes", "an integer >= 1 when labels are class ids "
                           f"(these labels come from {name.replace('__', '.')})", None)


def _seeds(seed, n: int):
    if seed is None:
        return [{} for _ in range(n)]
    seed = _checks.check_int("seed", "seed", seed, minimum=0)
    return [{"seed": (seed + i) % (2**31 - 1)} for i in range(n)]


def _scalars(values, dtype) -> list:
    return unstack(np.ascontiguousarray(values, dtype=dtype))


def _check_shapes(op: str, shapes) -> None:
    _checks.check_batch_shapes(op, "images", [tuple(int(v) for v in s) for s in shapes])


def _check_images_dtype(op: str, samples, arg: str = "images") -> None:
    if samples:
        xp = namespace_of(samples[0])
        name = dtype_name(xp, samples[0].dtype)
        _checks.check_image_dtype(op, arg, name)
        if name == "float16" and arg == "images":
            # DALI's arithmetic operators reject float16; the blend needs the graph to say so
            raise _checks.fail(op, arg, "float16 images declared on their source (e.g. "
                               "crop_mirror_normalize(dtype=types.FLOAT16)) or cast with "
                               "fn.cast(images, dtype=types.FLOAT)", "float16 from an operator "
                               "whose output dtype is not known when the graph is built")


def _blend_input(images, types, dfn):
    """DALI arithmetic has no float16: promote declared float16 images to float32."""
    if _declared_dtype(images) == types.FLOAT16:
        return dfn.cast(images, dtype=types.FLOAT), True
    return images, False


def _stack_labels(op: str, labels, n: int):
    _checks.check_batch_sizes(op, n, "labels", len(labels))
    shapes = [tuple(a.shape) for a in labels]
    _checks.check_batch_shapes(op, "labels", shapes)
    return np.stack(labels) if n else np.zeros((0, 1), np.int32)


# ----------------------------------------------------------------------------- python operators


class _KMixupParams:
    """CPU python operator: plan, match, lambdas and soft labels for one batch.

    Inputs: (features or cost rows, labels, u, lam draws, image shapes).
    Outputs: partner (int32 scalars), lam (float32 scalars), soft labels (float32 [C]).
    """

    def __init__(self, op: str, opts: dict, source: str, float16_declared: bool = False):
        # source: "features" (host arrays to compute costs on), "costs" (rows from the GPU
        # operator) or "shapes" (k = 1 on GPU: nothing to compute a cost on)
        self.op, self.opts, self.source, self.f16 = op, opts, source, float16_declared

    def __call__(self, feats, labels, u, lam, shapes):
        op, o = self.op, self.opts
        b = len(shapes)
        _check_shapes(op, shapes)
        y = soft_labels(_stack_labels(op, labels, b), b, num_classes=o["num_classes"],
                        label_smoothing=o["label_smoothing"], dtype=np.float32, xp=np, op=op)
        draws = _km.KMixupDraws(u=np.stack(u) if b else np.zeros((0, 2)),
                                lam=np.asarray(lam, dtype=np.float64).reshape(-1))
        arg = "features" if o["has_features"] else "images"
        if self.source == "features":
            _check_images_dtype(op, feats, "features" if o["has_features"] or self.f16 else "images")
        plan = _km.plan_blocks(draws.u, b, o["k"], o["pairing"])
        cols = None
        if plan.k > 1:
            if self.source == "costs":  # rows from _KMixupCosts: row b*k + r is cost[b, r, :]
                rows = np.stack(feats)
                costs = rows[: plan.left.size].reshape(plan.left.shape + (plan.k,))
            else:
                _checks.check_batch_shapes(op, arg, [tuple(f.shape) for f in feats])
                x = flat_features(np.stack(feats), b, np, op, arg)
                costs = _km.block_costs(x, plan.left, plan.right, metric=o["cost"], xp=np, op=op, arg=arg)
            cols = _km.solve_blocks(costs, plan.sizes)
        partner = _km.assemble(plan, cols, b)
        lam_out = _km.lambdas(plan, draws.lam, o["lam_mode"], partner)
        y_mixed = _km.blend(y, partner, lam_out.astype(np.float32), np)
        return (_scalars(partner, np.int32), _scalars(lam_out, np.float32), unstack(y_mixed))


class _KMixupCosts:
    """GPU (or CPU) python operator: block cost rows ``[B, k]`` computed where the features live.

    Only these rows leave the device; the assignment is solved by :class:`_KMixupParams`.
    """

    def __init__(self, op: str, opts: dict):
        self.op, self.opts = op, opts

    def __call__(self, feats, u):
        op, o = self.op, self.opts
        b = len(feats)
        if b == 0:
            return []
        xp = namespace_of(feats[0])
        _check_images_dtype(op, feats, "features" if o["has_features"] else "images")
        _checks.check_batch_shapes(op, "features" if o["has_features"] else "images",
                                   [tuple(f.shape) for f in feats])
        plan = _km.plan_blocks(np.stack([to_numpy(a) for a in u]), b, o["k"], o["pairing"])
        kk = max(plan.k, 1)
        rows = xp.zeros((b, kk), dtype=xp.float32)
        if plan.k > 1:
            x = flat_features(stack(feats, xp), b, xp, op)
            cost = _km.block_costs(x, plan.left, plan.right, metric=o["cost"], xp=xp, op=op,
                                   arg="features" if o["has_features"] else "images")
            n = plan.left.size
            rows[:n] = xp.reshape(xp.astype(cost, xp.float32), (n, plan.k))
        return unstack(rows)


class _ZetaParams:
    """CPU python operator: partners, weights and soft labels.

    Inputs: (labels, u, g, images on CPU or their shapes). Outputs: index (int32 [T]), weights (float32 [T]),
    self weight w_1 (float32 scalar), soft labels (float32 [C]).
    """

    def __init__(self, opts: dict, sees_images: bool, float16_declared: bool):
        self.opts, self.sees_images, self.f16 = opts, sees_images, float16_declared

    def __call__(self, labels, u, g, images_or_shapes):
        o, op = self.opts, _zeta.OP
        b = len(images_or_shapes)
        if self.sees_images:
            if not self.f16:
                _check_images_dtype(op, images_or_shapes)
            _checks.check_batch_shapes(op, "images", [tuple(a.shape) for a in images_or_shapes])
        else:
            _check_shapes(op, images_or_shapes)
        y = soft_labels(_stack_labels(op, labels, b), b, num_classes=o["num_classes"],
                        label_smoothing=o["label_smoothing"], dtype=np.float32, xp=np, op=op)
        draws = _zeta.ZetaDraws(u=np.stack(u) if b else np.zeros((0, 0)),
                                g=np.asarray(g, dtype=np.float64).reshape(-1))
        index, weights, _ = _zeta.plan(draws, b, o["T"], o["gamma"])
        w32 = weights.astype(np.float32)
        y_mixed = w32[0] * y + _zeta.mix_others(y, index, w32, np, "matmul")
        return (unstack(index.astype(np.int32)), unstack(np.broadcast_to(w32, index.shape).copy()),
                _scalars(np.full(b, w32[0]), np.float32), unstack(y_mixed))


class _ZetaOthers:
    """Python operator on the images' device: ``sum_{t>=1} w_t x_index(i,t)`` (float32)."""

    def __init__(self, opts: dict):
        self.opts = opts

    def __call__(self, images, index, weights):
        b = len(images)
        if b == 0:
            return []
        xp = namespace_of(images[0])
        _check_images_dtype(_zeta.OP, images)
        idx = np.stack([to_numpy(a) for a in index]).astype(np.int64)
        w = to_numpy(weights[0]).astype(np.float32)
        x = stack(images, xp)
        x = x if x.dtype == xp.float32 else x.astype(xp.float32)
        method = self.opts["method"] or _zeta.choose_method(idx.shape[1], b)
        return unstack(_zeta.mix_others(x, idx, w, xp, method))


# ----------------------------------------------------------------------------- public operators


def _finish(op, mixed, dtype, types, dfn):
    if dtype is None or dtype == "float32":
        return mixed
    target = {"float16": types.FLOAT16, "float64": types.FLOAT64, "uint8": types.UINT8}[dtype]
    return dfn.cast(mixed, dtype=target)


def k_mixup(images, labels, *, k: int = 16, alpha: float = 1.0, num_classes: int | None = None,
            cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
            label_smoothing: float = 0.0, features=None, dtype: str | None = None,
            return_info: bool = False, seed: int | None = None, _op: str = "k_mixup"):
    """k-mixup inside a DALI pipeline (Greenewald et al., TMLR 2023).

    Args:
        images: DataNode, a batch of one shape per batch (any layout), on CPU or GPU;
            uint8, float16, float32 or float64.
        labels: DataNode (CPU or GPU) of class ids (scalar or shape (1,)) with ``num_classes``,
            or float label vectors of length C.
        k: block size of the optimal-transport matching; clamped to what the batch allows.
        alpha: lam ~ Beta(alpha, alpha).
        num_classes: number of classes, required for class-id labels.
        cost: ``"sqeuclidean"`` (the paper's W2) or ``"euclidean"`` (the reference code).
        pairing: ``"disjoint"`` (every sample mixed with another) or ``"permutation"``
            (the reference code; self-matches possible).
        lam_mode: ``"batch"``, ``"block"`` or ``"sample"``: how many lambdas are drawn.
        label_smoothing: applied to one-hot labels before mixing (default 0).
        features: optional DataNode the cost is computed on (e.g. a downsampled image).
        dtype: output images: None/"float32" (float64 stays float64), "float16", or
            "uint8" for uint8 images.
        return_info: also return ``partner`` (int32) and ``lam`` (float32) per sample.
        seed: seed of this operator's random draws (default: derived from the pipeline seed).

    Returns:
        ``(images, labels)``, or ``(images, labels, partner, lam)`` with ``return_info``.
        Images keep their layout and device; labels are float32 ``[C]`` per sample, on the
        images' device.
    """
    dfn, types, DataNode, _ = _dali()
    opts = _km.validate(k=k, alpha=alpha, num_classes=num_classes, cost=cost, pairing=pairing,
                        lam_mode=lam_mode, label_smoothing=label_smoothing, dtype=dtype, op=_op)
    _check_node(_op, "images", images, DataNode)
    _check_node(_op, "labels", labels, DataNode)
    if features is not None:
        _check_node(_op, "features", features, DataNode)
    _check_label_source(_op, labels, opts["num_classes"])
    opts["has_features"] = features is not None
    s = _seeds(seed, 2)
    u = dfn.random.uniform(range=[0.0, 1.0], shape=[2], dtype=types.FLOAT64, **s[0])
    lam_draw = dfn.random.beta(alpha=opts["alpha"], beta=opts["alpha"], **s[1])
    labels_cpu = labels.cpu() if labels.device == "gpu" else labels
    shapes = images.shape(device="cpu")
    x, f16 = _blend_input(images, types, dfn)
    feats = features if features is not None else images
    if opts["k"] > 1 and feats.device == "gpu":
        rows = dfn.python_function(feats, u.gpu(), function=_KMixupCosts(_op, opts), device="gpu",
                                   batch_processing=True, num_outputs=1)
        src, source = rows.cpu(), "costs"
    elif feats.device == "cpu":
        src, source = feats, "features"
    else:
        src, source = shapes, "shapes"
    partner, lam, soft = dfn.python_function(
        src, labels_cpu, u, lam_draw, shapes, function=_KMixupParams(_op, opts, source, f16),
        batch_processing=True, num_outputs=3)
    lam_dev = lam.gpu() if images.device == "gpu" else lam
    mixed = lam_dev * x + (1.0 - lam_dev) * dfn.permute_batch(x, indices=partner)
    out_labels = soft.gpu() if images.device == "gpu" else soft
    out = (_finish(_op, mixed, opts["dtype"], types, dfn), out_labels)
    return out + (partner, lam) if return_info else out


def mixup(images, labels, *, alpha: float = 1.0, num_classes: int | None = None,
          lam_mode: str = "batch", label_smoothing: float = 0.0, dtype: str | None = None,
          return_info: bool = False, seed: int | None = None):
    """Standard mixup inside a DALI pipeline: :func:`k_mixup` with k = 1 (random disjoint pairs).

    Arguments and outputs as for :func:`k_mixup`.
    """
    return k_mixup(images, labels, k=1, alpha=alpha, num_classes=num_classes, lam_mode=lam_mode,
                   label_smoothing=label_smoothing, dtype=dtype, return_info=return_info,
                   seed=seed, _op="mixup")


def zeta_mixup(images, labels, *, gamma: float | tuple[float, float] = 2.8, T: int | None = None,
               num_classes: int | None = None, label_smoothing: float = 0.0,
               dtype: str | None = None, method: str | None = None, return_info: bool = False,
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
        return_info: also return ``index`` (int32 ``[T]``, entry 0 the sample itself) and
            ``weights`` (float32 ``[T]``) per sample.
        seed: seed of this operator's random draws (default: derived from the pipeline seed).

    Returns:
        ``(images, labels)`` or ``(images, labels, index, weights)``.
    """
    dfn, types, DataNode, Pipeline = _dali()
    op = _zeta.OP
    opts = _zeta.validate(gamma=gamma, T=T, num_classes=num_classes,
                          label_smoothing=label_smoothing, dtype=dtype)
    if method not in (None, "gather", "matmul"):
        raise _checks.fail(op, "method", "None, 'gather' or 'matmul'", method)
    opts["method"] = method
    _check_node(op, "images", images, DataNode)
    _check_node(op, "labels", labels, DataNode)
    _check_label_source(op, labels, opts["num_classes"])
    s = _seeds(seed, 2)
    width = Pipeline.current().max_batch_size
    u = dfn.random.uniform(range=[0.0, 1.0], shape=[width], **s[0])
    g = dfn.random.uniform(range=[0.0, 1.0], dtype=types.FLOAT64, **s[1])
    labels_cpu = labels.cpu() if labels.device == "gpu" else labels
    on_gpu = images.device == "gpu"
    x, f16 = _blend_input(images, types, dfn)
    index, weights, w1, soft = dfn.python_function(
        labels_cpu, u, g, images.shape(device="cpu") if on_gpu else images, function=_ZetaParams(opts, not on_gpu, f16),
        batch_processing=True, num_outputs=4)
    others = dfn.python_function(
        x, index.gpu() if on_gpu else index, weights.gpu() if on_gpu else weights,
        function=_ZetaOthers(opts), device=images.device, batch_processing=True, num_outputs=1)
    mixed = (w1.gpu() if on_gpu else w1) * x + others
    out = (_finish(op, mixed, opts["dtype"], types, dfn), soft.gpu() if on_gpu else soft)
    return out + (index, weights) if return_info else out
