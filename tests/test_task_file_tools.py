"""Task files reach the SDK's tools too: Python functions (`tools:`), other agents (`agents:`), and `--otel` spans,
through the installed `agent run` against the scripted model server."""

from __future__ import annotations

import json

import yaml

from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.test_cli_run import run_cli

FUNCTIONS = '''
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


def test_a_task_file_offers_python_functions_named_as_module_colon_function(tmp_path):
    (tmp_path / "mytools.py").write_text(FUNCTIONS)
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("add", {"a": 20, "b": 22})]), ScriptedTurn(content="42")]
    with ScriptedModelServer(script) as model:
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(
            {"prompt": "add", "model": model.model_string, "tools": ["mytools:add"]}))
        done = run_cli("run", str(tmp_path / "task.yaml"), "--json", cwd=tmp_path)
        tool = next(t for t in model.requests[0].body["tools"] if t["function"]["name"] == "add")
        result = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert done.returncode == 0, done.stderr
    assert tool["function"]["description"].startswith("Add two integers")
    assert result == ["42"] and json.loads(done.stdout)["answer"] == "42"


def test_a_task_file_naming_a_missing_function_is_refused_naming_the_field(tmp_path):
    (tmp_path / "mytools.py").write_text(FUNCTIONS)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({"prompt": "x", "tools": ["mytools:subtract"]}))
    done = run_cli("run", str(tmp_path / "task.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    assert "tools[0]" in done.stderr and "has no function 'subtract'" in done.stderr


def test_a_task_file_offers_another_agent_as_a_tool_and_its_cost_rolls_up(tmp_path):
    def answer(request) -> ScriptedTurn:
        messages = request.body["messages"]
        tools = [t["function"]["name"] for t in request.body.get("tools", [])]
        if "researcher" in tools:  # the parent
            results = [m["content"] for m in messages if m["role"] == "tool"]
            if not results:
                return ScriptedTurn(tool_calls=[ScriptedToolCall("researcher", {"task": "find the capital"})])
            return ScriptedTurn(content=f"parent heard: {results[0]}")
        return ScriptedTurn(content="Oslo")  # the child

    with ScriptedModelServer(answer) as model:
        (tmp_path / "child.yaml").write_text(yaml.safe_dump({"model": model.model_string, "think": "none"}))
        (tmp_path / "task.yaml").write_text(yaml.safe_dump({
            "prompt": "capital of Norway?", "model": model.model_string,
            "agents": {"researcher": {"task": "child.yaml", "description": "Looks facts up"}}}))
        done = run_cli("run", str(tmp_path / "task.yaml"), "--json", cwd=tmp_path)
        requests = len(model.requests)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "Oslo" in result["answer"]
    assert result["usage"]["requests"] == requests == 3  # two of the parent's, one of the child's


def test_agent_run_otel_exports_the_runs_spans(tmp_path):
    script = [ScriptedTurn(content="done")]
    with ScriptedModelServer(script) as model:
        (tmp_path / "task.yaml").write_text(yaml.safe_dump({"prompt": "hi", "model": model.model_string}))
        done = run_cli("run", str(tmp_path / "task.yaml"), "--otel", "--quiet", cwd=tmp_path,
                       env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "otel-test"})
    assert done.returncode == 0, done.stderr
    assert '"name": "invoke_agent' in done.stderr and '"service.name": "otel-test"' in done.stderr
    assert '"gen_ai.operation.name": "chat"' in done.stderr


def test_agent_run_approve_ask_refuses_a_call_when_there_is_no_terminal_to_ask(tmp_path):
    (tmp_path / "mytools.py").write_text(FUNCTIONS)
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("add", {"a": 1, "b": 2})]), ScriptedTurn(content="ok")]
    with ScriptedModelServer(script) as model:
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(
            {"prompt": "add", "model": model.model_string, "tools": ["mytools:add"]}))
        done = run_cli("run", str(tmp_path / "task.yaml"), "--approve", "ask", cwd=tmp_path)  # stdin: not a TTY
        result = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert done.returncode == 0, done.stderr
    assert len(result) == 1 and "refused" in result[0] and "no terminal to ask" in result[0]
