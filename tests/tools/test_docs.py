"""The README and docs/ stay true to the code: commands, links, module map, CLI table."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dali_mixup.tools import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}


def readme_commands() -> list[str]:
    """The README's two commands: the command lines of its first bash block."""
    block = re.search(r"```bash\n(.*?)\n```", README, re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command_after_linting():
    setup_demo, setup_test = readme_commands()
    assert setup_demo.endswith(".venv/bin/dali-mixup demo")
    assert setup_test.endswith(".venv/bin/python -m pytest -q")
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert setup_test in ci  # verbatim
    lint = next(i for i, ln in enumerate(ci) if ".venv/bin/ruff check ." in ln)
    assert lint < ci.index(setup_test)


def test_readme_is_short_and_links_resolve():
    assert len(README.encode()) <= 14_000  # ~12 KB, with room for the demo results
    for name, text in [("README.md", README), *DOCS.items()]:
        base = ROOT if name == "README.md" else ROOT / "docs"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (base / target).exists(), f"{name}: link to {target}"
    for doc in ("operators.md", "pipelines.md", "cli.md", "benchmarks.md", "architecture.md"):
        assert f"(docs/{doc})" in README, doc


def test_docs_speak_of_the_repository_only():
    words = re.compile(r"\b(session|sessions|NOTES|issue \d+|the issue)\b")
    for name, text in [("README.md", README), *DOCS.items()]:
        assert not words.search(text), f"{name}: {words.search(text).group(0)!r}"


def test_architecture_module_map_lists_every_module():
    doc = DOCS["architecture.md"]
    table = doc[doc.index("## Module map"):doc.index("## Where the DALI layer")]
    for f in sorted((ROOT / "dali_mixup").rglob("*.py")):
        rel = f.relative_to(ROOT / "dali_mixup").as_posix()
        if f.name == "__init__.py" and rel != "dali/__init__.py":
            continue
        assert f"`{rel}`" in table or f"`{f.name}`" in table, rel


def test_cli_doc_table_matches_the_dispatch_table():
    doc = DOCS["cli.md"]
    for name, (module, func, _) in cli.COMMANDS.items():
        row = next(ln for ln in doc.splitlines() if ln.startswith(f"| `{name}` |"))
        runs = "benchmarks.run" if name == "bench" else module
        assert f"`{runs}`" in row, row


@pytest.mark.parametrize("name", ["README.md", "pipelines.md", "docker.md"])
def test_module_paths_in_commands_exist(name):
    text = README if name == "README.md" else DOCS[name]
    for module in re.findall(r"-m ((?:dali_mixup|benchmarks)[\w.]*)", text):
        path = ROOT / module.replace("dali_mixup.pipelines", "pipelines").replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), module


def test_the_operator_table_names_real_operators():
    import dali_mixup as dm
    import dali_mixup.fn as mfn

    for layer, mod in (("dm", dm), ("mfn", mfn)):
        for name in re.findall(rf"`{layer}\.(\w+)`", README):
            assert callable(getattr(mod, name)), f"{layer}.{name}"
