"""Importers: Toolathlon task folders and MCP-Atlas rows (CSV, JSONL, JSON) become `TaskSpec`s.

Each imported task says what it needs that this installation lacks (servers, framework tools), so a suite
can report it before anything runs. Benchmark servers we have are mapped onto ours (filesystem -> files,
terminal / cli-mcp-server -> shell, fetch -> web); any other server can be supplied as an mcpServers entry
named like the benchmark's server (`servers=`).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agent.tools.config import ServerSpec, expand_vars, parse_servers

from ..errors import ConfigError
from ..task import TaskSpec

TOOLATHLON_WORKSPACE_PLACEHOLDER = "!!<<<<||||workspace_dir||||>>>>!!"

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

TOOLATHLON_LOCAL_TOOLS = {
    "claim_done": "offered (claim_done)",
    "handle_overlong_tool_outputs": "offered (read_output, search_output)",
    "manage_context": "approximated: automatic compaction and context_status, no model-driven truncation",
}

ATLAS_SERVERS = (
    "airtable", "alchemy", "arxiv", "brave-search", "calculator", "cli-mcp-server", "clinicaltrialsgov", "context7",
    "ddg-search", "desktop-commander", "e2b-server", "exa", "fetch", "filesystem", "git", "github", "google-maps",
    "google-workspace", "lara-translate", "mcp-code-executor", "mcp-server-code-runner", "memory", "met-museum",
    "mongodb", "national-parks", "notion", "open-library", "osm-mcp-server", "oxylabs", "pubmed", "slack",
    "twelvedata", "weather", "weather-data", "whois", "wikipedia",
)


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


# --- Toolathlon ----------------------------------------------------------------------------------------


def is_toolathlon_task(folder: Path) -> bool:
    return (folder / "task_config.json").is_file() and (folder / "docs" / "task.md").is_file()


def import_toolathlon_task(folder: str | Path, *, servers: Mapping[str, ServerSpec] | None = None,
                           toolathlon_root: str | Path | None = None) -> ImportedTask:
    """A Toolathlon task folder (task_config.json, docs/task.md, docs/agent_system_prompt.md,
    initial_workspace/, preprocess/main.py, evaluation/main.py, groundtruth_workspace/) as a task.

    The checker and preprocess script run as modules, as Toolathlon runs them: from the Toolathlon checkout
    (`toolathlon_root`, else found above `tasks/`) as `tasks.<pool>.<task>.evaluation.main`, else from the
    task's parent folder as `<task>.evaluation.main`.
    """
    folder = Path(folder).resolve()
    task_id = folder.name
    imported = ImportedTask(id=task_id, kind="toolathlon", source=str(folder))
    try:
        config = json.loads((folder / "task_config.json").read_text(encoding="utf-8"))
        prompt = (folder / "docs" / "task.md").read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        imported.problem = f"cannot read the task: {exc}"
        return imported
    if not isinstance(config, dict):
        imported.problem = "task_config.json is not an object"
        return imported
    system_path = folder / "docs" / "agent_system_prompt.md"
    system = system_path.read_text(encoding="utf-8") if system_path.is_file() else None
    if system is not None:
        system = system.replace(TOOLATHLON_WORKSPACE_PLACEHOLDER, "${WORKSPACE}").replace("local-claim_done", "claim_done")
    user = dict(servers or {})
    entries: dict[str, Any] = {}
    for name in config.get("needed_mcp_servers") or []:
        spec, _ = _server_for(name, user)
        if spec is None:
            imported.missing_servers.append(name)
        else:
            entries[name] = spec
    local_tools = list(config.get("needed_local_tools") or [])
    for tool in local_tools:
        if tool not in TOOLATHLON_LOCAL_TOOLS:
            imported.warnings.append(f"framework tool {tool!r} is not offered here")
    if imported.missing_servers:
        imported.problem = f"needs servers we do not have: {', '.join(imported.missing_servers)}"

    root, module = _toolathlon_module(folder, toolathlon_root)
    pythonpath = f'PYTHONPATH="{root}${{PYTHONPATH:+:$PYTHONPATH}}"'
    setup = []
    if (folder / "preprocess" / "main.py").is_file():
        setup.append(f'WS="$PWD"; cd "{root}" && {pythonpath} "{sys.executable}" -m {module}.preprocess.main '
                     f'--agent_workspace "$WS" --launch_time "$(date "+%Y-%m-%d %H:%M:%S %A")"')
    grade: dict[str, Any] = {}
    if (folder / "evaluation" / "main.py").is_file():
        grade["commands"] = [{
            "name": "evaluation/main.py",
            "run": f'cd "{root}" && {pythonpath} "$PYTHON" -m {module}.evaluation.main --agent_workspace '
                   '"$AGENT_WORKSPACE" --groundtruth_workspace "$GROUNDTRUTH_WORKSPACE" --res_log_file '
                   '"$RES_LOG_FILE" --launch_time "$LAUNCH_TIME"',
        }]
    else:
        imported.warnings.append("no evaluation/main.py: runs cannot pass")
        grade["commands"] = [{"name": "no checker", "run": "exit 1"}]
    if (folder / "groundtruth_workspace").is_dir():
        grade["groundtruth"] = str(folder / "groundtruth_workspace")
    workspace: dict[str, Any] = {"setup": setup, "setup_timeout_s": 600}
    if (folder / "initial_workspace").is_dir():
        workspace["files"] = str(folder / "initial_workspace")
    try:
        imported.spec = TaskSpec.model_validate({
            "name": task_id, "prompt": prompt, "system": system, "servers": entries, "workspace": workspace,
            "claim_done": "claim_done" in local_tools, "grade": grade,
            # Toolathlon's run_parallel.sh: 100 steps per task.
            "limits": {"max_steps": 100, "tool_timeout_s": 300},
        })
    except Exception as exc:  # a malformed field in the benchmark's files
        imported.problem = f"cannot build a task from it: {exc}"
    return imported


def _toolathlon_module(folder: Path, root: str | Path | None) -> tuple[Path, str]:
    """(folder to run from, dotted module of the task folder)."""
    if root is not None:
        root = Path(root).resolve()
        try:
            return root, ".".join(folder.relative_to(root).parts)
        except ValueError:
            pass
    for parent in folder.parents:
        if parent.name == "tasks":
            return parent.parent, ".".join(folder.relative_to(parent.parent).parts)
    return folder.parent, folder.name


# --- MCP-Atlas -----------------------------------------------------------------------------------------


def read_atlas_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an MCP-Atlas task file: CSV with a header, JSONL, or a JSON list; column names upper-cased."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    rows: list[Any]
    if path.suffix.lower() == ".csv":
        csv.field_size_limit(sys.maxsize)
        rows = list(csv.DictReader(text.splitlines(keepends=True)))
    elif path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(rows, list):
            raise ConfigError(f"{path}: expected a JSON list of task rows")
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ConfigError(f"{path}, line {number}: not valid JSON: {exc}") from None
    out = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: row {number} is not an object")
        out.append({str(k).strip().upper(): v for k, v in row.items()})
    return out


def _list_field(value: Any) -> list[Any]:
    """A list given as a list, JSON text, a Python literal (as the sample CSV writes claims) or lines."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    text = str(value).strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(parsed, list | tuple):
            return list(parsed)
    return [line.strip("-• ").strip() for line in text.splitlines() if line.strip()]


def split_atlas_tool(name: str, extra_servers: Iterable[str] = ()) -> tuple[str, str]:
    """`<server>_<tool>` -> (server, tool), by the longest known server name that prefixes it."""
    known = sorted({*ATLAS_SERVERS, *extra_servers}, key=len, reverse=True)
    for server in known:
        if name.startswith(server + "_"):
            return server, name[len(server) + 1:]
    server, _, tool = name.partition("_")
    return server, tool


def _trajectory_tools(value: Any) -> list[str] | None:
    """Tool names called in an OpenAI-format reference trajectory; None when there is none to read."""
    if value is None or value == "":
        return None
    messages = value
    if isinstance(value, str):
        try:
            messages = json.loads(value)
        except ValueError:
            return None
    if not isinstance(messages, list):
        return None
    names = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or []:
            name = (call.get("function") or {}).get("name") if isinstance(call, dict) else None
            if isinstance(name, str):
                names.append(name)
    return names


def import_atlas_rows(path: str | Path, *, servers: Mapping[str, ServerSpec] | None = None,
                      data: str | Path | None = None) -> list[ImportedTask]:
    """MCP-Atlas rows (`TASK, ENABLED_TOOLS, PROMPT, GTFA_CLAIMS, TRAJECTORY`) as claims-graded tasks.

    Only ENABLED_TOOLS reach the model (distractors included). A server we lack makes the task unrunnable
    when the reference trajectory calls it (or when there is no trajectory); when only distractor tools
    of it are enabled, they are dropped with a warning. `data` (MCP-Atlas's /data folder) is copied into
    each run's workspace.
    """
    path = Path(path)
    user = dict(servers or {})
    out = []
    for number, row in enumerate(read_atlas_rows(path), 1):
        task_id = str(row.get("TASK") or row.get("TASK_ID") or f"{path.stem}-{number}").strip()
        imported = ImportedTask(id=task_id, kind="atlas", source=f"{path}:row {number}")
        prompt = str(row.get("PROMPT") or "").strip()
        if not prompt:
            imported.problem = "no PROMPT"
            out.append(imported)
            continue
        enabled = [str(t) for t in _list_field(row.get("ENABLED_TOOLS"))]
        claims = [str(c) for c in _list_field(row.get("GTFA_CLAIMS"))]
        used = _trajectory_tools(row.get("TRAJECTORY"))
        required = {split_atlas_tool(t, user)[0] for t in used} if used is not None else None
        by_server: dict[str, list[str]] = {}
        for tool in enabled:
            server, name = split_atlas_tool(tool, user)
            by_server.setdefault(server, []).append(name)
        entries: dict[str, Any] = {}
        for server, tools in by_server.items():
            spec, mapping = _server_for(server, user)
            if spec is None:
                if required is None or server in required:
                    imported.missing_servers.append(server)
                else:
                    imported.warnings.append(f"distractor tools of {server} dropped (server not available): "
                                             f"{', '.join(tools)}")
                continue
            allow = []
            for tool in tools:
                ours = mapping.get(tool, tool) if mapping is not None else tool
                if ours is None or (mapping is not None and tool not in mapping):
                    imported.warnings.append(f"tool {server}_{tool} has no counterpart here; dropped")
                elif ours not in allow:
                    allow.append(ours)
            entries[server] = spec.model_copy(update={"allow": allow})
        if imported.missing_servers:
            imported.problem = f"needs servers we do not have: {', '.join(imported.missing_servers)}"
        if not claims:
            imported.warnings.append("no GTFA_CLAIMS: runs cannot be graded")
        workspace: dict[str, Any] = {}
        if data is not None:
            workspace["files"] = str(Path(data).resolve())
        elif "filesystem" in by_server:
            imported.warnings.append("no data folder given: the filesystem tools see an empty workspace")
        try:
            imported.spec = TaskSpec.model_validate({
                "name": task_id, "prompt": prompt, "servers": entries, "workspace": workspace,
                "grade": {"claims": claims or ["(no claims given)"], "pass_coverage": 0.75},
                # MCP-Atlas v2: 100 tool calls, 256 turns.
                "limits": {"max_tool_calls": 100, "max_steps": 256},
            })
        except Exception as exc:
            imported.problem = f"cannot build a task from it: {exc}"
        out.append(imported)
    return out


def describe(imported: ImportedTask) -> str:
    """One line (plus warnings) for the pre-run report."""
    head = f"{imported.kind}:{imported.id} ({imported.source})"
    lines = [f"{head}: {imported.problem}" if imported.problem else f"{head}: ok"]
    lines += [f"    warning: {w}" for w in imported.warnings]
    return "\n".join(lines)
