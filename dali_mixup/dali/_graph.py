"""Graph builders: how each mixing operator is wired from DALI operators and python operators.

One builder per family (:func:`pairs`, :func:`zeta`), one wiring per device:

* CPU images: ``random.uniform -> PairHost / ZetaHost`` (one python operator does everything);
* GPU images: ``random.uniform -> [BlockIndex (CPU) -> BlockCosts (GPU)] -> PairPlanner (CPU)
  -> PairApply (GPU) -> DeviceCheck (CPU)`` (or ``ZetaPlanner -> ZetaApply -> DeviceCheck``);
  see :mod:`._device`. Only B-sized index, cost and plan rows cross between devices; GPU-to-CPU
  edges (``.cpu()``, ``.shape(device="cpu")``) need DALI's default executor (not
  ``exec_async=False, exec_pipelined=False``).

Argument checks run here, when the graph is built.
"""
from __future__ import annotations

from ..core import _checks
from ..core.draws import pair_uniform_width, zeta_uniform_width
from ..core.pairs import spatial_axes
from . import _compat, _device, _host


def check_node(op: str, arg: str, node, DataNode) -> None:
    if not isinstance(node, DataNode):
        raise _checks.fail(op, arg, "a DALI DataNode (an operator output inside @pipeline_def)",
                           type(node).__name__)


def check_nodes(op: str, DataNode, images, labels, features, extra, masks) -> tuple:
    check_node(op, "images", images, DataNode)
    check_node(op, "labels", labels, DataNode)
    if features is not None:
        check_node(op, "features", features, DataNode)
    for arg, nodes in (("extra", extra), ("masks", masks)):
        if not isinstance(nodes, (list, tuple)):
            raise _checks.fail(op, arg, "a list or tuple of DataNodes", type(nodes).__name__)
        for j, n in enumerate(nodes):
            check_node(op, f"{arg}[{j}]", n, DataNode)
    return tuple(extra), tuple(masks)


def check_label_source(op: str, labels, num_classes) -> None:
    """Readers produce integer labels: without num_classes that cannot work; say so now."""
    name = _compat.source_schema(labels)
    if num_classes is None and name.startswith("readers__"):
        raise _checks.fail(op, "num_classes", "an integer >= 1 when labels are class ids "
                           f"(these labels come from {name.replace('__', '.')})", None)


def check_layout(op: str, layout, cutmix: bool):
    """``layout``: None (read from the graph at run time) or the images' sample layout."""
    if layout is None:
        return None
    if not isinstance(layout, str) or not layout:
        raise _checks.fail(op, "layout", "None or the images' sample layout (e.g. 'CHW')", layout)
    if cutmix:
        spatial_axes(layout, len(layout), op)
    return layout


def seed_kwargs(op: str, seed) -> dict:
    """Keyword arguments of the operator's one random operator (none: the pipeline seeds it)."""
    if seed is None:
        return {}
    return {"seed": _checks.check_int(op, "seed", seed, minimum=0)}


def python(op, inputs: dict, *, device: str = "cpu", layouts: dict | None = None) -> dict:
    """Insert python operator ``op`` with ``inputs`` (by name); its outputs by name."""
    dfn, _, _, _ = _compat.dali()
    kw = {}
    if layouts and any(layouts.values()):
        kw["output_layouts"] = [layouts.get(n) or "" for n in op.outputs]
    outs = dfn.python_function(*[inputs[n] for n in op.inputs], function=op, device=device,
                               batch_processing=True, num_outputs=len(op.outputs), **kw)
    if len(op.outputs) == 1:
        outs = [outs]
    return dict(zip(op.outputs, outs))


def cpu(node):
    return node.cpu() if node.device == "gpu" else node


def with_layout_of(node, like, float32_out: bool):
    """``node`` (a python operator output, which has no layout) with the layout of ``like``.

    The layout is only known when the pipeline runs, so it is taken over by concatenating an
    empty slice of ``like`` (cast to ``node``'s dtype unless both are float32) in front of
    ``node``: one more copy of the batch, which passing ``layout=`` avoids.
    """
    dfn, types, _, _ = _compat.dali()
    head = like[0:0]
    same = float32_out and _compat.declared_dtype(like) == types.FLOAT
    return dfn.cat(head if same else dfn.cast_like(head, node), node)


def _extras(extra, masks) -> dict:
    named = {f"extra[{j}]": e for j, e in enumerate(extra)}
    named.update({f"masks[{j}]": m for j, m in enumerate(masks)})
    return named


def _finish(cfg, images, outs: dict, named: dict, layout, masks_out) -> tuple:
    """``(images, labels, *extra, *masks)`` with layouts; the mixed images keep ``layout``
    (set on the python operator's output) or take over the input's."""
    float32_out = cfg.dtype in (None, "float32")
    img = outs["images"] if layout else with_layout_of(outs["images"], images, float32_out)
    rest = tuple(with_layout_of(outs[n], node, True) for n, node in named.items() if n.startswith("extra"))
    return (img, outs["labels"]) + rest + masks_out


def pairs(cfg, images, labels, *, features=None, extra=(), masks=(), layout=None,
          return_info: bool = False, seed=None) -> tuple:
    """The graph of a pair operator (k-mixup, mixup, CutMix, mix); see :mod:`dali_mixup.dali`."""
    dfn, types, DataNode, _ = _compat.dali()
    op = cfg.op
    extra, masks = check_nodes(op, DataNode, images, labels, features, extra, masks)
    check_label_source(op, labels, cfg.num_classes)
    layout = check_layout(op, layout, cfg.uses_cutmix)
    draws = dfn.random.uniform(range=[0.0, 1.0], shape=[pair_uniform_width(cfg)],
                               dtype=types.FLOAT64, **seed_kwargs(op, seed))
    named = _extras(extra, masks)
    has_features = features is not None and cfg.k > 1
    read_layout = cfg.uses_cutmix and layout is None
    if images.device == "cpu":
        host = _host.PairHost(cfg, has_features=has_features, layout=layout, n_extra=len(extra),
                             n_masks=len(masks), return_info=return_info)
        inputs = dict(images=images, labels=cpu(labels), draws=draws, **{n: cpu(v) for n, v in named.items()})
        if has_features:
            inputs["features"] = cpu(features)
        if read_layout:
            inputs["layout"] = images.property("layout")
        outs = python(host, inputs, layouts={"images": layout})
    else:
        _compat.require_cupy(op)
        inputs = dict(shapes=images.shape(device="cpu"), labels=cpu(labels), draws=draws)
        cost_op = None
        if cfg.k > 1:
            feats = features if has_features else images
            cost_op = _device.BlockCosts(cfg, "features" if has_features else "images")
            index = python(_device.BlockIndex(cfg), dict(draws=draws))["index"]
            c = python(cost_op, dict(features=feats, index=index.gpu() if feats.device == "gpu" else index),
                       device=feats.device)
            inputs.update(rows=cpu(c["rows"]))
            if has_features:
                inputs["feature_shapes"] = features.shape(device="cpu")
        if read_layout:
            inputs["layout"] = images.property("layout", device="cpu")
        inputs.update({f"{n}.shape": v.shape(device="cpu") for n, v in named.items()})
        planner = _device.PairPlanner(cfg, costs=cost_op, has_features=has_features and cfg.k > 1,
                                      layout=layout, n_extra=len(extra), n_masks=len(masks),
                                      return_info=return_info)
        p = python(planner, inputs)
        axes = spatial_axes(layout, len(layout), op) if layout and cfg.uses_cutmix else None
        applier = _device.PairApply(cfg, axes=axes, n_extra=len(extra), n_masks=len(masks), planner=planner)
        outs = python(applier, dict(images=images, plan=p["plan"].gpu(),
                                    **{n: v.gpu() for n, v in named.items()}),
                      device="gpu", layouts={"images": layout})
        check = python(_device.DeviceCheck(cfg, applier),
                       dict(labels=p["labels"], done=outs["images"].shape(device="cpu")))
        outs.update(labels=check["labels"].gpu(), **{k: p[k] for k in ("partner", "lam") if k in p})
    masks_out = tuple(with_layout_of(outs[n], node, False) for n, node in named.items() if n.startswith("masks"))
    out = _finish(cfg, images, outs, named, layout, masks_out)
    return out + (outs["partner"], outs["lam"]) if return_info else out


def zeta(cfg, images, labels, *, extra=(), masks=(), layout=None, return_info: bool = False,
         seed=None) -> tuple:
    """The graph of zeta-mixup; see :mod:`dali_mixup.dali`."""
    dfn, _, DataNode, _ = _compat.dali()
    op = cfg.op
    extra, masks = check_nodes(op, DataNode, images, labels, None, extra, masks)
    check_label_source(op, labels, cfg.num_classes)
    layout = check_layout(op, layout, False)
    draws = dfn.random.uniform(range=[0.0, 1.0], shape=[zeta_uniform_width(cfg, _compat.max_batch_size())],
                               **seed_kwargs(op, seed))
    named = _extras(extra, ())
    if images.device == "cpu":
        host = _host.ZetaHost(cfg, n_extra=len(extra), return_info=return_info)
        outs = python(host, dict(images=images, labels=cpu(labels), draws=draws,
                                 **{n: cpu(v) for n, v in named.items()}), layouts={"images": layout})
    else:
        _compat.require_cupy(op)
        planner = _device.ZetaPlanner(cfg, n_extra=len(extra), return_info=return_info)
        p = python(planner, dict(shapes=images.shape(device="cpu"), labels=cpu(labels), draws=draws,
                                 **{f"{n}.shape": v.shape(device="cpu") for n, v in named.items()}))
        applier = _device.ZetaApply(cfg, n_extra=len(extra))
        outs = python(applier, dict(images=images, plan=p["plan"].gpu(), **{n: v.gpu() for n, v in named.items()}),
                      device="gpu", layouts={"images": layout})
        check = python(_device.DeviceCheck(cfg, applier),
                       dict(labels=p["labels"], done=outs["images"].shape(device="cpu")))
        outs.update(labels=check["labels"].gpu(), **{k: p[k] for k in ("index", "weights") if k in p})
    out = _finish(cfg, images, outs, named, layout, tuple(masks))
    return out + (outs["index"], outs["weights"]) if return_info else out
