"""`agent run` end to end: a real CLI process, a real MCP server subprocess, the scripted model over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.testing import Fault, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.trace import read_trace, result_from_trace

ROOT = Path(__file__).resolve().parent.parent
DEMO_SERVER = ROOT / "tests" / "servers" / "demo_server.py"
AGENT = Path(sys.executable).parent / "agent"


def run_cli(*args: str, cwd: Path, timeout: float = 90, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL")}
    environment.update(env or {})
    return subprocess.run([str(AGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=environment)


def write_task(folder: Path, model: str, servers: dict | None = None, **fields) -> Path:
    task = {
        "name": "e2e",
        "prompt": "Add 2 and 3 with the tool, then say the sum.",
        "model": model,
        "servers": servers if servers is not None else {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}},
        **fields,
    }
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


ADD_THEN_ANSWER = [
    ScriptedTurn(reasoning="Use the add tool.", tool_calls=[ScriptedToolCall("demo__add", {"a": 2, "b": 3})]),
    ScriptedTurn(reasoning="The tool said 5.", content="The sum is 5."),
]


def test_agent_run_over_stdio_answers_exits_zero_and_writes_a_complete_trace(tmp_path):
    with ScriptedModelServer(ADD_THEN_ANSWER) as model:
        task = write_task(tmp_path, model.model_string)
        trace = tmp_path / "trace.jsonl"
        proc = run_cli("run", str(task), "--trace", str(trace), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "The sum is 5."
    assert "demo__add" in proc.stderr and "step 2" in proc.stderr
    kinds = [e.type for e in read_trace(trace)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    for kind in ("think_chosen", "model_request", "model_response", "tool_call", "tool_result"):
        assert kind in kinds
    assert "model_delta" not in kinds
    result = result_from_trace(trace)
    assert (result.stop_reason, result.steps, result.tool_calls, result.answer) == ("answer", 2, 1, "The sum is 5.")
    tool_result = next(e for e in read_trace(trace) if e.type == "tool_result")
    assert tool_result.content == "5" and not tool_result.is_error


def test_agent_run_over_streamable_http_answers(tmp_path, demo_http_url):
    with ScriptedModelServer(ADD_THEN_ANSWER) as model:
        task = write_task(tmp_path, model.model_string, servers={"demo": {"url": demo_http_url}})
        proc = run_cli("run", str(task), "--trace", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "The sum is 5."


def test_agent_run_json_output_and_model_and_think_overrides(tmp_path):
    with ScriptedModelServer(ADD_THEN_ANSWER, dialect="vllm", model="served") as model:
        task = write_task(tmp_path, "deepseek:deepseek-flash")
        proc = run_cli("run", str(task), "--json", "--model", model.model_string, "--think", "max", cwd=tmp_path)
        modes = model.think_modes
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["stop_reason"] == "answer" and result["answer"] == "The sum is 5."
    assert modes == ["max", "max"]
    assert Path(result["trace_path"]).parent.name == "runs"


def test_a_run_stopped_by_max_steps_exits_one(tmp_path):
    loop = [ScriptedTurn(tool_calls=[ScriptedToolCall("demo__echo", {"text": "again"})])] * 3
    with ScriptedModelServer(loop) as model:
        task = write_task(tmp_path, model.model_string)
        proc = run_cli("run", str(task), "--max-steps", "2", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["stop_reason"] == "max_steps"


def test_an_optional_server_that_fails_to_start_is_reported_in_the_output_and_the_trace(tmp_path):
    missing = str(tmp_path / "no-such-server")
    servers = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]},
               "extra": {"command": missing, "required": False}}
    with ScriptedModelServer(ADD_THEN_ANSWER) as model:
        task = write_task(tmp_path, model.model_string, servers=servers)
        trace = tmp_path / "trace.jsonl"
        proc = run_cli("run", str(task), "--trace", str(trace), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "optional server 'extra' did not start" in proc.stderr and missing in proc.stderr
    started = read_trace(trace)[0]
    assert started.type == "run_started" and started.servers == ["demo"]
    assert list(started.failed_servers) == ["extra"] and missing in started.failed_servers["extra"]


@pytest.mark.parametrize(
    ("status", "needle"),
    [(401, "authentication failed (HTTP 401)"), (402, "insufficient balance (HTTP 402)")],
)
def test_auth_and_balance_errors_end_the_run_with_a_clear_message_and_a_trace(tmp_path, status, needle):
    with ScriptedModelServer([Fault(status=status)]) as model:
        task = write_task(tmp_path, model.model_string)
        trace = tmp_path / "trace.jsonl"
        proc = run_cli("run", str(task), "--trace", str(trace), cwd=tmp_path)
        requests = len(model.requests)
    assert proc.returncode == 1
    assert needle in proc.stderr
    assert requests == 1  # never retried
    result = result_from_trace(trace)
    assert result.stop_reason == "error" and needle in result.error


def test_the_quickstart_example_runs_offline_as_a_labelled_scripted_demo(tmp_path):
    proc = run_cli("run", str(ROOT / "examples" / "quickstart" / "task.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "DEEPSEEK_API_KEY is not set: running a SCRIPTED DEMO offline" in proc.stderr
    assert "South" in proc.stdout and "2,458" in proc.stdout
    assert "sales__query" in proc.stderr


def test_an_empty_api_key_counts_as_unset_and_the_quickstart_runs_its_scripted_demo(tmp_path):
    # A host's "DEEPSEEK_API_KEY": "${DEEPSEEK_API_KEY}" of an unset variable gives the empty string.
    proc = run_cli("run", str(ROOT / "examples" / "quickstart" / "task.yaml"), cwd=tmp_path,
                   env={"DEEPSEEK_API_KEY": ""})
    assert proc.returncode == 0, proc.stderr
    assert "DEEPSEEK_API_KEY is not set: running a SCRIPTED DEMO offline" in proc.stderr


def test_trace_command_prints_the_run_result(tmp_path):
    with ScriptedModelServer(ADD_THEN_ANSWER) as model:
        task = write_task(tmp_path, model.model_string)
        run_cli("run", str(task), "--trace", str(tmp_path / "t.jsonl"), "--quiet", cwd=tmp_path)
    proc = run_cli("trace", str(tmp_path / "t.jsonl"), cwd=tmp_path)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["answer"] == "The sum is 5."


def test_help_documents_the_commands_and_model_syntax(tmp_path):
    top = run_cli("--help", cwd=tmp_path)
    run = run_cli("run", "--help", cwd=tmp_path)
    assert top.returncode == 0 and "run" in top.stdout and "PROFILE:BASE_URL#MODEL" in top.stdout
    for option in ("--model", "--think", "--trace", "--max-steps", "--demo", "--json"):
        assert option in run.stdout


def test_the_sdk_example_runs_as_written(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "DEEPSEEK_API_KEY"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "sdk_quickstart.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=90, env=environment)
    assert proc.returncode == 0, proc.stderr
    assert "SCRIPTED DEMO" in proc.stdout and "South" in proc.stdout and "[answer: 3 steps" in proc.stdout
