"""The benchmark suite: what its tables hold, its floors, its failure modes; never timings."""
import json

import pytest

from benchmarks import loop, report, run

TARGETS = ("fn.mixup adds <= 0.8x what in-loop timm-style mixup adds",
           "fn.k_mixup adds <= 1.2x what fn.mixup adds",
           "fn.mixup adds <= 1.2x the python-operator floor")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``--quick`` run of the default suites (arrays, iterator, training)."""
    out = tmp_path_factory.mktemp("bench")
    assert run.main(["--quick", "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_quick_run_has_every_table_with_its_floors(quick):
    res, md = quick
    assert res["meta"]["quick"] is True and res["meta"]["device"] == "cpu"
    assert res["meta"]["suites"] == list(run.COMPARISON_SUITES)
    for key in ("floor", "floor_end"):
        assert res[key]["bandwidth_GBps"] > 0
    # 1. array level: every peer beside the array layer and the copy, at both batch shapes
    assert len(res["arrays"]) == 2
    for c in res["arrays"]:
        names = [r["name"] for r in c["rows"]]
        assert {"timm", "torchvision", "authors_kmixup", "dm.mixup", "dm.k_mixup", "dm.zeta_mixup",
                "copy"} <= set(names)
        assert c["blend_memory_floor_s"] > 0 and all(r["time_s"] > 0 for r in c["rows"])
    # 2. through the iterator: both roles, in-pipeline variants and floors, in-loop peers
    assert [c["role"] for c in res["iterator"]] == ["small", "large"]
    for c in res["iterator"]:
        variants = [r["variant"] for r in c["rows"]]
        assert variants[:len(loop.IN_PIPELINE)] == list(loop.IN_PIPELINE)
        loop_rows = [r for r in c["rows"] if r["where"] == "loop"]
        assert any("timm-style (re-implementation of timm.data.Mixup batch mode)" in r["variant"]
                   for r in loop_rows)
        assert any("authors' k-mixup procedure, k=16 (reconstruction)" in r["variant"] for r in loop_rows)
        assert set(c["floors"]) >= {"blend_memory_floor_s", "python_operator_floor_added_s",
                                    "dali_per_operator_added_s", "bandwidth_GBps"}
        for r in c["rows"]:
            assert r["time_per_batch_s"] > 0 and r["n_blocks"] >= 2
            assert {"added_s", "added_over_python_floor", "added_over_blend_memory_floor"} <= set(r)
    # 3. training: both models, every variant
    assert [c["model"] for c in res["training"]] == ["small_cnn", "resnet18"]
    for c in res["training"]:
        assert [r["variant"] for r in c["rows"]][:len(loop.E2E_PIPELINE)] == list(loop.E2E_PIPELINE)
        assert all(r["images_per_s"] > 0 for r in c["rows"])
    # targets: each of the three, measured, with what the floors say
    names = [t["target"] for t in res["targets"]]
    for t in TARGETS:
        hit = [x for x in res["targets"] if x["target"].endswith(t)]
        assert len(hit) == 1 and hit[0]["note"], (t, names)  # its value may be None: noise, quick run
    for heading in ("## Floors", "## Targets", "## Peers", "## 1. Array level", "## 2. Per batch through "
                    "DALIGenericIterator", "## 3. Training throughput"):
        assert heading in md
    assert report.NOT_MEASURED_ON_GPU in md  # the GPU columns of a CPU run
    assert "python-operator floor" in md and "blend memory floor" in md


def test_the_python_operator_floor_returns_its_inputs_bitwise(tmp_path):
    import numpy as np

    root = loop.make_image_files(tmp_path / "img", 16, size=8)
    outs = {}
    for v in (loop.NO_MIXING, loop.PY_FLOOR):
        p = loop.build_pipeline(str(root), v, device="cpu", batch=4, size=8, threads=1)
        outs[v] = [p.run() for _ in range(2)]
    for (a_img, a_lab), (b_img, b_lab) in zip(outs[loop.NO_MIXING], outs[loop.PY_FLOOR]):
        assert np.array_equal(a_img.as_array(), b_img.as_array())
        assert np.array_equal(a_lab.as_array(), b_lab.as_array())
        assert b_img.layout() == "CHW"


def test_array_suites_still_run(tmp_path):
    assert run.main(["--quick", "--suites", "kmixup,zeta,breakdown", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    for row in res["kmixup"]:
        assert set(row["times_s"]) == {"ours", "reference", "mixup1", "copy"}
    for row in res["zeta"]:
        assert set(row["times_s"]) >= {"ours", "mixup1"}
    assert res["breakdown"]["solver"] and res["breakdown"]["stages"]
    assert "## The array layer in depth" in (tmp_path / "results.md").read_text()


def test_gpu_without_gpu_fails_and_marks_figures_not_measured(tmp_path, monkeypatch, capsys):
    real = run.Backend

    def no_gpu(device):  # as on a machine without a GPU, even where one exists
        if device == "gpu":
            raise RuntimeError("no CUDA device")
        return real(device)

    monkeypatch.setattr(run, "Backend", no_gpu)
    assert run.main(["--device", "gpu", "--out", str(tmp_path)]) == 1  # an error, not a result
    assert "--device gpu cannot run here" in capsys.readouterr().err
    res = json.loads((tmp_path / "results.json").read_text())
    for s in run.ALL_SUITES:
        assert res[s] == run.NOT_MEASURED_GPU
    assert all(t["met"] is None for t in res["targets"])
    assert "not measured (no GPU)" in (tmp_path / "results.md").read_text()


def test_gpu_on_this_machine_is_an_error_unless_torch_and_cupy_see_one(tmp_path):
    try:
        run.Backend("gpu")
        run.gpu_for_torch("gpu")
        gpu = True
    except Exception:
        gpu = False
    # without a GPU: exit 1; with one: the quick array suite runs on it
    code = run.main(["--device", "gpu", "--quick", "--suites", "arrays", "--out", str(tmp_path)])
    assert code == (0 if gpu else 1)


def test_unknown_suite_is_rejected(tmp_path, capsys):
    assert run.main(["--suites", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown suite" in capsys.readouterr().err


def test_missed_targets_say_what_the_floors_account_for():
    def cfg(role, size, b, rows, py, mem):
        return {"role": role, "image_size": size, "B": b, "floors": {
            "python_operator_floor_added_s": py, "blend_memory_floor_s": mem,
            "dali_per_operator_added_s": 0.0, "bandwidth_GBps": 10.0},
            "rows": [{"variant": v, "added_s": a, "time_per_batch_s": 0.01 + a,
                      "over_no_mixing": (0.01 + a) / 0.01} for v, a in rows.items()]}
    res = {"iterator": [
        cfg("small", 32, 256, {"no mixing": 0.0, "fn.mixup": 0.006, "fn.k_mixup(k=16)": 0.007,
                               loop.NATIVE: 0.004}, py=0.004, mem=0.0002),
        cfg("large", 224, 64, {"no mixing": 0.0, "fn.mixup": 0.010, "fn.k_mixup(k=16)": 0.011,
                               "in loop: timm-style (re-implementation of timm.data.Mixup batch mode)": 0.020},
            py=0.003, mem=0.004)]}
    res["floor"] = {"bandwidth_GBps": 10.0, "sgemm_GFLOPs": 100.0}
    t = {x["target"]: x for x in report.comparison_targets(res)}
    a = t["224x224 B=64: " + TARGETS[0]]
    assert a["value"] == pytest.approx(0.5) and a["met"] is True
    assert "the floors (7 ms) fit in the limit (16 ms)" in a["note"]
    b = t["224x224 B=64: " + TARGETS[1]]
    assert b["value"] == pytest.approx(1.1) and b["met"] is True
    # one more read of the [64, 3, 224, 224] batch at 10 GB/s: 3.85 ms > 0.2 x 10 ms
    assert "is 3.85 ms" in b["note"] and "the matching floor alone exceeds it" in b["note"]
    c = t["32x32 B=256: " + TARGETS[2]]
    assert c["value"] == pytest.approx(1.5) and c["met"] is False
    assert "python-operator floor 4 ms" in c["note"] and "the floors (4.2 ms) fit in the limit (4.8 ms)" in c["note"]
    assert "own work beyond both: 1.8 ms" in c["note"]


def test_the_peers_table_says_when_kornia_is_missing():
    def res(labels):
        return {"arrays": [{"rows": [{"label": lab, "source": "library"} for lab in labels]}]}

    missing = "\n".join(report.sources_markdown(res(["timm-style"])))
    assert "kornia RandomMixUpV2 / RandomCutMixV2 | not installed" in missing and ".[bench]" in missing
    present = "\n".join(report.sources_markdown(res(["timm-style", "kornia RandomMixUpV2"])))
    assert "not installed" not in present
