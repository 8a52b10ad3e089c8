"""MCP host configuration files (Claude Desktop, Claude Code, Cursor, VS Code): entries that launch our
servers and the agent, printed or merged into the host's file with a backup.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError

Client = Literal["claude-desktop", "claude-code", "cursor", "vscode"]
CLIENTS: tuple[Client, ...] = ("claude-desktop", "claude-code", "cursor", "vscode")
SERVERS = ("files", "shell", "web", "agent")


def agent_command() -> list[str]:
    """How to start this installation's `agent` command, with absolute paths (hosts have their own PATH)."""
    script = Path(sys.executable).parent / "agent"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "agent.cli"]


def server_entries(servers: list[str], root: Path, *, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """`mcpServers`-style entries: our files/shell servers confined to `root`, web, and the agent itself."""
    base = agent_command()
    root = root.resolve()
    args = {
        "files": ["server", "files", str(root)],
        "shell": ["server", "shell", str(root)],
        "web": ["server", "web"],
        "agent": ["serve", "--workspace", str(root)],
    }
    entries: dict[str, dict[str, Any]] = {}
    for name in servers:
        if name not in args:
            raise ConfigError(f"--servers: unknown server {name!r}; choose from {', '.join(SERVERS)}")
        entry: dict[str, Any] = {"command": base[0], "args": [*base[1:], *args[name]]}
        if name == "agent" and env:
            entry["env"] = dict(env)
        entries["deepseek-agent" if name == "agent" else f"agent-{name}"] = entry
    return entries


def config_path(client: Client, *, project: Path | None = None) -> Path:
    """The file a host reads its MCP servers from (user scope, or the project for claude-code and vscode)."""
    home = Path.home()
    if client == "claude-desktop":
        system = platform.system()
        if system == "Darwin":
            return home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
        if system == "Windows":
            return Path(os.environ.get("APPDATA", home)) / "Claude" / "claude_desktop_config.json"
        return Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "Claude" / "claude_desktop_config.json"
    project = (project or Path.cwd()).resolve()
    if client == "claude-code":
        return project / ".mcp.json"
    if client == "cursor":
        return project / ".cursor" / "mcp.json"
    return project / ".vscode" / "mcp.json"


def host_document(client: Client, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON a host expects: `mcpServers` everywhere but VS Code (`servers`, with `type`)."""
    if client == "vscode":
        return {"servers": {name: {"type": "stdio", **entry} for name, entry in entries.items()}}
    return {"mcpServers": entries}


def install(client: Client, entries: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Merge `entries` into the host's file, keeping everything else; returns the backup's path (if any).

    The old file is copied to `<file>.bak-<time>` first and the new one is written atomically.
    """
    key = "servers" if client == "vscode" else "mcpServers"
    document: dict[str, Any] = {}
    backup = None
    if path.exists():
        try:
            document = json.loads(path.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix or move it first") from None
        if not isinstance(document, dict) or not isinstance(document.get(key, {}), dict):
            raise ConfigError(f"{path}: expected a JSON object whose '{key}' is an object")
        backup = path.with_name(f"{path.name}.bak-{dt.datetime.now():%Y%m%d-%H%M%S}")
        shutil.copy2(path, backup)
    section = dict(document.get(key, {}))
    section.update(host_document(client, entries)[key])
    document[key] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return backup
