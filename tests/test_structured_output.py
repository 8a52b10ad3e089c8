"""Structured output: the run ends on a final_result call whose arguments validate; RunResult.output holds it.

A tool rather than JSON mode, so it works in DeepSeek's thinking mode (tool_choice stays auto).
"""

from __future__ import annotations

import json

import yaml
from pydantic import BaseModel

from agent import Agent, StopReason, ThinkMode
from agent.output import FINAL_RESULT
from agent.testing import FakeModel, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.test_cli_run import run_cli


class Region(BaseModel):
    name: str
    revenue: float


def final(**arguments: object) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=[ScriptedToolCall(FINAL_RESULT, dict(arguments))])


async def test_the_output_is_the_validated_final_result_in_thinking_mode(tmp_path):
    model = FakeModel([final(name="South", revenue=2458.5)])
    result = await Agent(model, output_type=Region, think="high", trace_dir=tmp_path).run("best region?")
    assert result.stop_reason == StopReason.answer
    assert result.output == Region(name="South", revenue=2458.5)
    tool = next(t for t in model.calls[0].tools if t["function"]["name"] == FINAL_RESULT)
    assert set(tool["function"]["parameters"]["properties"]) == {"name", "revenue"}
    assert model.calls[0].mode == ThinkMode.high and model.calls[0].tool_choice is None
    finished = json.loads(result.trace_path.read_text().splitlines()[-1])
    assert finished["output"] == {"name": "South", "revenue": 2458.5}


async def test_an_invalid_output_is_sent_back_and_the_model_fixes_it(tmp_path):
    model = FakeModel([final(name="South", revenue="a lot"), final(name="South", revenue=2458.5)])
    result = await Agent(model, output_type=Region, trace_dir=tmp_path).run("best region?")
    assert result.output == Region(name="South", revenue=2458.5) and result.steps == 2
    observation = [m["content"] for m in model.calls[1].messages if m["role"] == "tool"][0]
    assert "not accepted" in observation and "revenue" in observation


async def test_too_many_invalid_outputs_end_the_run_with_a_typed_error(tmp_path):
    model = FakeModel([final(name="South")] * 3)
    result = await Agent(model, output_type=Region, output_retries=1, trace_dir=tmp_path).run("best region?")
    assert result.stop_reason == StopReason.error and result.output is None
    assert result.error_info is not None and result.error_info.kind == "OutputRejectedError"
    assert "revenue" in result.error_info.message


async def test_a_plain_json_answer_is_accepted_and_prose_is_asked_to_use_the_tool(tmp_path):
    model = FakeModel([ScriptedTurn(content="The South region."),
                       ScriptedTurn(content='```json\n{"name": "South", "revenue": 10}\n```')])
    result = await Agent(model, output_type=Region, trace_dir=tmp_path).run("best region?")
    assert result.output == Region(name="South", revenue=10)
    nudge = model.calls[1].messages[-1]
    assert nudge["role"] == "user" and FINAL_RESULT in nudge["content"]


async def test_an_output_type_per_run_wraps_types_that_are_not_objects(tmp_path):
    model = FakeModel([final(result=[3, 1, 2])])
    async with Agent(model, trace_dir=tmp_path) as bot:
        result = await bot.run("three numbers", output_type=list[int])
    assert result.output == [3, 1, 2]
    tool = next(t for t in model.calls[0].tools if t["function"]["name"] == FINAL_RESULT)
    assert tool["function"]["parameters"]["required"] == ["result"]


def test_agent_run_json_prints_the_output_of_a_task_with_an_output_schema(tmp_path):
    schema = {"type": "object", "properties": {"region": {"type": "string"}, "total": {"type": "number"}},
              "required": ["region", "total"]}
    script = [ScriptedTurn(reasoning="answer with the tool",
                           tool_calls=[ScriptedToolCall(FINAL_RESULT, {"region": "South", "total": 2458})])]
    with ScriptedModelServer(script) as model:
        (tmp_path / "task.yaml").write_text(yaml.safe_dump({"prompt": "best region?", "model": model.model_string,
                                                            "output_schema": schema}))
        as_json = run_cli("run", str(tmp_path / "task.yaml"), "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["output"] == {"region": "South", "total": 2458}
    assert "tool_choice" not in model.requests[0].body


def test_a_task_whose_output_schema_is_not_a_schema_is_refused_naming_the_file(tmp_path):
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({"prompt": "x", "output_schema": {"type": "nonsense"}}))
    done = run_cli("run", str(tmp_path / "task.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    assert "task.yaml" in done.stderr and "not a valid JSON schema" in done.stderr
