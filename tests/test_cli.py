"""The `dali-mixup` console script (dali_mixup.cli)."""
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from dali_mixup import cli

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_declared():
    text = (ROOT / "pyproject.toml").read_text()
    scripts = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert 'dali-mixup = "dali_mixup.cli:main"' in scripts.splitlines()


def test_dispatch_table_maps_each_subcommand_to_an_importable_main():
    assert list(cli.COMMANDS) == ["demo", "train", "preview", "bench", "calibrate", "toy"]
    expected = {"demo": "pipelines.demo", "train": "pipelines.train", "preview": "pipelines.preview",
                "bench": "benchmarks.run", "calibrate": "dali_mixup.calibrate", "toy": "dali_mixup.toy"}
    for name, module in expected.items():
        assert cli.COMMANDS[name][:2] == (module, "main")
        fn = cli.resolve(name)
        assert fn is importlib.import_module(module).main
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


def test_installed_console_script_runs():
    exe = Path(sys.executable).parent / "dali-mixup"
    assert exe.is_file(), "install the package (pip install -e .) so that the console script exists"
    r = subprocess.run([str(exe), "calibrate", "--quick", "--data", "one_ring", "--k", "1,2"],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "toy dataset one_ring: N=512, D=2" in r.stdout
