"""The only code that reads DALI internals (or imports CuPy), guarded by a version check.

DALI has no public API for three things the DALI layer uses; each is read here and nowhere
else, and ``tests/dali/test_compat.py`` fails when a DALI release changes them:

* the dtype an operator was asked for (``node.source._op._init_args["dtype"]``), to skip a
  cast when a python operator's float32 output takes over the layout of float32 images;
* the schema name of the operator that made a node (``node.source._op.schema_name``), to say
  at graph-build time that reader labels need ``num_classes``;
* the current pipeline's ``max_batch_size`` (zeta-mixup draws one uniform per possible
  partner).
"""
from __future__ import annotations

import warnings

#: DALI releases whose internals this module was checked against (major, minor).
CHECKED = ((2, 4),)

_state = {"warned": False}


def dali():
    """``(fn, types, DataNode, Pipeline)`` of DALI, with a clear message when it is missing."""
    try:
        import nvidia.dali
        from nvidia.dali import fn, types
        from nvidia.dali.data_node import DataNode
        from nvidia.dali.pipeline import Pipeline
    except ImportError as e:  # pragma: no cover - exercised only without DALI
        raise ImportError("the dali_mixup DALI operators need NVIDIA DALI: "
                          "pip install 'dali-mixup[dali]'") from e
    version = tuple(int(p) for p in nvidia.dali.__version__.split(".")[:2] if p.isdigit())
    if version not in CHECKED and not _state["warned"]:
        _state["warned"] = True
        warnings.warn(f"dali_mixup was checked against DALI {', '.join('.'.join(map(str, v)) for v in CHECKED)}"
                      f"; DALI {nvidia.dali.__version__} may differ in the internals it reads "
                      "(dali_mixup/dali/_compat.py)", stacklevel=3)
    return fn, types, DataNode, Pipeline


def require_cupy(op: str) -> None:
    """GPU images need CuPy (DALI hands GPU python operators CuPy arrays); say how to get it.

    Only the import is checked here: building a GPU graph touches no device, so a machine
    without a GPU builds it, and DALI refuses to run it there (no usable GPU)."""
    try:
        import cupy  # noqa: F401
    except ImportError as e:
        if (e.name or "").split(".")[0] != "cupy":
            raise ImportError(f"{op}: CuPy is installed but does not import ({e}); reinstall the "
                              "CuPy build for your CUDA: pip install 'dali-mixup[gpu-cu12]' "
                              "(CUDA 12) or 'dali-mixup[gpu-cu13]' (CUDA 13)") from e
        raise ImportError(f"{op}: images on the GPU need CuPy for the GPU python operators: "
                          "pip install 'dali-mixup[gpu-cu12]' (CUDA 12) or "
                          "'dali-mixup[gpu-cu13]' (CUDA 13)") from e


def _source_op(node):
    return getattr(getattr(node, "source", None), "_op", None)


def declared_dtype(node):
    """The output dtype the node's operator was asked for, when the graph says (else None)."""
    op = _source_op(node)
    return (getattr(op, "_init_args", None) or {}).get("dtype") or getattr(op, "_dtype", None)


def source_schema(node) -> str:
    """Schema name of the operator that produced ``node`` (e.g. ``"readers__File"``), or ""."""
    return getattr(_source_op(node), "schema_name", None) or ""


def max_batch_size() -> int:
    """``max_batch_size`` of the pipeline whose graph is being defined."""
    _, _, _, Pipeline = dali()
    return Pipeline.current().max_batch_size
