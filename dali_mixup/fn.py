"""The DALI layer: mixing operators to call inside ``@pipeline_def`` on DataNodes.

Each operator is a plain function, like ``nvidia.dali.auto_aug``'s: it validates its arguments
when the graph is built, draws its randomness from DALI random operators (so the pipeline
``seed`` governs it and checkpointing restores it), and lets a python operator compute the
mixing (the matching, lambdas and soft labels) with the array layer. The pixel blend runs where
it is cheapest: for k-mixup, mixup and zeta-mixup on CPU inside that python operator, with the
array layer's own code (each extra DALI operator costs a per-sample overhead), elsewhere
(GPU, CutMix, extra tensors) with DALI's own ``permute_batch`` and arithmetic operators on the
images' device. Outputs keep the input layout either way.

Placement follows the images. On GPU the k-mixup distances are computed by a GPU python
operator with CuPy (batched matmul on DALI's stream); only the small ``[B, k]`` cost rows go
to the host for the exact assignment, and the blend stays on the GPU.
"""
from __future__ import annotations

import numpy as np

from . import _checks, cost as _cost, cut_mix as _cm, kmixup as _km, zeta as _zeta
from ._backend import namespace_of, stack, stack_host, to_numpy, unstack
from .images import dtype_name, finalize, flat_features
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


def _seed(op: str, seed) -> dict:
    """Keyword arguments of the operator's one random operator (none: the pipeline seeds it)."""
    if seed is None:
        return {}
    return {"seed": _checks.check_int(op, "seed", seed, minimum=0)}


def _scalars(values, dtype) -> list:
    return unstack(np.ascontiguousarray(values, dtype=dtype))


def _check_shapes(op: str, shapes) -> None:
    _checks.check_batch_shapes(op, "images", [tuple(int(v) for v in s) for s in shapes])


def _check_images_dtype(op: str, samples, arg: str = "images", *, f16_declared: bool = False,
                        out_dtype: str | None = None) -> None:
    """Image dtypes the operators take; float16 only when declared on the source (DALI's
    arithmetic has none); ``dtype="uint8"`` only for uint8 images."""
    if samples:
        xp = namespace_of(samples[0])
        name = dtype_name(xp, samples[0].dtype)
        _checks.check_image_dtype(op, arg, name)
        if out_dtype == "uint8" and name != "uint8":
            raise _checks.fail(op, "dtype", "'uint8' only for uint8 images", f"'uint8' for {name} images")
        if name == "float16" and arg == "images" and not f16_declared:
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
    return stack_host(labels) if n else np.zeros((0, 1), np.int32)


# ----------------------------------------------------------------------------- python operators


class _Buffers:
    """Work buffers of one python operator, kept between batches: no fresh batch-sized
    allocation to page-fault in per batch (that made the k-mixup operator ~3x slower inside
    DALI's process). DALI copies a python operator's outputs, so outputs may live here too."""

    def __init__(self):
        self._ws = {}

    def __call__(self, name: str, shape: tuple, dtype) -> np.ndarray:
        buf = self._ws.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._ws[name] = np.empty(shape, dtype)
        return buf


def _host_stack(images: list, buffers: _Buffers) -> np.ndarray:
    """CPU samples stacked into a reused ``[B, ...]`` buffer of the working float type
    (float64 for float64 images, else float32)."""
    wd = np.float64 if images[0].dtype == np.float64 else np.float32
    return stack_host(images, out=buffers("x", (len(images),) + images[0].shape, wd))


class _PairParams:
    """CPU python operator: pairing (random or optimal transport), coins, lambdas and soft labels.

    Inputs: ``(src, labels, draws[, images or shapes][, layout][, extra/mask shapes...])``.
    ``src`` is the images (CPU), the ``features``, the cost rows of :class:`_KMixupCosts` or the
    image shapes; when ``src`` is not the images, the CPU images (or, on GPU, their shapes)
    follow; ``layout`` for mix/CutMix; then the shapes of the ``extra`` and ``masks`` tensors
    (mix/CutMix only, to check their layout against the images'). ``draws`` is one
    float64 vector per sample (DALI random outputs concatenated, so the operator converts one
    input): ``[u0, u1, u_lam(, coin)]`` for k-mixup and
    ``[u0, u1, u_lam, u_lam_cut, box_y, box_x, coin_prob, coin_switch]`` for mix, all uniform in
    [0, 1); the lambdas are Beta quantiles of ``u_lam`` (:func:`dali_mixup.kmixup.beta_quantile`).

    Outputs for k-mixup: partner (int32), lam (float32), soft labels, [dominant (int32)]; with
    ``host_blend``: the mixed images, soft labels, [partner, lam with ``return_info``].
    Outputs for mix: partner, lam, share (the partner's pixel share, broadcastable against the
    sample), soft labels, [dominant share (0/1, same shape)].
    """

    def __init__(self, op: str, opts: dict, source: str, kind: str, *, aux: str | None,
                 with_masks: bool, float16_declared: bool = False, extra_args=(),
                 host_blend: bool = False, return_info: bool = False):
        # source: "images" (host images, also what the cost is computed on), "features" (host
        # features), "costs" (rows from the GPU operator) or "shapes" (k = 1 on GPU);
        # aux: what follows the draws when src is not the images: "images" or "shapes";
        # host_blend (k-mixup, CPU images): blend the images here, see _host_blend
        self.op, self.opts, self.source, self.kind = op, opts, source, kind
        self.aux, self.with_masks, self.f16 = aux, with_masks, float16_declared
        self.extra_args = list(extra_args)
        self.host_blend, self.info = host_blend, return_info
        self._buffer = _Buffers()

    def _host_batch(self, images, order: np.ndarray) -> np.ndarray:
        """The CPU images in ``order`` (samples ``order[0], order[1], ...``), stacked into a
        reused ``[B, ...]`` buffer of the working float type."""
        return _host_stack([images[i] for i in order], self._buffer)

    def _host_blend(self, z: np.ndarray, order: np.ndarray, pos: np.ndarray, in_name: str,
                    partner: np.ndarray, lam: np.ndarray) -> list:
        """The image blend on the host, as per-sample outputs.

        ``z`` holds the batch in ``order`` (``pos`` is its inverse): the blend runs in that
        order, into a reused buffer, and output ``i`` is the view of row ``pos[i]``, so no
        gather back is needed. DALI copies a python operator's outputs into its own buffers,
        so the buffer can be reused for the next batch. One python operator output instead of
        DALI's permute_batch and arithmetic (more operators, each with per-sample overheads)
        made the CPU pipeline with k-mixup ~1-1.5 ms per batch of 256 faster (README, benchmarks).
        """
        out = self._buffer("out", z.shape, z.dtype)
        mixed = _km.blend(z, pos[partner[order]], lam[order].astype(z.dtype), np, out=out)
        mixed = finalize(mixed, in_name, self.opts["dtype"], np, self.op)
        return [mixed[j, ...] for j in pos]

    def _costs(self, src, bp, b, z=None, pos=None):
        """Block cost matrices; ``z`` is the batch stacked in the order whose inverse is ``pos``
        when ``src`` is the images and they were stacked for the host blend."""
        op, o = self.op, self.opts
        if self.source == "costs":  # rows from _KMixupCosts: the costs, flattened and spread
            return np.stack(src).reshape(-1)[: bp.left.size * bp.k].reshape(bp.left.shape + (bp.k,))
        arg = "features" if self.source == "features" else "images"
        if arg == "features":
            _check_images_dtype(op, src, arg)
            _checks.check_batch_shapes(op, arg, [tuple(f.shape) for f in src])
        # Each side's blocks: a view of the stacked batch when they lie there in order (the
        # usual case), else gathered into buffers kept between batches (from the stacked batch,
        # or straight from DALI's per-sample arrays, converting to the working float type).
        wd = np.float64 if src[0].dtype == np.float64 else np.float32
        d = src[0].size
        flat = z.reshape(b, -1) if z is not None else None
        sides = []
        for name, idx in (("a", bp.left), ("c", bp.right)):
            if flat is not None:
                rows = pos[idx.reshape(-1)]
                if rows[0] + rows.size <= b and (rows == np.arange(rows[0], rows[0] + rows.size)).all():
                    sides.append(flat[rows[0]:rows[0] + rows.size].reshape(idx.shape + (d,)))
                    continue
                buf = self._buffer(name, (idx.size, d), wd)
                np.take(flat, rows, axis=0, out=buf, mode="clip")  # rows < b
            else:
                buf = self._buffer(name, (idx.size, d), wd)
                np.stack([src[i].reshape(-1) for i in idx.reshape(-1)], out=buf)
            sides.append(buf.reshape(idx.shape + (d,)))
        return _cost.gathered_costs(*sides, metric=o["cost"], xp=np, op=op, arg=arg, match_only=True)

    @staticmethod
    def _block_order(bp, b: int) -> np.ndarray:
        """A sample order in which each side's blocks are consecutive rows (when unpadded)."""
        valid = np.arange(bp.left.shape[1])[None, :] < bp.sizes[:, None]
        seq = np.concatenate([bp.left[valid], bp.right[valid], np.arange(b)])
        _, first = np.unique(seq, return_index=True)
        return seq[np.sort(first)]

    def __call__(self, src, labels, draws, *rest):
        op, o = self.op, self.opts
        rest = list(rest)
        b = len(src)
        images = src if self.aux is None else rest.pop(0)
        if self.aux == "shapes":  # GPU images: their dtype is checked by the device operators
            shapes = [tuple(int(v) for v in s) for s in images]
        else:
            shapes = [tuple(a.shape) for a in images]
            _check_images_dtype(op, images, f16_declared=self.f16, out_dtype=o["dtype"])
        _checks.check_batch_shapes(op, "images", shapes)
        y = soft_labels(_stack_labels(op, labels, b), b, num_classes=o["num_classes"],
                        label_smoothing=o["label_smoothing"], dtype=np.float32, xp=np, op=op)
        v = stack_host(draws).astype(np.float64, copy=False) if b else np.zeros((0, 8))
        bp = _km.plan_blocks(v[:, :2], b, o["k"], o["pairing"])
        rep = _km.representatives(bp, o["lam_mode"], b)
        z = order = pos = None
        if self.host_blend and b:
            order = self._block_order(bp, b)
            pos = np.empty(b, np.int64)
            pos[order] = np.arange(b)
            z = self._host_batch(images, order)
        zc = z if self.source == "images" else None
        costs = self._costs(src, bp, b, zc, pos) if bp.k > 1 else None
        if self.kind == "kmixup":
            d = _km.KMixupDraws(u=v[:, :2], lam=_km.beta_at(o["alpha"], v[:, 2], rep),
                                coin=v[:, 3] if v.shape[1] > 3 else None)
            cols = _km.solve_blocks(costs, bp.sizes) if costs is not None else None
            partner, lam = _km.partners_and_lambdas(bp, cols, d, b, o["lam_mode"], o["prob"])
            y_mixed = _km.blend(y, partner, lam.astype(np.float32), np)

            def info():  # per-sample outputs cost a conversion each: only when wanted
                return _scalars(partner, np.int32), _scalars(lam, np.float32)

            if self.host_blend:
                mixed = (self._host_blend(z, order, pos, dtype_name(np, images[0].dtype), partner, lam)
                         if b else [])
                return (mixed, unstack(y_mixed)) + (info() if self.info else ())
            out = info() + (unstack(y_mixed),)
            if self.with_masks:
                out += (_scalars(_km.dominant(partner, lam), np.int32),)
            return out
        lay = bytes(rest.pop(0)[0]).decode() if b else ""
        ndim = len(shapes[0]) if b else 0
        if b and not lay:
            raise _checks.fail(op, "images", "images with a layout (set layout= on their source, "
                               "e.g. 'HWC'), to find H and W for CutMix", "no layout")
        ah, aw = _cm.spatial_axes(lay, ndim, op) if b else (0, 1)
        hw = (shapes[0][ah], shapes[0][aw]) if b else (1, 1)
        for arg, ex_shapes in zip(self.extra_args, rest):
            for s in ex_shapes:
                _cm.check_spatial(op, arg, tuple(int(v) for v in s), shapes[0], ah, aw)
        md = _cm.MixDraws(u=v[:, :2], lam=_km.beta_at(o["mixup_alpha"] or 1.0, v[:, 2], rep),
                          lam_cut=_km.beta_at(o["cutmix_alpha"] or 1.0, v[:, 3], rep), box=v[:, 4:6],
                          coin=v[:, 6:8])
        p = _cm.plan(md, b, hw, k=o["k"], pairing=o["pairing"], cost=o["cost"], lam_mode=o["lam_mode"],
                     prob=o["prob"], switch_prob=o["switch_prob"], mixup_alpha=o["mixup_alpha"],
                     cutmix_alpha=o["cutmix_alpha"], correct_lam=o["correct_lam"], costs=costs, op=op)
        y_mixed = _km.blend(y, p.partner, p.lam.astype(np.float32), np)
        # One shape for the whole batch: DALI's arithmetic mis-broadcasts when samples of one
        # batch have different shapes (seen in DALI 2.4), so a batch with any CutMix row gets
        # full H x W shares for every row; a pure mixup batch gets (1, ..., 1) shares.
        shape = [1] * ndim
        if b and p.cut.any():
            shape[ah], shape[aw] = hw
            share = p.pixel_share(*hw).astype(np.float32).reshape((b,) + tuple(shape))
        else:
            share = p.share.astype(np.float32).reshape((b,) + tuple(shape))
        out = (_scalars(p.partner, np.int32), _scalars(p.lam, np.float32), unstack(share), unstack(y_mixed))
        if self.with_masks:
            out += (unstack((share > 0.5).astype(np.float32)),)
        return out


class _KMixupCosts:
    """GPU (or CPU) python operator: block cost rows ``[B, k]`` computed where the features live.

    Only these rows leave the device; the assignment is solved by :class:`_KMixupParams`.
    """

    def __init__(self, op: str, opts: dict, float16_declared: bool = False):
        self.op, self.opts, self.f16 = op, opts, float16_declared

    def __call__(self, feats, u):
        op, o = self.op, self.opts
        b = len(feats)
        if b == 0:
            return []
        xp = namespace_of(feats[0])
        _check_images_dtype(op, feats, "features" if o["has_features"] else "images",
                            f16_declared=self.f16, out_dtype=None if o["has_features"] else o["dtype"])
        _checks.check_batch_shapes(op, "features" if o["has_features"] else "images",
                                   [tuple(f.shape) for f in feats])
        plan = _km.plan_blocks(to_numpy(stack(u, xp)), b, o["k"], o["pairing"])  # one copy
        if plan.k <= 1:
            return unstack(xp.zeros((b, 1), dtype=xp.float32))
        x = flat_features(stack(feats, xp), b, xp, op)
        cost = _km.block_costs(x, plan.left, plan.right, metric=o["cost"], xp=xp, op=op,
                               arg="features" if o["has_features"] else "images", match_only=True)
        # DALI wants one output row per sample: spread the n_blocks * k * k costs over B rows
        n = plan.left.size * plan.k
        width = -(-n // b)
        flat = xp.reshape(xp.astype(cost, xp.float32), (n,))
        if width * b > n:
            flat = xp.concat([flat, xp.zeros((width * b - n,), dtype=xp.float32)])
        return unstack(xp.reshape(flat, (b, width)))


class _ZetaParams:
    """CPU python operator: partners, weights and soft labels, and on CPU also the mix.

    Inputs: ``(images or shapes, labels, draws)`` with ``draws = [u (max batch size), g(, coin)]``
    per sample. With ``host_images`` (CPU images): outputs ``others, w_1, soft labels`` (with
    ``host_mix``: the mixed images and soft labels) and, with ``return_info``, ``index,
    weights``. Otherwise (GPU images): ``index, weights, w_1, soft labels``, and
    :class:`_ZetaOthers` mixes on the device.
    """

    def __init__(self, opts: dict, host_images: bool, return_info: bool, float16_declared: bool,
                 host_mix: bool = False):
        self.opts, self.host, self.info, self.f16 = opts, host_images, return_info, float16_declared
        self.host_mix = host_mix  # CPU, no extras: output the finished mix (see _host_mix)
        self._buffer = _Buffers()

    def _host_mix(self, images, index: np.ndarray, weights: np.ndarray) -> list:
        """The whole mix ``sum_t w_t x_index(i, t)`` on the host, as per-sample outputs.

        The same code as the array layer (bitwise equal), into buffers kept between batches;
        one output instead of ``others`` and ``w_1`` plus DALI arithmetic (fewer operators,
        each with a per-sample overhead)."""
        x = _host_stack(images, self._buffer)
        b = x.shape[0]
        if index.shape[1] > 1:
            method = self.opts["method"] or _zeta.choose_method(index.shape[1], b)
            x = _zeta._mix_numpy(x, index, weights, method, include_self=True,
                                 out=self._buffer("out", x.shape, x.dtype))
        mixed = finalize(x, dtype_name(np, images[0].dtype), self.opts["dtype"], np, _zeta.OP)
        return unstack(mixed)

    def __call__(self, images_or_shapes, labels, draws):
        o, op = self.opts, _zeta.OP
        b = len(images_or_shapes)
        if self.host:
            _check_images_dtype(op, images_or_shapes, f16_declared=self.f16, out_dtype=o["dtype"])
            _checks.check_batch_shapes(op, "images", [tuple(a.shape) for a in images_or_shapes])
        else:
            _check_shapes(op, images_or_shapes)
        y = soft_labels(_stack_labels(op, labels, b), b, num_classes=o["num_classes"],
                        label_smoothing=o["label_smoothing"], dtype=np.float32, xp=np, op=op)
        v = np.stack(draws) if b else np.zeros((0, 2), np.float32)
        width = v.shape[1] - (2 if o["prob"] < 1.0 else 1)
        d = _zeta.ZetaDraws(u=v[:, :width], g=v[:, width].astype(np.float64),
                            coin=v[:, width + 1].astype(np.float64) if o["prob"] < 1.0 else None)
        index, weights, _ = _zeta.plan(d, b, o["T"], o["gamma"], o["prob"])
        w32 = weights.astype(np.float32)
        # the array layer's own label mix (bitwise equal to dali_mixup.zeta_mixup)
        y_mixed = _zeta._mix_numpy(y, index, weights, "matmul", True) if index.shape[1] > 1 else y

        def info():  # per-sample outputs, built only when they are outputs
            return unstack(index.astype(np.int32)), unstack(np.broadcast_to(w32, index.shape).copy())

        if self.host_mix:
            mixed = self._host_mix(images_or_shapes, index, weights) if b else []
            return (mixed, unstack(y_mixed)) + (info() if self.info else ())
        w1 = _scalars(np.full(b, w32[0]), np.float32)
        if not self.host:
            return info() + (w1, unstack(y_mixed))
        others = _mix_samples(images_or_shapes, index, w32, self.opts["method"]) if b else []
        return (others, w1, unstack(y_mixed)) + (info() if self.info else ())


def _mix_samples(samples, index, weights, method):
    """``sum_{t>=1} w_t x_index(i,t)`` (float32) of a DALI batch, on its own device."""
    b = len(samples)
    xp = namespace_of(samples[0])
    x = stack(samples, xp)
    x = x if x.dtype == xp.float32 else xp.astype(x, xp.float32)
    method = method or _zeta.choose_method(index.shape[1], b)
    return unstack(_zeta.mix_others(x, index, weights, xp, method))


class _ZetaOthers:
    """Python operator on the images' device (GPU path, and extra tensors on CPU):
    ``sum_{t>=1} w_t x_index(i,t)`` (float32)."""

    def __init__(self, opts: dict, float16_declared: bool = False):
        self.opts, self.f16 = opts, float16_declared

    def __call__(self, images, index, weights):
        if not images:
            return []
        xp = namespace_of(images[0])
        _check_images_dtype(_zeta.OP, images, f16_declared=self.f16, out_dtype=self.opts["dtype"])
        idx = to_numpy(stack(index, xp)).astype(np.int64)  # one device-to-host copy
        return _mix_samples(images, idx, to_numpy(weights[0]).astype(np.float32), self.opts["method"])


# ----------------------------------------------------------------------------- public operators


def _finish(mixed, dtype, types, dfn):
    if dtype is None:
        return mixed
    target = {"float16": types.FLOAT16, "float32": types.FLOAT, "float64": types.FLOAT64,
              "uint8": types.UINT8}[dtype]
    return dfn.cast(mixed, dtype=target)


def _check_nodes(op: str, DataNode, images, labels, features, extra, masks) -> tuple:
    _check_node(op, "images", images, DataNode)
    _check_node(op, "labels", labels, DataNode)
    if features is not None:
        _check_node(op, "features", features, DataNode)
    for arg, nodes in (("extra", extra), ("masks", masks)):
        if not isinstance(nodes, (list, tuple)):
            raise _checks.fail(op, arg, "a list or tuple of DataNodes", type(nodes).__name__)
        for j, n in enumerate(nodes):
            _check_node(op, f"{arg}[{j}]", n, DataNode)
    return tuple(extra), tuple(masks)


def _pair_source(op, opts, images, features, u, dfn, f16: bool):
    """What the pairing operator reads: host images or features, GPU cost rows, or shapes."""
    if opts["k"] > 1:
        feats = features if features is not None else images
        if feats.device == "gpu":
            rows = dfn.python_function(feats, u.gpu(), function=_KMixupCosts(op, opts, f16),
                                       device="gpu", batch_processing=True, num_outputs=1)
            return rows.cpu(), "costs"
        if features is not None:
            return features, "features"
    if images.device == "cpu":
        return images, "images"
    return images.shape(device="cpu"), "shapes"


def _pair_inputs(src, source, images, labels, draws):
    """Inputs of :class:`_PairParams` and what follows the draws (``aux``)."""
    inputs = [src, labels.cpu() if labels.device == "gpu" else labels, draws]
    if source == "images":
        return inputs, None
    aux = "images" if images.device == "cpu" else "shapes"
    inputs.append(images if aux == "images" else images.shape(device="cpu"))
    return inputs, aux


def _with_layout(node, like, dtype, types, dfn):
    """``node`` (a python operator output, which has no layout) with the layout of ``like``.

    The layout is only known when the pipeline runs, so it is taken over by concatenating an
    empty slice of ``like`` (cast to ``node``'s dtype) in front of ``node`` along the first axis.
    """
    head = like[0:0]
    out_type = {None: types.FLOAT, "float32": types.FLOAT}.get(dtype)
    same = out_type is not None and out_type == _declared_dtype(like)  # float32 in and out
    return dfn.cat(head if same else dfn.cast_like(head, node), node)


def _on(node, like):
    return node.gpu() if like.device == "gpu" else node


def k_mixup(images, labels, *, k: int = 16, alpha: float = 1.0, num_classes: int | None = None,
            cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
            label_smoothing: float = 0.0, features=None, dtype: str | None = None,
            prob: float = 1.0, extra=(), masks=(), return_info: bool = False,
            seed: int | None = None, _op: str = "k_mixup"):
    """k-mixup inside a DALI pipeline (Greenewald et al., TMLR 2023).

    Args:
        images: DataNode, a batch of one shape per batch (any layout), on CPU or GPU;
            uint8, float16 (declared on its source), float32 or float64.
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
        prob: probability that a lam group (batch, block or sample) is mixed at all.
        extra: DataNodes blended with the same partners and weights (float results).
        masks: integer DataNodes (segmentation maps): each output takes its dominant
            sample's map (the one with weight >= 0.5).
        return_info: also return ``partner`` (int32) and ``lam`` (float32) per sample.
        seed: seed of this operator's one random operator (default: derived from the
            pipeline seed).

    Returns:
        ``(images, labels, *extra, *masks)``, then ``(partner, lam)`` with ``return_info``.
        Images keep their layout and device; labels are float32 ``[C]`` per sample, on the
        images' device.
    """
    dfn, types, DataNode, _ = _dali()
    opts = _km.validate(k=k, alpha=alpha, num_classes=num_classes, cost=cost, pairing=pairing,
                        lam_mode=lam_mode, label_smoothing=label_smoothing, dtype=dtype, prob=prob, op=_op)
    extra, masks = _check_nodes(_op, DataNode, images, labels, features, extra, masks)
    _check_label_source(_op, labels, opts["num_classes"])
    opts["has_features"] = features is not None
    # one DALI random operator: [u0, u1, u_lam(, coin)] per sample
    draws = dfn.random.uniform(range=[0.0, 1.0], shape=[4 if opts["prob"] < 1.0 else 3],
                               dtype=types.FLOAT64, **_seed(_op, seed))
    x, f16 = _blend_input(images, types, dfn)
    src, source = _pair_source(_op, opts, images, features, draws, dfn, f16)
    inputs, aux = _pair_inputs(src, source, images, labels, draws)
    if images.device == "cpu" and not extra and not masks:
        # CPU: the python operator blends too (fewer DALI operators, see _PairParams._host_blend)
        outs = dfn.python_function(
            *inputs, function=_PairParams(_op, opts, source, "kmixup", aux=aux, with_masks=False,
                                          float16_declared=f16, host_blend=True,
                                          return_info=return_info),
            batch_processing=True, num_outputs=4 if return_info else 2)
        out = (_with_layout(outs[0], images, opts["dtype"], types, dfn), outs[1])
        return out + tuple(outs[2:]) if return_info else out
    outs = dfn.python_function(
        *inputs, function=_PairParams(_op, opts, source, "kmixup", aux=aux, with_masks=bool(masks),
                                      float16_declared=f16),
        batch_processing=True, num_outputs=4 if masks else 3)
    partner, lam, soft = outs[:3]
    lam_d = _on(lam, images)

    def blend(a):
        return lam_d * a + (1.0 - lam_d) * dfn.permute_batch(a, indices=partner)

    out = (_finish(blend(x), opts["dtype"], types, dfn), _on(soft, images))
    out += tuple(blend(_blend_input(e, types, dfn)[0]) for e in extra)
    out += tuple(dfn.permute_batch(m, indices=outs[3]) for m in masks)
    return out + (partner, lam) if return_info else out


def mixup(images, labels, *, alpha: float = 1.0, num_classes: int | None = None,
          lam_mode: str = "batch", label_smoothing: float = 0.0, dtype: str | None = None,
          prob: float = 1.0, extra=(), masks=(), return_info: bool = False, seed: int | None = None):
    """Standard mixup inside a DALI pipeline: :func:`k_mixup` with k = 1 (random disjoint pairs).

    Arguments and outputs as for :func:`k_mixup`.
    """
    return k_mixup(images, labels, k=1, alpha=alpha, num_classes=num_classes, lam_mode=lam_mode,
                   label_smoothing=label_smoothing, dtype=dtype, prob=prob, extra=extra, masks=masks,
                   return_info=return_info, seed=seed, _op="mixup")


def mix(images, labels, *, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0, prob: float = 1.0,
        switch_prob: float = 0.5, k: int = 1, cost: str = "sqeuclidean", pairing: str = "disjoint",
        lam_mode: str = "batch", correct_lam: bool = True, num_classes: int | None = None,
        label_smoothing: float = 0.0, features=None, dtype: str | None = None, extra=(), masks=(),
        return_info: bool = False, seed: int | None = None, _op: str = "mix"):
    """mixup or CutMix per lam group inside a DALI pipeline, as timm's ``Mixup``.

    The images must carry a layout with H and W (e.g. ``"HWC"`` from the decoders, ``"CHW"``
    from ``crop_mirror_normalize``): CutMix boxes are cut in H and W.

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

    Returns:
        ``(images, labels, *extra, *masks)``, then ``(partner, lam)`` with ``return_info``.
    """
    dfn, types, DataNode, _ = _dali()
    opts = _cm.validate(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                        switch_prob=switch_prob, k=k, cost=cost, pairing=pairing, lam_mode=lam_mode,
                        correct_lam=correct_lam, num_classes=num_classes,
                        label_smoothing=label_smoothing, dtype=dtype, op=_op)
    extra, masks = _check_nodes(_op, DataNode, images, labels, features, extra, masks)
    _check_label_source(_op, labels, opts["num_classes"])
    opts["has_features"] = features is not None
    # one DALI random operator: [u0, u1, u_lam, u_lam_cut, box_y, box_x, coin_prob, coin_switch]
    draws = dfn.random.uniform(range=[0.0, 1.0], shape=[8], dtype=types.FLOAT64, **_seed(_op, seed))
    x, f16 = _blend_input(images, types, dfn)
    src, source = _pair_source(_op, opts, images, features, draws, dfn, f16)
    inputs, aux = _pair_inputs(src, source, images, labels, draws)
    inputs.append(images.property("layout", device="cpu"))
    # extras and masks must share the images' layout: their shapes are checked per batch
    named = [(f"extra[{j}]", e) for j, e in enumerate(extra)] + [(f"masks[{j}]", m) for j, m in enumerate(masks)]
    inputs += [n.shape(device="cpu") for _, n in named]
    outs = dfn.python_function(
        *inputs, function=_PairParams(_op, opts, source, "mix", aux=aux, with_masks=bool(masks),
                                      float16_declared=f16, extra_args=[a for a, _ in named]),
        batch_processing=True, num_outputs=5 if masks else 4)
    partner, lam, share, soft = outs[:4]
    share_d = _on(share, images)

    def paste(a, m):
        return a * (1.0 - m) + dfn.permute_batch(a, indices=partner) * m

    out = (_finish(paste(x, share_d), opts["dtype"], types, dfn), _on(soft, images))
    out += tuple(paste(_blend_input(e, types, dfn)[0], share_d) for e in extra)
    out += tuple(dfn.cast_like(paste(m, _on(outs[4], images)), m) for m in masks)
    return out + (partner, lam) if return_info else out


def cutmix(images, labels, *, alpha: float = 1.0, prob: float = 1.0, k: int = 1,
           cost: str = "sqeuclidean", pairing: str = "disjoint", lam_mode: str = "batch",
           correct_lam: bool = True, num_classes: int | None = None, label_smoothing: float = 0.0,
           features=None, dtype: str | None = None, extra=(), masks=(), return_info: bool = False,
           seed: int | None = None):
    """CutMix (Yun et al. 2019) inside a DALI pipeline; with k > 1 partners come from OT.

    Arguments and outputs as for :func:`mix` (``alpha`` is the CutMix Beta parameter).
    """
    return mix(images, labels, mixup_alpha=0.0, cutmix_alpha=alpha, prob=prob, k=k, cost=cost,
               pairing=pairing, lam_mode=lam_mode, correct_lam=correct_lam, num_classes=num_classes,
               label_smoothing=label_smoothing, features=features, dtype=dtype, extra=extra,
               masks=masks, return_info=return_info, seed=seed, _op="cutmix")


def zeta_mixup(images, labels, *, gamma: float | tuple[float, float] = 2.8, T: int | None = None,
               num_classes: int | None = None, label_smoothing: float = 0.0,
               dtype: str | None = None, method: str | None = None, prob: float = 1.0,
               extra=(), masks=(), return_info: bool = False, seed: int | None = None):
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
        return_info: also return ``index`` (int32 ``[T]``, entry 0 the sample itself) and
            ``weights`` (float32 ``[T]``) per sample.
        seed: seed of this operator's one random operator (default: derived from the
            pipeline seed).

    Returns:
        ``(images, labels, *extra, *masks)``, then ``(index, weights)`` with ``return_info``.
    """
    dfn, types, DataNode, Pipeline = _dali()
    op = _zeta.OP
    opts = _zeta.validate(gamma=gamma, T=T, num_classes=num_classes,
                          label_smoothing=label_smoothing, dtype=dtype, prob=prob)
    if method not in (None, "gather", "matmul"):
        raise _checks.fail(op, "method", "None, 'gather' or 'matmul'", method)
    opts["method"] = method
    extra, masks = _check_nodes(op, DataNode, images, labels, None, extra, masks)
    _check_label_source(op, labels, opts["num_classes"])
    # one DALI random operator: [u (max batch size), g(, coin)] per sample
    width = Pipeline.current().max_batch_size
    draws = dfn.random.uniform(range=[0.0, 1.0], shape=[width + (2 if opts["prob"] < 1.0 else 1)],
                               **_seed(op, seed))
    on_gpu = images.device == "gpu"
    x, f16 = _blend_input(images, types, dfn)
    labels_cpu = labels.cpu() if labels.device == "gpu" else labels
    if on_gpu:
        index, weights, w1, soft = dfn.python_function(
            images.shape(device="cpu"), labels_cpu, draws,
            function=_ZetaParams(opts, False, True, f16), batch_processing=True, num_outputs=4)
        others = dfn.python_function(x, index.gpu(), weights.gpu(), function=_ZetaOthers(opts, f16),
                                     device="gpu", batch_processing=True, num_outputs=1)
    elif not extra:
        # CPU: the python operator outputs the finished mix (fewer DALI operators)
        outs = dfn.python_function(images, labels_cpu, draws,
                                   function=_ZetaParams(opts, True, return_info, f16, host_mix=True),
                                   batch_processing=True, num_outputs=4 if return_info else 2)
        out = (_with_layout(outs[0], images, opts["dtype"], types, dfn), outs[1]) + tuple(masks)
        return out + tuple(outs[2:]) if return_info else out
    else:
        want_index = return_info or bool(extra)  # the extras are mixed by index and weights
        outs = dfn.python_function(x, labels_cpu, draws,
                                   function=_ZetaParams(opts, True, want_index, f16),
                                   batch_processing=True, num_outputs=5 if want_index else 3)
        others, w1, soft = outs[:3]
        index, weights = outs[3:] if want_index else (None, None)

    def mix_extra(e):
        e, e16 = _blend_input(e, types, dfn)
        o = dfn.python_function(e, _on(index, e), _on(weights, e),
                                function=_ZetaOthers({**opts, "dtype": None}, e16),
                                device=e.device, batch_processing=True, num_outputs=1)
        return _on(w1, e) * e + o

    out = (_finish(_on(w1, x) * x + others, opts["dtype"], types, dfn), _on(soft, images))
    out += tuple(mix_extra(e) for e in extra) + tuple(masks)
    return out + (index, weights) if return_info else out
