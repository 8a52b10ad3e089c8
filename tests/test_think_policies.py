"""Think policies through the real loop: the modes requested on the wire and the reasons in the trace."""

from __future__ import annotations

import sys

import pytest

from agent import Agent, read_trace
from agent.errors import ConfigError
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.think import AutoThink, RunState, ThinkChoice, ThinkMode, think_policy
from tests.conftest import DEMO_SERVER

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}


def turn(name: str, reasoning: str = "", **arguments) -> ScriptedTurn:
    return ScriptedTurn(reasoning=reasoning, tool_calls=[ScriptedToolCall(f"demo__{name}", arguments)])


ANSWER = ScriptedTurn(reasoning="done", content="finished")


async def run_modes(tmp_path, script, *, dialect="deepseek", think="auto", **limits):
    with ScriptedModelServer(script, dialect=dialect) as server:
        result = await Agent(server.model_string, DEMO, think=think, limits=limits or None,
                             trace_dir=tmp_path).run("go")
        wire = server.think_modes
    reasons = [(e.mode, e.reason) for e in read_trace(result.trace_path) if e.type == "think_chosen"]
    assert [mode for mode, _ in reasons] == wire  # what the trace says is what went on the wire
    return result, wire, [reason for _, reason in reasons]


@pytest.mark.parametrize("dialect", ["deepseek", "vllm"])
async def test_auto_plans_drops_to_none_for_routine_steps_escalates_on_errors_and_recovers(tmp_path, dialect):
    script = [
        turn("echo", text="look"),                 # 1 plan
        turn("page", offset=0),                     # 2 after a read-only success
        turn("fail", message="first"),              # 3 paging through output
        turn("fail", message="second"),             # 4 after one error
        turn("add", a=1, b=2),                      # 5 after two failing steps in a row
        turn("echo", text="check"),                 # 6 after a change
        ANSWER,                                     # 7 after a read-only success
    ]
    result, wire, reasons = await run_modes(tmp_path, script, dialect=dialect)
    assert result.ok
    costly = dialect == "vllm"  # two errors are not enough evidence to enter max where it loses the cache
    assert wire == ["high", "none", "none", "high", "high" if costly else "max", "high", "none"]
    assert reasons[0] == "plan: first step"
    assert reasons[1] == "routine: read-only calls succeeded"
    assert reasons[2] == "routine: paging through output"
    assert reasons[3] == "tool error in demo__fail"
    assert reasons[4] == ("tool error in demo__fail" if costly else "2 failing steps in a row")
    assert reasons[5] == "progress: demo__add changed something"


async def test_a_loop_escalates_to_max(tmp_path):
    script = [turn("echo", text="same"), turn("echo", text="same"), turn("echo", text="other"), ANSWER]
    _, wire, reasons = await run_modes(tmp_path, script)
    assert wire == ["high", "none", "max", "none"]  # the loop broken, back to routine
    assert reasons[2] == "loop: demo__echo called 2 times with the same arguments"
    assert reasons[3] == "routine: read-only calls succeeded"


async def test_where_max_loses_the_cache_auto_needs_more_evidence_and_then_stays_in_max(tmp_path):
    script = [turn("echo", text="same")] * 4 + [turn("echo", text="other"), ANSWER]
    _, wire, reasons = await run_modes(tmp_path, script, dialect="vllm")
    assert wire == ["high", "none", "high", "max", "max", "max"]
    assert reasons[2].startswith("possible loop: a call repeated 2 times")
    assert reasons[3] == "loop: demo__echo called 3 times with the same arguments"
    assert reasons[4].startswith("staying in max")


async def test_a_short_step_budget_calls_for_max(tmp_path):
    script = [turn("echo", text=str(i)) for i in range(5)] + [ANSWER]
    _, wire, reasons = await run_modes(tmp_path, script, max_steps=5)
    assert wire == ["high", "none", "none", "max", "max"]
    assert reasons[3] == "step budget short: 2 left"


async def test_a_spent_reasoning_budget_stops_escalation(tmp_path):
    script = [turn("fail", reasoning="x" * 400, message="a"), turn("fail", message="b"), turn("fail", message="c"), ANSWER]
    _, wire, reasons = await run_modes(tmp_path, script, think={"policy": "auto", "reasoning_budget": 50})
    assert wire == ["high", "none", "none", "none"]
    assert reasons[1].startswith("reasoning budget spent")


async def test_tool_hints_choose_the_mode_after_that_tool(tmp_path):
    script = [turn("add", a=1, b=1), turn("echo", text="x"), ANSWER]
    _, wire, reasons = await run_modes(tmp_path, script, think={"tool_hints": {"demo__add": "max"}})
    assert wire == ["high", "max", "none"]
    assert reasons[1] == "hint: results of demo__add call for max"


async def test_a_user_callable_chooses_the_mode(tmp_path):
    def every_other(state: RunState) -> ThinkChoice:
        return ThinkChoice(ThinkMode.max if state.step % 2 else ThinkMode.none, f"mine at {state.step}")

    script = [turn("echo", text="a"), turn("echo", text="b"), ANSWER]
    _, wire, reasons = await run_modes(tmp_path, script, think=every_other)
    assert wire == ["max", "none", "max"]
    assert reasons == ["mine at 1", "mine at 2", "mine at 3"]


async def test_fixed_modes_and_per_mode_summary(tmp_path):
    script = [turn("echo", reasoning="r" * 40, text="a"), ANSWER]
    result, wire, _ = await run_modes(tmp_path, script, think="max")
    assert wire == ["max", "max"]
    assert result.think["max"].steps == 2 and result.think["max"].reasoning_tokens > 0


@pytest.mark.parametrize(
    ("dialect", "field", "expected"),
    [("deepseek", "reasoning_effort", "max"), ("vllm", "chat_template_kwargs", {"thinking": True, "reasoning_effort": "max"})],
)
async def test_max_effort_is_encoded_as_each_endpoint_expects(tmp_path, dialect, field, expected):
    with ScriptedModelServer([ANSWER], dialect=dialect) as server:
        await Agent(server.model_string, think="max", trace_dir=tmp_path).run("go")
        body = server.requests[0].body
    assert body[field] == expected
    if dialect == "deepseek":
        assert body["thinking"] == {"type": "enabled"}


def test_think_settings_are_validated_with_the_field_named():
    assert isinstance(think_policy("auto"), AutoThink)
    assert think_policy({"policy": "fixed", "mode": "none"}).choose(RunState(step=1, max_steps=3)).mode is ThinkMode.none
    with pytest.raises(ConfigError, match="think.errors_to_max"):
        think_policy({"policy": "auto", "errors_to_max": 0})
    with pytest.raises(ConfigError, match="think: expected auto, none, high or max; got 'deep'"):
        think_policy("deep")
