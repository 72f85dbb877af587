"""The main job (demo) in quick mode, on the digits and on a user's folder; its tables; the
preview grid."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from dali_mixup.pipelines import demo, preview

pytestmark = pytest.mark.dali

METHODS = ["ERM", "mixup", "k-mixup", "k-mixup-xi", "zeta-mixup", "zeta-mixup-U"]
SLUGS = ["none", "mixup", "k_mixup", "k_mixup_xi", "zeta_mixup", "zeta_mixup_U"]


def _folder(root, n_per_class=12, num_classes=3):
    rng = np.random.default_rng(0)
    for c in range(num_classes):
        os.makedirs(os.path.join(root, f"kind_{c}"), exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 80, (20, 24, 3)).astype(np.uint8)
            img[..., c] += 150  # the class is the dominant colour
            Image.fromarray(img).save(os.path.join(root, f"kind_{c}", f"{i}.jpg"))
    return str(root)


@pytest.mark.slow
def test_demo_quick_on_the_digits(tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert demo.main(["--quick", "--cache", str(cache), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    # the cache is a real image folder of PNG files, read back by DALI's file reader
    pngs = [f for _, _, fs in os.walk(cache) for f in fs if f.endswith(".png")]
    assert len(pngs) == 1797 and sorted(os.listdir(cache / "train")) == [str(d) for d in range(10)]
    with Image.open(next((cache / "val" / "3").iterdir())) as im:
        assert im.size == (8, 8) and im.mode == "L"
    summary = json.load(open(out / "summary.json"))
    assert summary["num_train"] == 1438 and summary["num_val"] == 359 and summary["quick"]
    # quick: the full set and a 25% subset, each method once, same number of SGD steps
    full, quarter = summary["settings"]
    assert (full["fraction"], quarter["fraction"]) == (1.0, 0.25)
    assert full["num_train"] == 1438 and quarter["num_train"] == 359
    assert (full["epochs"], full["steps"]) == (4, 88) and quarter["epochs"] == 18
    assert 1 < summary["calibration"]["alpha_k"] < 100  # k = 16 matches closer: alpha_k > 1
    for s in summary["settings"]:
        assert list(s["methods"]) == METHODS
        for m, agg in s["methods"].items():
            assert agg["acc"]["mean"] > 0.3, (s["name"], m)  # 10 classes: chance is 0.1
            assert 0 <= agg["ece"]["mean"] <= 1 and agg["nll"]["mean"] > 0
            # sigma = 0 and eps = 0 are the clean accuracy
            assert agg["noise_acc"]["mean"][0] == agg["fgsm_acc"]["mean"][0] == agg["acc"]["mean"]
            assert len(agg["noise_acc"]["mean"]) == len(summary["noise_sigmas"])
        assert set(s["diffs"]["ERM"]) == set(METHODS) - {"ERM"}
        assert s["diffs"]["mixup"]["ERM"]["acc"]["mean"] == pytest.approx(
            s["methods"]["ERM"]["acc"]["mean"] - s["methods"]["mixup"]["acc"]["mean"])
    assert full["methods"]["k-mixup-xi"]["params"]["alpha"] == summary["calibration"]["alpha_k"]
    assert full["methods"]["zeta-mixup-U"]["params"]["gamma"] == [1.72865, 4.0]
    for m in METHODS:  # a table row per method, with a percentage
        assert re.search(rf"^{re.escape(m)}\s+\d+\.\d\d\s", text, re.M), text
    assert "paired difference vs ERM" in text and "paired difference vs mixup" in text
    for slug, m in zip(SLUGS, METHODS):
        for tag in ("", "_25pct"):
            res = json.load(open(out / f"{slug}{tag}_seed0" / "results.json"))
            assert res["method"] == m and "robustness" in res
    assert json.load(open(out / "none_25pct_seed0" / "results.json"))["num_train"] == 359
    for png in ("learning_curves.png", "noise.png", "fgsm.png", "reliability.png",
                "k_mixup_batch.png", "zeta_mixup_batch.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 500 and im.size[1] > 300
    md = (out / "results.md").read_text()
    assert "| ERM |" in md and "| method | acc % | NLL | ECE % |" in md
    # a second run reuses the cache instead of rewriting it
    mtime = os.path.getmtime(cache / ".complete")
    demo.write_digits_cache(str(cache))
    assert os.path.getmtime(cache / ".complete") == mtime


def test_demo_on_a_user_folder(tmp_path, capsys):
    data = _folder(tmp_path / "mine")
    args = ["--data", data, "--quick", "--epochs", "1", "--methods", "ERM", "k-mixup-xi",
            "--fractions", "1", "0.5", "--seeds", "2", "--size", "16", "--batch-size", "8",
            "--k", "4", "--width", "8", "--no-progress"]
    assert demo.main(args + ["--jobs", "2", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert data in text and re.search(r"^k-mixup-xi\s+\d+\.\d\d \+- \d+\.\d\d", text, re.M)
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert summary["num_train"] + summary["num_val"] == 36 and summary["jobs"] == 2
    # runs in worker processes give the same numbers as runs in this process
    with_progress = [a for a in args if a != "--no-progress"]  # to a non-terminal
    assert demo.main(with_progress + ["--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    one = json.load(open(tmp_path / "one" / "summary.json"))
    err = capsys.readouterr().err  # off a terminal: no bar, one line per epoch of every run
    assert "\r" not in err
    epochs = sum(s["epochs"] * len(s["methods"]) * 2 for s in one["settings"])  # 2 seeds
    assert len([ln for ln in err.splitlines() if re.match(r"\[\S+\] epoch \d+/\d+ ", ln)]) == epochs, err
    for s1, s2 in zip(summary["settings"], one["settings"]):
        for m in s1["methods"]:
            for key in ("acc", "nll", "ece", "fgsm_acc_mean"):
                assert s1["methods"][m][key]["values"] == s2["methods"][m][key]["values"]
    full, half = summary["settings"]
    assert list(full["methods"]) == ["ERM", "k-mixup-xi"]
    assert half["num_train"] == 15 and half["steps"] == full["steps"] == 3
    assert full["methods"]["ERM"]["seeds"] == [0, 1]
    d = full["diffs"]["ERM"]["k-mixup-xi"]["acc"]
    assert d["n"] == 2 and d["half_width"] > 0
    assert full["diffs"]["mixup"] == {}  # mixup not run: no comparison against it


def test_demo_rejects_a_subset_without_a_full_batch(tmp_path, capsys):
    data = _folder(tmp_path / "mine")
    rc = demo.main(["--data", data, "--fractions", "0.1", "--batch-size", "8",
                    "--methods", "ERM", "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2 and "no full batch" in capsys.readouterr().err


def test_demo_protocols():
    p = demo.build_parser()
    assert demo.protocol(p.parse_args([])) == (20, 3, [1.0, 0.1])
    assert demo.protocol(p.parse_args(["--quick"])) == (4, 1, [1.0, 0.25])
    assert demo.protocol(p.parse_args(["--full"])) == (20, 5, [1.0, 0.25, 0.1])
    assert demo.protocol(p.parse_args(["--full", "--seeds", "2", "--fractions", "0.5"])) == (
        20, 2, [0.5])


def test_paired_differences_and_tables():
    def agg(vals):
        return {k: dict(values=list(vals), mean=float(np.mean(vals)), std=float(np.std(vals, ddof=1)))
                for k in demo.METRICS} | dict(seeds=[0, 1, 2])

    methods = {"ERM": agg([0.90, 0.91, 0.92]), "mixup": agg([0.95, 0.96, 0.97]),
               "k-mixup": agg([0.90, 0.92, 0.91])}
    d = demo.differences(methods, "ERM")
    assert d["mixup"]["acc"]["mean"] == pytest.approx(0.05) and d["mixup"]["acc"]["std"] < 1e-12
    assert d["mixup"]["acc"]["beyond_noise"] and not d["k-mixup"]["acc"]["beyond_noise"]
    rows = demo.diff_rows(d)
    assert rows[0][0] == "mixup" and rows[0][1].startswith("+5.00") and rows[0][1].endswith("*")
    assert not rows[1][1].endswith("*")
    assert demo.table_rows(dict(methods=methods))[0][1] == "91.00 +- 1.00"


def test_preview_grid_of_a_k_mixup_batch(tmp_path):
    data = _folder(tmp_path / "mine")
    batch = preview.mixed_batch(data, mixing="k_mixup", batch_size=8, size=16, k=4)
    p = batch["index"].astype(int)
    assert batch["images"].shape == (8, 3, 16, 16) and batch["labels"].shape == (8, 3)
    assert (p[p] == np.arange(8)).all() and (p != np.arange(8)).all()  # matched pairs
    np.testing.assert_allclose(batch["labels"].sum(1), 1.0, rtol=1e-5)
    out = tmp_path / "grid.png"
    assert preview.main([data, "--mixing", "k_mixup", "--batch-size", "8", "--k", "4",
                         "--size", "16", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size[0] > 600
    # an earlier spelling of the mixing still works (zeta -> zeta_mixup)
    assert preview.main([data, "--mixing", "zeta", "--batch-size", "8", "--size", "16",
                         "--out", str(tmp_path / "z.png")]) == 0
    assert (tmp_path / "z.png").stat().st_size > 10_000
