"""The SDK: `Agent.run`, `Agent.stream`, limits, claim_done and observations, through real parts."""

from __future__ import annotations

import json
import sys

import anyio

from agent import Agent, RunResult, result_from_trace
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.conftest import DEMO_SERVER

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}


def call(name: str, arguments: dict | str | None = None) -> ScriptedToolCall:
    return ScriptedToolCall(name, arguments if arguments is not None else {})


def tool_messages(server: ScriptedModelServer) -> list[dict]:
    return [m for m in server.requests[-1].body["messages"] if m["role"] == "tool"]


async def test_run_returns_a_result_with_usage_cost_and_trace(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__add", {"a": 20, "b": 22})]), ScriptedTurn(content="42")]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, trace_dir=tmp_path).run("add")
    assert isinstance(result, RunResult) and result.ok
    assert (result.answer, result.steps, result.tool_calls) == ("42", 2, 1)
    assert result.usage.prompt_tokens > 0 and result.usage.requests == 2
    assert result.cost > 0  # deepseek-v4-flash has a price in the table
    assert result.trace_path.parent == tmp_path
    assert result_from_trace(result.trace_path).answer == "42"


async def test_agent_as_context_manager_keeps_servers_up_across_runs(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__note", {"key": "k", "value": "v1"})]), ScriptedTurn(content="one"),
              ScriptedTurn(tool_calls=[call("demo__echo", {"text": "x"})]), ScriptedTurn(content="two")]
    with ScriptedModelServer(script) as server:
        async with Agent(server.model_string, DEMO, trace_dir=tmp_path) as agent:
            assert "demo__echo" in agent.tools
            first = await agent.run("first")
            second = await agent.run("second")
    assert (first.answer, second.answer) == ("one", "two")
    assert first.trace_path != second.trace_path


async def test_history_continues_an_earlier_conversation(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="hello"), ScriptedTurn(content="again")]) as server:
        async with Agent(server.model_string, trace_dir=None) as agent:
            first = await agent.run("hi")
            await agent.run("more", history=first.messages)
        roles = [m["role"] for m in server.requests[-1].body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


async def test_stream_yields_events_in_order_including_deltas(tmp_path):
    script = [ScriptedTurn(reasoning="plan it", tool_calls=[call("demo__echo", {"text": "hi"})]),
              ScriptedTurn(content="said hi")]
    with ScriptedModelServer(script) as server:
        kinds = [event.type async for event in Agent(server.model_string, DEMO, trace_dir=tmp_path).stream("go")]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert "model_delta" in kinds
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("run_finished")


async def test_parallel_tool_calls_run_concurrently_and_results_keep_call_order(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__slow", {"seconds": 0.6}), call("demo__echo", {"text": "fast"}),
                                       call("demo__slow", {"seconds": 0.3})]),
              ScriptedTurn(content="done")]
    events = []
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, trace_dir=tmp_path).run("go", on_event=events.append)
        contents = [m["content"] for m in tool_messages(server)]
    assert result.ok
    assert contents == ["slept 0.6", "fast", "slept 0.3"]  # the calls' order, not the order they finished in
    tool_events = [(e.type, e.arguments if e.type == "tool_call" else e.content) for e in events
                   if e.type in ("tool_call", "tool_result")]
    assert [kind for kind, _ in tool_events[:3]] == ["tool_call"] * 3  # all started before any finished
    assert [content for kind, content in tool_events if kind == "tool_result"] == ["fast", "slept 0.3", "slept 0.6"]


async def test_malformed_tool_arguments_become_an_observation_not_a_crash(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__echo", '{"text": "unterminated')]), ScriptedTurn(content="sorry")]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, trace_dir=tmp_path).run("go")
        observation = tool_messages(server)[0]["content"]
    assert result.ok
    assert "not valid JSON" in observation


async def test_unknown_tool_and_tool_errors_are_observations(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__nope"), call("demo__fail", {"message": "disk full"})]),
              ScriptedTurn(content="recovered")]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, trace_dir=tmp_path).run("go")
        unknown, failed = (m["content"] for m in tool_messages(server))
    assert result.ok
    assert "demo__nope" in unknown and "demo__echo" in unknown
    assert "disk full" in failed


async def test_a_tool_server_that_exits_mid_run_gives_an_observation(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__crash")]), ScriptedTurn(tool_calls=[call("demo__echo", {"text": "x"})]),
              ScriptedTurn(content="the server is gone")]
    with ScriptedModelServer(script) as server:
        with anyio.fail_after(60):
            result = await Agent(server.model_string, DEMO, trace_dir=tmp_path).run("go")
        observations = [m["content"] for m in tool_messages(server)]
    assert result.ok and result.answer == "the server is gone"
    assert "crashing on purpose" in observations[0] or "exited" in observations[0]
    assert observations[1]  # the second call is answered too, not hung


async def test_claim_done_ends_the_run_with_its_summary(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("claim_done", {"summary": "all fixed"})]), ScriptedTurn(content="unused")]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, claim_done=True, trace_dir=tmp_path).run("go")
        requests = len(server.requests)
    assert (result.stop_reason, result.answer) == ("claim_done", "all fixed")
    assert requests == 1


async def test_max_tool_calls_stops_the_run(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__echo", {"text": "a"}), call("demo__echo", {"text": "b"})])] * 3
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, limits={"max_tool_calls": 3}, trace_dir=tmp_path).run("go")
    assert (result.stop_reason, result.tool_calls) == ("max_tool_calls", 2)


async def test_wall_time_interrupts_a_long_tool_call(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__slow", {"seconds": 30})]), ScriptedTurn(content="never")]
    with ScriptedModelServer(script) as server:
        with anyio.fail_after(20):
            result = await Agent(server.model_string, DEMO, limits={"wall_time_s": 1.5}, trace_dir=tmp_path).run("go")
    assert result.stop_reason == "wall_time"
    assert result_from_trace(result.trace_path).stop_reason == "wall_time"


async def test_token_budget_stops_the_run(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__echo", {"text": "x" * 400})])] * 4
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, limits={"max_total_tokens": 300}, trace_dir=tmp_path).run("go")
    assert result.stop_reason == "token_budget"
    assert result.steps < 4


async def test_think_mode_is_sent_on_every_step_and_traced(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__echo", {"text": "x"})]), ScriptedTurn(content="ok")]
    with ScriptedModelServer(script, dialect="vllm") as server:
        result = await Agent(server.model_string, DEMO, think="none", trace_dir=tmp_path).run("go")
        modes = server.think_modes
        kwargs = server.requests[0].body["chat_template_kwargs"]
    assert modes == ["none", "none"]
    assert kwargs == {"thinking": False}
    lines = [json.loads(line) for line in result.trace_path.read_text().splitlines()]
    assert [(e["mode"], e["reason"]) for e in lines if e["type"] == "think_chosen"] == [("none", "fixed: none")] * 2


async def test_the_tool_list_and_prefix_stay_byte_stable_across_steps(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__echo", {"text": str(i)})]) for i in range(3)] + [ScriptedTurn(content="ok")]
    with ScriptedModelServer(script) as server:
        await Agent(server.model_string, DEMO, trace_dir=tmp_path).run("go")
        bodies = [json.dumps(r.body["messages"]) for r in server.requests]
        tools = [json.dumps(r.body["tools"]) for r in server.requests]
    assert len(set(tools)) == 1
    for earlier, later in zip(bodies, bodies[1:], strict=False):
        assert later.startswith(earlier[:-1])  # each request extends the previous one
