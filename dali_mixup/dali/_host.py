"""CPU images: one python operator per mixing does everything, with the array layer's code.

* :class:`PairHost` (k-mixup, mixup, CutMix, mix) and :class:`ZetaHost` (zeta-mixup): checks,
  plan, blend and soft labels, on the host, for images that DALI keeps on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import _checks, _fast
from ..core._backend import stack_host, unstack
from ..core.apply import PairArrays, blend, mix_pair_masks, mix_pairs, zeta_mix
from ..core.cost import block_costs, gathered_costs
from ..core.draws import pair_draws_from_uniforms, zeta_draws_from_uniforms
from ..core.images import dtype_name, finalize
from ..core.plan import choose_zeta_method, mixing_matrix, pair_plan, plan_blocks, representatives, zeta_plan
from ._ops import Buffers, Op, axes_for, check_dtypes, check_others, host_labels, host_uniforms, \
    layout_of, names_of, work_dtype_of


class PairHost(Op):
    """CPU: a whole pair operator (k-mixup, mixup, CutMix, mix) on host images.

    k-mixup stacks the batch once, in an order in which every matched block is a run of rows
    (so its costs are taken on views); the other operators stack it in sample order. Stacks
    live in buffers kept between batches; the blend is the array layer's
    :func:`dali_mixup.core.apply.mix_pairs` (bitwise equal to it; row order does not change
    per-element arithmetic), and output ``i`` is a view of its row. A plain blend (no costs,
    no CutMix) of large float samples skips the stack: :func:`dali_mixup.core._fast.blend_samples`
    mixes the sample list directly (bitwise equal too).
    """

    def __init__(self, cfg, *, has_features: bool, layout: str | None, n_extra: int,
                 n_masks: int, return_info: bool):
        self.cfg, self.layout = cfg, layout
        self.extra, self.masks = names_of("extra", n_extra), names_of("masks", n_masks)
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
            return block_costs(f.reshape(b, -1), blocks.left, blocks.right, cost=cfg.cost, xp=np,
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
        return gathered_costs(*sides, cost=cfg.cost, xp=np, op=cfg.op, arg="images",
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
        """Read top to bottom: check the batch, plan it, mix it, hand out the outputs."""
        batch = self._check(a)
        if not batch.b:
            return {n: [] for n in self.outputs} | {"labels": unstack(batch.y)}
        rows, plan = self._plan(a, batch)
        return self._mix(a, batch, rows, plan)

    def _check(self, a) -> "_Batch":
        """Every check of the CPU path, before any work: shapes, dtypes, labels, the other
        inputs, and H, W for CutMix."""
        cfg, images = self.cfg, a["images"]
        b = len(images)
        shapes = [tuple(x.shape) for x in images]
        _checks.check_batch_shapes(cfg.op, "images", shapes)
        in_name = dtype_name(np, images[0].dtype) if b else "float32"
        check_dtypes(cfg.op, cfg.dtype, {"images": in_name})
        y = host_labels(cfg, a["labels"], b)
        others = {n: [tuple(x.shape) for x in a[n]] for n in self.extra + self.masks}
        for n, s in others.items():
            _checks.check_batch_sizes(cfg.op, b, n, len(s))
        axes = axes_for(cfg, self.layout or layout_of(a, b), len(shapes[0])) if b else None
        check_others(cfg, others, shapes[0] if b else (), axes)
        return _Batch(b, shapes[0] if b else (), in_name, work_dtype_of(in_name), y, axes)

    def _plan(self, a, batch: "_Batch"):
        """The blocks and draws from the uniforms; the stacking order (k-mixup: each matched
        block a run of rows); the costs; the plan."""
        cfg, b = self.cfg, batch.b
        v = host_uniforms(a["draws"], 8)
        blocks = plan_blocks(v[:, :2], b, cfg.k, cfg.pairing)
        draws = pair_draws_from_uniforms(cfg, v, representatives(blocks, cfg.lam_mode, b))
        order = blocks.order(b) if blocks.k > 1 else None  # row j of the stacks is sample order[j]
        rows = _Rows(order, np.argsort(order) if order is not None else None,
                     None if self._blends_samples(a["images"], batch.wd, blocks, cfg.uses_cutmix)
                     else self._stack_in("x", a["images"], order, batch.wd))
        costs = self._costs(a, blocks, rows.stacked, rows.pos, b) if blocks.k > 1 else None
        hw = (batch.shape[batch.axes[0]], batch.shape[batch.axes[1]]) if batch.axes is not None else (1, 1)
        return rows, pair_plan(cfg, draws, blocks, costs, b, hw)

    def _mix(self, a, batch: "_Batch", rows: "_Rows", plan) -> dict:
        """Images, labels, ``extra`` and ``masks`` mixed with the array layer's expressions;
        outputs are views of the rows of kept buffers, in sample order."""
        cfg, b, axes, order, pos = self.cfg, batch.b, batch.axes, rows.order, rows.pos
        pa = PairArrays.from_plan(plan, np, batch.wd)
        po = pa if order is None else PairArrays(  # the plan in stacking order
            partner=pos[plan.partner[order]], lam=pa.lam[order], share=pa.share[order],
            cut=pa.cut[order], boxes=pa.boxes[order])

        def samples_of(stacked) -> list:
            return unstack(stacked) if pos is None else [stacked[j, ...] for j in pos]

        buf = self._buf("out", (b,) + batch.shape, batch.wd)
        if rows.stacked is None:
            mixed = _fast.blend_samples(a["images"], pa.partner, pa.lam, out=buf)
        else:
            mixed = mix_pairs(rows.stacked, po, cutmix=cfg.uses_cutmix, axes=axes, xp=np, out=buf)
        out = {"images": samples_of(finalize(mixed, batch.in_name, cfg.dtype, np, cfg.op)),
               "labels": unstack(blend(batch.y, pa.partner, pa.lam, np))}
        for n in self.extra:
            out[n] = samples_of(mix_pairs(self._stack_in(n, a[n], order, batch.wd), po,
                                          cutmix=cfg.uses_cutmix, axes=axes, xp=np))
        for n in self.masks:
            ordered = a[n] if order is None else [a[n][i] for i in order]
            out[n] = samples_of(mix_pair_masks(stack_host(ordered), po, cutmix=cfg.uses_cutmix,
                                               axes=axes, xp=np))
        if "partner" in self.outputs:
            out["partner"] = unstack(plan.partner.astype(np.int32))
            out["lam"] = unstack(pa.lam)
        return out


@dataclass(frozen=True)
class _Batch:
    """A checked batch: size, sample shape, input dtype name, working dtype, soft labels
    ``[B, C]``, H and W axes (CutMix) or None."""

    b: int
    shape: tuple
    in_name: str
    wd: type
    y: np.ndarray
    axes: tuple | None


@dataclass(frozen=True)
class _Rows:
    """How the batch is stacked: ``order`` (row j is sample ``order[j]``; None: sample order),
    its inverse ``pos``, and the stack (None when the images are blended from the sample list)."""

    order: np.ndarray | None
    pos: np.ndarray | None
    stacked: np.ndarray | None


class ZetaHost(Op):
    """CPU: zeta-mixup on host images, with the array layer's own mix (bitwise equal)."""

    def __init__(self, cfg, *, n_extra: int, return_info: bool):
        self.cfg = cfg
        self.extra = names_of("extra", n_extra)
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
