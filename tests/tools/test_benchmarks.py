"""Smoke test of the benchmark suite: structure of results.json / results.md, never timings."""
import json

import pytest

pytest.importorskip("nvidia.dali")

from benchmarks import run  # noqa: E402


def test_quick_run_writes_json_and_markdown(tmp_path):
    assert run.main(["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert {"meta", "floor", "kmixup", "zeta", "pipeline", "breakdown", "targets"} <= set(res)
    assert res["meta"]["quick"] is True and res["meta"]["device"] == "cpu"
    assert res["floor"]["bandwidth_GBps"] > 0 and res["floor"]["sgemm_GFLOPs"] > 0
    for row in res["kmixup"]:
        assert set(row["times_s"]) == {"ours", "reference", "mixup1", "copy"}
        assert all(v > 0 for v in row["times_s"].values())
        assert set(row["x_floor"]) == set(row["times_s"])
    for row in res["zeta"]:
        assert set(row["times_s"]) == {"ours", "paper_einsum", "mixup1"}
    variants = [r["variant"] for r in res["pipeline"]["rows"]]
    assert variants == list(run.PIPELINE_VARIANTS)
    assert all(r["batches_per_s"] > 0 for r in res["pipeline"]["rows"])
    assert res["breakdown"]["solver"] and res["breakdown"]["stages"]
    for t in res["targets"]:
        assert set(t) >= {"target", "value", "limit", "met"}
    md = (tmp_path / "results.md").read_text()
    for heading in ("## Targets", "## 1. k-mixup", "## 2. zeta-mixup", "## 3. DALI pipeline",
                    "## 4. Where the time goes"):
        assert heading in md


def test_gpu_without_gpu_fails_and_marks_figures_not_measured(tmp_path, monkeypatch):
    real = run.Backend

    def no_gpu(device):  # as on a machine without a GPU, even where one exists
        if device == "gpu":
            raise RuntimeError("no CUDA device")
        return real(device)

    monkeypatch.setattr(run, "Backend", no_gpu)
    assert run.main(["--device", "gpu", "--out", str(tmp_path)]) == 1  # an error, not a result
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["kmixup"] == run.NOT_MEASURED_GPU
    assert all(t["met"] is None for t in res["targets"])
    assert "not measured (no GPU)" in (tmp_path / "results.md").read_text()


def test_unknown_suite_is_rejected(tmp_path):
    assert run.main(["--suites", "nope", "--out", str(tmp_path)]) == 2


def test_gpu_check_without_a_gpu_exits_non_zero_and_says_why(tmp_path, monkeypatch):
    import sys

    from benchmarks import gpu_check

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "CuPy is not installed" in res["error"] and "dali-mixup[gpu]" in res["error"]
    assert "No GPU check ran" in (tmp_path / "gpu_check.md").read_text()


def test_gpu_check_treats_a_broken_cupy_as_an_error(tmp_path, monkeypatch):
    import sys
    import types

    from benchmarks import gpu_check

    broken = types.ModuleType("cupy")
    broken.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=lambda: (_ for _ in ()).throw(RuntimeError("cudaErrorInsufficientDriver"))))
    monkeypatch.setitem(sys.modules, "cupy", broken)
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    assert "cudaErrorInsufficientDriver" in json.loads((tmp_path / "gpu_check.json").read_text())["error"]
