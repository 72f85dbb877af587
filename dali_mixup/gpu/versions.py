"""Which CUDA each GPU library of the process was built for, and whether they agree.

torch, CuPy and DALI each ship one build per CUDA major (``torch`` ``+cu128`` / ``+cu130``,
``cupy-cuda12x`` / ``cupy-cuda13x``, ``nvidia-dali-cuda120`` / ``nvidia-dali-cuda130``). One
process should hold builds of one major, and a driver that supports it. The extras say which to
install: ``dali-mixup[gpu-cu12]`` or ``dali-mixup[gpu-cu13]``, picked from
``python -c "import torch; print(torch.version.cuda)"``.

Everything here reads package metadata and version strings only (no device), except the
driver's version, which needs a driver and is None without one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata

#: the extra that installs DALI and CuPy for each CUDA major
EXTRAS = {12: "gpu-cu12", 13: "gpu-cu13"}


@dataclass(frozen=True)
class CudaVersions:
    """CUDA versions of the GPU stack. ``torch``: ``torch.version.cuda`` (None for a CPU build
    or no torch); ``cupy`` / ``dali``: the distributions installed (name -> CUDA major);
    ``driver``: the newest CUDA the driver supports (``"13.0"``), None without a driver."""

    torch: str | None = None
    cupy: dict = field(default_factory=dict)
    dali: dict = field(default_factory=dict)
    driver: str | None = None

    def majors(self) -> dict:
        """Library -> CUDA major, for every GPU library present."""
        out = {}
        if self.torch:
            out["torch"] = int(self.torch.split(".")[0])
        out.update({name: major for name, major in self.cupy.items()})
        out.update({name: major for name, major in self.dali.items()})
        return out


def major_of_distribution(name: str) -> int | None:
    """The CUDA major a CuPy or DALI distribution is built for (None when the name does not say):
    ``cupy-cuda12x`` -> 12, ``cupy-cuda117`` -> 11, ``nvidia-dali-cuda130`` -> 13."""
    name = name.lower().replace("_", "-")
    m = re.fullmatch(r"cupy-cuda(\d\d)(?:x|\d)", name) or re.fullmatch(
        r"nvidia-dali(?:-nightly|-weekly)?-cuda(\d\d)\d", name)
    return int(m.group(1)) if m else None


def _distributions() -> list[str]:
    return sorted({(d.metadata["Name"] or "") for d in metadata.distributions()})


def _torch_cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda


def _driver() -> str | None:
    try:
        import cupy

        v = int(cupy.cuda.runtime.driverGetVersion())
    except Exception:  # noqa: BLE001 - no CuPy, no driver: nothing to report
        return None
    return f"{v // 1000}.{(v % 1000) // 10}" if v else None


def installed() -> CudaVersions:
    """The CUDA versions of this environment's torch, CuPy and DALI, and of the driver."""
    cupy, dali = {}, {}
    for name in _distributions():
        major = major_of_distribution(name)
        if major is None:
            continue
        (cupy if name.lower().startswith("cupy") else dali)[name] = major
    return CudaVersions(torch=_torch_cuda(), cupy=cupy, dali=dali, driver=_driver())


def mismatch(v: CudaVersions) -> str | None:
    """One line naming what disagrees and what to install, or None when the stack agrees.

    torch's CUDA decides (it is the hardest to change): DALI and CuPy should match its major.
    Two builds of DALI or of CuPy in one environment overwrite each other's files."""
    for lib, found in (("DALI", v.dali), ("CuPy", v.cupy)):
        if len(found) > 1:
            names = ", ".join(sorted(found))
            return (f"two {lib} builds are installed ({names}); they overwrite each other: pip uninstall "
                    f"{' '.join(sorted(found))}, then install one extra: "
                    + " or ".join(f"'dali-mixup[{e}]' (CUDA {m})" for m, e in EXTRAS.items()))
    majors = v.majors()
    if len(set(majors.values())) > 1:
        want = majors.get("torch") or max(majors.values())
        parts = [f"torch for CUDA {v.torch}"] if v.torch else []
        parts += [f"{n} for CUDA {m}" for n, m in majors.items() if n != "torch"]
        wrong = [n for n, m in majors.items() if n != "torch" and m != want]
        extra = EXTRAS.get(want)
        fix = (f"pip uninstall {' '.join(wrong)} && pip install 'dali-mixup[{extra}]'" if extra
               else f"install DALI and CuPy builds for CUDA {want}")
        return f"CUDA mismatch: {', '.join(parts)}; {fix}"
    if v.driver and majors:
        need = max(majors.values())
        if int(v.driver.split(".")[0]) < need:
            return (f"the NVIDIA driver supports CUDA up to {v.driver}, but the GPU libraries are built for "
                    f"CUDA {need}: update the driver, or install the CUDA {v.driver.split('.')[0]} builds")
    return None


def describe(v: CudaVersions) -> str:
    """One line: each library's CUDA version."""
    dali = ", ".join(f"{n} (CUDA {m})" for n, m in v.dali.items()) or "none"
    cupy = ", ".join(f"{n} (CUDA {m})" for n, m in v.cupy.items()) or "none"
    return (f"torch CUDA {v.torch or 'none (CPU build or not installed)'}; CuPy {cupy}; DALI {dali}; "
            f"driver CUDA {v.driver or 'none'}")
