"""The ``dali-mixup`` command: one entry point, one subcommand per job.

``dali-mixup SUBCOMMAND [ARGS...]`` imports the subcommand's module only when it runs (DALI,
torch and matplotlib are slow to import and optional) and hands it the remaining arguments;
``dali-mixup SUBCOMMAND --help`` shows each one's options.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from .usage import UsageError, report

#: subcommand -> ("module", "function", one-line description). Each function takes
#: ``argv: list[str] | None`` and returns an exit status.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("dali_mixup.pipelines.demo", "main",
             "the main job: ERM vs mixup vs k-mixup vs zeta-mixup on digits"),
    "train": ("dali_mixup.pipelines.train", "main",
              "train a classifier on an image folder with a mixing DALI pipeline"),
    "preview": ("dali_mixup.pipelines.preview", "main",
                "PNG grid of one mixed batch, soft-label bars, k-mixup pairs"),
    "bench": ("dali_mixup.tools.cli", "bench",
              "dali-mixup beside in-loop timm/torchvision/kornia mixing (benchmarks/ of a source checkout)"),
    "calibrate": ("dali_mixup.tools.calibrate", "main", "alpha_k keeping the k=1 perturbation xi (k-mixup Alg. 1)"),
    "toy": ("dali_mixup.tools.toy", "main", "vicinal distributions of the three methods on the toy datasets (PNG)"),
    "gpu-check": ("dali_mixup.gpu.check", "main",
                  "on a GPU machine: the stack, GPU == CPU, the ready-made GPU pipelines, a short benchmark"),
}

#: the extra each subcommand needs beyond the core dependencies (``pip install 'dali-mixup[EXTRA]'``)
EXTRAS: dict[str, str] = {"demo": "train", "train": "train", "preview": "train", "bench": "bench",
                          "calibrate": "train", "toy": "train", "gpu-check": "gpu-cu12"}

#: optional modules -> the extra that brings them (torch is installed by hand: its build
#: depends on the platform)
OPTIONAL: dict[str, str] = {"nvidia": "dali", "tqdm": "train", "matplotlib": "train", "PIL": "train",
                            "sklearn": "train", "cupy": "gpu", "cupy_backends": "gpu", "torch": ""}

TORCH_HINT = ("install PyTorch first, the build for your platform: on CPU "
              "pip install torch --index-url https://download.pytorch.org/whl/cpu; with CUDA, the "
              "command from pytorch.org")


def usage() -> str:
    from .. import __version__

    width = max(len(n) for n in COMMANDS)
    lines = [f"usage: dali-mixup SUBCOMMAND [ARGS...]   (dali-mixup {__version__})", "",
             "k-mixup and zeta-mixup as NVIDIA DALI operators.", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, _, desc) in COMMANDS.items()]
    lines += ["", "'dali-mixup SUBCOMMAND --help' shows the options of each."]
    return "\n".join(lines)


def missing_extra_message(name: str, error: ModuleNotFoundError) -> str | None:
    """What to install when subcommand ``name`` stopped on a missing optional module (None when
    the missing module is not one an extra brings: then it is a real error)."""
    top = (error.name or "").split(".")[0]
    if top not in OPTIONAL:
        return None
    if top == "torch":
        return (f"dali-mixup {name}: needs PyTorch, which is not installed; {TORCH_HINT}; "
                f"then pip install 'dali-mixup[{EXTRAS.get(name, 'train')}]'")
    if OPTIONAL[top] == "gpu" or top == "nvidia" and EXTRAS.get(name) in ("gpu-cu12", None):
        return (f"dali-mixup {name}: needs the module {top!r}, which is not installed; install the "
                "extra for your CUDA (python -c \"import torch; print(torch.version.cuda)\"): "
                "pip install 'dali-mixup[gpu-cu12]' (CUDA 12) or 'dali-mixup[gpu-cu13]' (CUDA 13)")
    extra = EXTRAS.get(name, OPTIONAL[top])
    hint = (" (with a CUDA 13 torch: pip install 'dali-mixup[gpu-cu13,train-tools]')"
            if top == "nvidia" and extra == "train" else "")
    return (f"dali-mixup {name}: needs the module {top!r}, which is not installed; "
            f"install the extra it comes with: pip install 'dali-mixup[{extra}]'{hint}")


def resolve(name: str):
    """The function of a subcommand (imports its module)."""
    module, func, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), func)


def checkout_root() -> Path | None:
    """The source checkout this package runs from (editable install or a clone on the path),
    or None for an installed wheel: the checkout has ``pyproject.toml`` and ``benchmarks/``
    beside the package."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "benchmarks" / "run.py").is_file():
        return root
    return None


def bench(argv: list[str] | None = None) -> int:
    """``dali-mixup bench``: run the checkout's ``python -m benchmarks.run`` with ``argv``.

    The benchmarks are not installed with the package; they run from a source checkout, in a
    child process whose module path starts at the checkout (the working directory stays, so
    ``--out`` is relative to where the command was typed).
    """
    root = checkout_root()
    if root is None:
        print("dali-mixup bench: the benchmark suite (benchmarks/run.py) is part of the source "
              "repository, not of the installed package; clone the repository, pip install -e "
              "\".[train]\" there and run dali-mixup bench (or python -m benchmarks.run) in it",
              file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.call([sys.executable, "-m", "benchmarks.run", *(argv or [])], env=env)


def main(argv: list[str] | None = None) -> int:
    """Run ``dali-mixup``; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from .. import __version__

        print(f"dali-mixup {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"dali-mixup: unknown subcommand {name!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    try:
        fn = resolve(name)
        rc = fn(rest)
    except UsageError as e:  # a user error the subcommand did not report itself
        return report(f"dali-mixup {name}", e, debug="--debug" in rest)
    except ModuleNotFoundError as e:
        # an optional dependency is missing (at import or when the job first needs it)
        msg = missing_extra_message(name, e)
        if msg is None:
            raise
        print(msg, file=sys.stderr)
        return 1
    return 0 if rc is None else int(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
