"""What the benchmark importers share: `ImportedTask`, user-supplied server entries, our servers as stand-ins
for the benchmarks' own. Toolathlon folders: `toolathlon.py`; MCP-Atlas rows: `atlas.py`.

Each imported task says what it needs that this installation lacks (servers, framework tools), so a suite
can report it before anything runs. Benchmark servers we have are mapped onto ours (filesystem -> files,
terminal / cli-mcp-server -> shell, fetch -> web); any other server can be supplied as an mcpServers entry
named like the benchmark's server (`servers=`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agent.tools.config import ServerSpec, expand_vars, parse_servers

from ..errors import ConfigError
from ..task import TaskSpec

# Our servers as mcpServers entries; ${WORKSPACE} is bound per run.
OUR_SERVERS: dict[str, dict[str, Any]] = {
    "files": {"command": sys.executable, "args": ["-m", "agent.servers.files", "${WORKSPACE}"],
              "resource_tools": False},  # read_file does it; the resources stay for @files: mentions
    "shell": {"command": sys.executable, "args": ["-m", "agent.servers.shell", "${WORKSPACE}"]},
    "web": {"command": sys.executable, "args": ["-m", "agent.servers.web"]},
}
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Benchmark server -> (our server, benchmark tool -> our tool; None: a tool we do not have).
_FILESYSTEM_TOOLS: dict[str, str | None] = {
    "read_file": "read_file", "read_text_file": "read_file", "read_media_file": "read_media_file",
    "read_multiple_files": "read_multiple_files", "write_file": "write_file", "edit_file": "edit_file",
    "create_directory": "create_directory", "list_directory": "list_directory",
    "list_directory_with_sizes": "list_directory", "directory_tree": "directory_tree", "move_file": "move_file",
    "search_files": "glob_search", "get_file_info": "get_file_info", "list_allowed_directories": "list_allowed_roots",
}
SERVER_MAP: dict[str, tuple[str, dict[str, str | None]]] = {
    "filesystem": ("files", _FILESYSTEM_TOOLS),
    "terminal": ("shell", {"run_command": "run_command", "show_security_rules": None}),
    "cli-mcp-server": ("shell", {"run_command": "run_command", "show_security_rules": None}),
    "fetch": ("web", {"fetch": "fetch"}),
}

@dataclass
class ImportedTask:
    """One imported task; `problem` says why it cannot run here (None: it can)."""

    id: str
    kind: Literal["toolathlon", "atlas"]
    source: str
    spec: TaskSpec | None = None
    missing_servers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problem: str | None = None
    needs: list[str] = field(default_factory=list)  # each thing it lacks here, one per line in --list
    servers: dict[str, str] = field(default_factory=dict)  # benchmark server -> who serves it here

    @property
    def runnable(self) -> bool:
        return self.problem is None and self.spec is not None


@dataclass
class ServerEntries:
    """The entries of a `--servers` file: those that can start here, and why each other one cannot."""

    specs: dict[str, ServerSpec] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # server -> reason, e.g. "NOTION_TOKEN is not set"


_KEPT_VARS = frozenset({"WORKSPACE", "SITE_URL"})  # bound per run


def read_server_entries(path: str | Path | None) -> ServerEntries:
    """mcpServers entries (Claude Desktop JSON, .mcp.json, VS Code mcp.json, MCP-Atlas's
    `mcp_server_template.json`, or YAML) for benchmark servers we do not ship, keyed by the benchmark's server
    name. `${VAR}` is expanded from the environment per server (except `${WORKSPACE}` and `${SITE_URL}`, bound
    per run): a server whose variables are unset or empty is `unavailable`, with the reason, and the rest of
    the file still loads (as MCP-Atlas enables only the servers whose keys are set). An `env` given as a list
    (MCP-Atlas's key rotation) uses the first choice whose variables are all set."""
    if path is None:
        return ServerEntries()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # YAML reads JSON too
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read server entries: {exc}") from None
    if isinstance(data, dict):
        data = data.get("mcpServers", data.get("servers", data))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of server name to server entry, got {type(data).__name__}")
    out = ServerEntries()
    expanded: dict[str, Any] = {}
    for name, entry in data.items():
        if isinstance(entry, dict) and isinstance(entry.get("env"), list):
            choices = [c for c in entry["env"] if isinstance(c, dict)]
            usable = next((c for c in choices if not _unset_vars(c)), choices[0] if choices else {})
            entry = {**entry, "env": usable}
        missing = _unset_vars(entry)
        if missing:
            names = ", ".join(missing)
            out.unavailable[str(name)] = (f"environment variable{'s' if len(missing) > 1 else ''} {names} "
                                          f"{'are' if len(missing) > 1 else 'is'} not set (needed by {name} in {path})")
            continue
        expanded[name] = _expand(entry, f"{path}: {name}")
    out.specs = parse_servers(expanded, where=str(path))
    return out


def load_server_entries(path: str | Path | None) -> dict[str, ServerSpec]:
    """The entries of a `--servers` file that can start here (see `read_server_entries`)."""
    return read_server_entries(path).specs


def _unset_vars(value: Any) -> list[str]:
    """`${VAR}` names in `value` (strings, lists, mappings) that are unset or empty and have no default."""
    found: list[str] = []
    if isinstance(value, str):
        for match in _VAR_RE.finditer(value):
            name, default = match.group(1), match.group(2)
            if name not in _KEPT_VARS and default is None and not os.environ.get(name, "").strip() \
                    and name not in found:
                found.append(name)
    elif isinstance(value, list):
        for item in value:
            found += [n for n in _unset_vars(item) if n not in found]
    elif isinstance(value, dict):
        for item in value.values():
            found += [n for n in _unset_vars(item) if n not in found]
    return found


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return expand_vars(value, where=where, keep=_KEPT_VARS)
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _server_for(name: str, user: Mapping[str, ServerSpec]) -> tuple[ServerSpec | None, dict[str, str | None] | None]:
    """The entry that serves benchmark server `name` here, and its tool-name map (None: names kept)."""
    if name in user:
        return user[name], None
    if name in SERVER_MAP:
        ours, tools = SERVER_MAP[name]
        return ServerSpec.model_validate(OUR_SERVERS[ours]), tools
    return None, None


def describe(imported: ImportedTask) -> str:
    """One line (plus warnings) for the pre-run report."""
    head = f"{imported.kind}:{imported.id} ({imported.source})"
    lines = [f"{head}: {imported.problem}" if imported.problem else f"{head}: ok"]
    lines += [f"    warning: {w}" for w in imported.warnings]
    return "\n".join(lines)
