"""MCP-Atlas task rows (`TASK, ENABLED_TOOLS, PROMPT, GTFA_CLAIMS, TRAJECTORY`; CSV, JSONL or JSON) as
claims-graded `TaskSpec`s."""

from __future__ import annotations

import ast
import csv
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.tools.config import ServerSpec

from ..errors import ConfigError
from ..task import TaskSpec
from .importers import ImportedTask, _server_for

ATLAS_SERVERS = (
    "airtable", "alchemy", "arxiv", "brave-search", "calculator", "cli-mcp-server", "clinicaltrialsgov", "context7",
    "ddg-search", "desktop-commander", "e2b-server", "exa", "fetch", "filesystem", "git", "github", "google-maps",
    "google-workspace", "lara-translate", "mcp-code-executor", "mcp-server-code-runner", "memory", "met-museum",
    "mongodb", "national-parks", "notion", "open-library", "osm-mcp-server", "oxylabs", "pubmed", "slack",
    "twelvedata", "weather", "weather-data", "whois", "wikipedia",
)


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


