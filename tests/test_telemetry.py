"""OpenTelemetry spans from a run's events: the real loop with in-process models, spans in an in-memory exporter."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Iterator

import anyio
import pytest

from agent import Agent, telemetry
from agent.errors import ConfigError, ModelUnavailableError
from agent.events import Event
from agent.models import Price
from agent.telemetry import OpenTelemetryTracer
from agent.testing import FakeModel, FunctionModel, ModelCall, ScriptedToolCall, ScriptedTurn
from agent.tools.local import LocalTool
from agent.tools.results import ToolOutcome
from tests.conftest import DEMO_SERVER

try:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode
except ImportError:  # the `otel` extra; CI installs it
    if os.environ.get("CI"):
        raise
    pytest.skip("opentelemetry-sdk is not installed: pip install 'deepseek-mcp-agent[otel]'", allow_module_level=True)

MODEL = "deepseek-v4-flash"
CHAT = f"chat {MODEL}"
NUMBER = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}


async def _double(arguments: dict) -> ToolOutcome:
    return ToolOutcome(text=str(2 * arguments["x"]))


async def _refuse(arguments: dict) -> ToolOutcome:
    return ToolOutcome(text="no such table: sales_2031", is_error=True)


DOUBLE = LocalTool(name="double", description="Double a number.", input_schema=NUMBER, handler=_double)
REFUSE = LocalTool(name="lookup", description="Look a table up.", input_schema=NUMBER, handler=_refuse)


def call(name: str, call_id: str | None = None, **arguments: object) -> ScriptedToolCall:
    return ScriptedToolCall(name, dict(arguments), id=call_id)


def rendezvous(name: str, parties: int) -> LocalTool:
    """A tool whose calls return only once `parties` calls are in flight at the same time."""
    arrived = 0
    everyone = anyio.Event()

    async def handler(arguments: dict) -> ToolOutcome:
        nonlocal arrived
        arrived += 1
        if arrived == parties:
            everyone.set()
        await everyone.wait()
        return ToolOutcome(text="met")

    return LocalTool(name=name, description="Wait for the others.", input_schema={"type": "object"}, handler=handler)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[OpenTelemetryTracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OpenTelemetryTracer(tracer_provider=provider)
    provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = named(exporter, name)
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def parent(exporter: InMemorySpanExporter, span: ReadableSpan) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next(s for s in exporter.get_finished_spans() if s.context.span_id == span.parent.span_id)


def ns(t: float) -> int:
    return int(t * 1_000_000_000)


async def test_a_run_is_a_tree_of_run_step_model_request_and_tool_call_spans(tmp_path, exporter, tracer):
    model = FakeModel([ScriptedTurn(tool_calls=[call("double", x=21)]), ScriptedTurn(content="42")])
    result = await Agent(model, local_tools=[DOUBLE], trace_dir=tmp_path).run("double 21", on_event=tracer)

    assert result.answer == "42"
    run = one(exporter, "invoke_agent")
    steps = sorted(named(exporter, "step"), key=lambda s: s.attributes["deepseek_agent.step"])
    chats = sorted(named(exporter, CHAT), key=lambda s: s.start_time)
    tool = one(exporter, "execute_tool double")
    assert run.parent is None and [s.attributes["deepseek_agent.step"] for s in steps] == [1, 2]
    assert all(parent(exporter, s) is run for s in steps)
    assert [parent(exporter, c) for c in chats] == steps
    assert parent(exporter, tool) is steps[0]
    assert len(exporter.get_finished_spans()) == 6
    assert {s.context.trace_id for s in exporter.get_finished_spans()} == {run.context.trace_id}
    assert (run.kind, chats[0].kind, tool.kind) == (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.INTERNAL)


async def test_an_agent_with_telemetry_traces_every_run_without_an_event_sink(tmp_path, exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = FakeModel([ScriptedTurn(tool_calls=[call("double", x=1)]), ScriptedTurn(content="2"),
                       ScriptedTurn(content="again")])
    async with Agent(model, local_tools=[DOUBLE], trace_dir=tmp_path, telemetry=provider) as bot:
        await bot.run("double 1")
        await bot.run("once more")
    provider.shutdown()
    assert len(named(exporter, "invoke_agent")) == 2 and len(named(exporter, "execute_tool double")) == 1


async def test_spans_start_and_end_at_the_times_of_their_events(tmp_path, exporter, tracer):
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        tracer(event)

    model = FakeModel([ScriptedTurn(tool_calls=[call("double", x=1)]), ScriptedTurn(content="2")])
    await Agent(model, local_tools=[DOUBLE], trace_dir=tmp_path).run("double 1", on_event=sink)

    at = {e.type: [ns(x.t) for x in events if x.type == e.type] for e in events}
    run, tool = one(exporter, "invoke_agent"), one(exporter, "execute_tool double")
    chats = sorted(named(exporter, CHAT), key=lambda s: s.start_time)
    steps = sorted(named(exporter, "step"), key=lambda s: s.start_time)
    assert (run.start_time, run.end_time) == (at["run_started"][0], at["run_finished"][0])
    assert [(c.start_time, c.end_time) for c in chats] == list(zip(at["model_request"], at["model_response"],
                                                                      strict=True))
    assert (tool.start_time, tool.end_time) == (at["tool_call"][0], at["tool_result"][0])
    assert [s.start_time for s in steps] == at["think_chosen"]
    assert steps[0].end_time == tool.end_time and steps[1].end_time == chats[1].end_time
    for child in [*steps, *chats, tool]:
        outer = parent(exporter, child)
        assert outer is not None and outer.start_time <= child.start_time <= child.end_time <= outer.end_time


async def test_model_request_spans_carry_genai_model_usage_think_mode_and_cost(tmp_path, exporter, tracer):
    usage = {"prompt_tokens": 1000, "completion_tokens": 200, "reasoning_tokens": 150, "cached_tokens": 640}
    price = Price(cache_hit=0.1, cache_miss=1.0, output=2.0)
    model = FakeModel([ScriptedTurn(reasoning="the sum is simple", content="4", usage=usage)], price=price)
    result = await Agent(model, think="high", name="adder", trace_dir=tmp_path).run("2+2?", on_event=tracer)

    chat, run, step = one(exporter, CHAT), one(exporter, "invoke_agent adder"), one(exporter, "step")
    cost = (640 * 0.1 + 360 * 1.0 + 200 * 2.0) / 1e6
    assert dict(chat.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "deepseek", "gen_ai.system": "deepseek",
        "gen_ai.request.model": MODEL, "gen_ai.response.model": MODEL, "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
        "gen_ai.usage.reasoning.output_tokens": 150, "gen_ai.usage.cache_read.input_tokens": 640,
        "deepseek_agent.think_mode": "high", "deepseek_agent.cost_usd": pytest.approx(cost),
        "deepseek_agent.context_tokens": chat.attributes["deepseek_agent.context_tokens"],
    }
    assert step.attributes["deepseek_agent.think_mode"] == "high"
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.agent.name"] == "adder"
    assert run.attributes["deepseek_agent.run_id"] == result.run_id
    assert run.attributes["deepseek_agent.stop_reason"] == "answer"
    assert run.attributes["deepseek_agent.cost_usd"] == pytest.approx(result.cost) == pytest.approx(cost)
    assert run.attributes["gen_ai.usage.reasoning.output_tokens"] == 150
    assert run.status.status_code == StatusCode.UNSET


async def test_tool_spans_name_the_tool_its_call_id_and_its_mcp_server(tmp_path, exporter, tracer):
    demo = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}
    script = [ScriptedTurn(tool_calls=[call("demo__echo", "call_echo", text="hi"), call("double", "call_2x", x=2)]),
              ScriptedTurn(content="done")]
    await Agent(FakeModel(script), demo, local_tools=[DOUBLE], trace_dir=tmp_path).run("go", on_event=tracer)

    echo, double = one(exporter, "execute_tool demo__echo"), one(exporter, "execute_tool double")
    assert dict(echo.attributes) == {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "demo__echo", "gen_ai.tool.call.id": "call_echo",
        "gen_ai.tool.type": "function", "deepseek_agent.mcp.server": "demo",
    }
    assert double.attributes["gen_ai.tool.call.id"] == "call_2x"
    assert "deepseek_agent.mcp.server" not in double.attributes  # a local tool has no server
    assert echo.status.status_code == double.status.status_code == StatusCode.UNSET


async def test_a_tool_call_that_fails_is_an_error_span_while_the_run_goes_on(tmp_path, exporter, tracer):
    model = FakeModel([ScriptedTurn(tool_calls=[call("lookup", x=1)]), ScriptedTurn(content="no data")])
    result = await Agent(model, local_tools=[REFUSE], trace_dir=tmp_path).run("look", on_event=tracer)

    tool = one(exporter, "execute_tool lookup")
    assert result.ok
    assert tool.status.status_code == StatusCode.ERROR
    assert "no such table: sales_2031" in tool.status.description
    assert tool.attributes["error.type"] == "tool_error"
    assert one(exporter, "invoke_agent").status.status_code == StatusCode.UNSET


async def test_a_failed_model_request_ends_its_span_its_step_and_the_run_with_error(tmp_path, exporter, tracer):
    def unavailable(request: ModelCall) -> ScriptedTurn:
        raise ModelUnavailableError("deepseek: gave up after 7 attempts; last error: HTTP 503: Server Overloaded")

    result = await Agent(FunctionModel(unavailable), trace_dir=tmp_path).run("hi", on_event=tracer)

    assert result.stop_reason == "error"
    chat, step, run = one(exporter, CHAT), one(exporter, "step"), one(exporter, "invoke_agent")
    for span in (chat, step, run):
        assert span.status.status_code == StatusCode.ERROR
        assert "HTTP 503: Server Overloaded" in span.status.description
        assert span.attributes["error.type"] == "ModelUnavailableError"
    assert [e.name for e in chat.events] == ["exception"]
    assert chat.events[0].attributes["exception.type"] == "ModelUnavailableError"
    assert run.attributes["deepseek_agent.stop_reason"] == "error"


async def test_parallel_tool_calls_are_sibling_spans_open_at_the_same_time(tmp_path, exporter, tracer):
    meet = rendezvous("meet", parties=3)
    calls = [call("meet", f"call_{n}") for n in range(3)]
    model = FakeModel([ScriptedTurn(tool_calls=calls), ScriptedTurn(content="all met")])
    result = await Agent(model, local_tools=[meet], trace_dir=tmp_path).run("meet", on_event=tracer)

    assert result.ok
    tools = named(exporter, "execute_tool meet")
    assert sorted(t.attributes["gen_ai.tool.call.id"] for t in tools) == ["call_0", "call_1", "call_2"]
    assert len({parent(exporter, t).context.span_id for t in tools}) == 1
    assert max(t.start_time for t in tools) <= min(t.end_time for t in tools)  # all three were open at once


async def test_leaving_iter_early_ends_every_span_and_the_run_as_cancelled(tmp_path, exporter, tracer):
    model = FakeModel([ScriptedTurn(tool_calls=[call("double", x=1)]), ScriptedTurn(tool_calls=[call("double", x=2)]),
                       ScriptedTurn(content="done")])
    async with Agent(model, local_tools=[DOUBLE], trace_dir=tmp_path).iter("go", on_event=tracer) as run:
        async for _ in run:
            break

    assert run.result is not None and run.result.stop_reason == "cancelled"
    span = one(exporter, "invoke_agent")
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "cancelled"
    assert span.attributes["error.type"] == "cancelled"
    assert sorted(s.name for s in exporter.get_finished_spans()) == [CHAT, "execute_tool double", "invoke_agent",
                                                                     "step"]
    assert one(exporter, "step").status.status_code == StatusCode.UNSET  # the step itself had finished


async def test_cancelling_a_run_during_a_tool_call_ends_the_open_spans_with_error(tmp_path, exporter, tracer):
    entered = anyio.Event()

    async def hang(arguments: dict) -> ToolOutcome:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    stuck = LocalTool(name="stuck", description="Never returns.", input_schema={"type": "object"}, handler=hang)
    model = FakeModel([ScriptedTurn(tool_calls=[call("stuck")])])
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: Agent(model, local_tools=[stuck], trace_dir=tmp_path).run("go", on_event=tracer))
        await entered.wait()
        group.cancel_scope.cancel()

    tool, step, run = one(exporter, "execute_tool stuck"), one(exporter, "step"), one(exporter, "invoke_agent")
    for span in (tool, step, run):
        assert span.status.status_code == StatusCode.ERROR and span.status.description == "cancelled"
    assert tool.end_time == step.end_time == run.end_time


async def test_one_tracer_keeps_concurrent_runs_in_their_own_traces(tmp_path, exporter, tracer):
    def meet_then_answer(request: ModelCall) -> ScriptedTurn:
        if request.tool_results:
            return ScriptedTurn(content="met")
        return ScriptedTurn(tool_calls=[ScriptedToolCall("meet")])

    agent = Agent(FunctionModel(meet_then_answer), local_tools=[rendezvous("meet", parties=2)], trace_dir=tmp_path)
    async with agent, anyio.create_task_group() as group:
        for prompt in ("first", "second"):
            group.start_soon(lambda p=prompt: agent.run(p, on_event=tracer))

    runs = named(exporter, "invoke_agent")
    assert len(runs) == 2 and runs[0].context.trace_id != runs[1].context.trace_id
    for run in runs:
        mine = [s for s in exporter.get_finished_spans() if s.context.trace_id == run.context.trace_id]
        assert sorted(s.name for s in mine) == [CHAT, CHAT, "execute_tool meet", "invoke_agent", "step", "step"]
        tool = next(s for s in mine if s.name == "execute_tool meet")
        assert parent(exporter, parent(exporter, tool)) is run


def test_without_opentelemetry_the_module_imports_and_the_tracer_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the package were not installed
    spec = importlib.util.spec_from_file_location("agent._telemetry_without_otel", telemetry.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)

    with pytest.raises(ConfigError, match=re.escape("pip install 'deepseek-mcp-agent[otel]'")):
        module.OpenTelemetryTracer()
