"""Python functions as tools: `@tool` and `FunctionTools`, offered to the model by a real `Agent` run.

The model is the in-process `FakeModel`; the MCP server beside the functions is a real stdio subprocess.
"""

from __future__ import annotations

import sys
import threading
from typing import Annotated, Any

import pytest
from conftest import SERVERS_DIR
from pydantic import BaseModel, Field

from agent import Agent, Hooks, ServerNotice, StopReason, ToolCallRequest, ToolOutcome, read_trace
from agent.errors import ConfigError
from agent.function_tools import FunctionTools, tool
from agent.run import RunContext
from agent.testing import FakeModel, ScriptedToolCall, ScriptedTurn

DEMO = {"command": sys.executable, "args": [str(SERVERS_DIR / "demo_server.py")]}
PEOPLE = {"ada": {"name": "Ada Lovelace", "born": 1815}}


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


@tool(read_only=True, open_world=False)
async def lookup(
    key: Annotated[str, Field(description="A person's short name, e.g. 'ada'.")], fields: list[str] | None = None
) -> dict[str, Any]:
    """Look a person up in the address book."""
    person = PEOPLE[key]
    return {k: v for k, v in person.items() if fields is None or k in fields}


@tool(name="forget_person", description="Remove a person from the address book.", destructive=True)
def forget(key: str) -> None:
    PEOPLE.pop(key, None)


def calls(*tool_calls: ScriptedToolCall) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=list(tool_calls))


def call(name: str, **arguments: Any) -> ScriptedToolCall:
    return ScriptedToolCall(name, arguments)


def offered(model: FakeModel, name: str) -> dict[str, Any]:
    """The OpenAI function the model was offered under `name` in its first request."""
    return next(t["function"] for t in model.calls[0].tools if t["function"]["name"] == name)


async def run_with(functions: list[Any], script: list[ScriptedTurn], tmp_path, **options: Any):
    model = FakeModel([*script, ScriptedTurn(content="finished")])
    agent = Agent(model, tool_sources=[FunctionTools(functions)], trace_dir=tmp_path, **options)
    return model, await agent.run("go")


# -- what the model sees --------------------------------------------------------------------------------------


async def test_the_model_is_offered_each_function_with_a_schema_from_its_hints_and_docstring(tmp_path):
    model, _ = await run_with([add, lookup], [], tmp_path)
    assert offered(model, "add") == {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "description": "The first addend."},
                "b": {"type": "integer", "description": "The second addend."},
            },
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    }
    assert offered(model, "lookup") == {
        "name": "lookup",
        "description": "Look a person up in the address book.",
        "parameters": {
            "type": "object",
            "properties": {
                "key": {"type": "string", "description": "A person's short name, e.g. 'ada'."},
                "fields": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                           "default": None},
            },
            "required": ["key"],
            "additionalProperties": False,
        },
    }


def test_tool_options_set_the_name_and_description_and_the_decorated_function_still_works():
    assert (forget.name, forget.description) == ("forget_person", "Remove a person from the address book.")
    assert forget("nobody") is None
    assert tool(add)(2, 3) == 5


class Item(BaseModel):
    sku: str
    quantity: int = 1


def test_a_nested_pydantic_model_parameter_is_described_by_its_json_schema():
    def order(items: list[Item]) -> str:
        """Order items."""
        return "ordered"

    schema = tool(order).input_schema
    assert schema["properties"]["items"] == {"type": "array", "items": {"$ref": "#/$defs/Item"}}
    assert schema["$defs"]["Item"]["properties"] == {"sku": {"type": "string"},
                                                     "quantity": {"type": "integer", "default": 1}}


def test_a_pydantic_field_as_default_gives_the_default_description_and_bounds():
    def page(number: int = Field(1, description="The page, from 1.", ge=1)) -> str:
        """Read a page."""
        return f"page {number}"

    schema = tool(page).input_schema
    assert schema["properties"] == {"number": {"type": "integer", "default": 1, "minimum": 1,
                                               "description": "The page, from 1."}}
    assert "required" not in schema


def test_a_function_taking_star_args_is_refused_when_it_is_made_a_tool():
    def total(*numbers: int) -> int:
        return sum(numbers)

    with pytest.raises(ConfigError, match=r"\*numbers cannot be described to the model"):
        tool(total)


def test_two_functions_with_one_name_are_refused():
    with pytest.raises(ConfigError, match=r"more than one tool named \['add'\]"):
        FunctionTools([add, tool(name="add")(lookup.function)])


# -- calls ------------------------------------------------------------------------------------------------------


async def test_sync_and_async_functions_are_called_and_their_results_read_by_the_model(tmp_path):
    model, result = await run_with([add, lookup], [calls(call("add", a=2, b=3), call("lookup", key="ada"))],
                                   tmp_path)
    assert model.calls[1].tool_results == ["5", '{"name": "Ada Lovelace", "born": 1815}']
    assert result.stop_reason == StopReason.answer and result.answer == "finished"


async def test_a_sync_function_runs_off_the_event_loops_thread(tmp_path):
    threads: list[int] = []

    def where() -> str:
        """Say which thread runs this."""
        threads.append(threading.get_ident())
        return "here"

    await run_with([where], [calls(call("where"))], tmp_path)
    assert len(threads) == 1 and threads[0] != threading.get_ident()


async def test_invalid_arguments_are_shown_to_the_model_by_field_and_the_run_goes_on(tmp_path):
    model, result = await run_with(
        [add], [calls(call("add", a="two", c=1)), calls(call("add", a=2, b=2))], tmp_path)
    error = model.calls[1].tool_results[0]
    assert error.startswith("Invalid arguments for add; it did not run:")
    assert "- a: Input should be a valid integer" in error and "(got 'two')" in error
    assert "- b: Field required" in error
    assert "- c: Extra inputs are not permitted" in error
    assert "add takes: a: integer, b: integer" in error
    assert model.calls[2].tool_results == ["4"]
    assert result.stop_reason == StopReason.answer


async def test_an_exception_in_the_function_becomes_an_error_the_model_reads(tmp_path):
    model, result = await run_with([lookup], [calls(call("lookup", key="grace"))], tmp_path)
    assert model.calls[1].tool_results == ["Tool lookup failed: KeyError: 'grace'"]
    assert result.stop_reason == StopReason.answer


class RecordOutcomes(Hooks):
    def __init__(self) -> None:
        self.requests: list[ToolCallRequest] = []
        self.outcomes: list[ToolOutcome] = []

    async def before_tool_call(self, ctx: RunContext, call: ToolCallRequest) -> None:
        self.requests.append(call)

    async def after_tool_call(self, ctx: RunContext, call: ToolCallRequest, outcome: ToolOutcome) -> None:
        self.outcomes.append(outcome)


async def test_return_values_become_text_and_structured_data(tmp_path):
    class Weather(BaseModel):  # defined here: a return annotation need not resolve
        city: str
        celsius: float

    async def weather(city: str) -> Weather:
        """Today's weather."""
        return Weather(city=city, celsius=21.5)

    def cities() -> list[str]:
        """Known cities."""
        return ["Oslo", "Lima"]

    def ping() -> None:
        """Do nothing."""

    hooks = RecordOutcomes()
    model, _ = await run_with([weather, cities, ping],
                              [calls(call("weather", city="Oslo"), call("cities"), call("ping"))], tmp_path,
                              hooks=[hooks])
    assert model.calls[1].tool_results == ['{"city": "Oslo", "celsius": 21.5}', '["Oslo", "Lima"]', "done"]
    assert [o.structured for o in hooks.outcomes] == [{"city": "Oslo", "celsius": 21.5}, ["Oslo", "Lima"], None]


# -- the run context --------------------------------------------------------------------------------------------


async def test_a_run_context_parameter_is_filled_in_and_left_out_of_the_schema(tmp_path):
    async def whoami(ctx: RunContext) -> str:
        """Name the run and the step."""
        return f"{ctx.run_id} at step {ctx.step}"

    model, result = await run_with([whoami], [calls(call("whoami"))], tmp_path)
    assert offered(model, "whoami")["parameters"] == {"type": "object", "properties": {},
                                                      "additionalProperties": False}
    assert model.calls[1].tool_results == [f"{result.run_id} at step 1"]


async def test_a_sync_function_may_emit_events_into_the_runs_trace(tmp_path):
    def announce(text: str, ctx: RunContext) -> str:
        """Announce something."""
        ctx.emit(ServerNotice(server="announce", message=text))
        return "announced"

    _, result = await run_with([announce], [calls(call("announce", text="hello"))], tmp_path)
    assert result.trace_path is not None
    notices = [e for e in read_trace(result.trace_path) if isinstance(e, ServerNotice)]
    assert [(n.server, n.message) for n in notices] == [("announce", "hello")]


async def test_a_function_needing_the_run_context_called_outside_a_run_is_an_error_outcome():
    async def whoami(ctx: RunContext) -> str:
        return ctx.run_id

    async with FunctionTools([whoami]) as source:
        outcome = await source.call("whoami", {})
    assert outcome.is_error and "needs the run's RunContext" in outcome.text


# -- beside the MCP servers -------------------------------------------------------------------------------------


async def test_the_hints_reach_the_tool_info_hooks_see(tmp_path):
    hooks = RecordOutcomes()
    await run_with([add, lookup, forget], [calls(call("add", a=1, b=1), call("lookup", key="ada"),
                                                 call("forget_person", key="nobody"))], tmp_path, hooks=[hooks])
    infos = {r.tool: r.info for r in hooks.requests}
    assert all(info is not None for info in infos.values())
    hints = {name: (i.read_only, i.destructive, i.open_world) for name, i in infos.items() if i is not None}
    assert hints == {"add": (None, None, None), "lookup": (True, None, False), "forget_person": (None, True, None)}


async def test_function_tools_are_offered_after_an_mcp_servers_tools_and_both_are_called(tmp_path):
    model = FakeModel([calls(call("demo__echo", text="from mcp"), call("py__add", a=20, b=22)),
                       ScriptedTurn(content="finished")])
    agent = Agent(model, {"demo": DEMO}, tool_sources=[FunctionTools([add], prefix="py")], trace_dir=tmp_path)
    result = await agent.run("go")
    names = model.calls[0].tool_names
    served = [i for i, name in enumerate(names) if name.startswith("demo__")]
    assert served and "py__add" in names and max(served) < names.index("py__add")
    assert model.calls[1].tool_results == ["from mcp", "42"]
    assert result.stop_reason == StopReason.answer
