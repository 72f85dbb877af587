"""What the python-operator callables of the DALI layer share: the base class and host helpers.

DALI calls each callable with one list of per-sample arrays per input (NumPy on CPU, CuPy on
GPU) and takes back one list per output. Every class names its inputs and outputs in
``inputs`` and ``outputs`` (tuples of names); the graph builders pass inputs in that order and
take ``num_outputs = len(outputs)``, so nothing is counted by hand.

* :mod:`._host`: CPU images, one operator does everything with the array layer's own code;
* :mod:`._device`: GPU images, the plan on the host and the pixels on the device, under a
  guard that never lets an exception out of a GPU operator.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..core import _checks
from ..core._backend import stack_host
from ..core.labels import soft_labels
from ..core.pairs import check_spatial, spatial_axes


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


def names_of(prefix: str, n: int) -> tuple:
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
