"""The `dali-mixup` console script (dali_mixup.tools.cli)."""
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dali_mixup.tools import cli

ROOT = Path(__file__).resolve().parents[2]


def test_console_script_declared():
    text = (ROOT / "pyproject.toml").read_text()
    scripts = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert 'dali-mixup = "dali_mixup.tools.cli:main"' in scripts.splitlines()


def test_dispatch_table_maps_each_subcommand_to_an_importable_main():
    assert list(cli.COMMANDS) == ["demo", "train", "preview", "bench", "calibrate", "toy", "gpu-check"]
    expected = {"demo": ("dali_mixup.pipelines.demo", "main"), "train": ("dali_mixup.pipelines.train", "main"),
                "preview": ("dali_mixup.pipelines.preview", "main"), "bench": ("dali_mixup.tools.cli", "bench"),
                "calibrate": ("dali_mixup.tools.calibrate", "main"), "toy": ("dali_mixup.tools.toy", "main")}
    for name, (module, func) in expected.items():
        assert cli.COMMANDS[name][:2] == (module, func)
        fn = cli.resolve(name)
        assert fn is getattr(importlib.import_module(module), func)
        params = list(inspect.signature(fn).parameters.values())
        assert params and params[0].name == "argv"  # main(argv) takes the forwarded arguments


def test_forwards_the_remaining_arguments(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "resolve", lambda name: (lambda argv: seen.append((name, argv)) or 7))
    assert cli.main(["demo", "--device", "gpu", "--quick"]) == 7
    assert cli.main(["bench"]) == 7
    assert seen == [("demo", ["--device", "gpu", "--quick"]), ("bench", [])]
    monkeypatch.setattr(cli, "resolve", lambda name: (lambda argv: None))
    assert cli.main(["preview", "x"]) == 0  # a main returning None counts as success


def test_usage_version_and_unknown(capsys):
    assert cli.main([]) == 2
    text = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name} " in text
    assert cli.main(["--help"]) == 0
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip().endswith("0.1.0")
    assert cli.main(["mixit"]) == 2
    assert "unknown subcommand 'mixit'" in capsys.readouterr().err


def test_subcommand_help_reaches_its_parser(capsys):
    for name in ("calibrate", "toy"):
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0
        assert f"dali-mixup {name}" in capsys.readouterr().out


def test_calibrate_quick_through_cli(capsys):
    assert cli.main(["calibrate", "--quick", "--data", "four_bars", "--k", "1,4,16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in lines if ln.strip()[:2].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [1, 4, 16]
    alpha_k = [float(r[3]) for r in rows]
    assert alpha_k[0] == 1.0 and alpha_k[0] < alpha_k[1] < alpha_k[2]
    assert "target xi = 0.7" in "\n".join(lines)  # Table 9: xi = 0.78 at alpha = 1


def test_no_top_level_pipelines_or_benchmarks_package_is_needed():
    # the ready-made pipelines are dali_mixup.pipelines (pipelines/ installed inside the package)
    import dali_mixup.pipelines as pp

    assert Path(pp.__file__).resolve().parent == ROOT / "pipelines"
    assert "sys.path" not in (ROOT / "dali_mixup" / "tools" / "cli.py").read_text()


@pytest.mark.parametrize("missing, extra", [("tqdm", "train"), ("nvidia", "train"), ("matplotlib", "train"),
                                            ("cupy", "gpu-cu12")])
def test_a_missing_extra_names_the_extra_to_install(monkeypatch, capsys, missing, extra):
    def needs(argv):
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    monkeypatch.setattr(cli, "resolve", lambda name: needs)
    assert cli.main(["demo", "--quick"]) == 1
    err = capsys.readouterr().err
    assert f"needs the module {missing!r}" in err and f"pip install 'dali-mixup[{extra}]'" in err
    if missing == "nvidia":  # DALI for a CUDA 13 stack comes without the train extra's CUDA 12 DALI
        assert "with a CUDA 13 torch: pip install 'dali-mixup[gpu-cu13,train-tools]'" in err
    if missing == "cupy":
        assert "'dali-mixup[gpu-cu13]' (CUDA 13)" in err


def test_a_missing_torch_says_how_to_install_it(monkeypatch, capsys):
    def needs(argv):
        import importlib

        importlib.import_module("torch")  # blocked below

    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setattr(cli, "resolve", lambda name: needs)
    assert cli.main(["train", "--data", "x"]) == 1
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "--index-url https://download.pytorch.org/whl/cpu" in err
    assert "pip install 'dali-mixup[train]'" in err


def test_other_missing_modules_are_errors(monkeypatch):
    def broken(argv):
        raise ModuleNotFoundError("No module named 'dali_mixup.nothing'", name="dali_mixup.nothing")

    monkeypatch.setattr(cli, "resolve", lambda name: broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["toy"])


def test_bench_runs_the_checkout_suite_and_explains_itself_elsewhere(monkeypatch, capsys, tmp_path):
    assert cli.checkout_root() == ROOT
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    assert cli.main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    (cmd, env), = calls
    assert cmd == [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(tmp_path)]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    # an installed wheel has no checkout beside the package
    monkeypatch.setattr(cli, "checkout_root", lambda: None)
    assert cli.main(["bench"]) == 2
    assert "not of the installed package" in capsys.readouterr().err


def test_bench_help_through_the_checkout():
    exe = Path(sys.executable).parent / "dali-mixup"
    r = subprocess.run([str(exe), "bench", "--help"], capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "--quick" in r.stdout


def test_installed_console_script_runs():
    exe = Path(sys.executable).parent / "dali-mixup"
    assert exe.is_file(), "install the package (pip install -e .) so that the console script exists"
    r = subprocess.run([str(exe), "calibrate", "--quick", "--data", "one_ring", "--k", "1,2"],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "toy dataset one_ring: N=512, D=2" in r.stdout
