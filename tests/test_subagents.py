"""Sub-agents: an Agent offered to another as one tool; each call is a full child run, linked and paid for."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

from agent import Agent
from agent.errors import ConfigError, ModelUnavailableError
from agent.events import ModelResponse, RunFinished, RunStarted, SubagentRun, ToolResult
from agent.models import ModelClient, Price
from agent.subagents import AgentTool
from agent.testing import FakeModel, FunctionModel, ModelCall, ScriptedToolCall, ScriptedTurn
from agent.think import ThinkMode
from agent.trace import read_trace, result_from_trace
from agent.usage import Usage

PRICE = Price(cache_hit=0.1, cache_miss=1.0, output=2.0)


def calls_to(tool: str, *tasks: str) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=[ScriptedToolCall(tool, {"task": task}) for task in tasks])


def child_agent(model: ModelClient, tmp_path: Path, **options) -> Agent:
    return Agent(model, trace_dir=tmp_path / "child", name="worker", **options)


def parent_agent(model: ModelClient, child: Agent, tmp_path: Path, **options) -> Agent:
    tool = AgentTool(child, "worker", "A worker that researches one question and answers it.")
    return Agent(model, tool_sources=[tool], trace_dir=tmp_path / "parent", name="planner", **options)


def subagent_events(path: Path | None) -> list[SubagentRun]:
    assert path is not None
    return [e for e in read_trace(path) if isinstance(e, SubagentRun)]


async def test_the_parent_reads_the_child_answer_as_the_tool_result(tmp_path):
    child_model = FakeModel(["The capital of France is Paris."])
    parent_model = FakeModel([calls_to("worker", "What is the capital of France?"), "Paris."])
    parent = parent_agent(parent_model, child_agent(child_model, tmp_path), tmp_path)

    result = await parent.run("Find the capital of France with your worker.")

    assert result.stop_reason == "answer", result.error
    assert result.answer == "Paris."
    assert "worker" in parent_model.calls[0].tool_names
    assert parent_model.calls[1].tool_results == ["The capital of France is Paris."]
    assert child_model.calls[0].last_message["content"] == "What is the capital of France?"


async def test_the_child_run_has_its_own_trace_naming_the_parent_run(tmp_path):
    child_model = FakeModel(["done"])
    parent = parent_agent(FakeModel([calls_to("worker", "do it"), "ok"]), child_agent(child_model, tmp_path),
                          tmp_path)

    result = await parent.run("Delegate.")

    [link] = subagent_events(result.trace_path)
    assert link.tool == "worker" and link.stop_reason == "answer"
    assert link.trace_path is not None and Path(link.trace_path).parent == tmp_path / "child"
    child_events = read_trace(link.trace_path)
    started = child_events[0]
    assert isinstance(started, RunStarted)
    assert (started.run_id, started.parent_run_id, started.task) == (link.run_id, result.run_id, "worker")
    assert isinstance(child_events[-1], RunFinished) and child_events[-1].answer == "done"
    parent_started = read_trace(result.trace_path)[0]
    assert isinstance(parent_started, RunStarted) and parent_started.parent_run_id is None


async def test_the_child_usage_and_cost_roll_up_into_the_parent_result(tmp_path):
    child_model = FakeModel(["A long and thorough answer from the worker."], model="deepseek-v4-flash",
                            price=PRICE)
    parent_model = FakeModel([calls_to("worker", "research"), "Summary."], model="deepseek-v4-pro", price=PRICE)
    parent = parent_agent(parent_model, child_agent(child_model, tmp_path), tmp_path)

    result = await parent.run("Delegate the research.")

    assert result.stop_reason == "answer", result.error
    events = read_trace(result.trace_path)
    own = [e for e in events if isinstance(e, ModelResponse)]
    own_usage = sum((e.usage for e in own), Usage())
    [link] = subagent_events(result.trace_path)
    child = result_from_trace(link.trace_path)
    assert child.cost > 0 and child.usage.requests == 1
    assert (link.usage, link.cost) == (child.usage, child.cost)
    assert result.usage == own_usage + child.usage
    assert result.cost == pytest.approx(sum(e.cost for e in own) + child.cost)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.usage, finished.cost) == (result.usage, result.cost)


async def test_a_failing_child_gives_the_parent_an_error_observation_and_the_parent_goes_on(tmp_path):
    def unavailable(call: ModelCall) -> ScriptedTurn:
        raise ModelUnavailableError("worker endpoint: gave up after 6 attempts; last error: HTTP 503")

    parent_model = FakeModel([calls_to("worker", "try"), "I will answer without the worker."])
    parent = parent_agent(parent_model, child_agent(FunctionModel(unavailable), tmp_path), tmp_path)

    result = await parent.run("Delegate.")

    assert result.stop_reason == "answer", result.error
    assert result.answer == "I will answer without the worker."
    [observation] = parent_model.calls[1].tool_results
    assert "did not finish: stop reason error" in observation
    assert "gave up after 6 attempts" in observation
    [tool_result] = [e for e in read_trace(result.trace_path) if isinstance(e, ToolResult)]
    assert tool_result.is_error
    [link] = subagent_events(result.trace_path)
    assert link.stop_reason == "error" and link.error is not None


async def test_two_child_calls_in_one_turn_run_concurrently(tmp_path):
    started: list[str] = []
    both_started = anyio.Event()

    async def answer_when_both_started(call: ModelCall) -> str:
        task = call.last_message["content"]
        started.append(task)
        if len(started) == 2:
            both_started.set()
        with anyio.fail_after(30):  # a guard: run one after the other, the first call would wait forever
            await both_started.wait()
        return f"answered {task}"

    parent_model = FakeModel([calls_to("worker", "north", "south"), "Both answered."])
    parent = parent_agent(parent_model, child_agent(FunctionModel(answer_when_both_started), tmp_path), tmp_path)

    result = await parent.run("Ask about north and south at once.")

    assert result.stop_reason == "answer", result.error
    assert parent_model.calls[1].tool_results == ["answered north", "answered south"]
    links = subagent_events(result.trace_path)
    assert len({link.run_id for link in links}) == 2


async def test_the_child_keeps_its_own_model_and_think_mode(tmp_path):
    child_model = FakeModel(["Flash answer."], model="deepseek-v4-flash")
    parent_model = FakeModel([ScriptedTurn(reasoning="Delegate this.", tool_calls=calls_to("worker", "x").tool_calls),
                              ScriptedTurn(reasoning="Done.", content="Pro answer.")], model="deepseek-v4-pro")
    parent = parent_agent(parent_model, child_agent(child_model, tmp_path, think="none"), tmp_path, think="max")

    result = await parent.run("Plan and delegate.")

    assert result.stop_reason == "answer", result.error
    assert [c.mode for c in parent_model.calls] == [ThinkMode.max, ThinkMode.max]
    assert [c.mode for c in child_model.calls] == [ThinkMode.none]
    assert child_model.calls[0].body["model"] == "deepseek-v4-flash"
    assert parent_model.calls[0].body["model"] == "deepseek-v4-pro"


async def test_the_child_agent_is_entered_with_the_parent_and_closed_with_it(tmp_path):
    child = child_agent(FakeModel([]), tmp_path)
    parent = parent_agent(FakeModel([]), child, tmp_path)

    async with parent:
        assert "worker" in parent.tools
        assert "context_status" in child.tools  # the child's tool hub is up
    assert child.tools == []


async def test_a_call_without_a_task_is_refused_without_running_the_child(tmp_path):
    child_model = FakeModel([])
    parent_model = FakeModel([ScriptedTurn(tool_calls=[ScriptedToolCall("worker", {"job": "x"})]), "ok"])
    parent = parent_agent(parent_model, child_agent(child_model, tmp_path), tmp_path)

    result = await parent.run("Delegate.")

    assert result.stop_reason == "answer", result.error
    [observation] = parent_model.calls[1].tool_results
    assert "needs `task`" in observation
    assert child_model.calls == [] and subagent_events(result.trace_path) == []


def test_the_tool_name_must_be_a_valid_tool_name(tmp_path):
    with pytest.raises(ConfigError, match="sub-agent tool name"):
        AgentTool(child_agent(FakeModel([]), tmp_path), "my worker", "Does things.")


async def test_cancelling_the_parent_ends_the_child_run_and_both_traces_record_it(tmp_path):
    child_started = anyio.Event()

    async def never_answers(call: ModelCall) -> str:
        child_started.set()
        await anyio.Event().wait()
        raise AssertionError("unreachable")

    parent = parent_agent(FakeModel([calls_to("worker", "wait")]),
                          child_agent(FunctionModel(never_answers), tmp_path), tmp_path)
    trace = tmp_path / "parent.jsonl"
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: parent.run("Delegate.", trace_path=trace))
        await child_started.wait()
        group.cancel_scope.cancel()

    [link] = subagent_events(trace)
    assert link.stop_reason == "cancelled"
    assert result_from_trace(trace).stop_reason == "cancelled"
    assert link.trace_path is not None and result_from_trace(link.trace_path).stop_reason == "cancelled"


async def test_a_child_with_an_output_type_gives_the_parent_its_output_as_json(tmp_path):
    class Capital(BaseModel):
        country: str
        city: str

    child_model = FakeModel([ScriptedTurn(tool_calls=[ScriptedToolCall("final_result",
                                                                       {"country": "France", "city": "Paris"})])])
    parent_model = FakeModel([calls_to("worker", "capital of France?"), "Paris."])
    parent = parent_agent(parent_model, child_agent(child_model, tmp_path, output_type=Capital), tmp_path)

    result = await parent.run("Delegate.")

    assert result.stop_reason == "answer", result.error
    [observation] = parent_model.calls[1].tool_results
    assert json.loads(observation) == {"country": "France", "city": "Paris"}
