"""``dali-mixup gpu-check`` on a machine without a GPU, and the CUDA version logic it uses.

Here the real CuPy (CUDA 12 build), DALI and a CPU build of torch are installed, and there is no
driver: the check must refuse with its one-line reason. The version sources (package metadata,
``torch.version.cuda``, the driver) are replaced where a test needs another machine's stack.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dali_mixup.gpu import check, versions
from dali_mixup.gpu.versions import CudaVersions, major_of_distribution, mismatch


def _run_check(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "dali_mixup.tools.cli", "gpu-check", "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=300)


def test_without_a_gpu_the_check_refuses_in_one_line_and_writes_why(tmp_path):
    r = _run_check(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("dali-mixup gpu-check: no usable GPU: torch ")
    assert "is a CPU build" in line and "CuPy sees no CUDA device (CUDARuntimeError" in line
    assert "DALI sees no CUDA device" in line
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["refused"] == line[len("dali-mixup gpu-check: "):]
    assert f"**No GPU check ran:** {res['refused']}" in (tmp_path / "gpu_check.md").read_text()


def test_without_cupy_the_check_names_it_and_the_extras(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError (name 'cupy')
    assert check.main(["--out", str(tmp_path)]) == 1
    refused = json.loads((tmp_path / "gpu_check.json").read_text())["refused"]
    assert refused == ("CuPy is not installed: pip install 'dali-mixup[gpu-cu12]' (CUDA 12) or "
                       "'dali-mixup[gpu-cu13]' (CUDA 13)")


def test_a_cupy_that_does_not_import_is_not_called_missing(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("libcudart.so.13: cannot open shared object file", name="cupy_backends.cuda")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken)
    assert check.main(["--out", str(tmp_path)]) == 1
    refused = json.loads((tmp_path / "gpu_check.json").read_text())["refused"]
    assert refused.startswith("CuPy is installed but does not import (libcudart.so.13")


def test_a_cuda_mismatch_is_named_in_one_line_before_any_device_is_touched(tmp_path, monkeypatch, capsys):
    stack = CudaVersions(torch="13.0", cupy={"cupy-cuda13x": 13}, dali={"nvidia-dali-cuda120": 12}, driver="13.0")
    monkeypatch.setattr(versions, "installed", lambda: stack)
    assert check.main(["--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("dali-mixup gpu-check: CUDA mismatch: torch for CUDA 13.0, cupy-cuda13x for CUDA 13, "
                   "nvidia-dali-cuda120 for CUDA 12; pip uninstall nvidia-dali-cuda120 && "
                   "pip install 'dali-mixup[gpu-cu13]'")


@pytest.mark.parametrize("name,major", [("cupy-cuda12x", 12), ("cupy-cuda13x", 13), ("cupy-cuda117", 11),
                                        ("cupy_cuda12x", 12), ("nvidia-dali-cuda120", 12),
                                        ("nvidia-dali-cuda130", 13), ("nvidia-dali-nightly-cuda130", 13),
                                        ("cupy", None), ("nvidia-dali-tf-plugin-cuda120", None), ("torch", None)])
def test_the_cuda_major_of_a_distribution(name, major):
    assert major_of_distribution(name) == major


@pytest.mark.parametrize("stack,want", [
    (CudaVersions(torch="12.8", cupy={"cupy-cuda12x": 12}, dali={"nvidia-dali-cuda120": 12}, driver="12.9"), None),
    (CudaVersions(torch="13.0", cupy={"cupy-cuda13x": 13}, dali={"nvidia-dali-cuda130": 13}, driver="13.1"), None),
    (CudaVersions(torch=None, cupy={"cupy-cuda12x": 12}, dali={"nvidia-dali-cuda120": 12}), None),
    (CudaVersions(torch="12.8", cupy={"cupy-cuda13x": 13}, dali={"nvidia-dali-cuda120": 12}),
     "CUDA mismatch: torch for CUDA 12.8, cupy-cuda13x for CUDA 13, nvidia-dali-cuda120 for CUDA 12; "
     "pip uninstall cupy-cuda13x && pip install 'dali-mixup[gpu-cu12]'"),
    (CudaVersions(torch=None, cupy={"cupy-cuda13x": 13}, dali={"nvidia-dali-cuda120": 12}),
     "CUDA mismatch: cupy-cuda13x for CUDA 13, nvidia-dali-cuda120 for CUDA 12; "
     "pip uninstall nvidia-dali-cuda120 && pip install 'dali-mixup[gpu-cu13]'"),
    (CudaVersions(torch="13.0", cupy={"cupy-cuda13x": 13}, dali={"nvidia-dali-cuda120": 12, "nvidia-dali-cuda130": 13}),
     "two DALI builds are installed (nvidia-dali-cuda120, nvidia-dali-cuda130); they overwrite each other: "
     "pip uninstall nvidia-dali-cuda120 nvidia-dali-cuda130, then install one extra: "
     "'dali-mixup[gpu-cu12]' (CUDA 12) or 'dali-mixup[gpu-cu13]' (CUDA 13)"),
    (CudaVersions(torch="13.0", cupy={"cupy-cuda13x": 13}, dali={"nvidia-dali-cuda130": 13}, driver="12.4"),
     "the NVIDIA driver supports CUDA up to 12.4, but the GPU libraries are built for CUDA 13: update the "
     "driver, or install the CUDA 12 builds"),
])
def test_mismatches_and_what_to_install(stack, want):
    assert mismatch(stack) == want


def test_installed_reads_the_distributions_torch_and_the_driver(monkeypatch):
    monkeypatch.setattr(versions, "_distributions",
                        lambda: ["numpy", "cupy-cuda13x", "nvidia-dali-cuda130", "nvidia-nvjpeg-cu13", "torch"])
    monkeypatch.setattr(versions, "_torch_cuda", lambda: "13.0")
    monkeypatch.setattr(versions, "_driver", lambda: "13.0")
    v = versions.installed()
    assert v == CudaVersions(torch="13.0", cupy={"cupy-cuda13x": 13}, dali={"nvidia-dali-cuda130": 13}, driver="13.0")
    assert mismatch(v) is None
    assert versions.describe(v) == ("torch CUDA 13.0; CuPy cupy-cuda13x (CUDA 13); DALI nvidia-dali-cuda130 "
                                    "(CUDA 13); driver CUDA 13.0")


def test_this_environment_is_the_cuda_12_set_without_a_driver():
    v = versions.installed()
    assert v.cupy == {"cupy-cuda12x": 12} and v.dali == {"nvidia-dali-cuda120": 12}
    assert v.driver is None and v.torch is None and mismatch(v) is None


def test_the_report_lists_every_failed_check_with_its_reason(tmp_path):
    res = {"date": "d", "stack": {"device": "H200", "torch": "2.11", "cupy": "14.2", "dali": "2.4.0",
                                  "versions": "v"},
           "checks": [{"check": "mixup: GPU == CPU", "ok": True, "detail": "", "seconds": 1.0},
                      {"check": "guard", "ok": False, "error": "AssertionError: a | b\nc", "seconds": 2.0}],
           "bench": [{"variant": "fn.mixup", "size": "32x32", "batch": 256, "ms_per_batch": 1.5,
                      "torch_peak_mib": 10.0},
                     {"variant": "fn.k_mixup", "size": "32x32", "batch": 256, "error": "RuntimeError: x"}],
           "training": [{"mixing": "none", "images_per_s": 9000.0}], "elapsed_s": 12}
    check.write(tmp_path, res)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| mixup: GPU == CPU | ok | 1.0 |" in md
    assert "| guard | FAILED: AssertionError: a / b c | 2.0 |" in md
    assert "| 32x32 | 256 | fn.mixup | 1.5 | 10.0 |" in md and "FAILED: RuntimeError: x" in md
    assert "| none | 9000.0 |" in md
    assert json.loads((tmp_path / "gpu_check.json").read_text())["checks"][1]["ok"] is False


def test_a_failing_check_is_recorded_never_raised():
    row = check._row("boom", lambda: 1 / 0)
    assert row["ok"] is False and row["error"].startswith("ZeroDivisionError")


def test_matching_cost_is_the_total_squared_distance_to_the_partners():
    import numpy as np

    x = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], np.float32)
    assert check.matching_cost(x, np.array([1, 0, 2])) == 50.0


# The check's own code, run without a GPU: its CPU-vs-CPU form and its GPU graphs.


@pytest.mark.dali
@pytest.mark.parametrize("name", list(check.OPERATORS))
def test_the_parity_check_passes_cpu_against_cpu(name):
    op, kw = check.OPERATORS[name]
    check.parity(op, kw, batches=2, devices=("cpu", "cpu"))


@pytest.mark.dali
def test_the_parity_check_catches_a_different_plan(monkeypatch):
    """Another seed on one side: the check fails (it is not vacuous)."""
    real = check.parity_pipeline
    calls = []

    def second_differs(op, kw, device, images, labels, seed=11):
        calls.append(device)
        return real(op, kw, device, images, labels, seed=seed + (len(calls) == 2))

    monkeypatch.setattr(check, "parity_pipeline", second_differs)
    for op, kw in (("mixup", {}), ("k_mixup", dict(k=8))):
        calls.clear()
        with pytest.raises(AssertionError):
            check.parity(op, kw, batches=2, devices=("cpu", "cpu"))


@pytest.mark.dali
@pytest.mark.parametrize("mixing", ["mixup", "k_mixup", "zeta_mixup", "cutmix", "mix"])
def test_the_ready_made_check_passes_cpu_against_cpu(mixing):
    assert check.ready_made(mixing, batches=2, devices=("cpu", "cpu")) == "2 batches"


@pytest.mark.dali
@pytest.mark.parametrize("variant", ["none", "fn.mixup", "fn.k_mixup", "fn.zeta_mixup", "fn.cutmix",
                                     "DALI-native mixup", "in-loop mixup (torch)"])
def test_every_benchmark_pipeline_builds_its_gpu_graph(variant):
    from dali_mixup.gpu import bench

    assert set(bench.VARIANTS) >= {variant}
    bench._bench_pipeline(variant, 32, 8)._build_graph()


@pytest.mark.dali
@pytest.mark.parametrize("variant", ["fn.k_mixup", "DALI-native mixup", "in-loop mixup (torch)"])
def test_a_benchmark_row_runs_on_the_cpu(variant):
    from dali_mixup.gpu import bench

    row = bench.time_variant(variant, 8, 16, batches=2, device="cpu")
    assert row["variant"] == variant and row["size"] == "8x8" and row["batch"] == 16
    assert row["ms_per_batch"] > 0


@pytest.mark.dali
def test_the_training_row_runs_on_the_cpu():
    from dali_mixup.gpu import bench

    rows = bench.training_throughput(quick=True, device="cpu", n=512, batch_size=32)
    assert [r["mixing"] for r in rows] == ["none", "k_mixup"] and all(r["images_per_s"] > 0 for r in rows)
