"""The GPU path, seen without a GPU, through the real CuPy and DALI.

* Graph build: every operator's GPU graph (images moved with ``.gpu()``), for every option
  that changes the wiring, is defined and built by DALI's default executor with the real
  ``cupy`` installed: no GPU-to-CPU edge may be refused.
* DALI's own wrapper: each GPU python operator runs through ``function_wrapper_batch`` and
  ``_cupy_stream_wrapper`` (the functions DALI calls) with CuPy's real ``Stream`` class, whose
  destructor destroys a borrowed DALI stream when an operator raises. Only the device calls are
  replaced: DALI's ``current_dali_stream`` and the stream's enter/exit (which select the CUDA
  device). The destroy itself fails without a driver and CuPy reports it as an unraisable
  exception, which the tests record. The operators run on ``array_api_strict`` arrays on a
  non-default device (CuPy cannot compute without a GPU).
* The GPU chain (index -> costs -> planner -> GPU apply -> check) gives the array layer's
  result and accepts and rejects exactly what the CPU pipeline accepts and rejects.
"""
from __future__ import annotations

import gc
import sys
import types as pytypes
import warnings

import cupy
import numpy as np
import pytest

import array_api_strict as xps

import dali_mixup as dm
import dali_mixup.fn as mfn
from dali_mixup.core.config import PairConfig, ZetaConfig
from dali_mixup.core.cost import COSTS
from dali_mixup.dali import _device, _graph
from dali_mixup.core.draws import pair_draws_from_uniforms, pair_uniform_width
from dali_mixup.core.plan import plan_blocks, representatives
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.ops._operators import python_function as dali_pf

from conftest import run_dali

pytestmark = pytest.mark.dali

DEV = xps.Device("device1")
Array = type(xps.asarray(0.0))  # array_api_strict's array class  # a non-default device: any allocation without device= fails
DALI_STREAM = 0xDA11


class DevicelessStream(cupy.cuda.Stream):
    """CuPy's own ``Stream`` (its ``ptr`` and its destructor, which destroys a non-zero
    borrowed stream) with only the device selection of ``with stream:`` left out."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_DESTROYED: list = []


@pytest.fixture
def destroyed(monkeypatch):
    """Streams CuPy tried to destroy (its ``streamDestroy`` fails here; the failure, raised in
    ``Stream.__del__``, reaches ``sys.unraisablehook``). DALI's wrapper builds its stream from
    ``cupy.cuda.Stream``; the one device call in DALI, its current stream, is given a pointer."""
    seen = []

    def hook(u):
        if "Stream.__del__" in repr(u.object) or "streamDestroy" in str(u.exc_value) or \
                type(u.exc_value).__name__ == "CUDARuntimeError":
            seen.append(str(u.exc_value))
        else:
            sys.__unraisablehook__(u)

    monkeypatch.setattr(sys, "unraisablehook", hook)
    monkeypatch.setattr(cupy.cuda, "Stream", DevicelessStream)
    monkeypatch.setattr(dali_pf, "cupy", cupy)
    monkeypatch.setattr(dali_pf.PythonFunction, "current_stream",
                        staticmethod(lambda: pytypes.SimpleNamespace(ptr=DALI_STREAM)))
    monkeypatch.setattr(sys.modules[__name__], "_DESTROYED", seen)
    return seen


def run_gpu_op(op, *inputs):
    """Call ``op`` exactly as DALI calls a GPU python operator with batch processing."""
    pipe = _stub_pipeline()

    def wrapped(*args):
        return dali_pf.PythonFunction._cupy_stream_wrapper(op, *args)

    out = dali_pf.PythonFunction.function_wrapper_batch(
        pipe, wrapped, len(op.outputs), lambda x: x, lambda x: x, *inputs)
    gc.collect()
    assert _DESTROYED == [], "a GPU operator raised: CuPy destroyed DALI's stream"
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


def test_a_raising_gpu_function_destroys_dalis_stream_under_the_real_cupy(destroyed):
    """The hazard the guard exists for, shown with CuPy's own Stream class: a function that
    raises inside DALI's wrapper leaves the borrowed pointer set, and CuPy's destructor then
    destroys DALI's stream. A function that returns normally leaves nothing to destroy."""
    def boom(*_):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        dali_pf.PythonFunction.function_wrapper_batch(
            _stub_pipeline(), lambda *a: dali_pf.PythonFunction._cupy_stream_wrapper(boom, *a),
            1, lambda x: x, lambda x: x, [np.zeros(1)])
    gc.collect()
    assert len(destroyed) == 1
    destroyed.clear()
    dali_pf.PythonFunction.function_wrapper_batch(
        _stub_pipeline(), lambda *a: dali_pf.PythonFunction._cupy_stream_wrapper(lambda x: x, *a),
        1, lambda x: x, lambda x: x, [np.zeros(1)])
    gc.collect()
    assert destroyed == []


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
def test_every_gpu_graph_builds_with_the_default_executor(name, destroyed):
    p = _gpu_graph(GPU_CASES[name])
    assert p is not None


def test_the_legacy_executor_refuses_the_gpu_graph(destroyed):
    """Why the benchmarks and pipelines never pass exec_async=False, exec_pipelined=False."""
    with pytest.raises(RuntimeError, match="(?i)executor|cpu"):
        _gpu_graph(GPU_CASES["mixup"], executor=dict(exec_async=False, exec_pipelined=False))


@pytest.mark.parametrize("mixing", ["mixup", "k_mixup", "cutmix", "mix", "zeta_mixup"])
def test_ready_made_gpu_pipelines_build(mixing, destroyed, monkeypatch):
    import dali_mixup.pipelines.arrays as arrays

    monkeypatch.setattr(arrays, "resolve_device", lambda device, local_rank=0: 0)
    x = np.zeros((16, 8, 8, 3), np.uint8)
    y = np.arange(16) % 4
    pipe, _ = arrays.arrays_pipeline(x, y, batch_size=8, mixing=mixing, k=4, device="gpu")
    pipe._build_graph()


def test_gpu_images_without_cupy_say_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(ImportError, match=r"need CuPy .* pip install 'dali-mixup\[gpu-cu12\]' \(CUDA 12\) "
                                          r"or 'dali-mixup\[gpu-cu13\]' \(CUDA 13\)"):
        _gpu_graph(GPU_CASES["mixup"])


def test_a_cupy_that_does_not_import_is_named_as_such(monkeypatch):
    """CuPy present but broken (a CUDA library of the wrong major missing): not "install CuPy"."""
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("libnvrtc.so.12: cannot open shared object file", name="cupy_backends.cuda.libs")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cupy")
    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ImportError, match=r"mixup: CuPy is installed but does not import \(libnvrtc"):
        _gpu_graph(GPU_CASES["mixup"])


# ------------------------------------------------------------------------ DALI's wrapper


def _uniforms(cfg, b, rng):
    return [rng.random(pair_uniform_width(cfg)) for _ in range(b)]


def _pair_chain(cfg, images, labels, draws, *, layout="HWC", features=None, extra=(), masks=()):
    """The GPU wiring of a pair operator, each GPU operator through DALI's wrapper."""
    inputs = dict(shapes=[np.array(a.shape) for a in images], labels=labels, draws=draws)
    cost_op = None
    if cfg.k > 1:
        arg = "features" if features is not None else "images"
        cost_op = _device.BlockCosts(cfg, arg)
        (index,) = _device.BlockIndex(cfg)(draws)
        (rows,) = run_gpu_op(cost_op, dev(features if features is not None else images), dev(index))
        assert_dali_contract((rows,), len(images))
        inputs.update(rows=host(rows))
        if features is not None:
            inputs["feature_shapes"] = [np.array(f.shape) for f in features]
    if cfg.uses_cutmix:
        inputs["layout"] = [np.frombuffer(layout.encode(), np.uint8)] * len(images)
    names = [f"extra[{j}]" for j in range(len(extra))] + [f"masks[{j}]" for j in range(len(masks))]
    for n, t in zip(names, list(extra) + list(masks)):
        inputs[f"{n}.shape"] = [np.array(a.shape) for a in t]
    planner = _device.PairPlanner(cfg, costs=cost_op, has_features=features is not None and cfg.k > 1,
                                  layout=None, n_extra=len(extra), n_masks=len(masks), return_info=True)
    plan, soft, partner, lam = planner(*[inputs[n] for n in planner.inputs])
    applier = _device.PairApply(cfg, axes=None, n_extra=len(extra), n_masks=len(masks), planner=planner)
    outs = run_gpu_op(applier, dev(images), dev(plan), *[dev(t) for t in list(extra) + list(masks)])
    assert_dali_contract(outs, len(images))
    (soft,) = _device.DeviceCheck(cfg, applier)(soft, [np.array(a.shape) for a in outs[0]])
    return dict(images=host(outs[0]), labels=soft, partner=partner, lam=lam,
                rest=[host(o) for o in outs[1:]])


def _zeta_chain(cfg, images, labels, draws, extra=()):
    planner = _device.ZetaPlanner(cfg, n_extra=len(extra), return_info=True)
    plan, soft, index, weights = planner([np.array(a.shape) for a in images], labels, draws,
                                         *[[np.array(a.shape) for a in e] for e in extra])
    applier = _device.ZetaApply(cfg, n_extra=len(extra))
    outs = run_gpu_op(applier, dev(images), dev(plan), *[dev(e) for e in extra])
    assert_dali_contract(outs, len(images))
    (soft,) = _device.DeviceCheck(cfg, applier)(soft, [np.array(a.shape) for a in outs[0]])
    return dict(images=host(outs[0]), labels=soft, index=index, weights=weights,
                rest=[host(o) for o in outs[1:]])


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
def test_gpu_pair_chain_equals_the_array_layer(name, b, destroyed, rng):
    cfg = PAIR_CFGS[name]
    images = [rng.normal(size=(6, 5, 3)).astype(np.float32) for _ in range(b)]
    extra = [[a * 2 for a in images]]
    masks = [[(a > 0).astype(np.uint8) for a in images]]
    draws = _uniforms(cfg, b, rng)
    got = _pair_chain(cfg, images, _ids(b), draws, extra=extra, masks=masks)
    v = np.stack(draws)
    d = pair_draws_from_uniforms(cfg, v, representatives(plan_blocks(v[:, :2], b, cfg.k, cfg.pairing),
                                                         cfg.lam_mode, b))
    ref = dm.core.pairs.mix_batch(cfg, np.stack(images), np.stack(_ids(b)), layout="HWC", draws=d,
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
def test_gpu_zeta_chain_equals_the_array_layer(kw, b, destroyed, rng):
    cfg = ZetaConfig.zeta_mixup(num_classes=3, **kw)
    images = [rng.integers(0, 256, size=(4, 3, 2)).astype(np.uint8) for _ in range(b)]
    width = 16 + (2 if cfg.prob < 1 else 1)
    draws = [rng.random(width).astype(np.float32) for _ in range(b)]
    got = _zeta_chain(cfg, images, _ids(b), draws, extra=[[a.astype(np.float32) for a in images]])
    from dali_mixup.core.draws import zeta_draws_from_uniforms

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


def _gpu_op_and_inputs(op, cfg, images, rng):
    b = len(images)
    if op == "BlockCosts":
        (index,) = _device.BlockIndex(cfg)(_uniforms(cfg, b, rng))
        return _device.BlockCosts(cfg, "images"), (dev(images), dev(index))
    if op == "PairApply":
        rows = [np.array([(i + 1) % b, 0.5, 0.5, 1, 0, 2, 0, 2], np.float64) for i in range(b)]
        return _device.PairApply(cfg, axes=(0, 1), n_extra=0, n_masks=0), (dev(images), dev(rows))
    rows = [np.ones(b) / b for _ in range(b)]
    return _device.ZetaApply(cfg, n_extra=0), (dev(images), dev(rows))


GPU_OPS = ["BlockCosts", "PairApply", "ZetaApply"]


def _cfg_for(op):
    return ZetaConfig.zeta_mixup() if op == "ZetaApply" else PairConfig.cutmix(k=2, num_classes=3)


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("op", GPU_OPS)
def test_no_input_raises_inside_a_gpu_operator(op, bad, destroyed, rng):
    b = 6
    cfg = _cfg_for(op)
    gpu_op, inputs = _gpu_op_and_inputs(op, cfg, BAD_INPUTS[bad](rng, b), rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        outs = run_gpu_op(gpu_op, *inputs)
    assert_dali_contract(outs, b)
    report = gpu_op.reports.take()
    if bad in ("int16 images", "bool images"):  # reported for the CPU side to raise
        assert report.failure is None
        with pytest.raises(ValueError, match=r"argument '(images|features)' expected images of dtype"):
            _device.raise_reported(report, cfg.op, None)


@pytest.mark.parametrize("op", GPU_OPS)
def test_a_failing_gpu_operator_passes_its_inputs_through_and_the_cpu_raises(op, destroyed, rng, monkeypatch):
    """Whatever fails inside a GPU operator: no raise, B entries per output that are its own
    inputs (nothing allocated), the failure shown at once as a warning and raised by the CPU
    operator that reads the batch's report, with the failure's text."""
    b = 5
    cfg = _cfg_for(op)
    images = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(b)]
    gpu_op, inputs = _gpu_op_and_inputs(op, cfg, images, rng)

    def broken(a):
        raise MemoryError("out of device memory (simulated)")

    monkeypatch.setattr(gpu_op, "run", broken)
    with pytest.warns(RuntimeWarning, match=r"GPU operator .* failed: MemoryError: out of device memory"):
        outs = run_gpu_op(gpu_op, *inputs)
    assert_dali_contract(outs, b)
    source = {n: inputs[gpu_op.inputs.index(src)] for n, src in gpu_op.passthrough.items()}
    for name, out in zip(gpu_op.outputs, outs):
        assert all(o is i for o, i in zip(out, source[name]))
    with pytest.raises(RuntimeError, match=r"the GPU operator failed: MemoryError: out of device memory"):
        _device.raise_reported(gpu_op.reports.take(), cfg.op, None)


@pytest.mark.parametrize("op", GPU_OPS)
def test_a_gpu_operator_whose_outputs_break_dalis_contract_is_a_reported_failure(op, destroyed, rng,
                                                                                monkeypatch):
    b = 4
    cfg = _cfg_for(op)
    gpu_op, inputs = _gpu_op_and_inputs(op, cfg, [np.zeros((4, 4, 3), np.float32)] * b, rng)
    monkeypatch.setattr(gpu_op, "run", lambda a: {n: [] for n in gpu_op.outputs})  # 0 samples, not B
    with pytest.warns(RuntimeWarning):
        outs = run_gpu_op(gpu_op, *inputs)
    assert_dali_contract(outs, b)
    with pytest.raises(RuntimeError, match=r"outputs of \[0.*\] samples for a batch of 4"):
        _device.raise_reported(gpu_op.reports.take(), cfg.op, None)


def test_failures_are_kept_per_batch_with_batches_in_flight(destroyed, rng, monkeypatch):
    """Two batches through the GPU operator before the CPU check reads the first (DALI's
    prefetch): each check raises its own batch's failure, or none."""
    cfg = PairConfig.mixup(num_classes=3)
    applier = _device.PairApply(cfg, axes=None, n_extra=0, n_masks=0)
    images = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(4)]
    rows = [np.array([(i + 1) % 4, 0.5, 0.5, 0, 0, 0, 0, 0], np.float64) for i in range(4)]
    good_run = applier.run
    monkeypatch.setattr(applier, "run", lambda a: (_ for _ in ()).throw(ValueError("first batch")))
    with pytest.warns(RuntimeWarning):
        run_gpu_op(applier, dev(images), dev(rows))
    monkeypatch.setattr(applier, "run", good_run)
    out2 = run_gpu_op(applier, dev(images), dev(rows))
    check = _device.DeviceCheck(cfg, applier)
    done = [np.array(a.shape) for a in out2[0]]
    with pytest.raises(RuntimeError, match="first batch"):
        check([np.zeros(3, np.float32)] * 4, done)
    (labels,) = check([np.zeros(3, np.float32)] * 4, done)  # the second batch: no failure
    assert len(labels) == 4 and len(applier.reports) == 0


@pytest.mark.parametrize("op", GPU_OPS)
def test_every_gpu_operator_failure_surfaces_through_the_whole_chain(op, destroyed, rng, monkeypatch):
    """A failure in any GPU operator reaches the user as the CPU operator's error."""
    b = 6
    images = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(b)]
    cls = getattr(_device, op)
    real_run = cls.run

    def broken(self, a):
        if a and next(iter(a.values())):
            raise RuntimeError(f"{op} broke")
        return real_run(self, a)

    monkeypatch.setattr(cls, "run", broken)
    with pytest.raises(RuntimeError, match=f"the GPU operator failed: RuntimeError: {op} broke"), \
            pytest.warns(RuntimeWarning):
        if op == "ZetaApply":
            cfg = ZetaConfig.zeta_mixup(num_classes=3)
            _zeta_chain(cfg, images, _ids(b), [rng.random(10).astype(np.float32) for _ in range(b)])
        else:
            cfg = PairConfig.k_mixup(k=3, num_classes=3)
            _pair_chain(cfg, images, _ids(b), _uniforms(cfg, b, rng))


@pytest.mark.parametrize("cfg", [PairConfig.k_mixup(k=3, num_classes=3), PairConfig.cutmix(num_classes=3),
                                 PairConfig.mix(k=2, num_classes=3), PairConfig.mixup(num_classes=3)],
                         ids=["k_mixup", "cutmix", "mix", "mixup"])
def test_gpu_operators_read_nothing_back_from_the_device(cfg, destroyed, rng, monkeypatch):
    """No host synchronisation inside a GPU operator: not for the draws (the block indices come
    from the host), not for a finiteness check of the costs, not for CutMix's axes. Every way an
    array_api_strict array can reach the host is spied on while a GPU operator runs."""
    inside, reads = {"op": None}, []
    for name in ("__bool__", "__int__", "__float__", "__index__", "__array__", "__dlpack__", "to_device"):
        real = getattr(Array, name, None)
        if real is None:
            continue

        def spy(self, *args, _real=real, _name=name, **kwargs):
            if inside["op"]:
                reads.append((inside["op"], _name))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Array, name, spy)
    real_call = _device.DeviceOp.__call__

    def call(self, *args):
        inside["op"] = type(self).__name__
        try:
            return real_call(self, *args)
        finally:
            inside["op"] = None

    monkeypatch.setattr(_device.DeviceOp, "__call__", call)
    b = 7
    images = [rng.normal(size=(4, 5, 3)).astype(np.float32) for _ in range(b)]
    got = _pair_chain(cfg, images, _ids(b), _uniforms(cfg, b, rng))
    assert len(got["images"]) == b
    assert reads == []


def test_a_float32_batch_is_mixed_with_one_batch_sized_temporary(destroyed, rng, monkeypatch):
    """GPU mixup of a float32 batch allocates the stacked batch and the partner gather, and
    nothing else batch-sized: no cast copy of float32 input, no blend temporaries."""
    b = 6
    cfg = PairConfig.mixup(num_classes=3)
    applier = _device.PairApply(cfg, axes=None, n_extra=0, n_masks=0)
    images = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(b)]
    rows = [np.array([(i + 1) % b, 0.25, 0.75, 0, 0, 0, 0, 0], np.float64) for i in range(b)]
    made = []  # shapes of the new buffers (not views) wrapped in arrays
    real_new = Array._new.__func__

    def new(cls, x, /, device):
        if isinstance(x, np.ndarray) and x.flags.owndata:
            made.append(x.shape)
        return real_new(cls, x, device=device)

    monkeypatch.setattr(Array, "_new", classmethod(new))
    (out,) = run_gpu_op(applier, dev(images), dev(rows))
    monkeypatch.undo()
    assert made.count((b, 4, 4, 3)) == 2, made
    x = np.stack(images)
    want = 0.25 * x + 0.75 * x[(np.arange(b) + 1) % b]
    np.testing.assert_array_equal(np.stack(host(out)), want)


def _cyclic_batch(cfg, b, rng, d=12):
    """Images whose optimal k-mixup matching (k >= 3) is known and unique: in every block,
    left row j's nearest right row is (j + 1) % k, by a wide margin. That matching is a k-cycle,
    not its own inverse, so solving the transposed cost matrix gives other partners."""
    draws = _uniforms(cfg, b, rng)
    blocks = plan_blocks(np.stack(draws)[:, :2], b, cfg.k, cfg.pairing)
    images = [np.zeros((d, 1, 1), np.float32) for _ in range(b)]
    want = np.arange(b)
    for left, right, size in zip(blocks.left, blocks.right, blocks.sizes):
        k = int(size)
        assert k >= 3
        for j in range(k):
            centre = rng.normal(size=(d, 1, 1)).astype(np.float32) * 50 * (1 + j)
            images[left[j]] = centre + rng.normal(size=(d, 1, 1)).astype(np.float32) * 0.01
            images[right[(j + 1) % k]] = centre + rng.normal(size=(d, 1, 1)).astype(np.float32) * 0.01
            want[left[j]], want[right[(j + 1) % k]] = right[(j + 1) % k], left[j]
    return images, draws, want


@pytest.mark.parametrize("cost", list(COSTS))
@pytest.mark.parametrize("by", ["images", "features"])
def test_gpu_k_mixup_finds_the_unique_optimal_cyclic_matching(cost, by, destroyed, rng):
    cfg = PairConfig.k_mixup(k=3, num_classes=3, cost=cost)
    b = 12
    images, draws, want = _cyclic_batch(cfg, b, rng)
    feats = [a[:, :, 0] * 2.0 for a in images] if by == "features" else None
    if feats is not None:  # the images then carry no structure: only the features can match
        images = [rng.normal(size=a.shape).astype(np.float32) for a in images]
    got = _pair_chain(cfg, images, _ids(b), draws, features=feats)
    np.testing.assert_array_equal(np.stack(got["partner"]), want)
    x = np.stack(images)
    ref = dm.k_mixup(x, np.stack(_ids(b)), k=3, num_classes=3, cost=cost,
                     features=np.stack(feats) if feats is not None else None,
                     draws=pair_draws_from_uniforms(cfg, np.stack(draws), representatives(
                         plan_blocks(np.stack(draws)[:, :2], b, 3, cfg.pairing), cfg.lam_mode, b)))
    np.testing.assert_array_equal(ref.partner, want)
    np.testing.assert_allclose(np.stack(got["images"]), ref.images, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name,want", [
    ("mixup", {"PairApply": 1}), ("k_mixup", {"BlockCosts": 1, "PairApply": 1}),
    ("k_mixup cpu features", {"PairApply": 1}), ("cutmix", {"PairApply": 1}),
    ("k_mixup extra masks info", {"BlockCosts": 1, "PairApply": 3}),
    ("zeta", {"ZetaApply": 1}), ("zeta matmul extra masks info", {"ZetaApply": 2})])
def test_gpu_operators_output_only_the_arrays_that_must_be_there(name, want, destroyed, monkeypatch):
    """Each GPU output costs B DLPack exports and B device copies per batch in DALI: count the
    outputs of the GPU python operators each graph builds (no host facts among them)."""
    made = {}
    real = _graph.python

    def counting(op, inputs, *, device="cpu", layouts=None):
        if device == "gpu":
            made[type(op).__name__] = made.get(type(op).__name__, 0) + len(op.outputs)
        return real(op, inputs, device=device, layouts=layouts)

    monkeypatch.setattr(_graph, "python", counting)
    _gpu_graph(GPU_CASES[name])
    assert made == want


def test_nonfinite_costs_from_the_gpu_are_raised_on_the_cpu(destroyed, rng):
    cfg = PairConfig.k_mixup(k=2, num_classes=3)
    images = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(6)]
    images[2] = np.full((4, 4, 3), np.inf, np.float32)
    with pytest.raises(ValueError, match=r"k_mixup: argument 'images' expected finite values"):
        _pair_chain(cfg, images, _ids(6), _uniforms(cfg, 6, rng))


def test_empty_batches_through_the_gpu_chain(destroyed):
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
def test_cpu_and_gpu_accept_and_reject_the_same_inputs(op, kw, in_dtype, out_dtype, destroyed, rng):
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


def test_float64_keeps_float64_precision_on_both_devices(destroyed, rng):
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
