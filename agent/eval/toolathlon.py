"""Toolathlon task folders (task_config.json, docs/task.md, initial_workspace/, preprocess/, evaluation/) as
`TaskSpec`s."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.tools.config import ServerSpec

from ..task import TaskSpec
from .importers import ImportedTask, _server_for

TOOLATHLON_WORKSPACE_PLACEHOLDER = "!!<<<<||||workspace_dir||||>>>>!!"

TOOLATHLON_LOCAL_TOOLS = {
    "claim_done": "offered (claim_done)",
    "handle_overlong_tool_outputs": "offered (read_output, search_output)",
    "manage_context": "approximated: automatic compaction and context_status, no model-driven truncation",
}

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


