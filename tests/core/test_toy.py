"""The papers' toy datasets (dali_mixup.tools.datasets) and the `toy` command (dali_mixup.tools.toy)."""
import json

import numpy as np
import pytest

from dali_mixup.tools import cli, datasets, toy
from dali_mixup.tools import metrics as M

SHAPES = {"one_ring": (512, 2), "four_bars": (512, 2), "swiss_roll": (512, 2), "crescents": (512, 2),
          "spirals": (512, 2), "helix3": (8192, 3), "helix12": (8192, 12)}


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_generators_shape_seed_and_classes(name):
    x, y = datasets.make(name)
    assert x.shape == SHAPES[name] and x.dtype == np.float64
    assert y.shape == (x.shape[0],) and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1}
    assert 0.35 < y.mean() < 0.65
    x2, y2 = datasets.make(name)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = datasets.make(name, seed=1)
    assert not np.array_equal(x, x3)
    assert datasets.make(name, n=100)[0].shape == (100, SHAPES[name][1])


def test_geometry_of_the_clean_sets():
    x, y = datasets.make("one_ring", n=4000, noise=0.0)
    r = np.linalg.norm(x, axis=1)
    assert np.allclose(r[y == 1], 0.5076) and np.allclose(r[y == 0], 0.0)
    x, y = datasets.make("crescents", n=1000, noise=0.0)
    assert np.allclose(np.linalg.norm(x[y == 0], axis=1), 1.0)
    assert np.allclose(np.linalg.norm(x[y == 1] - [1.0, 0.5], axis=1), 1.0)
    x, y = datasets.make("four_bars", n=1000, noise=0.0)
    assert set(np.round(x[:, 0] / 1.515, 6)) == {-1.5, -0.5, 0.5, 1.5}
    assert np.all(y == (np.round(x[:, 0] / 1.515 + 1.5).astype(int) % 2))
    x, _ = datasets.make("helix3", n=500)
    assert np.allclose(x[:, 0] ** 2 + x[:, 1] ** 2, 1.0)


def test_helix12_is_an_isometric_copy_of_helix3():
    x3, y3 = datasets.make("helix3", n=300)
    x12, y12 = datasets.make("helix12", n=300)
    np.testing.assert_array_equal(y3, y12)
    d3 = np.linalg.norm(x3[:, None] - x3[None], axis=2)
    d12 = np.linalg.norm(x12[:, None] - x12[None], axis=2)
    np.testing.assert_allclose(d12, d3, atol=1e-9)
    assert np.linalg.matrix_rank(x12 - x12.mean(0)) == 3


def test_helix_local_id_is_one_and_mixing_inflates_it():
    x, y = datasets.make("helix3", n=2048)
    assert set(M.local_intrinsic_dimension(x, n_neighbors=16)) == {1}
    lid = {}
    for m, kw in [("mixup", {}), ("k-mixup", {}), ("zeta-mixup", {"gamma": 2.8}), ("zeta-mixup", {"gamma": 8.0})]:
        v = toy.vicinal(m, x, y, n_out=1024, **kw)
        lid[m, kw.get("gamma")] = M.local_intrinsic_dimension(v["images"], n_neighbors=16).mean()
    assert lid["mixup", None] > 2.5                       # off-manifold: the hollow of the helix
    assert lid["k-mixup", None] < lid["mixup", None] - 0.4
    assert lid["zeta-mixup", 8.0] < lid["zeta-mixup", 2.8] - 0.5


def test_vicinal_rejects_unknown_method():
    x, y = datasets.make("one_ring", n=64)
    with pytest.raises(ValueError, match="unknown method"):
        toy.vicinal("cutmix", x, y, n_out=10)
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.make("moons")


def test_toy_command_quick_through_cli(tmp_path, capsys):
    png, js = tmp_path / "toy.png", tmp_path / "toy.json"
    assert cli.main(["toy", "--quick", "--out", str(png), "--json", str(js)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        w, h = im.size
    assert (w, h) == (1280, 864)  # 3 datasets x 4 panels of 4 x 3.6 inches at 80 dpi
    out = capsys.readouterr().out
    assert f"wrote {png}" in out
    rows = {(r["dataset"], r["method"]): r for r in json.loads(js.read_text())}
    assert len(rows) == 9
    for name in ("one_ring", "four_bars", "swiss_roll"):
        mix, km, zm = rows[name, "mixup"], rows[name, "k-mixup"], rows[name, "zeta-mixup"]
        # Table 9's xi for 1-mixup at alpha = 1 (256 samples: a few % of sampling error)
        assert mix["xi"] == pytest.approx(datasets.TABLE9_XI[name], rel=0.12)
        # 32-mixup at the same alpha: shorter, more local matches and far fewer wrong labels
        assert km["xi"] < 0.6 * mix["xi"]
        assert km["cross_class"] < mix["cross_class"] - 0.1
        assert km["label_error"] < 0.5 * mix["label_error"]
        assert mix["label_error"] > 0.1
        assert zm["cross_class"] is None


def test_toy_command_other_datasets_and_errors(tmp_path, capsys):
    png = tmp_path / "z.png"
    assert toy.main(["--quick", "--dataset", "crescents,helix12", "--out", str(png), "--match-xi",
                     "--k", "8"]) == 0
    out = capsys.readouterr().out
    assert "crescents" in out and "helix12" in out and png.exists()
    with pytest.raises(SystemExit) as e:
        toy.main(["--dataset", "moons"])
    assert e.value.code == 2


def test_datasets_import_neither_toy_nor_calibrate():
    """datasets is the leaf: toy and calibrate use it, it uses neither (no import cycle)."""
    import subprocess
    import sys

    code = ("import sys, dali_mixup.tools.datasets; "
            "print(sorted(m for m in sys.modules if m in ('dali_mixup.tools.toy', 'dali_mixup.tools.calibrate')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
