"""MCP-Atlas task rows (`TASK, ENABLED_TOOLS, PROMPT, GTFA_CLAIMS, TRAJECTORY`; CSV, JSONL or JSON) as
claims-graded `TaskSpec`s."""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.tools.config import ServerSpec

from ..errors import ConfigError
from ..task import TaskSpec
from .claims import clean_claim
from .importers import OUR_SERVERS, SERVER_MAP, ImportedTask, _server_for

# Every server name MCP-Atlas uses: its mcp_server_template.json (36, with `clinicaltrialsgov-mcp-server` for the
# paper's `clinicaltrialsgov`), the paper's list, and servers its tasks name that the template lacks.
ATLAS_SERVERS = (
    "airtable", "alchemy", "arxiv", "brave-search", "calculator", "cli-mcp-server", "clinicaltrialsgov",
    "clinicaltrialsgov-mcp-server", "context7", "ddg-search", "desktop-commander", "e2b-server", "exa", "fetch",
    "filesystem", "git", "github", "google-maps", "google-workspace", "lara-translate", "mcp-code-executor",
    "mcp-server-code-runner", "memory", "met-museum", "mongodb", "national-parks", "notion", "open-library",
    "osm-mcp-server", "oxylabs", "pubmed", "slack", "twelvedata", "weather", "weather-data", "whois", "wikipedia",
    "balldontlie", "rijksmuseum-server",
)
# Older tool names the benchmark's own tooling renames (services/mcp_eval/extract_mcp_servers_per_task.py).
LEGACY_PREFIXES = {"brave_": "brave-search_", "MongoDB_": "mongodb_"}
DATA_ALIAS = "/data"
"""Where MCP-Atlas's shared files live; each run's workspace (a copy of --atlas-data) answers to it."""
SOLUTIONS_SUFFIX = ".solutions"
"""Scripted trajectories of a row live in `<rows file stem>.solutions/<TASK>/<NAME>.yaml` beside the file."""


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
    """`<server>_<tool>` -> (server, tool). Server names hold `-` and `_` (`cli-mcp-server_run_command`,
    `mcp-server-code-runner_run-code`): the longest known server name that prefixes it wins (MCP-Atlas's
    servers, `extra_servers` such as a --servers file's, and ours: files, shell, web); else the text before
    the first `_`."""
    for old, new in LEGACY_PREFIXES.items():
        if name.startswith(old) and not name.startswith(new):
            name = new + name[len(old):]
            break
    known = sorted({*ATLAS_SERVERS, *OUR_SERVERS, *extra_servers}, key=len, reverse=True)
    for server in known:
        if name.startswith(server + "_") and len(name) > len(server) + 1:
            return server, name[len(server) + 1:]
    server, _, tool = name.partition("_")
    return server, tool


def solutions_folder(rows_file: str | Path, task_id: str) -> Path:
    """Where `--scripted NAME` finds a row's trajectory: `<stem>.solutions/<TASK>/NAME.yaml` beside the file."""
    rows_file = Path(rows_file).resolve()
    return rows_file.parent / f"{rows_file.stem}{SOLUTIONS_SUFFIX}" / task_id


def _behind_alias(spec: ServerSpec) -> ServerSpec:
    """A benchmark server entry (stdio) run behind the /data alias, so that its `/data` arguments, environment
    and tool arguments reach the run's copy and its replies name /data again (agent.servers.alias_proxy)."""
    if spec.command is None:
        return spec
    # The template pins handshake-era servers (the benchmark's client speaks `initialize`); some die on the
    # 2026-07-28 discovery probe, so go straight to the handshake.
    return spec.model_copy(update={"command": sys.executable, "protocol": "legacy", "args": [
        "-m", "agent.servers.alias_proxy", f"{DATA_ALIAS}=${{WORKSPACE}}", "--", spec.command, *spec.args]})


def _ours_at_data(spec: ServerSpec) -> ServerSpec:
    """Our files and shell servers, answering to /data as the benchmark's filesystem and cli-mcp-server do."""
    module = spec.args[1] if len(spec.args) > 1 else ""
    if module == "agent.servers.files":
        return spec.model_copy(update={"args": [*spec.args, "--alias", f"{DATA_ALIAS}=${{WORKSPACE}}"]})
    if module == "agent.servers.shell":
        return spec.model_copy(update={"args": [*spec.args, "--alias", DATA_ALIAS]})
    return spec


def _missing_program(spec: ServerSpec) -> str | None:
    """The program a stdio entry starts when it is not installed here (npx, uvx...), else None."""
    if spec.command is None or os.path.isabs(spec.command) or shutil.which(spec.command):
        return None
    return spec.command


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
                      data: str | Path | None = None,
                      unavailable: Mapping[str, str] | None = None) -> list[ImportedTask]:
    """MCP-Atlas rows (`TASK, ENABLED_TOOLS, PROMPT, GTFA_CLAIMS, TRAJECTORY`) as claims-graded tasks.

    Only ENABLED_TOOLS reach the model (distractors included). A server is served by the entry of the same
    name in `servers` (e.g. MCP-Atlas's own mcp_server_template.json, run behind the /data alias), else by
    our stand-in (filesystem -> files, cli-mcp-server -> shell, fetch -> web, answering to /data). A server
    with neither, or `unavailable` (server -> reason, e.g. an unset key), makes the task unrunnable when the
    reference trajectory calls it (or when there is no trajectory); when only distractor tools of it are
    enabled, they are dropped with a warning. `data` (MCP-Atlas's /data folder) is copied into each run's
    workspace, which the task's servers see as /data.
    """
    path = Path(path)
    user = dict(servers or {})
    blocked = dict(unavailable or {})
    names = [*user, *blocked]
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
        claims = [c for c in (clean_claim(str(c)) for c in _list_field(row.get("GTFA_CLAIMS"))) if len(c) > 3]
        used = _trajectory_tools(row.get("TRAJECTORY"))
        required = {split_atlas_tool(t, names)[0] for t in used} if used is not None else None
        by_server: dict[str, list[str]] = {}
        for tool in enabled:
            server, name = split_atlas_tool(tool, names)
            by_server.setdefault(server, []).append(name)
        entries: dict[str, Any] = {}
        reasons: list[str] = []
        for server, tools in by_server.items():
            needed = required is None or server in required
            spec, mapping = _server_for(server, user)
            why = None
            if spec is None:
                why = blocked.get(server)
            elif (program := _missing_program(spec)) is not None:
                why, spec = f"{program} is not installed (needed by {server})", None
                if server in SERVER_MAP:  # our stand-in rather than nothing
                    spec, mapping = _server_for(server, {})
                    imported.warnings.append(f"{why}: our {SERVER_MAP[server][0]} server stands in for {server}")
            if spec is None:
                if needed:
                    imported.missing_servers.append(server)
                    imported.needs.append(f"server {server}" + (f": {why}" if why else ""))
                    if why:
                        reasons.append(why)
                else:
                    imported.warnings.append(f"distractor tools of {server} dropped (server not available"
                                             f"{': ' + why if why else ''}): {', '.join(tools)}")
                continue
            imported.servers[server] = "--servers entry" if mapping is None else f"ours ({SERVER_MAP[server][0]})"
            spec = _behind_alias(spec) if mapping is None else _ours_at_data(spec)
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
            if reasons:
                imported.problem += f" ({'; '.join(reasons)})"
        if not claims:
            imported.warnings.append("no GTFA_CLAIMS: runs cannot be graded")
        workspace: dict[str, Any] = {}
        if data is not None:
            workspace["files"] = str(Path(data).resolve())
        elif DATA_ALIAS in prompt or any(s in by_server for s in ("filesystem", "cli-mcp-server", "desktop-commander")):
            imported.warnings.append(f"no data folder given (--atlas-data): {DATA_ALIAS} is an empty workspace")
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
