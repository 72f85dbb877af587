"""Command-line errors: one line naming the argument, the value and what is expected, exit
status 2, no traceback (a traceback with --debug); --help shows every default."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest
from jpeg_folders import write_jpegs

from dali_mixup.tools import calibrate, cli
from dali_mixup.tools.layout import DataError
from dali_mixup.pipelines import demo, preview, train

ABC = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return write_jpegs(tmp_path_factory.mktemp("jpegs"), ABC, 8)  # 24 images: 18 + 6


def one_line_exit_2(capsys, main, argv) -> str:
    """Run ``main(argv)``: it exits (or returns) 2 with one line on stderr; returns that line."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["--size", "0"], "argument --size: expected an integer >= 8, got 0"),
    (["--size", "1"], "argument --size: expected an integer >= 8, got 1"),
    (["--batch-size", "-3"], "argument --batch-size: expected an integer >= 1, got -3"),
    (["--val-fraction", "1"], "argument --val-fraction: expected a number in (0, 1), got 1"),
    (["--alpha", "0"], "argument --alpha: expected a number > 0, got 0"),
    (["--lr", "nan"], "argument --lr: expected a number > 0, got nan"),
    (["--label-smoothing", "1"], "argument --label-smoothing: expected a number in [0, 1), got 1"),
    (["--k", "x"], "argument --k: expected an integer, got 'x'"),
    (["--crop-scale", "0.9", "0.5"], "argument --crop-scale: expected LO <= HI, got 0.9 0.5"),
    (["--model", "vgg"], "argument --model: invalid choice: 'vgg'"),
])
def test_train_argument_errors_are_one_line_before_any_work(jpegs, capsys, argv, expected):
    line = one_line_exit_2(capsys, train.main, ["--data", jpegs, *argv])
    assert line.startswith(f"dali-mixup train: error: {expected}"), line


def test_batch_larger_than_the_dataset_names_the_sizes(jpegs, tmp_path, capsys):
    line = one_line_exit_2(capsys, train.main, ["--data", jpegs, "--batch-size", "64", "--epochs",
                                                "1", "--out", str(tmp_path), "--no-progress"])
    assert line == (f"dali-mixup train: error: --batch-size 64: larger than the 18 training images "
                    f"of {jpegs}: no full batch per epoch; expected at most 18")


def test_missing_path_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = str(tmp_path / "no" / "such")
    line = one_line_exit_2(capsys, train.main, ["--data", missing, "--out", str(tmp_path)])
    assert line == f"dali-mixup train: error: --data {missing}: no such folder"
    assert os.listdir(tmp_path) == []  # no run folder was made for it
    with pytest.raises(DataError, match="no such folder"):
        train.main(["--data", missing, "--out", str(tmp_path / "debug"), "--debug"])


def test_neither_data_nor_arrays(capsys):
    line = one_line_exit_2(capsys, train.main, [])
    assert line.startswith("dali-mixup train: error: give exactly one of --data DIR or --arrays "
                           "digits|FILE.npz, got neither")


def test_the_dispatcher_passes_the_status_on(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--epochs", "0"])
    assert e.value.code == 2
    assert "argument --epochs: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_dali_mixup_train_command_exits_2_without_a_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dali_mixup.tools.cli", "train", "--data", str(tmp_path),
                        "--size", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip() == ("dali-mixup train: error: argument --size: expected an integer "
                                ">= 8, got 1 ('dali-mixup train --help' lists the options)")


def test_other_commands(jpegs, tmp_path, capsys):
    line = one_line_exit_2(capsys, preview.main, [jpegs, "--size", "2"])
    assert "argument --size: expected an integer >= 8, got 2" in line
    line = one_line_exit_2(capsys, preview.main, [str(tmp_path / "nope")])
    assert line == f"dali-mixup preview: error: --data {tmp_path / 'nope'}: no such folder"
    line = one_line_exit_2(capsys, calibrate.main, ["--alpha", "0"])
    assert "argument --alpha: expected a number > 0, got 0" in line
    line = one_line_exit_2(capsys, demo.main, ["--epochs", "0"])
    assert "argument --epochs: expected an integer >= 1, got 0" in line
    line = one_line_exit_2(capsys, demo.main, ["--data", str(tmp_path / "nope"),
                                               "--out", str(tmp_path / "out")])
    assert line == f"dali-mixup demo: error: --data {tmp_path / 'nope'}: no such folder"


def help_blocks(text: str) -> dict:
    """``{first option string: its help text}`` of an argparse --help output."""
    blocks, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)", line)
        if m:
            current = m.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return {k: re.sub(r"\s+", " ", v) for k, v in blocks.items()}


def options_with_values(parser: argparse.ArgumentParser) -> list[str]:
    return [a.option_strings[0] for a in parser._actions
            if a.option_strings and a.nargs != 0 and a.default is not argparse.SUPPRESS]


@pytest.mark.parametrize("name", ["train", "preview", "calibrate", "demo"])
def test_help_shows_every_default(name, capsys):
    module = {"train": train, "preview": preview, "calibrate": calibrate, "demo": demo}[name]
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    blocks = help_blocks(capsys.readouterr().out)
    names = options_with_values(module.build_parser())
    assert len(names) > 8
    missing = [o for o in names if "default" not in blocks[o]]
    assert missing == []
    if name == "train":
        for opt, default in [("--epochs", "10"), ("--lr", "0.1"), ("--model", "small_cnn"),
                             ("--optimizer", "sgd"), ("--seed", "0"), ("--device", "cpu"),
                             ("--batch-size", "64"), ("--size", "32")]:
            assert f"(default: {default})" in blocks[opt], blocks[opt]
