"""The code's shape: imports run only down the layers, and only agent and tools install.

The layers, bottom to top, are in ``LAYERS``: settings, errors and messages, then
inputs and the state (with the summary message, which the state's reducer places), the
memory model's registry and readers, storage, the memory updates, the
model's tools, the graph, thread administration, sessions, and the CLI, terminal,
auth and web on top. A
new module fails ``test_every_module_has_a_layer`` until it is placed there, so where it
sits is a decision, not an accident.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path

from tests.helpers import PROJECT

INSTALLED_PACKAGES = ("agent", "tools")
CHECKOUT_ONLY = ("tests", "bench")
"""Top-level folders a checkout runs and installed code must never import."""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("agent", "agent.errors", "agent.settings", "agent.prompts", "agent.startup", "agent.bridge"),
    ("agent.validation", "agent.memory.summary", "agent.state", "agent.redaction"),
    ("agent.memory", "agent.memory.events", "agent.memory.changes"),
    ("agent.memory.entries", "agent.presentation"),
    ("agent.memory.store",),
    ("agent.memory.timeline",),
    ("agent.store", "agent.store.*", "agent.checkpointer"),
    ("agent.memory.updates", "agent.memory.tree", "agent.model"),
    ("agent.memory.budget", "agent.memory.compaction"),
    ("agent.memory.compactor",),
    ("agent.memory.node",),
    ("tools", "tools.memory"),
    ("agent.graph",),
    ("tools.admin",),
    ("agent.session", "agent.sync", "agent.server_graph"),
    (
        "agent.cli",
        "agent.tree_view",
        "agent.terminal",
        "agent.auth",
        "agent.server_auth",
        "agent.web*",
        "agent.__main__",
    ),
)
"""Module name patterns per layer, bottom to top (``fnmatch``, as ``agent.store.*``)."""


def layer_of(module: str) -> int | None:
    """The layer ``module`` belongs to (0 is the bottom), or ``None`` if it has none."""
    for index, patterns in enumerate(LAYERS):
        if any(fnmatchcase(module, pattern) for pattern in patterns):
            return index
    return None


def module_name(path: Path) -> str:
    """``agent/store/saver.py`` is ``agent.store.saver``; an ``__init__`` is its package."""
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def installed_modules() -> dict[str, Path]:
    """Every module of the installed packages, by name."""
    return {
        module_name(path): path
        for package in INSTALLED_PACKAGES
        for path in sorted((PROJECT / package).rglob("*.py"))
    }


def imported_names(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """Every module ``module`` imports, at any depth of its code (functions included).

    ``from agent.store import sql`` imports the module ``agent.store.sql``; a name that
    is not a module (``from agent.errors import RequestError``) counts as its module.
    """
    known = set(known)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return found


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Who imports whom, among the project's own top-level packages only."""
    ours = (*INSTALLED_PACKAGES, *CHECKOUT_ONLY)
    return {
        module: {
            name
            for name in imported_names(module, path, modules)
            if name.split(".")[0] in ours and name != module
        }
        for module, path in modules.items()
    }


def layer_violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Imports that run up a layer, or out of the installed packages, one line each."""
    problems = []
    for module, imports in sorted(graph.items()):
        for name in sorted(imports):
            if name.split(".")[0] in CHECKOUT_ONLY:
                problems.append(f"{module} imports {name}, which is not installed")
                continue
            own, theirs = layer_of(module), layer_of(name)
            if own is not None and theirs is not None and theirs > own:
                problems.append(f"{module} (layer {own}) imports {name} (layer {theirs})")
    return problems


def import_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One loop of imports (first module repeated at the end), or ``[]`` if there is none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for name in sorted(graph.get(module, ())):
            if state.get(name) == "open":
                return [*path[path.index(name) :], name]
            if name not in state and (loop := visit(name)):
                return loop
        state[module] = "done"
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (loop := visit(module)):
            return loop
    return []


def test_every_module_has_a_layer() -> None:
    unplaced = [module for module in installed_modules() if layer_of(module) is None]
    assert unplaced == [], f"add these modules to LAYERS in {Path(__file__).name}: {unplaced}"


def test_no_module_imports_from_a_layer_above_it() -> None:
    problems = layer_violations(import_graph(installed_modules()))
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_no_modules_import_each_other_in_a_loop() -> None:
    loop = import_cycle(import_graph(installed_modules()))
    assert not loop, "modules that import each other: " + " -> ".join(loop)


def test_the_checks_see_upward_imports_function_level_ones_and_loops(tmp_path: Path) -> None:
    """Guards the tests above: they would fail on a bad import, not pass on anything."""
    source = tmp_path / "errors.py"
    source.write_text(
        "from agent import settings\n"
        "def show() -> None:\n"
        "    from agent.cli import main\n"
        "    import tests.helpers\n"
    )
    known = {"agent.settings", "agent.cli", "tests.helpers"}
    imports = imported_names("agent.errors", source, known)
    assert imports == {"agent.settings", "agent.cli", "tests.helpers"}
    assert layer_violations({"agent.errors": imports}) == [
        f"agent.errors (layer 0) imports agent.cli (layer {layer_of('agent.cli')})",
        "agent.errors imports tests.helpers, which is not installed",
    ]
    assert import_cycle({"agent.session": {"agent.sync"}, "agent.sync": {"agent.session"}}) == [
        "agent.session",
        "agent.sync",
        "agent.session",
    ]
    assert layer_of("agent.new_module") is None


def test_the_wheel_holds_only_agent_and_tools(tmp_path: Path) -> None:
    """``pip install .`` installs memagent's own packages, every module of them, and no more.

    The wheel is built from a copy of the checkout (as it is on disk, so a file not yet
    committed counts), offline, with the setuptools of this environment.
    """
    source = tmp_path / "checkout"
    shutil.copytree(
        PROJECT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("memagent-*.whl")

    names = zipfile.ZipFile(wheel).namelist()

    dist_info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info/"
    strays = [n for n in names if not n.startswith(("agent/", "tools/", dist_info))]
    assert not strays, f"the wheel installs more than agent and tools: {strays}"
    modules = {str(path.relative_to(PROJECT)) for path in installed_modules().values()}
    assert modules <= set(names)
