"""The GPU path, seen without a GPU.

* Graph build: every operator's GPU graph (images moved with ``.gpu()``), for every option
  that changes the wiring, is defined and built by DALI's default executor with a stub
  ``cupy`` module: no GPU-to-CPU edge may be refused.
* DALI's own wrapper: each GPU python operator runs through ``function_wrapper_batch`` and
  ``_cupy_stream_wrapper`` (the functions DALI calls), on ``array_api_strict`` arrays on a
  non-default device, with a fake CuPy stream that records being destroyed. DALI's output
  contract is asserted, and no input, good or bad, may raise inside a GPU operator.
* The GPU chain (planner -> GPU apply -> check) gives the array layer's result and accepts
  and rejects exactly what the CPU pipeline accepts and rejects.
"""
from __future__ import annotations

import gc
import sys
import types as pytypes

import numpy as np
import pytest

import array_api_strict as xps

import dali_mixup as dm
import dali_mixup.fn as mfn
from dali_mixup.config import PairConfig, ZetaConfig
from dali_mixup.dali import _ops
from dali_mixup.draws import pair_draws_from_uniforms, pair_uniform_width
from dali_mixup.plan import plan_blocks, representatives
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.ops._operators import python_function as dali_pf

from conftest import run_dali

pytestmark = pytest.mark.dali

DEV = xps.Device("device1")  # a non-default device: any allocation without device= fails


class FakeStream:
    """Stands in for ``cupy.cuda.Stream``: records a destroy of a borrowed (non-zero) pointer."""

    destroyed: list = []

    def __init__(self, null=False):
        self.ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __del__(self):
        if self.ptr:
            FakeStream.destroyed.append(self.ptr)


@pytest.fixture
def stub_cupy(monkeypatch):
    """A ``cupy`` module with just what DALI touches when it builds and wraps GPU operators."""
    cupy = pytypes.ModuleType("cupy")
    cupy.cuda = pytypes.SimpleNamespace(Stream=FakeStream)
    cupy.from_dlpack = lambda x: x
    cupy.ndarray = type("ndarray", (), {})  # array-api-compat asks isinstance(x, cupy.ndarray)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(dali_pf, "cupy", cupy)
    monkeypatch.setattr(dali_pf.PythonFunction, "current_stream",
                        staticmethod(lambda: pytypes.SimpleNamespace(ptr=0xDA11)))
    FakeStream.destroyed = []
    return cupy


def run_gpu_op(op, *inputs):
    """Call ``op`` exactly as DALI calls a GPU python operator with batch processing."""
    with pytest.MonkeyPatch.context():
        pipe = _stub_pipeline()

        def wrapped(*args):
            return dali_pf.PythonFunction._cupy_stream_wrapper(op, *args)

        out = dali_pf.PythonFunction.function_wrapper_batch(
            pipe, wrapped, len(op.outputs), lambda x: x, lambda x: x, *inputs)
    gc.collect()
    assert FakeStream.destroyed == [], "a GPU operator raised: DALI's stream would be destroyed"
    return out if isinstance(out, tuple) else (out,)


def _stub_pipeline():
    from nvidia.dali.pipeline import Pipeline

    return Pipeline(batch_size=64, num_threads=1, device_id=None)


def assert_dali_contract(outs, b, device=DEV):
    """One list per output, B entries, one dtype and one ndim, on the operator's device."""
    for out in outs:
        assert isinstance(out, list) and len(out) == b
        if b:
            assert len({str(a.dtype) for a in out}) == 1 and len({a.ndim for a in out}) == 1
            if type(out[0]).__module__.startswith("array_api_strict"):
                assert all(a.device == device for a in out)


_AS_NUMPY = {"on": False}


def dev(samples):
    """Samples on the non-default device (as NumPy arrays while ``_AS_NUMPY``: float16, which
    array_api_strict lacks)."""
    if _AS_NUMPY["on"]:
        return [np.ascontiguousarray(a) for a in samples]
    return [xps.asarray(np.ascontiguousarray(a), device=DEV) for a in samples]


def host(samples):
    return [np.from_dlpack(a) for a in samples]


# ------------------------------------------------------------------------ graph build


def _gpu_graph(graph, *, layout="HWC", executor=None, bs=8):
    kw = {} if executor is None else executor

    @pipeline_def(batch_size=bs, num_threads=1, device_id=0, seed=1, **kw)
    def pipe():
        x = fn.external_source(name="x", layout=layout, dtype=types.FLOAT)
        y = fn.external_source(name="y", dtype=types.INT32)
        return graph(x.gpu(), y)

    p = pipe()
    p._build_graph()
    return p


GPU_CASES = {
    "mixup": lambda x, y: mfn.mixup(x, y, num_classes=3),
    "mixup prob return_info": lambda x, y: mfn.mixup(x, y, num_classes=3, prob=0.5, return_info=True),
    "k_mixup": lambda x, y: mfn.k_mixup(x, y, k=4, num_classes=3),
    "k_mixup features": lambda x, y: mfn.k_mixup(x, y, k=4, num_classes=3, features=x[:, :, 0:1]),
    "k_mixup cpu features": lambda x, y: mfn.k_mixup(x, y, k=4, num_classes=3,
                                                     features=fn.cast(y, dtype=types.FLOAT)),
    "k_mixup extra masks info": lambda x, y: mfn.k_mixup(
        x, y, k=4, num_classes=3, extra=[x], masks=[fn.cast(x, dtype=types.UINT8)], return_info=True),
    "k_mixup layout uint8 out": lambda x, y: mfn.k_mixup(x, y, k=2, num_classes=3, layout="HWC",
                                                         dtype="float16"),
    "cutmix": lambda x, y: mfn.cutmix(x, y, num_classes=3),
    "cutmix layout k": lambda x, y: mfn.cutmix(x, y, num_classes=3, k=2, layout="HWC"),
    "mix extra masks info": lambda x, y: mfn.mix(
        x, y, num_classes=3, extra=[x], masks=[fn.cast(x, dtype=types.UINT8)], return_info=True),
    "zeta": lambda x, y: mfn.zeta_mixup(x, y, num_classes=3),
    "zeta gather T prob": lambda x, y: mfn.zeta_mixup(x, y, num_classes=3, T=3, method="gather", prob=0.5),
    "zeta matmul extra masks info": lambda x, y: mfn.zeta_mixup(
        x, y, num_classes=3, method="matmul", extra=[x], masks=[x], return_info=True),
    "zeta gamma range layout": lambda x, y: mfn.zeta_mixup(x, y, num_classes=3, gamma=(1.8, 4.0),
                                                           layout="HWC"),
}


@pytest.mark.parametrize("name", list(GPU_CASES))
def test_every_gpu_graph_builds_with_the_default_executor(name, stub_cupy):
    p = _gpu_graph(GPU_CASES[name])
    assert p is not None


def test_the_legacy_executor_refuses_the_gpu_graph(stub_cupy):
    """Why the benchmarks and pipelines never pass exec_async=False, exec_pipelined=False."""
    with pytest.raises(RuntimeError, match="(?i)executor|cpu"):
        _gpu_graph(GPU_CASES["mixup"], executor=dict(exec_async=False, exec_pipelined=False))


@pytest.mark.parametrize("mixing", ["mixup", "k_mixup", "cutmix", "mix", "zeta_mixup"])
def test_ready_made_gpu_pipelines_build(mixing, stub_cupy, monkeypatch):
    import dali_mixup.pipelines.arrays as arrays

    monkeypatch.setattr(arrays, "resolve_device", lambda device, local_rank=0: 0)
    x = np.zeros((16, 8, 8, 3), np.uint8)
    y = np.arange(16) % 4
    pipe, _ = arrays.arrays_pipeline(x, y, batch_size=8, mixing=mixing, k=4, device="gpu")
    pipe._build_graph()


def test_gpu_images_without_cupy_say_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'dali-mixup\[gpu\]'"):
        _gpu_graph(GPU_CASES["mixup"])


# ------------------------------------------------------------------------ DALI's wrapper


def _uniforms(cfg, b, rng):
    return [rng.random(pair_uniform_width(cfg)) for _ in range(b)]


def _pair_chain(cfg, images, labels, draws, *, layout="HWC", features=None, extra=(), masks=()):
    """The GPU wiring of a pair operator, each GPU operator through DALI's wrapper."""
    b = len(images)
    inputs = dict(shapes=[np.array(a.shape) for a in images], labels=labels, draws=draws)
    cost_op = None
    if cfg.k > 1:
        arg = "features" if features is not None else "images"
        cost_op = _ops.BlockCosts(cfg, arg)
        rows, facts = run_gpu_op(cost_op, dev(features if features is not None else images), dev(draws))
        assert_dali_contract((rows, facts), b)
        inputs.update(rows=host(rows), cost_facts=host(facts))
        if features is not None:
            inputs["feature_shapes"] = [np.array(f.shape) for f in features]
    if cfg.uses_cutmix:
        inputs["layout"] = [np.frombuffer(layout.encode(), np.uint8)] * b
    names = [f"extra[{j}]" for j in range(len(extra))] + [f"masks[{j}]" for j in range(len(masks))]
    for n, t in zip(names, list(extra) + list(masks)):
        inputs[f"{n}.shape"] = [np.array(a.shape) for a in t]
    planner = _ops.PairPlanner(cfg, costs=cost_op, has_features=features is not None and cfg.k > 1,
                               layout=None, n_extra=len(extra), n_masks=len(masks), return_info=True)
    plan, soft, partner, lam = planner(*[inputs[n] for n in planner.inputs])
    applier = _ops.PairApply(cfg, axes=None, n_extra=len(extra), n_masks=len(masks))
    outs = run_gpu_op(applier, dev(images), dev(plan), *[dev(t) for t in list(extra) + list(masks)])
    assert_dali_contract(outs, b)
    check = _ops.DeviceCheck(cfg, applier)
    (soft,) = check(soft, host(outs[1]))
    return dict(images=host(outs[0]), labels=soft, partner=partner, lam=lam,
                rest=[host(o) for o in outs[2:]])


def _zeta_chain(cfg, images, labels, draws, extra=()):
    b = len(images)
    planner = _ops.ZetaPlanner(cfg, n_extra=len(extra), return_info=True)
    plan, soft, index, weights = planner([np.array(a.shape) for a in images], labels, draws,
                                         *[[np.array(a.shape) for a in e] for e in extra])
    applier = _ops.ZetaApply(cfg, n_extra=len(extra))
    outs = run_gpu_op(applier, dev(images), dev(plan), *[dev(e) for e in extra])
    assert_dali_contract(outs, b)
    (soft,) = _ops.DeviceCheck(cfg, applier)(soft, host(outs[1]))
    return dict(images=host(outs[0]), labels=soft, index=index, weights=weights,
                rest=[host(o) for o in outs[2:]])


def _ids(b, c=3):
    return [np.array([i % c], np.int32) for i in range(b)]


PAIR_CFGS = {
    "mixup": PairConfig.mixup(num_classes=3, alpha=0.4, lam_mode="sample"),
    "k_mixup": PairConfig.k_mixup(k=3, num_classes=3, cost="euclidean"),
    "k_mixup prob": PairConfig.k_mixup(k=4, num_classes=3, prob=0.5, lam_mode="block"),
    "cutmix": PairConfig.cutmix(num_classes=3, lam_mode="sample"),
    "mix k": PairConfig.mix(num_classes=3, k=2, lam_mode="sample"),
}


@pytest.mark.parametrize("name", list(PAIR_CFGS))
@pytest.mark.parametrize("b", [1, 2, 7, 12])
def test_gpu_pair_chain_equals_the_array_layer(name, b, stub_cupy, rng):
    cfg = PAIR_CFGS[name]
    images = [rng.normal(size=(6, 5, 3)).astype(np.float32) for _ in range(b)]
    extra = [[a * 2 for a in images]]
    masks = [[(a > 0).astype(np.uint8) for a in images]]
    draws = _uniforms(cfg, b, rng)
    got = _pair_chain(cfg, images, _ids(b), draws, extra=extra, masks=masks)
    v = np.stack(draws)
    d = pair_draws_from_uniforms(cfg, v, representatives(plan_blocks(v[:, :2], b, cfg.k, cfg.pairing),
                                                         cfg.lam_mode, b))
    ref = dm.pairs.mix_batch(cfg, np.stack(images), np.stack(_ids(b)), layout="HWC", draws=d,
                             extra=[np.stack(extra[0])], masks=[np.stack(masks[0])])
    np.testing.assert_array_equal(np.stack(got["partner"]), ref.partner)
    np.testing.assert_allclose(np.stack(got["lam"]), ref.lam, rtol=1e-6)
    np.testing.assert_allclose(np.stack(got["images"]), ref.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack(got["labels"]), ref.labels, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack(got["rest"][0]), ref.extra[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.stack(got["rest"][1]), ref.masks[0])


@pytest.mark.parametrize("kw", [dict(), dict(T=3, method="gather"), dict(T=5, method="matmul"),
                                dict(prob=0.5, gamma=(1.8, 4.0))])
@pytest.mark.parametrize("b", [1, 2, 9])
def test_gpu_zeta_chain_equals_the_array_layer(kw, b, stub_cupy, rng):
    cfg = ZetaConfig.zeta_mixup(num_classes=3, **kw)
    images = [rng.integers(0, 256, size=(4, 3, 2)).astype(np.uint8) for _ in range(b)]
    width = 16 + (2 if cfg.prob < 1 else 1)
    draws = [rng.random(width).astype(np.float32) for _ in range(b)]
    got = _zeta_chain(cfg, images, _ids(b), draws, extra=[[a.astype(np.float32) for a in images]])
    from dali_mixup.draws import zeta_draws_from_uniforms

    ref = dm.zeta_mixup(np.stack(images), np.stack(_ids(b)), draws=zeta_draws_from_uniforms(cfg, np.stack(draws)),
                        extra=[np.stack(images).astype(np.float32)], **kw, num_classes=3)
    np.testing.assert_array_equal(np.stack(got["index"]), ref.index)
    np.testing.assert_allclose(np.stack(got["images"]), ref.images, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.stack(got["rest"][0]), ref.extra[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.stack(got["labels"]), ref.labels, rtol=1e-5, atol=1e-6)


BAD_INPUTS = {
    "int16 images": lambda rng, b: [np.ones((4, 4, 3), np.int16)] * b,
    "bool images": lambda rng, b: [np.ones((4, 4, 3), bool)] * b,
    "ragged images": lambda rng, b: [np.zeros((4, 4 + i % 2, 3), np.float32) for i in range(b)],
    "NaN images": lambda rng, b: [np.full((4, 4, 3), np.nan, np.float32)] * b,
    "0-d images": lambda rng, b: [np.float32(1.0)] * b,
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("op", ["BlockCosts", "PairApply", "ZetaApply"])
def test_no_input_raises_inside_a_gpu_operator(op, bad, stub_cupy, rng):
    b = 6
    images = BAD_INPUTS[bad](rng, b)
    cfg = PairConfig.cutmix(k=2, num_classes=3) if op != "ZetaApply" else ZetaConfig.zeta_mixup()
    if op == "BlockCosts":
        gpu_op, inputs = _ops.BlockCosts(cfg, "images"), (dev(images), dev(_uniforms(cfg, b, rng)))
    elif op == "PairApply":
        rows = [np.array([(i + 1) % b, 0.5, 0.5, 1, 0, 2, 0, 2, 0, 1], np.float64) for i in range(b)]
        gpu_op, inputs = _ops.PairApply(cfg, axes=None, n_extra=0, n_masks=0), (dev(images), dev(rows))
    else:
        rows = [np.ones(b) / b for _ in range(b)]
        gpu_op, inputs = _ops.ZetaApply(cfg, n_extra=0), (dev(images), dev(rows))
    outs = run_gpu_op(gpu_op, *inputs)
    assert_dali_contract(outs, b)
    facts = host(outs[1])
    assert facts[0][0] in (0, 1)
    if bad in ("int16 images", "bool images"):  # reported for the CPU side to raise
        with pytest.raises(ValueError, match=r"argument '(images|features)' expected images of dtype"):
            _ops.raise_reported(gpu_op, cfg.op, facts, ("images",), None)


def test_a_failed_gpu_operator_is_raised_by_its_cpu_check(stub_cupy, rng):
    cfg = PairConfig.mixup(num_classes=3)
    applier = _ops.PairApply(cfg, axes=None, n_extra=0, n_masks=0)
    images = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(4)]
    garbage = [np.zeros(3, np.float64)] * 4  # plan rows of the wrong width
    outs = run_gpu_op(applier, dev(images), dev(garbage))
    assert host(outs[1])[0][0] == 1 and applier.failure
    with pytest.raises(RuntimeError, match="mixup: the GPU operator failed"):
        _ops.DeviceCheck(cfg, applier)([np.zeros(3, np.float32)] * 4, host(outs[1]))


def test_nonfinite_costs_from_the_gpu_are_raised_on_the_cpu(stub_cupy, rng):
    cfg = PairConfig.k_mixup(k=2, num_classes=3)
    images = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(6)]
    images[2] = np.full((4, 4, 3), np.inf, np.float32)
    with pytest.raises(ValueError, match=r"k_mixup: argument 'images' expected finite values"):
        _pair_chain(cfg, images, _ids(6), _uniforms(cfg, 6, rng))


def test_empty_batches_through_the_gpu_chain(stub_cupy):
    got = _pair_chain(PairConfig.k_mixup(k=2, num_classes=3), [], [], [])
    assert got["images"] == [] and got["labels"] == []
    got = _zeta_chain(ZetaConfig.zeta_mixup(num_classes=3), [], [], [])
    assert got["images"] == []


# ------------------------------------------------------------------------ CPU / GPU parity


PARITY = [  # (images dtype, operator dtype argument)
    (np.float64, None), (np.float16, None), (np.float16, "float16"), (np.int16, None),
    (np.uint8, "uint8"), (np.float32, "uint8"), (np.int32, None), (np.uint8, None),
]


def _cpu_outcome(op, kw, images, labels):
    try:
        (out,), _ = run_dali(lambda x, y: getattr(mfn, op)(x, y, **kw), [(images, labels)])
    except RuntimeError as e:
        msg = str(e)
        start = msg.index(f"{op}: argument")
        return "error", msg[start:msg.index("\n", start)]
    return "ok", (np.stack(out[0]).dtype, np.stack(out[0]))


def _gpu_outcome(op, kw, images, labels, rng):
    _AS_NUMPY["on"] = images[0].dtype == np.float16
    try:
        if op == "zeta_mixup":
            cfg = ZetaConfig.zeta_mixup(**kw)
            got = _zeta_chain(cfg, images, labels, [rng.random(10).astype(np.float32) for _ in images])
        else:
            cfg = getattr(PairConfig, op)(**kw)
            got = _pair_chain(cfg, images, labels, _uniforms(cfg, len(images), rng))
    except ValueError as e:
        return "error", str(e)
    finally:
        _AS_NUMPY["on"] = False
    return "ok", (np.stack(got["images"]).dtype, None)


@pytest.mark.parametrize("op,kw", [("k_mixup", dict(k=2)), ("mixup", {}), ("cutmix", {}),
                                   ("zeta_mixup", {})])
@pytest.mark.parametrize("in_dtype,out_dtype", PARITY)
def test_cpu_and_gpu_accept_and_reject_the_same_inputs(op, kw, in_dtype, out_dtype, stub_cupy, rng):
    images = [(rng.random((4, 4, 3)) * 200).astype(in_dtype) for _ in range(6)]
    kw = dict(kw, num_classes=3, dtype=out_dtype)
    cpu = _cpu_outcome(op, kw, images, _ids(6))
    gpu = _gpu_outcome(op, kw, images, _ids(6), rng)
    assert cpu[0] == gpu[0], (cpu, gpu)
    if cpu[0] == "error":
        assert cpu[1] == gpu[1]
    else:
        assert cpu[1][0] == gpu[1][0]  # the same output dtype
        want = np.dtype(out_dtype) if out_dtype else (np.float64 if in_dtype == np.float64 else np.float32)
        assert cpu[1][0] == want


def test_float64_keeps_float64_precision_on_both_devices(stub_cupy, rng):
    """float64 images are mixed in float64 (lam too): the result equals a float64 reference."""
    b = 6
    images = [rng.normal(size=(3, 4, 2)) * 1e8 + 1.0 for _ in range(b)]
    cfg = PairConfig.mixup(num_classes=3, lam_mode="sample")
    draws = _uniforms(cfg, b, rng)
    got = _pair_chain(cfg, images, _ids(b), draws)
    x = np.stack(images)
    lam = np.stack(got["lam"]).astype(np.float64)
    partner = np.stack(got["partner"])
    v = np.stack(draws)
    lam64 = pair_draws_from_uniforms(cfg, v, np.arange(b)).lam  # lam_mode sample: own draw
    lam64 = np.where(partner == np.arange(b), 1.0, lam64)
    want = lam64[:, None, None, None] * x + (1 - lam64[:, None, None, None]) * x[partner]
    assert np.stack(got["images"]).dtype == np.float64
    np.testing.assert_allclose(np.stack(got["images"]), want, rtol=1e-13)
    np.testing.assert_allclose(lam, lam64, rtol=1e-6)
    (out,), _ = run_dali(lambda x_, y_: mfn.mixup(x_, y_, num_classes=3, lam_mode="sample",
                                                  return_info=True, seed=3), [(images, _ids(b))])
    res, lam_cpu, p_cpu = np.stack(out[0]), np.stack(out[3]), np.stack(out[2])
    assert res.dtype == np.float64 and lam_cpu.dtype == np.float64
    l4 = lam_cpu[:, None, None, None]
    np.testing.assert_allclose(res, l4 * x + (1 - l4) * x[p_cpu], rtol=1e-13)
