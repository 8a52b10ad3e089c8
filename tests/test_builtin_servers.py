"""The same task through `agent run` on each sandbox: the builtin shell server runs in the workspace there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.test_cli_run import run_cli
from tests.test_sandbox_bubblewrap import _bwrap_problem
from tests.test_sandbox_docker import _docker_problem

# Sandboxes and signals look at machine-wide state (bwrap and docker processes, labelled containers,
# `agent sandbox prune --all`): with pytest-xdist these modules share one worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sandboxes")


def require(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run .ci/docker-setup.sh before the tests", pytrace=False)
    pytest.skip(problem)


@pytest.mark.parametrize("kind", ["local", "bubblewrap", "docker"])
def test_a_task_runs_its_commands_in_the_chosen_sandbox(tmp_path, kind):
    require({"local": lambda: None, "bubblewrap": _bwrap_problem, "docker": _docker_problem}[kind]())
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "data.txt").write_text("3\n4\n")
    command = "awk '{s+=$1} END {print s}' data.txt > sum.txt && cat sum.txt && pwd"
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("shell__run_command", {"command": command})]),
              ScriptedTurn(content="the sum is 7")]
    with ScriptedModelServer(script) as model:
        task = {"prompt": "sum data.txt", "model": model.model_string, "builtin_servers": ["shell", "files"],
                "workspace": {"files": "seed"}, "sandbox": {"kind": kind}}
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
        proc = run_cli("run", str(tmp_path / "task.yaml"), "--keep-workspace", "--json", cwd=tmp_path, timeout=180)
        result = next(m for m in model.requests[-1].body["messages"] if m["role"] == "tool")["content"]
        tools = [t["function"]["name"] for t in model.requests[0].body["tools"]]
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "the sum is 7"
    assert "shell__run_command" in tools and "files__read_file" in tools
    workspace = Path(proc.stderr.split("workspace: ")[1].split(" (kept)")[0])
    assert (workspace / "sum.txt").read_text() == "7\n"
    expected_cwd = "/workspace" if kind != "local" else str(workspace.resolve())
    assert "7" in result and expected_cwd in result
