"""Bad-input battery: every case gives correct output or a precise error, never garbage.

Each error names the operator, the argument, what was expected and what was received.
Argument errors are raised when the operator is created (graph-build time in DALI); data
errors when the batch arrives, after which a fresh pipeline works again.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

import dali_mixup as dm
import dali_mixup.fn as mfn

from conftest import run_dali

OPS = {"k_mixup": dm.k_mixup, "mixup": dm.mixup, "zeta_mixup": dm.zeta_mixup, "cutmix": dm.cutmix,
       "mix": dm.mix}

# (operator, kwargs, regex of the message)
ARG_CASES = [
    ("k_mixup", dict(k=0), r"k_mixup: argument 'k' expected an integer >= 1, got 0"),
    ("k_mixup", dict(k=2.5), r"k_mixup: argument 'k' expected an integer >= 1, got 2.5"),
    ("k_mixup", dict(k=True), r"k_mixup: argument 'k' expected an integer >= 1, got True"),
    ("k_mixup", dict(alpha=0.0), r"k_mixup: argument 'alpha' expected a finite number > 0, got 0.0"),
    ("k_mixup", dict(alpha=-1), r"argument 'alpha' expected a finite number > 0, got -1"),
    ("k_mixup", dict(alpha=float("nan")), r"argument 'alpha' expected a finite number > 0, got nan"),
    ("mixup", dict(alpha=float("inf")), r"mixup: argument 'alpha' expected a finite number > 0, got inf"),
    ("k_mixup", dict(cost="l1"), r"argument 'cost' expected one of 'sqeuclidean', 'euclidean', 'cosine', got 'l1'"),
    ("k_mixup", dict(pairing="random"), r"argument 'pairing' expected one of 'disjoint', 'permutation'"),
    ("mixup", dict(lam_mode="elem"), r"mixup: argument 'lam_mode' expected one of 'batch', 'block', 'sample', got 'elem'"),
    ("k_mixup", dict(label_smoothing=1.0), r"argument 'label_smoothing' expected a number in \[0, 1\), got 1.0"),
    ("k_mixup", dict(num_classes=0), r"argument 'num_classes' expected an integer >= 1 or None, got 0"),
    ("k_mixup", dict(dtype="int8"), r"argument 'dtype' expected one of None, 'float16'"),
    ("zeta_mixup", dict(gamma=0), r"zeta_mixup: argument 'gamma' expected finite values > 0, got 0"),
    ("zeta_mixup", dict(gamma=-2.0), r"zeta_mixup: argument 'gamma' expected finite values > 0"),
    ("zeta_mixup", dict(gamma="big"), r"argument 'gamma' expected a number > 0 or a \(low, high\) pair"),
    ("zeta_mixup", dict(T=0), r"zeta_mixup: argument 'T' expected an integer >= 1 or None, got 0"),
    ("zeta_mixup", dict(method="fft"), r"zeta_mixup: argument 'method' expected one of None, 'gather', 'matmul'"),
    # each operator names its caller's own argument
    ("cutmix", dict(alpha=0), r"cutmix: argument 'alpha' expected a finite number > 0, got 0"),
    ("cutmix", dict(alpha=-1.0), r"cutmix: argument 'alpha' expected a finite number > 0, got -1.0"),
    ("mix", dict(mixup_alpha=0, cutmix_alpha=0), r"mix: argument 'mixup_alpha' expected mixup_alpha > 0 or cutmix_alpha > 0"),
    ("mix", dict(cutmix_alpha=-2), r"mix: argument 'cutmix_alpha' expected a finite number > 0, got -2"),
]


@pytest.mark.parametrize("bad", ["abc", None, object(), [["a"]]])
@pytest.mark.parametrize("op", ["k_mixup", "mixup", "zeta_mixup", "cutmix"])
def test_wrong_label_types_name_labels_with_torch_batches(op, bad):
    import torch

    x = torch.zeros((4, 3, 2, 2))
    with pytest.raises(ValueError, match=f"{op}: argument 'labels' expected class ids"):
        OPS[op](x, bad, num_classes=2)


@pytest.mark.parametrize("op,kw,msg", ARG_CASES)
def test_argument_errors_array_layer(op, kw, msg):
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=msg):
        OPS[op](x, np.zeros(4, np.int64), **{"num_classes": 2, **kw})


@pytest.mark.dali
@pytest.mark.parametrize("op,kw,msg", ARG_CASES)
def test_argument_errors_at_graph_build_time(op, kw, msg):
    """Raised while the pipeline graph is defined, before anything runs."""
    from nvidia.dali import fn, pipeline_def

    import dali_mixup.fn as mfn

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(name="x")
        return getattr(mfn, op)(x, x, **{"num_classes": 2, **kw})

    with pytest.raises(ValueError, match=msg):
        pipe()


@pytest.mark.dali
def test_reader_labels_without_num_classes_fail_at_graph_time(tmp_path):
    from nvidia.dali import fn, pipeline_def

    import dali_mixup.fn as mfn

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(tmp_path))
        return mfn.k_mixup(fn.decoders.image(jpegs), labels)

    with pytest.raises(ValueError, match=r"k_mixup: argument 'num_classes' expected an integer >= 1 "
                                         r"when labels are class ids \(these labels come from readers.File\)"):
        pipe()


@pytest.mark.dali
def test_non_datanode_inputs_fail_at_graph_time():
    from nvidia.dali import pipeline_def

    import dali_mixup.fn as mfn

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        return mfn.zeta_mixup(np.zeros((2, 3)), np.zeros(2), num_classes=2)

    with pytest.raises(ValueError, match=r"zeta_mixup: argument 'images' expected a DALI DataNode.*got 'ndarray'"):
        pipe()


def test_integer_labels_without_num_classes_array_layer():
    with pytest.raises(ValueError, match=r"k_mixup: argument 'num_classes' expected an integer >= 1 when labels are class ids"):
        dm.k_mixup(np.zeros((4, 2), np.float32), np.zeros(4, np.int64))


# ---------------------------------------------------------------- data errors (run time)

def _u8(b, shape=(4, 4, 3)):
    return [np.full(shape, 10 * i, np.uint8) for i in range(b)]


def _ids(*v):
    return [np.array([i], np.int32) for i in v]


DATA_CASES = [
    # name, images, labels, operator kwargs, regex (None: must succeed)
    ("ragged shapes", [np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)], _ids(0, 1),
     dict(num_classes=2), r"argument 'images' expected every sample of the batch with one shape \(4, 4, 3\).*got 'shape \(5, 4, 3\) at sample 1'"),
    ("bool images", [np.zeros((2, 2), bool)] * 2, _ids(0, 1), dict(num_classes=2),
     r"argument 'images' expected images of dtype uint8, float16, float32, float64, got 'dtype bool'"),
    ("int64 images", [np.zeros((2, 2), np.int64)] * 2, _ids(0, 1), dict(num_classes=2),
     r"argument 'images' expected images of dtype uint8, float16, float32, float64, got 'dtype int64'"),
    ("negative label", _u8(3), _ids(0, -1, 1), dict(num_classes=2),
     r"argument 'labels' expected class ids in \[0, 1\] \(num_classes=2\), got 'class id -1'"),
    ("label too large", _u8(3), _ids(0, 1, 2), dict(num_classes=2),
     r"argument 'labels' expected class ids in \[0, 1\] \(num_classes=2\), got 'class id 2'"),
    ("soft labels wrong width", _u8(2), [np.array([0.5, 0.5], np.float32)] * 2, dict(num_classes=3),
     r"argument 'labels' expected float label vectors of width num_classes=3, got 'width 2'"),
    ("soft labels not summing to 1", _u8(2), [np.array([0.5, 0.4], np.float32)] * 2, {},
     r"argument 'labels' expected float label rows that sum to 1 \(within 0.001\), got 'a row summing to 0.9"),
    ("negative soft labels", _u8(2), [np.array([1.5, -0.5], np.float32)] * 2, {},
     r"argument 'labels' expected non-negative float label values"),
    ("NaN soft labels", _u8(2), [np.array([np.nan, 1.0], np.float32)] * 2, {},
     r"argument 'labels' expected finite float label values, got 'NaN or Inf'"),
    ("float labels as ids", _u8(2), [np.array([1.0], np.float32)] * 2, dict(num_classes=2),
     r"argument 'labels' expected float label vectors of width num_classes=2, got 'width 1'"),
    ("identical samples", [np.full((3, 3), 7, np.uint8)] * 6, _ids(0, 1, 0, 1, 0, 1), dict(num_classes=2), None),
    ("float16 extremes", [np.full((3, 3), 65504 * s, np.float16) for s in (1, -1, 1, -1)], _ids(0, 0, 0, 0),
     dict(num_classes=1), None),
]


def _array_call(op, images, labels, kw):
    return OPS[op](np.stack(images), np.stack(labels), **kw)


@pytest.mark.parametrize("op", ["k_mixup", "mixup", "zeta_mixup"])
@pytest.mark.parametrize("name,images,labels,kw,msg", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_cases_array_layer(op, name, images, labels, kw, msg):
    if name == "ragged shapes":  # the array layer takes one array: a ragged list is not one
        with pytest.raises(ValueError, match=f"{op}: argument 'images' expected an array "
                                             r"\(NumPy, CuPy, torch or any array API namespace\), got 'list'"):
            OPS[op](images, np.stack(labels), **kw)
        return
    kw = {**kw, **({"k": 2} if op == "k_mixup" else {})}
    if msg is None:
        res = _array_call(op, images, labels, kw)
        assert np.all(np.isfinite(res.images)) and np.allclose(res.labels.sum(1), 1, atol=1e-6)
        x = np.stack(images).astype(np.float32)
        tol = 1e-6 * np.abs(x).max()  # lam * v + (1 - lam) * v may differ from v by an ulp
        assert np.all(res.images <= x.max(0) + tol) and np.all(res.images >= x.min(0) - tol)  # convex
        return
    with pytest.raises(ValueError, match=f"{op}: " + msg):
        _array_call(op, images, labels, kw)


@pytest.mark.dali
@pytest.mark.parametrize("op", ["k_mixup", "mixup", "zeta_mixup"])
@pytest.mark.parametrize("name,images,labels,kw,msg", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_cases_in_a_pipeline(op, name, images, labels, kw, msg):
    import dali_mixup.fn as mfn

    kw = {**kw, **({"k": 2} if op == "k_mixup" else {})}
    layout = "HWC" if images[0].ndim == 3 else "HW"

    def graph(x, y):
        return getattr(mfn, op)(x, y, **kw)

    if msg is None:
        (out,), _ = run_dali(graph, [(images, labels)], layout=layout)
        res = np.stack(out[0])
        assert np.all(np.isfinite(res)) and np.allclose(np.stack(out[1]).sum(1), 1, atol=1e-6)
        return
    with pytest.raises(RuntimeError, match=f"{op}: " + msg):
        run_dali(graph, [(images, labels)], layout=layout)
    # the failed pipeline is dead, but a fresh one works
    good = ([np.zeros((4, 4, 3), np.uint8)] * 2, _ids(0, 0))
    (out,), _ = run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=1), [good])
    assert len(out[0]) == 2


def test_nan_pixels():
    """k-mixup's cost needs finite values: NaN/Inf raise. mixup and zeta-mixup do not look at
    pixels (that would cost a pass over the batch); NaN stays NaN in the outputs it enters."""
    x = np.ones((4, 3), np.float32)
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"k_mixup: argument 'images' expected finite values \(the k-mixup cost needs them\), got 'NaN or Inf'"), \
            warnings.catch_warnings():
        warnings.simplefilter("error")  # the error, and no NumPy warning before it
        dm.k_mixup(x, np.zeros(4, np.int64), k=2, num_classes=1)
    f = np.zeros((4, 2), np.float32)
    f[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"k_mixup: argument 'features' expected finite values"):
        dm.k_mixup(x, np.zeros(4, np.int64), k=2, num_classes=1, features=f)
    res = dm.mixup(x, np.zeros(4, np.int64), num_classes=1, rng=np.random.default_rng(0))
    bad = (np.arange(4) == 1) | (res.partner == 1)
    assert np.all(np.isnan(res.images[bad, 0])) and np.all(np.isfinite(res.images[~bad]))


@pytest.mark.dali
@pytest.mark.parametrize("op", ["cutmix", "mix"])
def test_ragged_batches_in_a_pipeline_name_the_sample(op):
    """The pair operators with boxes check shapes too (the data cases above cover the others)."""
    name, images, labels, kw, msg = DATA_CASES[0]
    assert name == "ragged shapes"
    with pytest.raises(RuntimeError, match=f"{op}: " + msg):
        run_dali(lambda x, y: getattr(mfn, op)(x, y, **kw), [(images, labels)], layout="HWC")


@pytest.mark.dali
def test_nan_pixels_in_a_pipeline():
    import dali_mixup.fn as mfn

    imgs = [np.ones((2, 2), np.float32) for _ in range(4)]
    imgs[2] = np.full((2, 2), np.nan, np.float32)
    with pytest.raises(RuntimeError, match=r"k_mixup: argument 'images' expected finite values"):
        run_dali(lambda x, y: mfn.k_mixup(x, y, k=2, num_classes=1), [(imgs, _ids(0, 0, 0, 0))], layout="HW")


def test_empty_batch_array_layer():
    for name, op in OPS.items():
        kw = {"layout": "HW"} if name in ("cutmix", "mix") else {}
        res = op(np.zeros((0, 3, 3), np.uint8), np.zeros(0, np.int64), num_classes=4, **kw)
        assert res.images.shape == (0, 3, 3) and res.labels.shape == (0, 4)


def test_wrong_ndim_array_layer():
    with pytest.raises(ValueError, match=r"k_mixup: argument 'images' expected a batch with a leading batch dimension"):
        dm.k_mixup(np.float32(3.0), np.zeros(1, np.int64), num_classes=1)
    with pytest.raises(ValueError, match=r"zeta_mixup: argument 'labels' expected a batch of 3 labels, as many as 'images', got 'a batch of 2'"):
        dm.zeta_mixup(np.zeros((3, 2)), np.zeros(2, np.int64), num_classes=1)
    with pytest.raises(ValueError, match=r"k_mixup: argument 'features' expected a batch of 3 samples"):
        dm.k_mixup(np.zeros((3, 2)), np.zeros(3, np.int64), num_classes=1, features=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"k_mixup: argument 'labels' expected integer class ids of shape \[B\] or \[B, 1\], got 'shape \(3, 2\)'"):
        dm.k_mixup(np.zeros((3, 2)), np.zeros((3, 2), np.int64), num_classes=1)


@pytest.mark.dali
def test_warning_not_error_for_small_gamma_in_a_pipeline():
    import dali_mixup.fn as mfn
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(name="x")
        return mfn.zeta_mixup(x, x, gamma=1.0, num_classes=2)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pipe()
    assert any("Theorem 1" in str(m.message) for m in w)


# ---------------------------------------------------------------- dtype and seed errors in a pipeline

@pytest.mark.dali
@pytest.mark.parametrize("op,kw", [("k_mixup", {"k": 2}), ("mixup", {}), ("zeta_mixup", {}),
                                   ("mix", {})])
def test_uint8_output_of_float_images_is_an_error(op, kw, rng):
    imgs = [rng.normal(size=(4, 4, 3)).astype(np.float32) for _ in range(4)]
    with pytest.raises(RuntimeError, match=f"{op}: argument 'dtype' expected 'uint8' only for uint8 "
                                           r"images, got \"'uint8' for float32 images\""):
        run_dali(lambda x, y: getattr(mfn, op)(x, y, num_classes=2, dtype="uint8", **kw),
                 [(imgs, _ids(*[i % 2 for i in range(4)]))])


@pytest.mark.dali
def test_int64_images_with_features_are_rejected(rng):
    imgs = [np.ones((4, 4, 3), np.int64) for _ in range(4)]

    def graph(x, y):
        return mfn.k_mixup(x, y, k=2, num_classes=2, features=fn.cast(x, dtype=types.FLOAT))

    with pytest.raises(RuntimeError, match=r"k_mixup: argument 'images' expected images of dtype uint8, "
                                           r"float16, float32, float64, got 'dtype int64'"):
        run_dali(graph, [(imgs, _ids(*[i % 2 for i in range(4)]))])


@pytest.mark.dali
def test_seed_errors_name_the_operator():
    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(name="x")
        return mfn.zeta_mixup(x, x, num_classes=2, seed=-1)

    with pytest.raises(ValueError, match=r"zeta_mixup: argument 'seed' expected an integer >= 0, got -1"):
        pipe()


def test_an_output_dtype_the_array_library_lacks_is_named():
    import array_api_strict as xps

    import dali_mixup as dm

    x = xps.asarray(np.zeros((4, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"mixup: argument 'dtype' expected an output dtype this array library "
                                         r"has \(array_api_strict has no float16\), got 'float16'"):
        dm.mixup(x, xps.asarray(np.arange(4) % 2), num_classes=2, dtype="float16")
