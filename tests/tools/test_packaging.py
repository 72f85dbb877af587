"""The wheel: what it ships, and that the package works from it in a fresh environment.

The wheel is built from a copy of the sources (``pip wheel --no-deps``) and installed with
``--no-deps`` into new virtual environments. The dependencies are not downloaded again: a
``.pth`` file, written after the install, puts packages of the test environment behind the new
environment's own site-packages, so the wheel's ``dali_mixup`` is the one imported:

* ``env``: all of this environment's packages (DALI, torch, ...: the ``[train]`` install);
* ``core_env``: only the core dependencies (NumPy, SciPy, array-api-compat, threadpoolctl:
  a plain ``pip install dali-mixup``), linked into a folder of their own.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: what the wheel is built from (the rest of the checkout plays no part in it)
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "dali_mixup", "pipelines")


def _run(cmd, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _setuptools_version() -> tuple:
    """The installed setuptools' (major, minor), (0,) without one; pyproject needs >= 77."""
    try:
        return tuple(int(v) for v in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0,)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src]
    if _setuptools_version() >= (77,):
        cmd.insert(4, "--no-build-isolation")  # build with the setuptools installed here
    r = _run(cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = (tmp / "dist").glob("dali_mixup-*.whl")
    return whl


CORE = ("numpy", "scipy", "array-api-compat", "threadpoolctl")


def _install(wheel: Path, home: Path, deps: list[str]) -> Path:
    """A fresh venv under ``home`` with the wheel installed (no dependencies), ``deps`` behind it."""
    venv.EnvBuilder(with_pip=True).create(home / "venv")
    py = home / "venv" / "bin" / "python"
    r = _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel])
    assert r.returncode == 0, r.stdout + r.stderr
    # only now (pip must not see this environment's editable dali-mixup as installed there)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_test_deps.pth").write_text("\n".join(deps) + "\n")
    return home


@pytest.fixture(scope="module")
def env(wheel, tmp_path_factory) -> Path:
    here = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return _install(wheel, tmp_path_factory.mktemp("env"), here)


@pytest.fixture(scope="module")
def core_env(wheel, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("core_env")
    core = home / "core"
    core.mkdir()
    for name in CORE:
        dist = importlib.metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or ()}:
            src = Path(dist.locate_file(top))
            if src.exists() and not top.endswith((".dist-info", ".pth")) and top not in ("..", "bin"):
                (core / top).symlink_to(src)
    return _install(wheel, home, [str(core)])


def _env_vars(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(XDG_CACHE_HOME=str(home / "cache"), OMP_NUM_THREADS="1")
    return env


def test_wheel_ships_the_package_and_its_pipelines_and_nothing_top_level(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"dali_mixup", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for f in sorted((ROOT / "dali_mixup").rglob("*.py")):
        assert f.relative_to(ROOT).as_posix() in names, f
    pipelines = sorted((ROOT / "pipelines").glob("*.py"))
    assert pipelines
    for f in pipelines:
        assert f"dali_mixup/pipelines/{f.name}" in names, f
    assert "dali_mixup/py.typed" in names
    assert not any(n.startswith(("pipelines/", "benchmarks/", "tests/")) for n in names)
    assert any(n.endswith("LICENSE") and ".dist-info/" in n for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "dali-mixup = dali_mixup.tools.cli:main" in zipfile.ZipFile(wheel).read(meta).decode()


def _extras(wheel: Path) -> dict:
    """Extra -> the distributions it requires, read from the wheel's METADATA."""
    z = zipfile.ZipFile(wheel)
    meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    out: dict = {}
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" in line:
            req, marker = line[len("Requires-Dist:"):].split(";", 1)
            extra = marker.split("extra ==")[1].strip().strip("'\"")
            name = req.strip().split(">")[0].split("=")[0].split("<")[0].strip()
            out.setdefault(extra, set()).add(name)
    return out


def test_each_cuda_major_has_an_extra_with_its_dali_and_cupy_builds(wheel):
    extras = _extras(wheel)
    assert extras["gpu-cu12"] == {"nvidia-dali-cuda120", "cupy-cuda12x"}
    assert extras["gpu-cu13"] == {"nvidia-dali-cuda130", "cupy-cuda13x"}
    assert extras["gpu"] == extras["gpu-cu12"]  # `gpu` stays the CUDA 12 set
    from dali_mixup.gpu.versions import EXTRAS, major_of_distribution

    for major, extra in EXTRAS.items():  # what the GPU check tells users to install exists
        assert {major_of_distribution(d) for d in extras[extra]} == {major}, extra
    # no extra mixes two CUDA majors, and no extra but the GPU ones pulls a CUDA 13 build
    for extra, dists in extras.items():
        majors = {major_of_distribution(d) for d in dists} - {None}
        assert len(majors) <= 1, (extra, dists)


def _python(home: Path, code: str, cwd: Path) -> str:
    """Run ``code`` with the Python of the venv under ``home``; its stdout (it must succeed)."""
    r = _run([home / "venv" / "bin" / "python", "-c", code], cwd=cwd, env=_env_vars(home))
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_installed_wheel_imports_and_runs_the_command(env, tmp_path):
    exe = env / "venv" / "bin" / "dali-mixup"
    where, specs = _python(env, "import dali_mixup, dali_mixup.pipelines.demo, dali_mixup.pipelines.train, "
                                "importlib.util; print(dali_mixup.__file__); "
                                "print(importlib.util.find_spec('pipelines'), importlib.util.find_spec('benchmarks'))",
                           tmp_path).splitlines()
    assert Path(where).is_relative_to(env / "venv"), where
    assert specs == "None None"  # no top-level pipelines or benchmarks package
    r = _run([exe, "--help"], cwd=tmp_path, env=_env_vars(env))
    assert r.returncode == 0, r.stderr
    assert "demo" in r.stdout and "bench" in r.stdout
    # the benchmarks are a source-checkout tool: the installed command says so
    r = _run([exe, "bench", "--quick"], cwd=tmp_path, env=_env_vars(env))
    assert r.returncode == 2 and "not of the installed package" in r.stderr, r.stderr


def test_core_install_runs_the_array_layer_and_names_the_missing_extra(core_env, tmp_path):
    exe = core_env / "venv" / "bin" / "dali-mixup"
    out = _python(core_env, "import numpy as np, dali_mixup as dm, importlib.util; "
                            "r = dm.k_mixup(np.zeros((8, 3, 4, 4), np.float32), np.arange(8) % 2, k=2, num_classes=2); "
                            "print(r.labels.shape, [importlib.util.find_spec(m) for m in ('nvidia', 'torch', 'tqdm')])",
                  tmp_path)
    assert out.strip() == "(8, 2) [None, None, None]"
    # the demo without the [train] extra says what to install instead of a traceback
    r = _run([exe, "demo", "--quick", "--out", tmp_path / "out"], cwd=tmp_path, env=_env_vars(core_env))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pip install 'dali-mixup[train]'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _run([exe, "train", "--arrays", "digits"], cwd=tmp_path, env=_env_vars(core_env))
    assert r.returncode == 1 and "dali-mixup[train]" in r.stderr, r.stdout + r.stderr
    # the GPU check without DALI, CuPy or torch: one line naming each and the extras
    r = _run([exe, "gpu-check", "--out", tmp_path / "gc"], cwd=tmp_path, env=_env_vars(core_env))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("dali-mixup gpu-check: NVIDIA DALI is not installed; "
                                                "CuPy is not installed; PyTorch is not installed"), line
    assert "'dali-mixup[gpu-cu12]' (CUDA 12) or 'dali-mixup[gpu-cu13]' (CUDA 13)" in line


@pytest.mark.slow
@pytest.mark.dali
def test_installed_wheel_runs_the_demo(env, tmp_path):
    out = tmp_path / "out"
    r = _run([env / "venv" / "bin" / "dali-mixup", "demo", "--quick", "--methods", "ERM", "k-mixup",
              "--fractions", "1", "--out", out], cwd=tmp_path, env=_env_vars(env))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (out / "summary.json").is_file()
    assert "k-mixup" in r.stdout
