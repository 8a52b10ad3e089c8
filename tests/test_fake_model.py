"""The in-process fake models run the real agent loop with no HTTP: FakeModel replays, FunctionModel decides."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from agent import Agent
from agent.errors import BadRequestError, ModelAuthError
from agent.models import ModelClient, Price, profiles
from agent.testing import (
    FakeModel,
    Fault,
    FunctionModel,
    ModelCall,
    ScriptedToolCall,
    ScriptedTurn,
    ScriptExhausted,
)
from agent.think import ThinkMode
from agent.tools.local import LocalTool
from agent.tools.results import ToolOutcome
from agent.trace import read_trace
from tests.test_cli_run import DEMO_SERVER, ROOT, run_cli

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}


async def _double(arguments: dict) -> ToolOutcome:
    return ToolOutcome(text=str(2 * arguments["x"]))


DOUBLE = LocalTool(
    name="double",
    description="Double a number.",
    input_schema={"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    handler=_double,
)


def agent_with(model: ModelClient, tmp_path: Path, **options) -> Agent:
    return Agent(model, options.pop("servers", None), trace_dir=tmp_path, **options)


async def test_fake_model_drives_the_loop_through_a_local_tool(tmp_path):
    fake = FakeModel([
        ScriptedTurn(reasoning="Double it.", tool_calls=[ScriptedToolCall("double", {"x": 21})]),
        ScriptedTurn(reasoning="The tool said 42.", content="It is 42."),
    ])
    result = await agent_with(fake, tmp_path, local_tools=[DOUBLE]).run("Double 21.")
    assert result.stop_reason == "answer", result.error
    assert (result.answer, result.steps, result.tool_calls) == ("It is 42.", 2, 1)
    second = fake.calls[1]
    assert second.tool_results == ["42"]
    assert "double" in second.tool_names
    # DeepSeek's rule holds in-process too: with tools, earlier reasoning goes back as reasoning_content.
    assert [m["reasoning_content"] for m in second.messages if m["role"] == "assistant"] == ["Double it."]
    assert fake.remaining == 0


async def test_fake_model_drives_a_real_stdio_mcp_server(tmp_path):
    fake = FakeModel([
        ScriptedTurn(tool_calls=[ScriptedToolCall("demo__add", {"a": 2, "b": 3})]),
        "The sum is 5.",
    ])
    result = await agent_with(fake, tmp_path, servers=DEMO).run("Add 2 and 3.")
    assert result.stop_reason == "answer", result.error
    assert result.answer == "The sum is 5."
    assert fake.calls[1].tool_results == ["5"]
    assert {"demo__add", "demo__echo"} <= set(fake.calls[0].tool_names)


async def test_function_model_answers_from_the_tool_result_it_sees(tmp_path):
    def decide(call: ModelCall) -> ScriptedTurn:
        if call.tool_results:
            return ScriptedTurn(content=f"The server echoed {call.tool_results[0]!r}.")
        word = call.messages[-1]["content"].split()[-1]
        return ScriptedTurn(tool_calls=[ScriptedToolCall("demo__echo", {"text": word})])

    model = FunctionModel(decide)
    result = await agent_with(model, tmp_path, servers=DEMO).run("Echo the word parrot")
    assert result.answer == "The server echoed 'parrot'."
    assert len(model.calls) == 2 and model.calls[1].last_message["role"] == "tool"


async def test_an_async_function_model_is_awaited(tmp_path):
    async def answer(call: ModelCall) -> str:
        return f"{len(call.messages)} messages"

    result = await agent_with(FunctionModel(answer), tmp_path).run("hi")
    assert result.answer == "2 messages"  # system prompt and the task


@pytest.mark.parametrize("profile", ["deepseek", "vllm"])
async def test_think_modes_chosen_by_the_policy_reach_the_model_through_the_profile(tmp_path, profile):
    modes = iter([ThinkMode.max, ThinkMode.none, ThinkMode.high])
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("double", {"x": 1})])] * 2 + [ScriptedTurn(content="ok")]
    fake = FakeModel(script, profile=profile)
    result = await agent_with(fake, tmp_path, local_tools=[DOUBLE], think=lambda state: next(modes)).run("go")
    assert result.stop_reason == "answer", result.error
    assert [c.mode for c in fake.calls] == [ThinkMode.max, ThinkMode.none, ThinkMode.high]
    # read back from the wire fields of each profile, not passed alongside them
    if profile == "vllm":
        assert fake.calls[1].body["chat_template_kwargs"] == {"thinking": False}
        assert "reasoning" in next(m for m in fake.calls[2].messages if m["role"] == "assistant")
    else:
        assert fake.calls[1].body["thinking"] == {"type": "disabled"}


async def test_reasoning_and_content_stream_as_deltas_and_reasoning_only_when_thinking(tmp_path):
    turn = ScriptedTurn(reasoning="Let me think about it.", content="Forty-two.")
    for think, kinds in (("high", {"reasoning", "content"}), ("none", {"content"})):
        events = []
        result = await agent_with(FakeModel([turn]), tmp_path, think=think).run("?", on_event=events.append)
        deltas = [e for e in events if e.type == "model_delta"]
        assert {d.kind for d in deltas} == kinds
        assert "".join(d.text for d in deltas if d.kind == "content") == "Forty-two."
        assert result.answer == "Forty-two."


async def test_running_out_of_script_ends_the_run_with_an_error_naming_the_call(tmp_path):
    fake = FakeModel([ScriptedTurn(tool_calls=[ScriptedToolCall("double", {"x": 2})])])
    result = await agent_with(fake, tmp_path, local_tools=[DOUBLE]).run("Double 2.")
    assert result.stop_reason == "error"
    assert result.error_info is not None and result.error_info.kind == "ScriptExhausted"
    assert "no turn left for model call #2" in result.error and "holds 1 entries" in result.error
    assert "tool: '4'" in result.error  # the last message the model was given


async def test_running_out_of_script_raises_when_called_directly():
    fake = FakeModel([])
    body = fake.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.none)
    with pytest.raises(ScriptExhausted, match="no turn left for model call #1"):
        await fake.complete(body)


async def test_a_fault_in_the_script_is_retried_as_the_http_client_retries_it(tmp_path):
    events = []
    fake = FakeModel([Fault(503), Fault(429, retry_after=2), "done"])
    result = await agent_with(fake, tmp_path).run("go", on_event=events.append)
    assert result.answer == "done"
    retries = [e for e in events if e.type == "model_retry"]
    assert [(r.attempt, r.delay_s) for r in retries] == [(1, 0.0), (2, 2.0)]
    assert "Server Overloaded" in retries[0].error
    assert (result.usage.requests, result.usage.failed_requests) == (3, 2)


async def test_a_client_error_fault_raises_the_clients_typed_error():
    fake = FakeModel([Fault(401), "never"])
    body = fake.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.high)
    with pytest.raises(ModelAuthError) as caught:
        await fake.complete(body)
    assert caught.value.status == 401 and fake.remaining == 1


async def test_what_the_function_raises_reaches_the_run(tmp_path):
    def refuse(call: ModelCall) -> ScriptedTurn:
        raise BadRequestError("prompt too rude", status=400)

    result = await agent_with(FunctionModel(refuse), tmp_path).run("go")
    assert result.stop_reason == "error" and "prompt too rude" in result.error

    def broken(call: ModelCall) -> ScriptedTurn:
        raise ValueError("a bug in the test's model function")

    with pytest.raises(ValueError, match="a bug in the test's model function"):
        await agent_with(FunctionModel(broken), tmp_path).run("go")


async def test_without_the_reasoning_echo_the_fake_deepseek_refuses_like_the_api(tmp_path, monkeypatch):
    monkeypatch.setitem(profiles.PROFILES, "deepseek", dataclasses.replace(profiles.DEEPSEEK, echo_reasoning="never"))
    fake = FakeModel([ScriptedTurn(reasoning="r", tool_calls=[ScriptedToolCall("double", {"x": 1})]), "ok"])
    result = await agent_with(fake, tmp_path, local_tools=[DOUBLE]).run("go")
    assert result.stop_reason == "error"
    assert "reasoning_content in the thinking mode must be passed back" in result.error


async def test_usage_is_estimated_from_the_request_and_cache_hits_grow_with_the_prefix(tmp_path):
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("double", {"x": n})]) for n in range(3)] + ["done"]
    result = await agent_with(FakeModel(script), tmp_path, local_tools=[DOUBLE]).run("go " * 400)
    usage = result.usage
    assert usage.prompt_tokens > 4 * 300 and usage.completion_tokens > 0
    assert 0 < usage.cache_hit_tokens < usage.prompt_tokens
    assert usage.cache_hit_tokens + usage.cache_miss_tokens == usage.prompt_tokens
    assert usage.note is None  # reported as a server reports it, not marked as an estimate
    assert result.cost == 0.0


async def test_turn_usage_and_a_price_give_the_cost(tmp_path):
    turn = ScriptedTurn(content="ok", usage={"prompt_tokens": 1_000_000, "cached_tokens": 0,
                                             "completion_tokens": 1_000_000})
    fake = FakeModel([turn], price=Price(cache_hit=0.1, cache_miss=1.0, output=2.0))
    result = await agent_with(fake, tmp_path).run("go")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (1_000_000, 1_000_000)
    assert result.cost == pytest.approx(3.0)


async def test_tool_call_ids_are_numbered_unless_the_script_names_them(tmp_path):
    fake = FakeModel([
        ScriptedTurn(tool_calls=[ScriptedToolCall("double", {"x": 1}), ScriptedToolCall("double", {"x": 2}, id="mine")]),
        ScriptedTurn(tool_calls=[ScriptedToolCall("double", '{"x": 3}')]),
        "done",
    ])
    await agent_with(fake, tmp_path, local_tools=[DOUBLE]).run("go")
    ids = [c["id"] for m in fake.calls[-1].messages if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    assert ids == ["call_0", "mine", "call_1"]
    assert fake.calls[-1].tool_results == ["6"]


def test_the_fakes_are_model_clients_with_a_label_and_no_base_url():
    for model in (FakeModel([]), FunctionModel(lambda call: "x", profile="vllm", model="m")):
        assert isinstance(model, ModelClient)
        assert model.base_url is None
    assert FakeModel([]).profile.name == "deepseek"
    assert FunctionModel(lambda call: "x", profile="vllm", model="m").label == "FunctionModel:m"


def test_the_scripted_demo_of_agent_run_still_goes_over_http(tmp_path):
    trace = tmp_path / "trace.jsonl"
    proc = run_cli("run", str(ROOT / "examples" / "quickstart" / "task.yaml"), "--demo", "--trace", str(trace),
                   "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    started = next(e for e in read_trace(trace) if e.type == "run_started")
    assert started.model.startswith("deepseek:http://127.0.0.1:"), started.model
