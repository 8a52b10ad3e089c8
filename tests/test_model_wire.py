"""The model client against the scripted server: streaming, reasoning round trip, retries and typed errors."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from agent import Agent
from agent.errors import BadRequestError, InsufficientBalanceError, ModelAuthError, ModelUnavailableError
from agent.models import ChatModel, parse_model, profiles
from agent.testing import Fault, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.think import ThinkMode
from tests.test_cli_run import DEMO_SERVER

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}
FAST_RETRY = {"retry_base_s": 0.01, "retry_max_s": 0.05}


def three_step_script() -> list[ScriptedTurn]:
    return [
        ScriptedTurn(reasoning="First echo.", tool_calls=[ScriptedToolCall("demo__echo", {"text": "a"})]),
        ScriptedTurn(reasoning="", tool_calls=[ScriptedToolCall("demo__add", {"a": 1, "b": 2})]),
        ScriptedTurn(reasoning="Done.", content="finished"),
    ]


def model_for(server: ScriptedModelServer, **update) -> dict:
    config = parse_model(server.model_string).model_dump(exclude_none=True)
    return {**config, **FAST_RETRY, **update}


async def test_multi_step_thinking_run_passes_the_deepseek_reasoning_check(tmp_path):
    with ScriptedModelServer(three_step_script()) as server:
        result = await Agent(model_for(server), DEMO, think="high", trace_dir=tmp_path).run("go")
        bodies = [r.body for r in server.requests]
    assert result.stop_reason == "answer", result.error
    assert result.answer == "finished"
    last = bodies[-1]["messages"]
    assistants = [m for m in last if m["role"] == "assistant"]
    assert [a["reasoning_content"] for a in assistants] == ["First echo.", ""]


async def test_without_the_reasoning_echo_deepseek_refuses_the_request(tmp_path, monkeypatch):
    # The check can fail: a profile that drops the echo gets DeepSeek's 400 from the scripted server.
    monkeypatch.setitem(profiles.PROFILES, "deepseek", dataclasses.replace(profiles.DEEPSEEK, echo_reasoning="never"))
    with ScriptedModelServer(three_step_script()) as server:
        result = await Agent(model_for(server), DEMO, trace_dir=tmp_path).run("go")
    assert result.stop_reason == "error"
    assert "reasoning_content in the thinking mode must be passed back" in result.error


@pytest.mark.parametrize(
    "fault",
    [Fault(status=429, retry_after=0.05), Fault(status=500), Fault(status=503), Fault(cut_stream=True),
     Fault(drop=True)],
    ids=["429", "500", "503", "cut-stream", "drop"],
)
async def test_transient_faults_are_retried_and_the_run_completes(tmp_path, fault):
    script = [fault, *three_step_script()]
    events = []
    with ScriptedModelServer(script) as server:
        result = await Agent(model_for(server), DEMO, trace_dir=tmp_path).run("go", on_event=events.append)
    assert result.stop_reason == "answer", result.error
    retries = [e for e in events if e.type == "model_retry"]
    assert len(retries) == 1 and retries[0].step == 1


async def test_retry_after_is_honoured():
    with ScriptedModelServer([Fault(status=429, retry_after=0.3), ScriptedTurn(content="ok")]) as server:
        delays = []

        async def on_retry(attempt, error, delay):
            delays.append(delay)

        async with ChatModel(parse_model(server.model_string).model_copy(update=FAST_RETRY | {"retry_max_s": 5})) as model:
            body = model.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.none)
            turn = await model.complete(body, on_retry=on_retry)
    assert turn.content == "ok"
    assert delays == [pytest.approx(0.3)]


async def test_retries_run_out_with_a_typed_error():
    with ScriptedModelServer([Fault(status=503)] * 3) as server:
        config = parse_model(server.model_string).model_copy(update=FAST_RETRY | {"max_retries": 2})
        async with ChatModel(config) as model:
            body = model.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.none)
            with pytest.raises(ModelUnavailableError, match="gave up after 3 attempts.*503"):
                await model.complete(body)


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (401, ModelAuthError), (402, InsufficientBalanceError), (422, BadRequestError)],
)
async def test_client_errors_are_typed_and_not_retried(status, error):
    with ScriptedModelServer([Fault(status=status), ScriptedTurn(content="never")]) as server:
        async with ChatModel(parse_model(server.model_string)) as model:
            body = model.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.none)
            with pytest.raises(error) as info:
                await model.complete(body)
        assert len(server.requests) == 1
    assert info.value.status == status


@pytest.mark.parametrize("dialect", ["deepseek", "vllm"])
@pytest.mark.parametrize("stream", [True, False])
async def test_turns_are_read_in_both_dialects_streaming_or_not(dialect, stream):
    turn = ScriptedTurn(reasoning="think", content="text",
                        tool_calls=[ScriptedToolCall("a__b", {"x": 1}), ScriptedToolCall("a__c", '{"y": 2}')])
    with ScriptedModelServer([turn], dialect=dialect) as server:
        config = parse_model(server.model_string).model_copy(update={"stream": stream})
        async with ChatModel(config) as model:
            body = model.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.high)
            got = await model.complete(body)
    assert (got.reasoning, got.content) == ("think", "text")
    assert [(c.name, c.arguments.replace(" ", "")) for c in got.tool_calls] == [("a__b", '{"x":1}'), ("a__c", '{"y":2}')]
    assert got.usage.prompt_tokens > 0 and got.usage.requests == 1


async def test_vllm_empty_tool_calls_mean_no_calls():
    with ScriptedModelServer([ScriptedTurn(content="plain")], dialect="vllm") as server:
        config = parse_model(server.model_string).model_copy(update={"stream": False})
        async with ChatModel(config) as model:
            body = model.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.none)
            got = await model.complete(body)
    assert got.tool_calls == [] and got.content == "plain"


async def test_vllm_model_name_is_discovered_when_left_out():
    with ScriptedModelServer([ScriptedTurn(content="hi")], dialect="vllm", model="deepseek-ai/DeepSeek-V4-Flash") as server:
        async with ChatModel(parse_model(f"vllm:{server.url}")) as model:
            assert await model.resolve_model() == "deepseek-ai/DeepSeek-V4-Flash"


async def test_cache_hits_are_reported_as_the_prefix_grows(tmp_path):
    with ScriptedModelServer(three_step_script()) as server:
        result = await Agent(model_for(server), DEMO, trace_dir=tmp_path).run("go " * 200)
    assert result.usage.cache_hit_tokens > 0
    assert result.usage.cache_hit_tokens + result.usage.cache_miss_tokens == result.usage.prompt_tokens
