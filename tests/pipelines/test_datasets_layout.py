"""Dataset folder layouts, read the same way by train, preview, calibrate and demo, on JPEG files."""
from __future__ import annotations

import json
import os

import pytest
from jpeg_folders import TRAIN_ARGS, results_of, write_jpegs

from dali_mixup.tools import calibrate as C
from dali_mixup.tools import layout as L
from dali_mixup.tools.layout import DataError, scan_layout
from dali_mixup.pipelines import preview, train

ABC = ("ant", "bee", "cat")


def run_train(data, out, *extra):
    rc = train.main(["--data", str(data), *TRAIN_ARGS, "--out", str(out), *extra])
    return rc, (results_of(out) if rc == 0 else None)


def test_train_folder_without_val_splits_its_classes(tmp_path, capsys):
    """DIR/train alone: its class folders are the classes (not one class named 'train'),
    held out by --val-fraction."""
    write_jpegs(tmp_path / "d" / "train", ABC, 10)
    rc, res = run_train(tmp_path / "d", tmp_path / "out")
    assert rc == 0
    assert res["classes"] == list(ABC)
    assert (res["num_train"], res["num_val"]) == (24, 6)  # 2 of 10 per class held out
    out = capsys.readouterr().out
    assert (f"data: train 24 images in 3 classes, val 6 images in 3 classes "
            f"({tmp_path / 'd' / 'train'}, split by --val-fraction 0.2); classes: ant, bee, cat") in out


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "test"])
def test_train_plus_a_validation_split_of_any_accepted_name(tmp_path, val_name):
    write_jpegs(tmp_path / "train", ABC, 8)
    write_jpegs(tmp_path / val_name, ABC, 3, seed=1)
    lay = scan_layout(tmp_path)
    assert lay.kind == "splits" and lay.classes == ABC
    assert lay.val.root == str(tmp_path / val_name)
    assert lay.train.counts() == [8, 8, 8] and lay.val.counts() == [3, 3, 3]
    assert all(f.startswith(str(tmp_path / val_name) + os.sep) for f in lay.val.files)


def test_train_on_train_plus_valid_uses_the_classes_inside(tmp_path, capsys):
    write_jpegs(tmp_path / "d" / "train", ABC, 8)
    write_jpegs(tmp_path / "d" / "valid", ABC, 2, seed=1)
    rc, res = run_train(tmp_path / "d", tmp_path / "out")
    assert rc == 0 and res["classes"] == list(ABC)
    assert (res["num_train"], res["num_val"]) == (24, 6)
    assert res["history"][0]["val_samples"] == 6
    assert f"{tmp_path / 'd' / 'train'} + {tmp_path / 'd' / 'valid'}" in capsys.readouterr().out


def test_val_split_option_names_the_validation_folder(tmp_path, capsys):
    write_jpegs(tmp_path / "train", ABC, 6)
    write_jpegs(tmp_path / "holdout", ABC, 2, seed=1)
    with pytest.raises(DataError, match="--val-split NAME"):  # which one is validation?
        scan_layout(tmp_path)
    lay = scan_layout(tmp_path, val_split="holdout")
    assert lay.classes == ABC and len(lay.val) == 6 and lay.val.root == str(tmp_path / "holdout")
    with pytest.raises(DataError, match=r"--val-split nope: no folder .*nope; folders there: holdout, train"):
        scan_layout(tmp_path, val_split="nope")


def test_preview_takes_the_training_classes_not_the_split_names(tmp_path):
    write_jpegs(tmp_path / "train", ABC, 8)
    write_jpegs(tmp_path / "val", ABC, 2, seed=1)
    batch = preview.mixed_batch(str(tmp_path), mixing="mixup", batch_size=8, size=8)
    assert batch["classes"] == list(ABC)
    assert batch["labels"].shape == (8, 3)
    assert preview.main([str(tmp_path), "--batch-size", "4", "--size", "8",
                         "--out", str(tmp_path / "p.png")]) == 0
    assert os.path.getsize(tmp_path / "p.png") > 0


def test_calibrate_reads_the_training_images_only(tmp_path, capsys):
    write_jpegs(tmp_path / "train", ABC, 8)
    write_jpegs(tmp_path / "val", ABC, 2, seed=1)
    assert C.main(["--data", str(tmp_path), "--k", "1,2", "--size", "8", "--trials", "50"]) == 0
    out = capsys.readouterr().out
    assert "(24 images, 8x8 RGB" in out and "N=24, D=192" in out


def test_empty_class_folder_is_left_out_with_a_warning(tmp_path, capsys):
    write_jpegs(tmp_path, ABC, 6)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    rc, res = run_train(tmp_path, tmp_path / "out")
    assert rc == 0 and res["classes"] == list(ABC)  # no 4th output class
    err = capsys.readouterr().err
    assert f"warning: class folder(s) with no images, left out of the classes: {tmp_path / 'dog'}" in err


def test_class_only_in_the_validation_split_is_an_error_naming_it(tmp_path, capsys):
    write_jpegs(tmp_path / "train", ABC[:2], 6)
    write_jpegs(tmp_path / "val", ABC, 2, seed=1)
    rc, _ = run_train(tmp_path, tmp_path / "out")
    assert rc == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{tmp_path / 'val' / 'cat'} (2 images; {tmp_path / 'train' / 'cat'} missing)" in err
    assert not os.path.exists(tmp_path / "out")  # named before any run folder is made


def test_class_missing_from_the_validation_split_is_a_warning(tmp_path):
    write_jpegs(tmp_path / "train", ABC, 6)
    write_jpegs(tmp_path / "val", ABC[:2], 2, seed=1)
    lay = scan_layout(tmp_path)
    assert lay.classes == ABC and lay.val.counts() == [2, 2, 0]
    assert any("no validation images" in w and "cat" in w for w in lay.warnings)


def test_single_class_and_no_images_are_errors(tmp_path):
    write_jpegs(tmp_path / "one", ("ant",), 4)
    with pytest.raises(DataError, match=r"has one class with images \(ant\)"):
        scan_layout(tmp_path / "one")
    (tmp_path / "none" / "ant").mkdir(parents=True)
    (tmp_path / "none" / "bee").mkdir()
    with pytest.raises(DataError, match="no images .* in the class folders of"):
        scan_layout(tmp_path / "none")
    write_jpegs(tmp_path / "flat", ("x",), 3)
    with pytest.raises(DataError, match=r"has no class folders .*3 images lie directly in it"):
        scan_layout(tmp_path / "flat" / "x")


def test_missing_path_and_file_are_errors(tmp_path):
    with pytest.raises(DataError, match=r"^--data .*nowhere: no such folder$"):
        scan_layout(tmp_path / "nowhere")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="expected a folder"):
        scan_layout(tmp_path / "f.txt")


def test_val_split_without_train_is_an_error(tmp_path):
    write_jpegs(tmp_path / "val", ABC, 2)
    with pytest.raises(DataError, match="has a val split folder but no train folder"):
        scan_layout(tmp_path)


def test_unreadable_folder_is_named(tmp_path, monkeypatch):
    write_jpegs(tmp_path, ABC, 3)
    locked = str(tmp_path / "bee")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path)

    monkeypatch.setattr(L.os, "scandir", scandir)
    with pytest.raises(DataError, match=f"cannot read folder {locked}: Permission denied"):
        scan_layout(tmp_path)


def test_stratified_split_is_deterministic_and_disjoint(tmp_path):
    write_jpegs(tmp_path, ABC, 10)
    a, b = scan_layout(tmp_path, seed=3), scan_layout(tmp_path, seed=3)
    assert a.train.files == b.train.files and a.val.files == b.val.files
    assert set(a.train.files).isdisjoint(a.val.files)
    assert a.val.counts() == [2, 2, 2] and len(a.train) + len(a.val) == 30
    assert scan_layout(tmp_path, seed=4).val.files != a.val.files


def test_demo_reads_train_plus_valid(tmp_path, capsys):
    from dali_mixup.pipelines import demo

    write_jpegs(tmp_path / "d" / "train", ABC, 8)
    write_jpegs(tmp_path / "d" / "valid", ABC, 2, seed=1)
    rc = demo.main(["--data", str(tmp_path / "d"), "--methods", "ERM", "--fractions", "1",
                    "--epochs", "1", "--seeds", "1", "--batch-size", "4", "--size", "8",
                    "--width", "4", "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    with open(tmp_path / "out" / "summary.json") as f:
        summary = json.load(f)
    assert (summary["num_train"], summary["num_val"]) == (24, 6)
    results = results_of(tmp_path / "out")
    assert results["classes"] == list(ABC)
    out = capsys.readouterr().out
    assert out.count("data: train 24 images in 3 classes, val 6 images in 3 classes") == 1
