"""What the benchmark importers share: `ImportedTask`, user-supplied server entries, our servers as stand-ins
for the benchmarks' own. Toolathlon folders: `toolathlon.py`; MCP-Atlas rows: `atlas.py`.

Each imported task says what it needs that this installation lacks (servers, framework tools), so a suite
can report it before anything runs. Benchmark servers we have are mapped onto ours (filesystem -> files,
terminal / cli-mcp-server -> shell, fetch -> web); any other server can be supplied as an mcpServers entry
named like the benchmark's server (`servers=`).
"""

from __future__ import annotations

import os
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
    "files": {"command": "python", "args": ["-m", "agent.servers.files", "${WORKSPACE}"]},
    "shell": {"command": "python", "args": ["-m", "agent.servers.shell", "${WORKSPACE}"]},
    "web": {"command": "python", "args": ["-m", "agent.servers.web"]},
}

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

    @property
    def runnable(self) -> bool:
        return self.problem is None and self.spec is not None


def load_server_entries(path: str | Path | None) -> dict[str, ServerSpec]:
    """mcpServers entries (Claude Desktop JSON, .mcp.json, VS Code mcp.json, or YAML) for benchmark servers
    we do not ship, keyed by the benchmark's server name. `${VAR}` is expanded from the environment, except
    `${WORKSPACE}` and `${SITE_URL}`, which are bound per run."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # YAML reads JSON too
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read server entries: {exc}") from None
    if isinstance(data, dict):
        data = data.get("mcpServers", data.get("servers", data))
    environ = {**os.environ, "WORKSPACE": "${WORKSPACE}", "SITE_URL": "${SITE_URL}"}

    def expand(value: Any, where: str) -> Any:
        if isinstance(value, str):
            return expand_vars(value, where=where, environ=environ)
        if isinstance(value, list):
            return [expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: expand(v, f"{where}.{k}") for k, v in value.items()}
        return value

    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of server name to server entry, got {type(data).__name__}")
    return parse_servers(expand(data, str(path)), where=str(path))


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
