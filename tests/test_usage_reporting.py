"""Usage a user can trust: every attempt is a request, and a server that sends no usage gets an estimate that
says it is one, never a false 0."""

from __future__ import annotations

import json

import yaml

from agent import Agent
from agent.testing import Fault, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.test_cli_run import run_cli

FAST_RETRY = {"max_retries": 2, "retry_base_s": 0.01, "retry_max_s": 0.05}
TWO_STEPS = [ScriptedTurn(reasoning="Echo first.", tool_calls=[ScriptedToolCall("demo__echo", {"text": "hi"})]),
             ScriptedTurn(reasoning="Done.", content="finished")]


def model_entry(server: ScriptedModelServer, profile: str | None = None, **update) -> dict:
    return {"profile": profile or server.dialect, "base_url": server.url, "model": server.model, **update}


def llama_cpp_like(script) -> ScriptedModelServer:
    """An OpenAI-compatible server that streams no usage at all, as llama.cpp's server does."""
    return ScriptedModelServer(script, dialect="vllm", model="qwen3", send_usage=False)


def write_task(folder, model: dict, **fields):
    from tests.test_cli_run import DEMO_SERVER

    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump({"prompt": "Echo, then answer.", "model": model,
                                    "servers": {"demo": {"command": "python", "args": [str(DEMO_SERVER)]}},
                                    **fields}))
    return path


def test_a_run_that_fails_after_every_retry_counts_each_attempt_as_a_request(tmp_path):
    with ScriptedModelServer([Fault(status=500)] * 3) as server:
        task = write_task(tmp_path, model_entry(server, **FAST_RETRY))
        proc = run_cli("run", str(task), "--json", "--trace", str(tmp_path / "trace.jsonl"), cwd=tmp_path)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["stop_reason"] == "error" and "gave up after 3 attempts" in result["error"]
    assert result["usage"]["requests"] == 3 and result["usage"]["failed_requests"] == 3


def test_agent_run_shows_failed_attempts_beside_the_requests(tmp_path):
    with ScriptedModelServer([Fault(status=500)] * 3) as server:
        task = write_task(tmp_path, model_entry(server, **FAST_RETRY))
        proc = run_cli("run", str(task), "--trace", str(tmp_path / "trace.jsonl"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "3 requests (3 failed), 0 prompt tokens" in proc.stderr


async def test_retried_attempts_of_a_successful_run_are_counted(tmp_path):
    from tests.test_model_wire import DEMO

    with ScriptedModelServer([Fault(status=503), *TWO_STEPS]) as server:
        result = await Agent(model_entry(server, **FAST_RETRY), DEMO, trace_dir=tmp_path).run("go")
    assert result.ok, result.error
    assert (result.usage.requests, result.usage.failed_requests) == (3, 1)
    assert result.usage.note is None


async def test_a_server_without_usage_gets_estimated_tokens_marked_as_estimated(tmp_path):
    from tests.test_model_wire import DEMO

    with llama_cpp_like(TWO_STEPS) as server:
        result = await Agent(model_entry(server, "openai-compatible"), DEMO, trace_dir=tmp_path).run("go")
    assert result.ok, result.error
    assert result.usage.prompt_tokens > 100 and result.usage.completion_tokens > 0
    assert result.usage.estimated_requests == 2
    assert result.usage.note == "estimated (server sent no usage)"


async def test_an_estimate_is_priced_when_the_model_has_prices(tmp_path):
    from tests.test_model_wire import DEMO

    with ScriptedModelServer(TWO_STEPS, send_usage=False) as server:
        result = await Agent(server.model_string, DEMO, trace_dir=tmp_path).run("go")
    assert result.ok, result.error
    assert result.cost > 0 and result.usage.note == "estimated (server sent no usage)"


def test_agent_run_json_says_the_usage_is_estimated(tmp_path):
    with llama_cpp_like(TWO_STEPS) as server:
        task = write_task(tmp_path, model_entry(server, "openai-compatible"))
        proc = run_cli("run", str(task), "--json", "--trace", str(tmp_path / "trace.jsonl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    usage = json.loads(proc.stdout)["usage"]
    assert usage["note"] == "estimated (server sent no usage)" and usage["prompt_tokens"] > 100


def test_agent_run_output_marks_estimated_tokens(tmp_path):
    with llama_cpp_like(TWO_STEPS) as server:
        task = write_task(tmp_path, model_entry(server, "openai-compatible"))
        proc = run_cli("run", str(task), "--trace", str(tmp_path / "trace.jsonl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = next(line.strip() for line in proc.stderr.splitlines() if line.strip().startswith("2 requests"))
    assert summary.startswith("2 requests, ~") and summary.endswith("· estimated (server sent no usage)")
    assert " 0 prompt tokens" not in proc.stderr


def test_a_trace_read_back_keeps_the_estimate_note(tmp_path):
    with llama_cpp_like(TWO_STEPS) as server:
        task = write_task(tmp_path, model_entry(server, "openai-compatible"))
        trace = tmp_path / "trace.jsonl"
        assert run_cli("run", str(task), "--trace", str(trace), cwd=tmp_path).returncode == 0
    proc = run_cli("trace", str(trace), cwd=tmp_path)
    assert json.loads(proc.stdout)["usage"]["note"] == "estimated (server sent no usage)"
