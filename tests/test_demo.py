"""The main job (demo) in quick mode, on the digits and on a user's folder; the preview grid."""
from __future__ import annotations

import json
import os
import re

import numpy as np
from PIL import Image

from pipelines import demo, preview

METHODS = ["ERM", "mixup", "k-mixup", "zeta-mixup"]


def _folder(root, n_per_class=12, num_classes=3):
    rng = np.random.default_rng(0)
    for c in range(num_classes):
        os.makedirs(os.path.join(root, f"kind_{c}"), exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 80, (20, 24, 3)).astype(np.uint8)
            img[..., c] += 150  # the class is the dominant colour
            Image.fromarray(img).save(os.path.join(root, f"kind_{c}", f"{i}.jpg"))
    return str(root)


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
    assert [r["method"] for r in summary["table"]] == METHODS
    assert summary["num_train"] == 1438 and summary["num_val"] == 359 and summary["quick"]
    for m in METHODS:  # a comparison table row per method, with a percentage
        assert re.search(rf"^{re.escape(m)}\s+\d+\.\d\d%", text, re.M), text
    for r in summary["table"]:
        assert r["final_val_acc"] > 0.3, r  # 10 classes: chance is 0.1
    for name in ("ERM", "mixup", "k-mixup", "zeta-mixup"):
        mixing = {"ERM": "none", "mixup": "mixup", "k-mixup": "kmixup", "zeta-mixup": "zeta"}
        assert json.load(open(out / f"{mixing[name]}.json"))["method"] == name
    for png in ("learning_curves.png", "kmixup_batch.png", "zeta_batch.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 500 and im.size[1] > 300
    # a second run reuses the cache instead of rewriting it
    mtime = os.path.getmtime(cache / ".complete")
    demo.write_digits_cache(str(cache))
    assert os.path.getmtime(cache / ".complete") == mtime


def test_demo_on_a_user_folder(tmp_path, capsys):
    data = _folder(tmp_path / "mine")
    rc = demo.main(["--data", data, "--quick", "--epochs", "1", "--methods", "ERM", "k-mixup",
                    "--size", "16", "--batch-size", "8", "--k", "4", "--width", "8",
                    "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert data in text and re.search(r"^k-mixup\s+\d+\.\d\d%", text, re.M)
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert summary["num_train"] + summary["num_val"] == 36
    assert [r["method"] for r in summary["table"]] == ["ERM", "k-mixup"]


def test_preview_grid_of_a_kmixup_batch(tmp_path):
    data = _folder(tmp_path / "mine")
    batch = preview.mixed_batch(data, mixing="kmixup", batch_size=8, size=16, k=4)
    p = batch["index"].astype(int)
    assert batch["images"].shape == (8, 3, 16, 16) and batch["labels"].shape == (8, 3)
    assert (p[p] == np.arange(8)).all() and (p != np.arange(8)).all()  # matched pairs
    np.testing.assert_allclose(batch["labels"].sum(1), 1.0, rtol=1e-5)
    out = tmp_path / "grid.png"
    assert preview.main([data, "--mixing", "kmixup", "--batch-size", "8", "--k", "4",
                         "--size", "16", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size[0] > 600
    assert preview.main([data, "--mixing", "zeta", "--batch-size", "8", "--size", "16",
                         "--out", str(tmp_path / "z.png")]) == 0
    assert (tmp_path / "z.png").stat().st_size > 10_000
