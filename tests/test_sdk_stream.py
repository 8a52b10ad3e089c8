"""`Agent.stream`: leaving a stream early, in every way a user can, is clean and leaves no server running."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agent import Agent, ToolServerError, result_from_trace
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.conftest import DEMO_SERVER, alive, child_pids
from tests.shell_suite import until

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}
SLOW = [ScriptedTurn(tool_calls=[ScriptedToolCall("demo__slow", {"seconds": 60})]), ScriptedTurn(content="never")]


def running_children(before: set[int]) -> list[int]:
    return [pid for pid in child_pids() - before if alive(pid)]


@contextmanager
def loop_errors() -> Iterator[list[dict]]:
    """What the event loop reports as unhandled (errors of tasks nobody awaits, failed finalizers)."""
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


async def test_breaking_out_of_async_with_stream_cancels_the_run_and_stops_its_servers(tmp_path):
    before = child_pids()
    with ScriptedModelServer(SLOW) as model:
        async with Agent(model.model_string, DEMO, trace_dir=tmp_path).stream("go") as events:
            async for event in events:
                if event.type == "tool_call":
                    assert running_children(before), "the MCP server should be running"
                    break
    assert not running_children(before)
    assert result_from_trace(next(tmp_path.glob("*.jsonl"))).stop_reason == "cancelled"
    assert events.result is None


async def test_async_with_stream_gives_the_result_once_the_events_end(tmp_path):
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("demo__add", {"a": 2, "b": 3})]), ScriptedTurn(content="5")]
    with ScriptedModelServer(script) as model:
        async with Agent(model.model_string, DEMO, trace_dir=tmp_path).stream("add") as events:
            kinds = [event.type async for event in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert events.result is not None and events.result.answer == "5"


async def test_break_then_aclose_on_a_plain_async_for_stream_raises_nothing_and_stops_the_servers(tmp_path):
    before = child_pids()
    with ScriptedModelServer(SLOW) as model:
        events = Agent(model.model_string, DEMO, trace_dir=tmp_path).stream("go")
        async for event in events:
            if event.type == "tool_call":
                break
        await events.aclose()
        assert not running_children(before)
    assert result_from_trace(next(tmp_path.glob("*.jsonl"))).stop_reason == "cancelled"


async def test_an_abandoned_stream_is_cancelled_when_garbage_collected_without_errors(tmp_path):
    before = child_pids()
    with ScriptedModelServer(SLOW) as model, loop_errors() as errors:
        events = Agent(model.model_string, DEMO, trace_dir=tmp_path).stream("go")
        async for event in events:
            if event.type == "tool_call":
                break
        assert running_children(before)
        del events, event
        gc.collect()
        trace = next(tmp_path.glob("*.jsonl"))
        assert await until(lambda: not running_children(before) and '"run_finished"' in trace.read_text(), 30)
    assert result_from_trace(trace).stop_reason == "cancelled"
    assert errors == []


async def test_leaving_a_stream_early_keeps_an_entered_agent_usable_for_the_next_run(tmp_path):
    script = [*SLOW[:1], ScriptedTurn(content="second run answered")]
    with ScriptedModelServer(script) as model:
        async with Agent(model.model_string, DEMO, trace_dir=tmp_path) as agent:
            async with agent.stream("first") as events:
                async for event in events:
                    if event.type == "tool_call":
                        break
            result = await agent.run("second")
    assert result.answer == "second run answered"


async def test_a_run_error_is_raised_from_the_stream(tmp_path):
    servers = {"gone": {"command": str(tmp_path / "no-such-server")}}
    with ScriptedModelServer([ScriptedTurn(content="unused")]) as model:
        with pytest.raises(ToolServerError, match="no-such-server"):
            async with Agent(model.model_string, servers, trace_dir=tmp_path).stream("go") as events:
                async for _ in events:
                    pass
