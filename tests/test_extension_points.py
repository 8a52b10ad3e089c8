"""The seams users hold: agent.iter(), hooks that act, several runs on one Agent, typed results and exports.

The model is the in-process `FakeModel` / `FunctionModel` (the loop logic is what is tested here); tools are
local tools, so nothing here starts a process.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

import agent
from agent import (
    Agent,
    Hooks,
    ModelRequestInfo,
    RequestChange,
    RunContext,
    StepRecord,
    StopReason,
    StopRun,
    ThinkMode,
    ToolCallRequest,
    ToolDecision,
    ToolOutcome,
)
from agent.errors import ModelUnavailableError
from agent.testing import FakeModel, FunctionModel, ScriptedToolCall, ScriptedTurn
from agent.tools.local import LocalTool


def recorder() -> tuple[LocalTool, list[dict[str, Any]]]:
    """A local tool `note` that records the arguments it was called with."""
    seen: list[dict[str, Any]] = []

    async def handler(arguments: dict[str, Any]) -> ToolOutcome:
        seen.append(arguments)
        return ToolOutcome(text=f"noted {arguments.get('text')}")

    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    return LocalTool(name="note", description="Write a note.", input_schema=schema, handler=handler,
                     read_only=False), seen


def note_then_answer(text: str = "hello", answer: str = "done") -> list[ScriptedTurn]:
    return [ScriptedTurn(tool_calls=[ScriptedToolCall("note", {"text": text})]), ScriptedTurn(content=answer)]


def tool_messages(model: FakeModel | FunctionModel) -> list[str]:
    return [m["content"] for m in model.calls[-1].messages if m["role"] == "tool"]


def make_agent(model: Any, tmp_path, **options: Any) -> tuple[Agent, list[dict[str, Any]]]:
    tool, seen = recorder()
    return Agent(model, local_tools=[tool], trace_dir=tmp_path, **options), seen


# -- agent.iter ---------------------------------------------------------------------------------------------


async def test_iter_gives_each_step_then_the_result(tmp_path):
    model = FakeModel(note_then_answer())
    bot, seen = make_agent(model, tmp_path)
    steps: list[StepRecord] = []
    async with bot.iter("take a note") as run:
        async for step in run:
            steps.append(step)
    assert [s.number for s in steps] == [1, 2]
    assert steps[0].tool_calls[0].name == "note" and steps[0].outcomes[0].text == "noted hello"
    assert steps[1].answer == "done" and seen == [{"text": "hello"}]
    assert run.result is not None and run.result.stop_reason == StopReason.answer and run.result.answer == "done"


async def test_leaving_iter_early_ends_the_run_cancelled_with_a_complete_trace(tmp_path):
    bot, seen = make_agent(FakeModel(note_then_answer()), tmp_path)
    async with bot.iter("take a note") as run:
        async for _ in run:
            break
    assert run.result is not None and run.result.stop_reason == StopReason.cancelled
    last = json.loads(run.result.trace_path.read_text().splitlines()[-1])
    assert last["type"] == "run_finished" and last["stop_reason"] == "cancelled"


async def test_one_agent_runs_several_runs_at_once(tmp_path):
    def answer_with_own_note(call) -> ScriptedTurn:
        results = [m["content"] for m in call.messages if m["role"] == "tool"]
        if not results:
            prompt = next(m["content"] for m in call.messages if m["role"] == "user")
            return ScriptedTurn(tool_calls=[ScriptedToolCall("note", {"text": prompt}),
                                            ScriptedToolCall("context_status", {})])
        return ScriptedTurn(content=results[0])

    bot, seen = make_agent(FunctionModel(answer_with_own_note), tmp_path)
    results: dict[str, Any] = {}
    async with bot:

        async def one(prompt: str) -> None:
            results[prompt] = await bot.run(prompt)

        async with anyio.create_task_group() as group:
            for prompt in ("alpha", "beta", "gamma"):
                group.start_soon(one, prompt)
    assert {p: r.answer for p, r in results.items()} == {p: f"noted {p}" for p in ("alpha", "beta", "gamma")}
    assert len({r.trace_path for r in results.values()}) == 3
    assert all(r.ok for r in results.values())


# -- hooks ----------------------------------------------------------------------------------------------------


class Deny(Hooks):
    async def before_tool_call(self, ctx: RunContext, call: ToolCallRequest) -> ToolDecision | None:
        return ToolDecision.deny("notes are read-only today") if call.tool == "note" else None


async def test_a_denied_tool_call_is_not_run_and_the_model_reads_the_reason(tmp_path):
    model = FakeModel(note_then_answer())
    bot, seen = make_agent(model, tmp_path, hooks=[Deny()])
    result = await bot.run("take a note")
    assert seen == []
    assert tool_messages(model) == ["The call to note was refused: notes are read-only today"]
    assert result.ok


class Rewrite(Hooks):
    async def before_tool_call(self, ctx: RunContext, call: ToolCallRequest) -> ToolDecision | None:
        assert isinstance(call.arguments, dict) and call.info is not None and call.info.read_only is False
        return ToolDecision.rewrite({"text": call.arguments["text"].upper()})

    async def after_tool_call(self, ctx: RunContext, call: ToolCallRequest, outcome: ToolOutcome) -> ToolOutcome:
        return ToolOutcome(text=f"[checked] {outcome.text}")


async def test_hooks_rewrite_arguments_and_observations(tmp_path):
    model = FakeModel(note_then_answer("quiet"))
    bot, seen = make_agent(model, tmp_path, hooks=[Rewrite()])
    await bot.run("take a note")
    assert seen == [{"text": "QUIET"}]
    assert tool_messages(model) == ["[checked] noted QUIET"]


class NoThinkingWithReminder(Hooks):
    async def before_model_request(self, ctx: RunContext, request: ModelRequestInfo) -> RequestChange:
        assert request.tools == ["note", "read_output", "search_output", "context_status"]
        reminder = [{"role": "user", "content": "Reminder: be brief."}] if request.step == 1 else []
        return RequestChange(mode=ThinkMode.none, append=reminder)


async def test_a_hook_sets_the_think_mode_and_appends_a_message_before_a_request(tmp_path):
    model = FakeModel(note_then_answer())
    bot, _ = make_agent(model, tmp_path, hooks=[NoThinkingWithReminder()], think="max")
    result = await bot.run("take a note")
    assert [call.mode for call in model.calls] == [ThinkMode.none, ThinkMode.none]
    assert model.calls[0].messages[-1] == {"role": "user", "content": "Reminder: be brief."}
    assert result.think.keys() == {"none"}


class StopAfterFirstStep(Hooks):
    def __init__(self) -> None:
        self.steps: list[int] = []

    async def after_step(self, ctx: RunContext, step: StepRecord) -> None:
        self.steps.append(step.number)
        assert ctx.totals.tool_calls == 1
        raise StopRun("one note is enough")


async def test_a_hook_ends_the_run_with_stop_reason_stopped(tmp_path):
    hook = StopAfterFirstStep()
    bot, seen = make_agent(FakeModel(note_then_answer()), tmp_path, hooks=[hook])
    result = await bot.run("take a note")
    assert hook.steps == [1] and seen == [{"text": "hello"}]
    assert result.stop_reason == StopReason.stopped and result.error == "one note is enough"
    assert result.error_info is not None and result.error_info.kind == "StopRun"


class StopOnNote(Hooks):
    async def before_tool_call(self, ctx: RunContext, call: ToolCallRequest) -> ToolDecision | None:
        if call.tool == "note":
            raise StopRun("no notes")
        return None


async def test_a_hook_stops_the_run_from_one_of_several_parallel_tool_calls(tmp_path):
    turns = [ScriptedTurn(tool_calls=[ScriptedToolCall("context_status", {}), ScriptedToolCall("note", {"text": "x"})]),
             ScriptedTurn(content="never")]
    bot, seen = make_agent(FakeModel(turns), tmp_path, hooks=[StopOnNote()])
    result = await bot.run("take a note")
    assert result.stop_reason == StopReason.stopped and result.error == "no notes" and seen == []


# -- typed results ------------------------------------------------------------------------------------------


async def test_a_model_failure_is_a_typed_error_in_the_result(tmp_path):
    def unavailable(call) -> ScriptedTurn:
        raise ModelUnavailableError("the endpoint gave up after 3 attempts")

    bot, _ = make_agent(FunctionModel(unavailable), tmp_path)
    result = await bot.run("anything")
    assert result.stop_reason == StopReason.error and result.stop_reason == "error"
    assert result.error_info is not None
    assert (result.error_info.kind, result.error_info.message) == ("ModelUnavailableError",
                                                                   "the endpoint gave up after 3 attempts")
    assert json.loads(result.model_dump_json())["error_info"]["kind"] == "ModelUnavailableError"


@pytest.mark.parametrize("name", agent.__all__)
def test_every_public_name_imports_from_agent(name):
    assert getattr(agent, name) is not None
