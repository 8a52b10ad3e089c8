"""Tool sources beside MCP servers: a `ToolSource` written in the test, offered, called and refreshed by a ToolHub."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest
from conftest import SERVERS_DIR

from agent.errors import ConfigError
from agent.tools.config import parse_servers
from agent.tools.hub import ToolHub
from agent.tools.local import claim_done_tool
from agent.tools.results import ToolOutcome
from agent.tools.schema import to_openai_function
from agent.tools.source import SourceTool, ToolSource

DEMO = {"command": sys.executable, "args": [str(SERVERS_DIR / "demo_server.py")]}
KEY = {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}


class Notebook:
    """A tool source kept in a dict: `write`, `read`, and `burn`, whose call raises."""

    def __init__(self, prefix: str | None = "notes") -> None:
        self.prefix = prefix
        self.notes: dict[str, str] = {}
        self.tools = [
            SourceTool("write", "Write a note.", {**KEY, "properties": {**KEY["properties"], "text": {"type": "string"}}},
                       read_only=False, destructive=False, open_world=False),
            SourceTool("read", "Read a note.", KEY, read_only=True, open_world=False),
            SourceTool("burn", "Burn the notebook."),
        ]
        self.changed = False
        self.events: list[tuple[str, Any]] = []

    async def __aenter__(self) -> Notebook:
        self.events.append(("enter", anyio.get_current_task().id))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.events.append(("exit", anyio.get_current_task().id))

    def list_tools(self) -> list[SourceTool]:
        self.changed = False
        return list(self.tools)

    @property
    def tools_changed(self) -> bool:
        return self.changed

    def add(self, tool: SourceTool) -> None:
        self.tools.append(tool)
        self.changed = True

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        if tool == "write":
            self.notes[arguments["key"]] = arguments["text"]
            return ToolOutcome(text="written")
        if tool == "read":
            return ToolOutcome(text=self.notes.get(arguments["key"], "(no such note)"))
        raise RuntimeError(f"{tool}: the notebook caught fire")


def hub_with(*sources: ToolSource, servers: dict[str, Any] | None = None, **kwargs: Any) -> ToolHub:
    return ToolHub(parse_servers(servers or {}, where="test"), sources=sources, **kwargs)


def test_the_notebook_is_a_tool_source():
    assert isinstance(Notebook(), ToolSource)


async def test_a_sources_tools_are_offered_as_prefix__tool_after_the_servers_tools_and_before_local_tools():
    notebook = Notebook()
    async with hub_with(notebook, servers={"demo": DEMO}, local_tools=[claim_done_tool()]) as hub:
        names = [tool.name for tool in hub.tools]
        assert names[:2] == ["demo__echo", "demo__add"]
        assert names[-4:] == ["notes__write", "notes__read", "notes__burn", "claim_done"]
        write = hub.info("notes__write")
        assert write is not None
        assert (write.server, write.tool, write.read_only, write.destructive, write.open_world) == (
            "notes", "write", False, False, False)
        assert write.openai == to_openai_function("notes__write", "Write a note.", notebook.tools[0].input_schema)
        assert hub.openai_tools[names.index("notes__read")] == to_openai_function("notes__read", "Read a note.", KEY)


async def test_calls_are_routed_to_the_source_with_its_own_tool_name_and_to_the_server():
    notebook = Notebook()
    async with hub_with(notebook, servers={"demo": DEMO}) as hub:
        assert (await hub.call("notes__write", '{"key": "k", "text": "remember"}')).text == "written"
        assert notebook.notes == {"k": "remember"}
        assert (await hub.call("notes__read", {"key": "k"})).text == "remember"
        assert (await hub.call("demo__echo", {"text": "still here"})).text == "still here"


async def test_a_source_without_prefix_offers_its_tools_under_their_own_names():
    async with hub_with(Notebook(prefix=None)) as hub:
        assert [tool.name for tool in hub.tools] == ["write", "read", "burn"]
        assert hub.info("read").server is None
        assert (await hub.call("read", {"key": "none"})).text == "(no such note)"


async def test_an_exception_in_a_sources_call_becomes_an_error_outcome_naming_the_tool():
    async with hub_with(Notebook()) as hub:
        outcome = await hub.call("notes__burn", {})
        assert outcome.is_error
        assert "notes__burn" in outcome.text and "RuntimeError: burn: the notebook caught fire" in outcome.text
        assert (await hub.call("notes__read", {"key": "k"})).text == "(no such note)"


async def test_a_sources_tool_list_change_is_applied_only_by_refresh():
    notebook = Notebook()
    async with hub_with(notebook) as hub:
        before = hub.openai_tools
        notebook.add(SourceTool("erase", "Erase a note.", KEY, destructive=True))
        assert hub.tools_changed
        assert hub.openai_tools is before and hub.info("notes__erase") is None
        assert (await hub.call("notes__erase", {"key": "k"})).is_error  # not offered yet
        assert await hub.refresh()
        assert not hub.tools_changed and hub.tools_version == 1
        assert hub.openai_tools is not before and hub.openai_tools[:3] == before
        assert hub.openai_tools[-1] == to_openai_function("notes__erase", "Erase a note.", KEY)
        after = hub.openai_tools
        assert not await hub.refresh() and hub.openai_tools is after


async def test_a_bare_name_clash_is_a_config_error_naming_both_owners():
    clashing = Notebook(prefix=None)
    clashing.tools.append(SourceTool("claim_done", "Say it is done."))
    hub = hub_with(clashing, local_tools=[claim_done_tool()])
    with pytest.raises(ConfigError) as caught:
        await hub.__aenter__()
    message = str(caught.value)
    assert "'claim_done'" in message and "local_tools" in message and "Notebook" in message and "prefix" in message
    assert [event for event, _ in clashing.events] == ["enter", "exit"]


async def test_two_sources_without_prefix_may_not_offer_the_same_name():
    with pytest.raises(ConfigError, match="both named 'write'"):
        async with hub_with(Notebook(prefix=None), Notebook(prefix=None)):
            pass


def test_a_prefix_must_not_be_a_servers_name():
    with pytest.raises(ConfigError, match="'demo' is also the name of an MCP server"):
        hub_with(Notebook(prefix="demo"), servers={"demo": DEMO})


async def test_a_changed_list_that_would_clash_is_not_applied_and_is_noted():
    notebook = Notebook(prefix=None)
    notices: list[tuple[str, str]] = []
    async with hub_with(notebook, local_tools=[claim_done_tool()], on_notice=lambda *n: notices.append(n)) as hub:
        notebook.add(SourceTool("claim_done", "Say it is done."))
        assert not await hub.refresh()
        assert [tool.name for tool in hub.tools] == ["write", "read", "burn", "claim_done"]
        assert hub.info("claim_done").server is None and hub.info("claim_done").open_world is False
        assert len(notices) == 1 and "'claim_done'" in notices[0][1] and "earlier tools stay offered" in notices[0][1]


async def test_a_source_is_entered_and_exited_with_the_hub_in_one_task_of_its_own():
    notebook = Notebook()
    hub = hub_with(notebook)
    assert notebook.events == []
    async with hub:
        assert [event for event, _ in notebook.events] == ["enter"]
    assert [event for event, _ in notebook.events] == ["enter", "exit"]
    (_, entered_in), (_, exited_in) = notebook.events
    # One task holds the source, so scopes it opens on entering (an Agent's task groups) close where they opened.
    assert entered_in == exited_in != anyio.get_current_task().id
