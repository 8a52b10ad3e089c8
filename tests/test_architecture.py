"""The package's shape as a contract: one import root, dependencies pointing one way, the harness apart.

Layers, from the bottom: the shared modules (`agent.errors`, `agent.version`) import nothing of ours;
`agent.runtime`, `agent.tools` and `agent.servers` import only layers below them; the core (the other `agent.*`
modules and `agent.models`) may import all of those; `agent.eval`, the benchmark harness, sits on top and
only the command line (`agent.cli`, which dispatches `agent eval`) imports it.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

import agent

REPO = Path(__file__).resolve().parent.parent
# The installed layout: package -> folder in the repository (pyproject's package-dir mapping).
PACKAGES = {
    "agent": REPO / "agent",
    "agent.tools": REPO / "tools",
    "agent.servers": REPO / "servers",
    "agent.runtime": REPO / "runtime",
}
SHARED = {"agent.errors", "agent.version"}
ENTRY = {"agent.cli"}  # the command line dispatches to everything, `agent eval` included
LAYER = {"shared": 0, "agent.runtime": 1, "agent.tools": 1, "agent.servers": 2, "core": 3, "agent.eval": 4,
         "entry": 5}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def group_of(module: str) -> str:
    if module in SHARED:
        return "shared"
    if module in ENTRY:
        return "entry"
    for group in ("agent.eval", "agent.tools", "agent.servers", "agent.runtime"):
        if module == group or module.startswith(group + "."):
            return group
    return "core"


def imports_of(name: str, path: Path) -> set[str]:
    """Modules of ours that `name` imports anywhere in its body (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    known = modules()
    return {m for m in found if m in known and m != name}


def group_graph() -> dict[str, set[tuple[str, str]]]:
    """group -> {(importing module, imported module)} across groups."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for name, path in modules().items():
        for target in imports_of(name, path):
            if group_of(target) != group_of(name):
                edges[f"{group_of(name)} -> {group_of(target)}"].add((name, target))
    return edges


def test_the_installed_package_has_one_import_root():
    assert Path(agent.__file__).resolve().parent == REPO / "agent"
    for module, path in (("agent.tools.hub", "tools/hub.py"), ("agent.servers.files", "servers/files.py"),
                         ("agent.runtime.sandbox", "runtime/sandbox.py")):
        assert Path(importlib.import_module(module).__file__ or "").resolve() == REPO / path


@pytest.mark.parametrize("name", ["tools", "servers", "runtime"])
def test_no_top_level_tools_servers_or_runtime_is_importable_outside_the_checkout(tmp_path, name):
    done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


def test_a_built_wheel_holds_only_the_agent_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"agent"}
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("agent/tools/hub.py", "agent/servers/files.py", "agent/runtime/sandbox.py",
                     "agent/eval/suite.py", "agent/py.typed", "agent/tools/py.typed"):
        assert expected in names


def test_the_shared_modules_import_nothing_of_ours():
    for name in SHARED:
        assert imports_of(name, modules()[name]) == set(), name


def test_dependencies_between_layers_point_one_way():
    upward = {edge: pairs for edge, pairs in group_graph().items()
              if LAYER[edge.split(" -> ")[0]] <= LAYER[edge.split(" -> ")[1]]}
    shown = "\n".join(f"{edge}: {sorted(pairs)[:5]}" for edge, pairs in sorted(upward.items()))
    assert not upward, f"imports against the layering (each line: from -> to, with examples):\n{shown}"


def test_importing_the_sdk_does_not_import_the_eval_harness():
    code = ("import sys; from agent import Agent, TaskSpec, load_task; import agent.cli, agent.serve, agent.runner; "
            "print(sorted(m for m in sys.modules if m.startswith('agent.eval')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
