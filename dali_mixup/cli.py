"""The ``dali-mixup`` command: one entry point, one subcommand per job.

``dali-mixup SUBCOMMAND [ARGS...]`` imports the subcommand's module only when it runs (DALI,
torch and matplotlib are slow to import and optional) and hands it the remaining arguments;
``dali-mixup SUBCOMMAND --help`` shows each one's options.
"""
from __future__ import annotations

import importlib
import sys

#: subcommand -> ("module", "function", one-line description). Each function takes
#: ``argv: list[str] | None`` and returns an exit status.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("pipelines.demo", "main", "the main job: ERM vs mixup vs k-mixup vs zeta-mixup on digits"),
    "train": ("pipelines.train", "main", "train a classifier on an image folder with a mixing DALI pipeline"),
    "preview": ("pipelines.preview", "main", "PNG grid of one mixed batch, soft-label bars, k-mixup pairs"),
    "bench": ("benchmarks.run", "main", "the benchmark suite"),
    "calibrate": ("dali_mixup.calibrate", "main", "alpha_k keeping the k=1 perturbation xi (k-mixup Alg. 1)"),
    "toy": ("dali_mixup.toy", "main", "vicinal distributions of the three methods on the toy datasets (PNG)"),
}


def usage() -> str:
    from . import __version__

    width = max(len(n) for n in COMMANDS)
    lines = [f"usage: dali-mixup SUBCOMMAND [ARGS...]   (dali-mixup {__version__})", "",
             "k-mixup and zeta-mixup as NVIDIA DALI operators.", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, _, desc) in COMMANDS.items()]
    lines += ["", "'dali-mixup SUBCOMMAND --help' shows the options of each."]
    return "\n".join(lines)


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # pipelines/ and benchmarks/ live beside the package in a source checkout; an editable
        # install started outside the checkout (a console script's sys.path[0] is its bin/)
        # may not map a top-level folder that pyproject does not list. Look there once.
        from pathlib import Path

        top = module.split(".")[0]
        root = Path(__file__).resolve().parent.parent
        if e.name != top or not (root / top / "__init__.py").is_file() or str(root) in sys.path:
            raise
        sys.path.append(str(root))
        return importlib.import_module(module)


def resolve(name: str):
    """The ``main`` function of a subcommand (imports its module)."""
    module, func, _ = COMMANDS[name]
    return getattr(_import(module), func)


def main(argv: list[str] | None = None) -> int:
    """Run ``dali-mixup``; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from . import __version__

        print(f"dali-mixup {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"dali-mixup: unknown subcommand {name!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    try:
        fn = resolve(name)
    except ImportError as e:
        print(f"dali-mixup {name}: cannot import {COMMANDS[name][0]} ({e}); is the package "
              "installed with the extras it needs (pip install -e \".[train]\")?", file=sys.stderr)
        return 1
    rc = fn(rest)
    return 0 if rc is None else int(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
