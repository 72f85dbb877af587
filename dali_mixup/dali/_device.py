"""GPU images: the plan on the host, the pixels on the device, and the guard between them.

Wiring (built by :mod:`._graph`; ``[CPU]`` / ``[GPU]`` say where each operator runs)::

    draws [CPU] -> BlockIndex [CPU] -.gpu()-> BlockCosts [GPU] -.cpu()-> PairPlanner [CPU]
    PairPlanner -.gpu()-> PairApply [GPU] -> mixed images
    mixed images .shape [CPU] + soft labels -> DeviceCheck [CPU] -> labels

(zeta-mixup: ``ZetaPlanner [CPU] -> ZetaApply [GPU] -> DeviceCheck [CPU]``.) Only index rows,
cost rows and plan rows cross between the devices, each through DALI's own copies; nothing in
a GPU operator reads the device back (no ``.get()``, no ``bool(array)``), because that would
wait for DALI's whole stream while DALI's process-wide python-operator lock is held.

A GPU operator never raises: DALI wraps its stream in a ``cupy.cuda.Stream`` and resets the
wrapper only after a normal return, so an exception would let CuPy destroy DALI's own stream.
:class:`DeviceOp` runs the operator's work under a guard. Whatever happens, it returns B
entries per output, and on a failure those are its inputs passed through (nothing allocated,
nothing that can fail). For every batch it writes a :class:`Report` (the input dtypes, and the
failure's text) to a :class:`BatchLog` on the host; the CPU operator downstream reads the
report of the same batch and raises what it says, with the CPU path's checks and messages. A
failure is also shown at once as a ``RuntimeWarning``.

Host facts never travel as GPU outputs: each GPU output sample is one DLPack export and one
device copy in DALI, so a GPU operator's outputs are only the arrays that must be there
(:data:`GPU_OUTPUTS` counts them in the tests).
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core import _checks
from ..core._backend import namespace_of, stack, stack_host, unstack
from ..core.apply import PairArrays, blend, mix_pair_masks, mix_pairs, zeta_mix, zeta_mix_matrix, \
    zeta_mix_reference
from ..core.cost import gathered_costs
from ..core.draws import pair_draws_from_uniforms, zeta_draws_from_uniforms
from ..core.images import dtype_name, finalize
from ..core.plan import block_shape, check_costs, choose_zeta_method, mixing_matrix, pair_plan, plan_blocks, \
    representatives, zeta_plan
from ._ops import Op, axes_for, check_dtypes, check_others, host_labels, host_shapes, host_uniforms, \
    layout_of, names_of


class BatchLog:
    """Host values one operator writes per batch and a later operator reads for the same batch.

    DALI runs each operator on the batches in pipeline order, one batch at a time, so the n-th
    value written belongs to the n-th batch read, however many batches are in flight
    (``prefetch_queue_depth``): values are kept by batch number, never in one shared slot.
    Empty batches write and read nothing.
    """

    def __init__(self):
        self._values: dict[int, object] = {}
        self._written = 0
        self._read = 0
        self._lock = threading.Lock()

    def put(self, value) -> None:
        with self._lock:
            self._values[self._written] = value
            self._written += 1

    def take(self, default=None):
        """The value of the next batch in order (``default`` when none was written for it)."""
        with self._lock:
            n = self._read
            self._read += 1
            return self._values.pop(n, default)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Report:
    """What a GPU operator tells the host about one batch: the dtypes of its checked inputs
    (argument -> dtype name, host metadata of the CuPy arrays) and its failure, if any."""

    dtypes: dict = field(default_factory=dict)
    failure: str | None = None


def raise_reported(report: Report | None, op: str, out_dtype) -> None:
    """Raise, on the CPU, what a GPU operator reported for this batch: its failure, else the
    dtype rules of :func:`check_dtypes` (the same messages as the CPU path)."""
    if report is None:
        raise RuntimeError(f"{op}: the GPU operator left no report for this batch "
                           "(its batches and the host's are out of step)")
    if report.failure:
        if report.failure.startswith(f"ValueError: {op}:"):  # one of our own checks: its own message
            raise ValueError(report.failure[len("ValueError: "):])
        raise RuntimeError(f"{op}: the GPU operator failed: {report.failure}")
    check_dtypes(op, out_dtype, report.dtypes)


class DeviceOp(Op):
    """Base of the GPU operators: :meth:`run` under a guard that never lets an exception out.

    Subclasses declare ``passthrough`` (output name -> the input returned in its place after a
    failure, B entries each) and ``checked`` (input -> the argument name its dtype is reported
    under).
    """

    passthrough: dict = {}
    checked: dict = {"images": "images"}

    def __init__(self, cfg):
        self.cfg = cfg
        self.reports = BatchLog()

    def __call__(self, *args):
        a = dict(zip(self.inputs, args))
        b = len(args[0]) if args else 0
        try:
            dtypes = {arg: dtype_name(namespace_of(a[n][0]), a[n][0].dtype)
                      for n, arg in self.checked.items()} if b else {}
            out = self.run(a)
            result = tuple(list(out[n]) for n in self.outputs)
            if any(len(r) != b for r in result):
                raise RuntimeError(f"outputs of {[len(r) for r in result]} samples for a batch of {b}")
            failure = None
        except Exception as e:  # noqa: BLE001 - reported on the host, never raised here
            failure = f"{type(e).__name__}: {e}"
            dtypes = {}
            result = tuple(list(a[self.passthrough[n]]) for n in self.outputs)
        if b:
            self.reports.put(Report(dtypes, failure))
        if failure:
            warnings.warn(f"{self.cfg.op}: the GPU operator {type(self).__name__} failed: {failure}",
                          RuntimeWarning, stacklevel=2)
        return result

    def batch(self, a) -> tuple:
        """An apply operator's batch: ``(xp, images [B, ...] in the working dtype (a fresh
        stack the operator may overwrite), their dtype name, the working dtype, plan rows)``."""
        images = a["images"]
        xp = namespace_of(images[0])
        name = dtype_name(xp, images[0].dtype)
        wd = xp.float64 if name == "float64" else xp.float32
        return xp, xp.astype(stack(images, xp), wd, copy=False), name, wd, stack(a["plan"], xp)

    def output_images(self, mixed, name: str, xp):
        """The mixed images in the output dtype; left in the working dtype when the CPU check
        will reject the batch (an unsupported dtype, or ``dtype="uint8"`` for other images)."""
        cfg = self.cfg
        if name in _checks.IMAGE_DTYPES and not (cfg.dtype == "uint8" and name != "uint8"):
            return finalize(mixed, name, cfg.dtype, xp, cfg.op)
        return mixed


class BlockIndex(Op):
    """CPU: k-mixup's matched blocks as index rows for :class:`BlockCosts`.

    ``left`` then ``right`` of :func:`dali_mixup.core.plan.plan_blocks` (``[n_blocks, k]`` each),
    flattened, padded and spread over B int64 rows; ``.gpu()`` sends them where the images
    are, so the cost operator needs nothing from the host and reads nothing back."""

    inputs = ("draws",)
    outputs = ("index",)

    def __init__(self, cfg):
        self.cfg = cfg

    def run(self, a):
        b = len(a["draws"])
        if not b:
            return {"index": []}
        blocks = plan_blocks(host_uniforms(a["draws"], 8)[:, :2], b, self.cfg.k, self.cfg.pairing)
        flat = np.concatenate([blocks.left.reshape(-1), blocks.right.reshape(-1)]).astype(np.int64)
        width = max(1, -(-flat.size // b))
        return {"index": unstack(np.pad(flat, (0, width * b - flat.size)).reshape(b, width))}


class BlockCosts(DeviceOp):
    """GPU: the k-mixup block cost rows ``[B, w]`` float32 (the ``n_blocks * k * k`` costs
    spread over B rows), computed where the images (or features) live; only these rows leave
    the device. ``arg``: which argument the costs come from (for the messages)."""

    inputs = ("features", "index")
    outputs = ("rows",)
    passthrough = {"rows": "index"}

    def __init__(self, cfg, arg: str):
        super().__init__(cfg)
        self.arg = arg
        self.checked = {"features": arg}

    def run(self, a):
        feats = a["features"]
        b = len(feats)
        if not b:
            return {"rows": []}
        xp = namespace_of(feats[0])
        name = dtype_name(xp, feats[0].dtype)
        nb, k = block_shape(b, self.cfg.k, self.cfg.pairing)
        if k <= 1 or name not in _checks.IMAGE_DTYPES:  # nothing to match, or the host rejects the dtype
            return {"rows": list(a["index"])}
        n = nb * k
        idx = xp.reshape(stack(a["index"], xp), (-1,))
        x = xp.reshape(xp.astype(stack(feats, xp), xp.float64 if name == "float64" else xp.float32,
                                 copy=False), (b, -1))
        d = x.shape[1]
        left = xp.reshape(xp.take(x, idx[:n], axis=0), (nb, k, d))
        right = xp.reshape(xp.take(x, idx[n:2 * n], axis=0), (nb, k, d))
        cost = gathered_costs(left, right, cost=self.cfg.cost, xp=xp, op=self.cfg.op, arg=self.arg,
                              match_only=True, check_finite=False)
        width = -(-(n * k) // b)
        flat = xp.reshape(xp.astype(cost, xp.float32), (n * k,))
        if width * b > n * k:
            pad = xp.zeros((width * b - n * k,), dtype=xp.float32, device=getattr(flat, "device", None))
            flat = xp.concat([flat, pad])
        return {"rows": unstack(xp.reshape(flat, (b, width)))}


class PairPlanner(Op):
    """CPU: the plan of a pair operator for GPU images, from their shapes.

    Outputs ``plan`` (one float64 row per sample: :meth:`PairArrays.rows`), the soft labels
    and, with ``return_info``, ``partner`` and ``lam``. Raises every check the CPU path raises;
    the images' dtype is checked by :class:`DeviceCheck` from :class:`PairApply`'s report (and
    the features' or images' dtype here, from :class:`BlockCosts`' report). CutMix without
    ``layout=``: the H and W axes found here go to :class:`PairApply` in :attr:`axes`.
    """

    def __init__(self, cfg, *, costs: BlockCosts | None, has_features: bool, layout: str | None,
                 n_extra: int, n_masks: int, return_info: bool):
        self.cfg, self.cost_op, self.layout = cfg, costs, layout
        self.others = names_of("extra", n_extra) + names_of("masks", n_masks)
        self.inputs = (("shapes", "labels", "draws") + (("rows",) if costs else ())
                       + (("feature_shapes",) if has_features else ())
                       + (("layout",) if cfg.uses_cutmix and layout is None else ())
                       + tuple(f"{n}.shape" for n in self.others))
        self.outputs = ("plan", "labels") + (("partner", "lam") if return_info else ())
        self.axes = BatchLog()

    def run(self, a):
        cfg = self.cfg
        shapes = host_shapes(a["shapes"])
        b = len(shapes)
        report = self.cost_op.reports.take() if self.cost_op is not None and b else None
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
            raise_reported(report, cfg.op, None)
            if blocks.k > 1:
                n = blocks.left.size * blocks.k
                costs = stack_host(a["rows"]).reshape(-1)[:n].reshape(blocks.left.shape + (blocks.k,))
                check_costs(costs, cfg.op, self.cost_op.arg, device=True)
        hw = (shapes[0][axes[0]], shapes[0][axes[1]]) if axes is not None else (1, 1)
        plan = pair_plan(cfg, d, blocks, costs, b, hw)
        if b and cfg.uses_cutmix and self.layout is None:
            self.axes.put(axes)
        out = {"plan": unstack(PairArrays.rows(plan)),
               "labels": unstack(blend(y, plan.partner, plan.lam.astype(np.float32), np))}
        if "partner" in self.outputs:
            out["partner"] = unstack(plan.partner.astype(np.int32))
            out["lam"] = unstack(plan.lam.astype(np.float32))
        return out


class PairApply(DeviceOp):
    """GPU: the pixels of a pair operator, with :func:`dali_mixup.core.apply.mix_pairs` on the
    device. Outputs the images, the ``extra`` tensors and the ``masks``. ``axes``: H and W for
    CutMix when the layout is known at graph build, else taken per batch from ``planner``."""

    def __init__(self, cfg, *, axes, n_extra: int, n_masks: int, planner: PairPlanner | None = None):
        super().__init__(cfg)
        self.axes, self.planner = axes, planner
        self.extra, self.masks = names_of("extra", n_extra), names_of("masks", n_masks)
        self.inputs = ("images", "plan") + self.extra + self.masks
        self.outputs = ("images",) + self.extra + self.masks
        self.passthrough = {n: n for n in self.outputs}

    def run(self, a):
        cfg = self.cfg
        if not a["images"]:
            return {n: [] for n in self.outputs}
        axes = self.axes
        if cfg.uses_cutmix and axes is None:  # the layout is read on the host, per batch
            axes = self.planner.axes.take()
        xp, x, name, wd, P = self.batch(a)
        pa = PairArrays.from_rows(P, xp, wd)
        mixed = mix_pairs(x, pa, cutmix=cfg.uses_cutmix, axes=axes, xp=xp, overwrite=True)
        out = {"images": unstack(self.output_images(mixed, name, xp))}
        for n in self.extra:
            e = xp.astype(stack(a[n], xp), wd, copy=False)
            out[n] = unstack(mix_pairs(e, pa, cutmix=cfg.uses_cutmix, axes=axes, xp=xp, overwrite=True))
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
        self.extra = names_of("extra", n_extra)
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
    images and the ``extra`` tensors."""

    def __init__(self, cfg, *, n_extra: int):
        super().__init__(cfg)
        self.extra = names_of("extra", n_extra)
        self.inputs = ("images", "plan") + self.extra
        self.outputs = ("images",) + self.extra
        self.passthrough = {n: n for n in self.outputs}

    def _mix(self, x, P, xp):
        if P.ndim == 2:  # mixing-matrix rows
            return zeta_mix_matrix(x, P, xp)
        return zeta_mix_reference(x, xp.astype(P[:, 0, :], xp.int64), xp.astype(P[0, 1, :], x.dtype), xp)

    def run(self, a):
        if not a["images"]:
            return {n: [] for n in self.outputs}
        xp, x, name, wd, P = self.batch(a)
        out = {"images": unstack(self.output_images(self._mix(x, P, xp), name, xp))}
        for n in self.extra:
            out[n] = unstack(self._mix(xp.astype(stack(a[n], xp), wd, copy=False), P, xp))
        return out


class DeviceCheck(Op):
    """CPU: passes the soft labels through, raising what a GPU apply operator reported.

    Its second input is the mixed images' shapes (``.shape(device="cpu")``: metadata, no
    copy), which makes DALI run it after the GPU operator of the same batch. The labels flow
    through this operator, so a batch never leaves the pipeline unchecked."""

    inputs = ("labels", "done")
    outputs = ("labels",)

    def __init__(self, cfg, device_op: DeviceOp):
        self.cfg, self.device_op = cfg, device_op

    def run(self, a):
        if a["done"]:
            raise_reported(self.device_op.reports.take(), self.cfg.op, self.cfg.dtype)
        return {"labels": list(a["labels"])}

