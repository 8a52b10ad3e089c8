"""No credential of the agent reaches a model-run command: servers start with the SDK's safe environment.

A secret is planted in `agent run`'s environment; the model runs a command that prints its own environment and
its parent's (`/proc/$PPID/environ`, the shell server or the sandbox's runner), through the builtin shell server
and through a shell server declared in the task, on each sandbox.
"""

from __future__ import annotations

import sys

import pytest
import yaml

from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.test_builtin_servers import require
from tests.test_cli_run import run_cli
from tests.test_sandbox_bubblewrap import _bwrap_problem
from tests.test_sandbox_docker import _docker_problem

# Sandboxes and signals look at machine-wide state (bwrap and docker processes, labelled containers,
# `agent sandbox prune --all`): with pytest-xdist these modules share one worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sandboxes")

SECRETS = {
    "DEEPSEEK_API_KEY": "sk-planted-deepseek-0f3a",
    "OPENAI_API_KEY": "sk-planted-openai-77c1",
    "VLLM_API_KEY": "planted-vllm-5e2d",
    "AGENT_SERVE_TOKEN": "planted-serve-9b40",
    "MY_COMPANY_DB_PASSWORD": "planted-db-c3d8",
}
SNOOP = "env; echo ---parent---; tr '\\0' '\\n' < /proc/$PPID/environ; echo ---end---"
PROBLEMS = {"local": lambda: None, "bubblewrap": _bwrap_problem, "docker": _docker_problem}


def snoop(tmp_path, task: dict) -> str:
    """Run the task with the secrets planted; return what the model's command printed."""
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("shell__run_command", {"command": SNOOP})]),
              ScriptedTurn(content="looked")]
    with ScriptedModelServer(script) as model:
        (tmp_path / "task.yaml").write_text(yaml.safe_dump({"prompt": "look around", "model": model.model_string,
                                                            "workspace": {}, **task}))
        proc = run_cli("run", str(tmp_path / "task.yaml"), "--json", cwd=tmp_path, timeout=180, env=SECRETS)
        assert proc.returncode == 0, proc.stderr
        output = next(m for m in model.requests[-1].body["messages"] if m["role"] == "tool")["content"]
    assert "---parent---" in output and "---end---" in output, output  # the command really ran
    assert "PATH=" in output.split("---parent---")[1], output  # and read its parent's environment
    return output


@pytest.mark.parametrize("kind", ["local", "bubblewrap", "docker"])
def test_the_builtin_shell_server_keeps_the_agents_secrets_from_commands(tmp_path, kind):
    require(PROBLEMS[kind]())
    output = snoop(tmp_path, {"builtin_servers": ["shell"], "sandbox": {"kind": kind}})
    for name, value in SECRETS.items():
        assert value not in output, f"{name} reached a model-run command on {kind}"


@pytest.mark.parametrize("kind", ["local", "bubblewrap", "docker"])
def test_a_task_server_keeps_the_agents_secrets_from_commands(tmp_path, kind):
    require(PROBLEMS[kind]())
    shell = {"command": sys.executable,
             "args": ["-m", "agent.servers.shell", "${WORKSPACE}", "--sandbox", kind]}
    output = snoop(tmp_path, {"servers": {"shell": shell}})
    for name, value in SECRETS.items():
        assert value not in output, f"{name} reached a model-run command on {kind}"


def test_a_variable_named_in_the_entrys_env_reaches_the_server_and_nothing_else(tmp_path):
    shell = {"command": sys.executable, "args": ["-m", "agent.servers.shell", "${WORKSPACE}", "--env-allow", "GRANTED"],
             "env": {"GRANTED": "${MY_COMPANY_DB_PASSWORD}"}}
    output = snoop(tmp_path, {"servers": {"shell": shell}})
    assert f"GRANTED={SECRETS['MY_COMPANY_DB_PASSWORD']}" in output
    for name in ("DEEPSEEK_API_KEY", "OPENAI_API_KEY", "VLLM_API_KEY", "AGENT_SERVE_TOKEN"):
        assert SECRETS[name] not in output
