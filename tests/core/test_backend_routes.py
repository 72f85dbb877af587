"""Every array-layer route gives NumPy's result, for every keyword of every operator.

An operator reaches its result by one of three routes: NumPy (and the torch CPU tensors that
are mixed on NumPy views of themselves), torch expressions (tensors that need gradients) and
the array-API path (here ``array_api_strict``). Each keyword an operator accepts is set to a
non-default value, one at a time and in a few combinations, and every field of the result
(images, labels, partner / index, lam / weights, cut, boxes, extra, masks) is compared with
NumPy's on the same replayed ``draws``. The keyword lists are checked against the operators'
signatures, so a keyword added later without a case here fails :func:`test_every_keyword_has_a_case`.
"""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

import array_api_strict as xps

import dali_mixup as dm

OPS = ("k_mixup", "mixup", "cutmix", "mix", "zeta_mixup")
DATA = ("images", "labels")  # positional data arguments, not keywords
B, C = 12, 5

#: The keywords each operator is tested with (besides ``num_classes`` and ``draws``, which
#: every case passes).
COVERED = {
    "k_mixup": {"k", "alpha", "num_classes", "cost", "pairing", "lam_mode", "label_smoothing",
                "features", "dtype", "prob", "extra", "masks", "rng", "draws"},
    "mixup": {"alpha", "num_classes", "lam_mode", "label_smoothing", "dtype", "prob", "extra",
              "masks", "rng", "draws"},
    "cutmix": {"alpha", "prob", "k", "cost", "pairing", "lam_mode", "correct_lam", "num_classes",
               "label_smoothing", "layout", "features", "dtype", "extra", "masks", "rng", "draws"},
    "mix": {"mixup_alpha", "cutmix_alpha", "prob", "switch_prob", "k", "cost", "pairing",
            "lam_mode", "correct_lam", "num_classes", "label_smoothing", "layout", "features",
            "dtype", "extra", "masks", "rng", "draws"},
    "zeta_mixup": {"gamma", "T", "num_classes", "label_smoothing", "dtype", "method", "prob",
                   "extra", "masks", "rng", "draws"},
}

# Array-valued keywords are named here and built by _inputs; "rng" means: no draws, the same
# seeded Generator on every route.
_PAIR_SINGLES = [("alpha", 0.4), ("lam_mode", "block"), ("lam_mode", "sample"),
                 ("label_smoothing", 0.1), ("dtype", "float16"), ("dtype", "float64"),
                 ("dtype", "uint8"), ("prob", 0.5), ("extra", "E"), ("masks", "M"), ("rng", "R")]
_OT = [("k", 3), ("cost", "euclidean"), ("cost", "cosine"), ("pairing", "permutation"),
       ("features", "F")]
_CUT = [("correct_lam", False), ("layout", "HWC")]
SINGLES = {
    "mixup": _PAIR_SINGLES,
    "k_mixup": _PAIR_SINGLES + _OT,
    "cutmix": _PAIR_SINGLES + _OT + _CUT,
    "mix": [kv for kv in _PAIR_SINGLES if kv[0] != "alpha"] + _OT + _CUT
    + [("mixup_alpha", 0.3), ("mixup_alpha", 0.0), ("cutmix_alpha", 2.0), ("cutmix_alpha", 0.0),
       ("switch_prob", 0.8)],
    "zeta_mixup": [("gamma", 1.9), ("gamma", (2.0, 3.5)), ("T", 4), ("T", 1),
                   ("label_smoothing", 0.1), ("dtype", "float16"), ("dtype", "float64"),
                   ("dtype", "uint8"), ("method", "gather"), ("method", "matmul"), ("prob", 0.5),
                   ("extra", "E"), ("masks", "M"), ("rng", "R")],
}
_PAIR_COMBOS = [dict(lam_mode="sample", prob=0.6, extra="E", masks="M", label_smoothing=0.2),
                dict(lam_mode="block", dtype="uint8", prob=0.8, extra="E")]
COMBOS = {
    "mixup": _PAIR_COMBOS + [dict(alpha=2.0, lam_mode="sample", dtype="float64", masks="M")],
    "k_mixup": _PAIR_COMBOS + [dict(k=4, cost="euclidean", pairing="permutation", lam_mode="block",
                                    features="F", extra="E", masks="M", dtype="float64", alpha=0.7)],
    "cutmix": _PAIR_COMBOS + [dict(k=3, layout="HWC", correct_lam=False, lam_mode="sample",
                                   extra="E", masks="M", features="F", prob=0.7)],
    "mix": _PAIR_COMBOS + [dict(mixup_alpha=0.5, cutmix_alpha=1.5, switch_prob=0.4, k=2,
                                lam_mode="sample", layout="HWC", masks="M", extra="E",
                                correct_lam=False, dtype="float64")],
    "zeta_mixup": [dict(gamma=(1.8, 4.0), T=5, method="gather", extra="E", masks="M",
                        label_smoothing=0.2),
                   dict(T=3, dtype="uint8", method="matmul", prob=0.9, extra="E"),
                   dict(gamma=2.5, dtype="float64", masks="M", label_smoothing=0.05)],
}


def _keywords(op) -> set[str]:
    params = inspect.signature(getattr(dm, op)).parameters
    assert tuple(params)[:2] == DATA
    return set(params) - set(DATA)


@pytest.mark.parametrize("op", OPS)
def test_every_keyword_has_a_case(op):
    """The covered keywords are exactly the signature's; each has a non-default single case."""
    params = inspect.signature(getattr(dm, op)).parameters
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in _keywords(op))
    assert COVERED[op] == _keywords(op), "keywords without a route case: " \
        f"{sorted(_keywords(op) - COVERED[op])}; cases for removed keywords: " \
        f"{sorted(COVERED[op] - _keywords(op))}"
    singles = {name for name, _ in SINGLES[op]}
    assert singles | {"num_classes", "draws"} == COVERED[op]
    for name, value in SINGLES[op]:
        if value not in ("E", "M", "F", "R"):
            assert value != params[name].default, (op, name)
    for combo in COMBOS[op]:
        assert set(combo) <= COVERED[op]


# ------------------------------------------------------------------------------ inputs


def _inputs(op, kw, seed):
    """NumPy inputs and draws for one case: images, labels, the keyword arrays, draws."""
    rng = np.random.default_rng(seed)
    layout = kw.get("layout", "CHW")
    shape = (3, 7, 6) if layout == "CHW" else (7, 6, 3)
    mshape = (1, 7, 6) if layout == "CHW" else (7, 6, 1)
    if kw.get("dtype") == "uint8":
        images = rng.integers(0, 256, size=(B,) + shape).astype(np.uint8)
        labels = rng.dirichlet(np.ones(C), size=B).astype(np.float32)  # a float to need gradients
    else:
        images = rng.normal(size=(B,) + shape).astype(np.float32)
        labels = rng.integers(0, C, size=B)
    arrays = {"E": rng.normal(size=(B,) + shape).astype(np.float32),
              "M": rng.integers(0, 4, size=(B,) + mshape).astype(np.uint8),
              "F": rng.normal(size=(B, 10)).astype(np.float32)}
    return images, labels, arrays, _draws(op, kw, rng)


def _draws(op, kw, rng):
    """Draws as the operators' own: lam from the Beta of the case's alpha. The first coin is
    set so that ``prob`` (0.5) and ``switch_prob`` (0.8 against 0.5) change the result."""
    if op == "zeta_mixup":
        coin = rng.random(B)
        coin[0] = 0.7
        return dm.ZetaDraws(u=rng.random((B, B)), g=rng.random(B), coin=coin)
    u = rng.random((B, 2))
    if op in ("k_mixup", "mixup"):
        a = kw.get("alpha", 1.0)
        coin = rng.random(B)
        coin[0] = 0.7
        return dm.KMixupDraws(u=u, lam=rng.beta(a, a, B), coin=coin)
    ma = 0.0 if op == "cutmix" else kw.get("mixup_alpha", 1.0)
    ca = kw.get("alpha", 1.0) if op == "cutmix" else kw.get("cutmix_alpha", 1.0)
    coin = rng.random((B, 2))
    coin[0] = (0.7, 0.65)
    return dm.MixDraws(u=u, lam=rng.beta(ma or 1.0, ma or 1.0, B),
                       lam_cut=rng.beta(ca or 1.0, ca or 1.0, B), box=rng.random((B, 2)), coin=coin)


def _call(op, kw, images, labels, arrays, draws, conv, seed):
    """Run ``op`` with the case's keywords on ``conv``-converted inputs."""
    args = {}
    for name, value in kw.items():
        if name in ("extra", "masks"):
            args[name] = [conv(arrays[value])]
        elif name == "features":
            args[name] = conv(arrays[value])
        elif name != "rng":
            args[name] = value
    if "rng" in kw:
        args["rng"] = np.random.default_rng(seed)
    else:
        args["draws"] = draws
    if not np.issubdtype(labels.dtype, np.floating):
        args["num_classes"] = C
    return getattr(dm, op)(conv(images), conv(labels), **args)


def _torch(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a).copy())


def _torch_grad(a):
    t = _torch(a)
    return t.requires_grad_() if t.is_floating_point() else t


ROUTES = {
    "torch_cpu": (_torch, "torch"),
    "torch_grad": (_torch_grad, "torch"),
    "array_api_strict": (lambda a: xps.asarray(np.ascontiguousarray(a)), "array_api_strict"),
}


def _np(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.from_dlpack(a)


def _assert_same(ref, got, route, where):
    """Every field of ``got`` equals NumPy's ``ref``: bitwise on the torch CPU route (NumPy views);
    elsewhere integers and booleans exactly, floats to their dtype's rounding, uint8 images
    within 1 (a sum rounded in another order)."""
    _, module = ROUTES[route]
    for f in dataclasses.fields(ref):
        a, b = getattr(ref, f.name), getattr(got, f.name)
        if isinstance(a, tuple):
            assert isinstance(b, tuple) and len(a) == len(b), (where, f.name)
            pairs = [(f"{f.name}[{j}]", x, y) for j, (x, y) in enumerate(zip(a, b))]
        else:
            pairs = [(f.name, a, b)]
        for name, x, y in pairs:
            if not isinstance(x, np.ndarray):
                assert x == pytest.approx(y), (where, name)
                continue
            assert type(y).__module__.split(".")[0] == module, (where, name, type(y))
            y = _np(y)
            assert y.dtype == x.dtype and y.shape == x.shape, (where, name, y.dtype, x.dtype)
            if route == "torch_cpu":  # mixed on NumPy views of the tensors: bitwise NumPy's
                np.testing.assert_array_equal(y, x, err_msg=f"{where}: {name}")
            elif x.dtype == np.uint8 and name == "images":
                assert np.max(np.abs(y.astype(int) - x.astype(int))) <= 1, (where, name)
            elif np.issubdtype(x.dtype, np.floating):
                tol = 2e-3 if x.dtype == np.float16 else 2e-5
                np.testing.assert_allclose(y, x, rtol=tol, atol=tol, err_msg=f"{where}: {name}")
            else:
                np.testing.assert_array_equal(y, x, err_msg=f"{where}: {name}")


def _cases():
    for op in OPS:
        for name, value in SINGLES[op]:
            for route in ROUTES:
                # the array API standard has no float16: array_api_strict cannot hold the output
                if not (route == "array_api_strict" and value == "float16"):
                    yield pytest.param(op, {name: value}, route, id=f"{op}-{name}={value}-{route}")
        for j, combo in enumerate(COMBOS[op]):
            for route in ROUTES:
                assert combo.get("dtype") != "float16"
                yield pytest.param(op, combo, route, id=f"{op}-combo{j}-{route}")


@pytest.mark.parametrize("op,kw,route", list(_cases()))
def test_route_gives_numpys_result(op, kw, route):
    seed = 17
    images, labels, arrays, draws = _inputs(op, kw, seed)
    ref = _call(op, kw, images, labels, arrays, draws, lambda a: a, seed)
    conv, _ = ROUTES[route]
    got = _call(op, kw, images, labels, arrays, draws, conv, seed)
    _assert_same(ref, got, route, f"{op}({kw}) on {route}")


@pytest.mark.parametrize("op", OPS)
def test_grad_route_needs_gradients_and_keeps_them(op):
    """The torch_grad route really is the torch-expression route: gradients flow back."""
    kw = {"extra": "E"}
    images, labels, arrays, draws = _inputs(op, kw, 3)
    x = _torch_grad(images)
    e = _torch_grad(arrays["E"])
    args = dict(num_classes=C, draws=draws, extra=[e])
    if op in ("cutmix", "mix"):
        args["layout"] = "CHW"
    res = getattr(dm, op)(x, _torch(labels), **args)
    (res.images.sum() + res.extra[0].sum()).backward()
    # every output pixel is a convex combination of input pixels: the gradients sum to B*D
    assert float(x.grad.sum()) == pytest.approx(images.size, rel=1e-4)
    assert float(e.grad.sum()) == pytest.approx(images.size, rel=1e-4)
