"""The python-operator callables of the DALI layer: one job each, inputs and outputs declared once.

DALI calls each with one list of per-sample arrays per input (NumPy on CPU, CuPy on GPU) and
takes back one list per output. Every class names its inputs and outputs in ``inputs`` and
``outputs`` (tuples of names); the graph builders pass inputs in that order and take
``num_outputs = len(outputs)``, so nothing is counted by hand.

CPU images (one operator does everything, with the array layer's own code):

* :class:`PairHost`, :class:`ZetaHost`: checks, plan, blend, soft labels.

GPU images (the plan on the host, the pixels on the device):

* :class:`BlockCosts` (GPU): the k-mixup block cost rows; only ``[B, k]`` floats leave the GPU;
* :class:`PairPlanner`, :class:`ZetaPlanner` (CPU): checks, plan rows and soft labels;
* :class:`PairApply`, :class:`ZetaApply` (GPU): the blend, with the array layer's expressions;
* :class:`DeviceCheck` (CPU): raises the error a GPU operator reported.

A GPU operator never raises. DALI wraps its stream in a ``cupy.cuda.Stream`` and resets the
wrapper only after a normal return; an exception would let CuPy destroy DALI's own stream.
So every check runs in a CPU operator: the GPU operators report facts (the input dtypes, and
whether they failed) in a small ``facts`` output that a CPU operator reads and raises on,
with the same checks and messages as the CPU path.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .. import _checks, _fast
from .._backend import namespace_of, stack, stack_host, to_numpy, unstack
from ..apply import PairArrays, blend, mix_pair_masks, mix_pairs, zeta_mix, zeta_mix_matrix, \
    zeta_mix_reference
from ..cost import block_costs, gathered_costs
from ..draws import pair_draws_from_uniforms, zeta_draws_from_uniforms
from ..images import dtype_name, finalize
from ..labels import soft_labels
from ..pairs import check_spatial, spatial_axes
from ..plan import check_costs, choose_zeta_method, mixing_matrix, pair_plan, plan_blocks, \
    representatives, zeta_plan

#: dtype names in the order of their codes in a ``facts`` output.
DTYPE_CODES = ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
               "float16", "float32", "float64")


def dtype_code(xp, dtype) -> int:
    name = dtype_name(xp, dtype)
    return DTYPE_CODES.index(name) if name in DTYPE_CODES else -1


def dtype_of_code(code: int) -> str:
    return DTYPE_CODES[code] if 0 <= code < len(DTYPE_CODES) else "unknown"


def check_dtypes(op: str, out_dtype: str | None, dtypes: dict) -> None:
    """The dtype rules, the same on both devices: images and features of an image dtype;
    ``dtype="uint8"`` only for uint8 images. ``dtypes``: argument name -> dtype name."""
    for arg, name in dtypes.items():
        _checks.check_image_dtype(op, arg, name)
    if out_dtype == "uint8" and dtypes.get("images", "uint8") != "uint8":
        raise _checks.fail(op, "dtype", "'uint8' only for uint8 images",
                           f"'uint8' for {dtypes['images']} images")


def work_dtype_of(name: str):
    return np.float64 if name == "float64" else np.float32


def out_dtype_of(name: str, out_dtype: str | None):
    return np.dtype(out_dtype) if out_dtype else work_dtype_of(name)


def _names(prefix: str, n: int) -> tuple:
    return tuple(f"{prefix}[{j}]" for j in range(n))


class Op(ABC):
    """Base of the callables: ``inputs``/``outputs`` name tuples; ``__call__`` maps the
    positional lists DALI hands over to names and returns the outputs in declared order."""

    inputs: tuple = ()
    outputs: tuple = ()

    def __call__(self, *args):
        out = self.run(dict(zip(self.inputs, args)))
        return tuple(out[n] for n in self.outputs)

    @abstractmethod
    def run(self, a: dict) -> dict:
        """The operator's job, from its inputs by name to its outputs by name."""


class Buffers:
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


def host_labels(cfg, labels: list, b: int) -> np.ndarray:
    """The batch's soft labels ``[B, C]`` float32 (checked: batch size, one shape, classes)."""
    _checks.check_batch_sizes(cfg.op, b, "labels", len(labels))
    _checks.check_batch_shapes(cfg.op, "labels", [tuple(a.shape) for a in labels])
    y = stack_host(labels) if b else np.zeros((0, 1), np.int32)
    return soft_labels(y, b, num_classes=cfg.num_classes, label_smoothing=cfg.label_smoothing,
                       dtype=np.float32, xp=np, op=cfg.op)


def host_shapes(shapes: list) -> list:
    return [tuple(int(v) for v in s) for s in shapes]


def host_uniforms(draws: list, width: int) -> np.ndarray:
    return stack_host(draws).astype(np.float64, copy=False) if draws else np.zeros((0, width))


def layout_of(a: dict, b: int) -> str:
    return bytes(a["layout"][0]).decode() if b and "layout" in a else ""


def axes_for(cfg, layout: str, ndim: int):
    """H and W positions for CutMix (None when the operator cannot cut)."""
    if not cfg.uses_cutmix:
        return None
    if not layout:
        raise _checks.fail(cfg.op, "images", "images with a layout (set layout= on their source, "
                           "e.g. 'HWC', or pass layout= to the operator), to find H and W for "
                           "CutMix", "no layout")
    return spatial_axes(layout, ndim, cfg.op)


def check_others(cfg, named_shapes: dict, image_shape: tuple, axes) -> None:
    """``extra``/``masks`` batches: one shape each; the images' dims and H, W for CutMix."""
    for arg, shapes in named_shapes.items():
        _checks.check_batch_shapes(cfg.op, arg, shapes)
        if axes is not None and shapes:
            check_spatial(cfg.op, arg, shapes[0], image_shape, axes)


# =============================================================================== CPU images


class PairHost(Op):
    """CPU: a whole pair operator (k-mixup, mixup, CutMix, mix) on host images.

    k-mixup stacks the batch once, in an order in which every matched block is a run of rows
    (so its costs are taken on views); the other operators stack it in sample order. Stacks
    live in buffers kept between batches; the blend is the array layer's
    :func:`dali_mixup.apply.mix_pairs` (bitwise equal to it; row order does not change
    per-element arithmetic), and output ``i`` is a view of its row. A plain blend (no costs,
    no CutMix) of large float samples skips the stack: :func:`dali_mixup._fast.blend_samples`
    mixes the sample list directly (bitwise equal too).
    """

    def __init__(self, cfg, *, has_features: bool, layout: str | None, n_extra: int,
                 n_masks: int, return_info: bool):
        self.cfg, self.layout = cfg, layout
        self.extra, self.masks = _names("extra", n_extra), _names("masks", n_masks)
        self.inputs = (("images", "labels", "draws") + (("features",) if has_features else ())
                       + (("layout",) if cfg.uses_cutmix and layout is None else ())
                       + self.extra + self.masks)
        self.outputs = (("images", "labels") + self.extra + self.masks
                        + (("partner", "lam") if return_info else ()))
        self._buf = Buffers()

    def _costs(self, a, blocks, z, pos, b):
        cfg = self.cfg
        if "features" in a:
            feats = a["features"]
            _checks.check_batch_sizes(cfg.op, b, "features", len(feats))
            _checks.check_batch_shapes(cfg.op, "features", [tuple(f.shape) for f in feats])
            name = dtype_name(np, feats[0].dtype)
            check_dtypes(cfg.op, None, {"features": name})
            f = stack_host(feats, out=self._buf("f", (b,) + feats[0].shape, work_dtype_of(name)))
            return block_costs(f.reshape(b, -1), blocks.left, blocks.right, metric=cfg.cost, xp=np,
                               op=cfg.op, arg="features", match_only=True)
        # each side's blocks: a view of the stacked batch when they lie there in order (the
        # usual case), else gathered into buffers kept between batches
        flat = z.reshape(b, -1)
        sides = []
        for name, idx in (("a", blocks.left), ("c", blocks.right)):
            rows = pos[idx.reshape(-1)]
            if rows[0] + rows.size <= b and (rows == np.arange(rows[0], rows[0] + rows.size)).all():
                sides.append(flat[rows[0]:rows[0] + rows.size].reshape(idx.shape + (-1,)))
                continue
            buf = self._buf(name, (idx.size, flat.shape[1]), flat.dtype)
            np.take(flat, rows, axis=0, out=buf, mode="clip")  # rows < b
            sides.append(buf.reshape(idx.shape + (-1,)))
        return gathered_costs(*sides, metric=cfg.cost, xp=np, op=cfg.op, arg="images",
                              match_only=True)

    def _stack_in(self, name: str, samples: list, order: np.ndarray | None, dtype) -> np.ndarray:
        """The samples stacked (in ``order``; None: as they come) into a kept buffer."""
        ordered = samples if order is None else [samples[i] for i in order]
        return stack_host(ordered, out=self._buf(name, (len(samples),) + samples[0].shape, dtype))

    @staticmethod
    def _blends_samples(images: list, wd, blocks, cutmix: bool) -> bool:
        """True when the images are blended straight from the sample list (no stack)."""
        x = images[0]
        return (blocks.k <= 1 and not cutmix and x.dtype == wd and x.nbytes >= _fast.SAMPLE_BYTES
                and all(s.flags.c_contiguous for s in images))

    def run(self, a):
        cfg = self.cfg
        images = a["images"]
        b = len(images)
        shapes = [tuple(x.shape) for x in images]
        _checks.check_batch_shapes(cfg.op, "images", shapes)
        in_name = dtype_name(np, images[0].dtype) if b else "float32"
        check_dtypes(cfg.op, cfg.dtype, {"images": in_name})
        y = host_labels(cfg, a["labels"], b)
        others = {n: [tuple(x.shape) for x in a[n]] for n in self.extra + self.masks}
        for n, s in others.items():
            _checks.check_batch_sizes(cfg.op, b, n, len(s))
        ndim = len(shapes[0]) if b else 0
        axes = axes_for(cfg, self.layout or layout_of(a, b), ndim) if b else None
        check_others(cfg, others, shapes[0] if b else (), axes)
        v = host_uniforms(a["draws"], 8)
        blocks = plan_blocks(v[:, :2], b, cfg.k, cfg.pairing)
        d = pair_draws_from_uniforms(cfg, v, representatives(blocks, cfg.lam_mode, b))
        out = {n: [] for n in self.outputs}
        if not b:
            out["labels"] = unstack(y)
            return out
        wd = work_dtype_of(in_name)
        # k-mixup: row j of the stacks is sample order[j] (pos is its inverse); others: natural
        order = blocks.order(b) if blocks.k > 1 else None
        pos = np.argsort(order) if order is not None else None
        direct = self._blends_samples(images, wd, blocks, cfg.uses_cutmix)
        z = None if direct else self._stack_in("x", images, order, wd)
        costs = self._costs(a, blocks, z, pos, b) if blocks.k > 1 else None
        hw = (shapes[0][axes[0]], shapes[0][axes[1]]) if axes is not None else (1, 1)
        plan = pair_plan(cfg, d, blocks, costs, b, hw)
        pa = PairArrays.from_plan(plan, np, wd)
        po = pa if order is None else PairArrays(
            partner=pos[plan.partner[order]], lam=pa.lam[order], share=pa.share[order],
            cut=pa.cut[order], boxes=pa.boxes[order])

        def samples_of(batch) -> list:
            return unstack(batch) if pos is None else [batch[j, ...] for j in pos]

        buf = self._buf("out", (b,) + shapes[0], wd)
        if direct:
            mixed = _fast.blend_samples(images, pa.partner, pa.lam, out=buf)
        else:
            mixed = mix_pairs(z, po, cutmix=cfg.uses_cutmix, axes=axes, xp=np, out=buf)
        out["images"] = samples_of(finalize(mixed, in_name, cfg.dtype, np, cfg.op))
        out["labels"] = unstack(blend(y, pa.partner, pa.lam, np))
        for n in self.extra:
            out[n] = samples_of(mix_pairs(self._stack_in(n, a[n], order, wd), po,
                                          cutmix=cfg.uses_cutmix, axes=axes, xp=np))
        for n in self.masks:
            ordered = a[n] if order is None else [a[n][i] for i in order]
            out[n] = samples_of(mix_pair_masks(stack_host(ordered), po, cutmix=cfg.uses_cutmix,
                                               axes=axes, xp=np))
        if "partner" in self.outputs:
            out["partner"] = unstack(plan.partner.astype(np.int32))
            out["lam"] = unstack(pa.lam)
        return out


class ZetaHost(Op):
    """CPU: zeta-mixup on host images, with the array layer's own mix (bitwise equal)."""

    def __init__(self, cfg, *, n_extra: int, return_info: bool):
        self.cfg = cfg
        self.extra = _names("extra", n_extra)
        self.inputs = ("images", "labels", "draws") + self.extra
        self.outputs = ("images", "labels") + self.extra + (("index", "weights") if return_info else ())
        self._buf = Buffers()

    def run(self, a):
        cfg = self.cfg
        images = a["images"]
        b = len(images)
        _checks.check_batch_shapes(cfg.op, "images", [tuple(x.shape) for x in images])
        in_name = dtype_name(np, images[0].dtype) if b else "float32"
        check_dtypes(cfg.op, cfg.dtype, {"images": in_name})
        y = host_labels(cfg, a["labels"], b)
        for n in self.extra:
            _checks.check_batch_sizes(cfg.op, b, n, len(a[n]))
            _checks.check_batch_shapes(cfg.op, n, [tuple(x.shape) for x in a[n]])
        zp = zeta_plan(cfg, zeta_draws_from_uniforms(cfg, host_uniforms(a["draws"], 2)), b)
        out = {n: [] for n in self.outputs}
        if not b:
            out["labels"] = unstack(y)
            return out
        T = zp.index.shape[1]
        how = cfg.method or choose_zeta_method(T, b)
        W = mixing_matrix(zp.index, zp.weights, include_self=True) if T > 1 else None
        wd = work_dtype_of(in_name)
        x = stack_host(images, out=self._buf("x", (b,) + images[0].shape, wd))
        mixed = zeta_mix(x, zp.index, zp.weights, np, how, W=W, out=self._buf("out", x.shape, wd))
        out["images"] = unstack(finalize(mixed, in_name, cfg.dtype, np, cfg.op))
        out["labels"] = unstack(zeta_mix(y, zp.index, zp.weights, np, "matmul", W=W))
        for n in self.extra:
            out[n] = unstack(zeta_mix(stack_host(a[n]).astype(wd), zp.index, zp.weights, np, how, W=W))
        if "index" in self.outputs:
            out["index"] = unstack(zp.index.astype(np.int32))
            out["weights"] = unstack(np.broadcast_to(zp.weights.astype(wd), zp.index.shape).copy())
        return out


# =============================================================================== GPU images


class DeviceOp(Op):
    """Base of the GPU operators: :meth:`run` under a guard that never lets an exception out.

    On an exception the operator returns well-formed outputs (zeros, or its inputs) with
    ``facts`` status 1 and keeps the message in :attr:`failure` for the CPU operator that
    reads the facts (:func:`raise_reported`).
    """

    failure: str | None = None

    def __call__(self, *args):
        a = dict(zip(self.inputs, args))
        try:
            out = self.run(a)
        except Exception as e:  # noqa: BLE001 - reported through `facts`, raised on the CPU
            self.failure = f"{type(e).__name__}: {e}"
            try:
                out = self.fallback(a)
            except Exception:  # noqa: BLE001 - last resort: empty batches, still no raise
                return tuple([] for _ in self.outputs)
        return tuple(out[n] for n in self.outputs)

    @staticmethod
    def facts(xp, like, status: int, codes) -> list:
        b = len(like)
        arr = np.asarray([[status] + list(codes)] * b, dtype=np.int32)
        return unstack(xp.asarray(arr, device=getattr(like[0], "device", None))) if b else []

    @staticmethod
    def zeros_like_batch(samples, dtype) -> list:
        if not samples:
            return []
        xp = namespace_of(samples[0])
        z = xp.zeros((len(samples),) + tuple(samples[0].shape), dtype=getattr(xp, np.dtype(dtype).name),
                     device=getattr(samples[0], "device", None))
        return unstack(z)

    @staticmethod
    def batch(a) -> tuple:
        """An apply operator's batch: ``(xp, images [B, ...] in the working dtype, their dtype
        name, the working dtype, plan rows stacked)``."""
        images = a["images"]
        xp = namespace_of(images[0])
        name = dtype_name(xp, images[0].dtype)
        wd = xp.float64 if name == "float64" else xp.float32
        return xp, xp.astype(stack(images, xp), wd), name, wd, stack(a["plan"], xp)

    def output_images(self, mixed, name: str, xp):
        """The mixed images in the output dtype; left in the working dtype when the CPU check
        will reject the batch (an unsupported dtype, or ``dtype="uint8"`` for other images)."""
        cfg = self.cfg
        if name in _checks.IMAGE_DTYPES and not (cfg.dtype == "uint8" and name != "uint8"):
            return finalize(mixed, name, cfg.dtype, xp, cfg.op)
        return mixed

    def fallback(self, a) -> dict:
        """Well-formed outputs after a failure: zeros for the images and ``extra`` tensors, the
        ``masks`` as they came, ``facts`` status 1 (an apply operator's outputs)."""
        images = a["images"]
        xp = namespace_of(images[0])
        name = dtype_name(xp, images[0].dtype)
        out = {"images": self.zeros_like_batch(images, out_dtype_of(name, self.cfg.dtype)),
               "facts": self.facts(xp, images, 1, [dtype_code(xp, images[0].dtype)])}
        for n in self.extra:
            out[n] = self.zeros_like_batch(a[n], work_dtype_of(name))
        for n in getattr(self, "masks", ()):
            out[n] = list(a[n])
        return out


def raise_reported(device_op: DeviceOp, op: str, facts: list, names: tuple, out_dtype) -> None:
    """Raise, on the CPU, what a GPU operator's ``facts`` report: its failure, else the dtype
    rules of :func:`check_dtypes` for the named inputs (the same messages as the CPU path)."""
    if not facts:
        return
    f = np.asarray(facts[0]).reshape(-1)
    if f[0]:
        msg = device_op.failure or "unknown failure"
        if msg.startswith(f"ValueError: {op}:"):  # one of our own checks: its own message
            raise ValueError(msg[len("ValueError: "):])
        raise RuntimeError(f"{op}: the GPU operator failed: {msg}")
    check_dtypes(op, out_dtype, {n: dtype_of_code(int(c)) for n, c in zip(names, f[1:])})


class BlockCosts(DeviceOp):
    """GPU: the k-mixup block cost rows ``[B, w]`` (the ``n_blocks * k * k`` costs spread over
    B rows, float32) computed where the images (or features) live, and ``facts``
    ``[status, dtype code]``. Only these rows leave the device."""

    inputs = ("features", "draws")
    outputs = ("rows", "facts")

    def __init__(self, cfg, arg: str):
        self.cfg, self.arg = cfg, arg

    def run(self, a):
        feats = a["features"]
        b = len(feats)
        if not b:
            return {"rows": [], "facts": []}
        xp = namespace_of(feats[0])
        name = dtype_name(xp, feats[0].dtype)
        facts = self.facts(xp, feats, 0, [dtype_code(xp, feats[0].dtype)])
        u = to_numpy(stack(a["draws"], xp))  # B x 8 numbers to the host
        blocks = plan_blocks(u[:, :2], b, self.cfg.k, self.cfg.pairing)
        device = getattr(feats[0], "device", None)
        if blocks.k <= 1 or name not in _checks.IMAGE_DTYPES:
            return {"rows": unstack(xp.zeros((b, 1), dtype=xp.float32, device=device)), "facts": facts}
        x = stack(feats, xp)
        x = xp.reshape(xp.astype(x, xp.float64 if name == "float64" else xp.float32), (b, -1))
        cost = block_costs(x, blocks.left, blocks.right, metric=self.cfg.cost, xp=xp, op=self.cfg.op,
                           arg=self.arg, match_only=True, raise_nonfinite=False)
        n = blocks.left.size * blocks.k
        width = -(-n // b)
        flat = xp.reshape(xp.astype(cost, xp.float32), (n,))
        if width * b > n:
            flat = xp.concat([flat, xp.zeros((width * b - n,), dtype=xp.float32, device=device)])
        return {"rows": unstack(xp.reshape(flat, (b, width))), "facts": facts}

    def fallback(self, a):
        feats = a["features"]
        xp = namespace_of(feats[0])
        rows = unstack(xp.zeros((len(feats), 1), dtype=xp.float32, device=getattr(feats[0], "device", None)))
        return {"rows": rows, "facts": self.facts(xp, feats, 1, [dtype_code(xp, feats[0].dtype)])}


class PairPlanner(Op):
    """CPU: the plan of a pair operator for GPU images, from their shapes.

    Outputs ``plan`` (one float64 row per sample: :meth:`PairArrays.rows` then H and W axes),
    the soft labels and, with ``return_info``, ``partner`` and ``lam``. Raises every check
    the CPU path raises, except the images' dtype, which :class:`PairApply` reports.
    """

    def __init__(self, cfg, *, costs: BlockCosts | None, has_features: bool, layout: str | None,
                 n_extra: int, n_masks: int, return_info: bool):
        self.cfg, self.cost_op, self.layout = cfg, costs, layout
        self.others = _names("extra", n_extra) + _names("masks", n_masks)
        self.inputs = (("shapes", "labels", "draws") + (("rows", "cost_facts") if costs else ())
                       + (("feature_shapes",) if has_features else ())
                       + (("layout",) if cfg.uses_cutmix and layout is None else ())
                       + tuple(f"{n}.shape" for n in self.others))
        self.outputs = ("plan", "labels") + (("partner", "lam") if return_info else ())

    def run(self, a):
        cfg = self.cfg
        shapes = host_shapes(a["shapes"])
        b = len(shapes)
        _checks.check_batch_shapes(cfg.op, "images", shapes)
        if "feature_shapes" in a:
            _checks.check_batch_sizes(cfg.op, b, "features", len(a["feature_shapes"]))
            _checks.check_batch_shapes(cfg.op, "features", host_shapes(a["feature_shapes"]))
        y = host_labels(cfg, a["labels"], b)
        ndim = len(shapes[0]) if b else 0
        axes = axes_for(cfg, self.layout or layout_of(a, b), ndim) if b else None
        others = {n: host_shapes(a[f"{n}.shape"]) for n in self.others}
        for n, s in others.items():
            _checks.check_batch_sizes(cfg.op, b, n, len(s))
        check_others(cfg, others, shapes[0] if b else (), axes)
        v = host_uniforms(a["draws"], 8)
        blocks = plan_blocks(v[:, :2], b, cfg.k, cfg.pairing)
        d = pair_draws_from_uniforms(cfg, v, representatives(blocks, cfg.lam_mode, b))
        costs = None
        if self.cost_op is not None and b:
            arg = "features" if "feature_shapes" in a else "images"
            raise_reported(self.cost_op, cfg.op, a["cost_facts"], (arg,), None)
            if blocks.k > 1:
                n = blocks.left.size * blocks.k
                costs = stack_host(a["rows"]).reshape(-1)[:n].reshape(blocks.left.shape + (blocks.k,))
                check_costs(costs, cfg.op, arg)
        hw = (shapes[0][axes[0]], shapes[0][axes[1]]) if axes is not None else (1, 1)
        plan = pair_plan(cfg, d, blocks, costs, b, hw)
        rows = PairArrays.rows(plan)
        if cfg.uses_cutmix:
            rows = np.concatenate([rows, np.broadcast_to(np.asarray(axes or (0, 1), np.float64), (b, 2))], axis=1)
        out = {"plan": unstack(rows), "labels": unstack(blend(y, plan.partner, plan.lam.astype(np.float32), np))}
        if "partner" in self.outputs:
            out["partner"] = unstack(plan.partner.astype(np.int32))
            out["lam"] = unstack(plan.lam.astype(np.float32))
        return out


class PairApply(DeviceOp):
    """GPU: the pixels of a pair operator, with :func:`dali_mixup.apply.mix_pairs` on the
    device. Outputs the images, ``facts`` ``[status, images dtype code]``, the ``extra``
    tensors and the ``masks``."""

    def __init__(self, cfg, *, axes, n_extra: int, n_masks: int):
        self.cfg, self.axes = cfg, axes
        self.extra, self.masks = _names("extra", n_extra), _names("masks", n_masks)
        self.inputs = ("images", "plan") + self.extra + self.masks
        self.outputs = ("images", "facts") + self.extra + self.masks

    def run(self, a):
        cfg = self.cfg
        if not a["images"]:
            return {n: [] for n in self.outputs}
        xp, x, name, wd, P = self.batch(a)
        pa = PairArrays.from_rows(P, xp, wd)
        axes = self.axes
        if cfg.uses_cutmix and axes is None:  # layout known at run time only: 2 numbers to host
            axes = tuple(int(v) for v in to_numpy(P[0, PairArrays.WIDTH:PairArrays.WIDTH + 2]))
        mixed = mix_pairs(x, pa, cutmix=cfg.uses_cutmix, axes=axes, xp=xp)
        out = {"images": unstack(self.output_images(mixed, name, xp)),
               "facts": self.facts(xp, a["images"], 0, [dtype_code(xp, a["images"][0].dtype)])}
        for n in self.extra:
            out[n] = unstack(mix_pairs(xp.astype(stack(a[n], xp), wd), pa, cutmix=cfg.uses_cutmix,
                                       axes=axes, xp=xp))
        for n in self.masks:
            out[n] = unstack(mix_pair_masks(stack(a[n], xp), pa, cutmix=cfg.uses_cutmix, axes=axes, xp=xp))
        return out


class ZetaPlanner(Op):
    """CPU: zeta-mixup's plan for GPU images, from their shapes.

    ``plan`` per sample: the mixing-matrix row ``[B]`` (``"matmul"``) or ``[2, T]`` (row 0 the
    partner index, row 1 the weights; ``"gather"``), float64, so the GPU operator uses them
    where they land. Also the soft labels and, with ``return_info``, ``index`` and ``weights``.
    """

    def __init__(self, cfg, *, n_extra: int, return_info: bool):
        self.cfg = cfg
        self.extra = _names("extra", n_extra)
        self.inputs = ("shapes", "labels", "draws") + tuple(f"{n}.shape" for n in self.extra)
        self.outputs = ("plan", "labels") + (("index", "weights") if return_info else ())

    def run(self, a):
        cfg = self.cfg
        shapes = host_shapes(a["shapes"])
        b = len(shapes)
        _checks.check_batch_shapes(cfg.op, "images", shapes)
        for n in self.extra:
            s = host_shapes(a[f"{n}.shape"])
            _checks.check_batch_sizes(cfg.op, b, n, len(s))
            _checks.check_batch_shapes(cfg.op, n, s)
        y = host_labels(cfg, a["labels"], b)
        zp = zeta_plan(cfg, zeta_draws_from_uniforms(cfg, host_uniforms(a["draws"], 2)), b)
        T = zp.index.shape[1]
        out = {n: [] for n in self.outputs}
        if not b:
            out["labels"] = unstack(y)
            return out
        W = mixing_matrix(zp.index, zp.weights, include_self=True)
        if (cfg.method or choose_zeta_method(T, b)) == "matmul":
            out["plan"] = unstack(W)
        else:
            out["plan"] = unstack(np.stack([zp.index.astype(np.float64),
                                            np.broadcast_to(zp.weights, zp.index.shape)], axis=1))
        out["labels"] = unstack(zeta_mix(y, zp.index, zp.weights, np, "matmul", W=W) if T > 1 else y)
        if "index" in self.outputs:
            out["index"] = unstack(zp.index.astype(np.int32))
            out["weights"] = unstack(np.broadcast_to(zp.weights.astype(np.float32), zp.index.shape).copy())
        return out


class ZetaApply(DeviceOp):
    """GPU: zeta-mixup's pixels on the device, from :class:`ZetaPlanner`'s rows; outputs the
    images, ``facts`` ``[status, images dtype code]`` and the ``extra`` tensors."""

    def __init__(self, cfg, *, n_extra: int):
        self.cfg = cfg
        self.extra = _names("extra", n_extra)
        self.inputs = ("images", "plan") + self.extra
        self.outputs = ("images", "facts") + self.extra

    def _mix(self, x, P, xp):
        if P.ndim == 2:  # mixing-matrix rows
            return zeta_mix_matrix(x, P, xp)
        return zeta_mix_reference(x, xp.astype(P[:, 0, :], xp.int64), xp.astype(P[0, 1, :], x.dtype), xp)

    def run(self, a):
        if not a["images"]:
            return {n: [] for n in self.outputs}
        xp, x, name, wd, P = self.batch(a)
        mixed = self._mix(x, P, xp)
        out = {"images": unstack(self.output_images(mixed, name, xp)),
               "facts": self.facts(xp, a["images"], 0, [dtype_code(xp, a["images"][0].dtype)])}
        for n in self.extra:
            out[n] = unstack(self._mix(xp.astype(stack(a[n], xp), wd), P, xp))
        return out


class DeviceCheck(Op):
    """CPU: passes the soft labels through, raising what a GPU apply operator reported.

    The labels flow through this operator, so a batch never leaves the pipeline unchecked."""

    inputs = ("labels", "facts")
    outputs = ("labels",)

    def __init__(self, cfg, device_op: DeviceOp):
        self.cfg, self.device_op = cfg, device_op

    def run(self, a):
        raise_reported(self.device_op, self.cfg.op, a["facts"], ("images",), self.cfg.dtype)
        return {"labels": list(a["labels"])}

