"""MCP resources and prompts: the read-only tools offered for them, the SDK calls, update notes, and `@server:uri`
mentions, through a real stdio server (tests/servers/resource_server.py), the scripted model over HTTP and `agent run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import Agent
from agent.mentions import MentionError, find_mentions
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.tools.config import parse_servers
from agent.tools.hub import ToolHub
from agent.tools.resources import ResourceError, prompt_text, resource_text
from agent.trace import read_trace
from tests.conftest import DEMO_SERVER

SERVER = Path(__file__).resolve().parent / "servers" / "resource_server.py"
AGENT = Path(sys.executable).parent / "agent"
RESOURCE_TOOLS = ["docs__list_resources", "docs__read_resource", "docs__list_prompts", "docs__get_prompt"]


def docs(*args: str, **fields: Any) -> dict[str, Any]:
    return {"docs": {"command": sys.executable, "args": [str(SERVER), *args], **fields}}


def hub_for(servers: dict[str, Any]) -> ToolHub:
    return ToolHub(parse_servers(servers, where="test"))


def user_messages(server: ScriptedModelServer, index: int = 0) -> list[str]:
    return [m["content"] for m in server.requests[index].body["messages"] if m["role"] == "user"]


def tool_messages(server: ScriptedModelServer) -> list[str]:
    return [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]


# -- the tools ---------------------------------------------------------------------------------------------------


async def test_a_server_with_resources_and_prompts_gets_read_only_tools_after_its_own():
    async with hub_for(docs()) as hub:
        assert [t.name for t in hub.tools] == ["docs__set_status", *RESOURCE_TOOLS]
        assert all(hub.info(name).read_only and hub.info(name).destructive is False for name in RESOURCE_TOOLS)


async def test_a_server_without_resources_or_prompts_gets_no_extra_tools():
    async with hub_for({"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}) as hub:
        assert not [t.name for t in hub.tools if t.tool in ("list_resources", "read_resource", "get_prompt")]


async def test_list_resources_shows_uris_names_mime_types_descriptions_and_templates():
    async with hub_for(docs()) as hub:
        text = (await hub.call("docs__list_resources", {})).text
    assert "- memo://readme  readme [text/markdown]: What this server is for." in text
    assert "- blob://logo  logo [image/png]" in text
    assert "Resource templates" in text and "greeting://{name}" in text


async def test_read_resource_gives_text_as_text_fills_templates_and_summarises_blobs():
    async with hub_for(docs()) as hub:
        readme = await hub.call("docs__read_resource", {"uri": "memo://readme"})
        greeting = await hub.call("docs__read_resource", {"uri": "greeting://Ada"})
        logo = await hub.call("docs__read_resource", {"uri": "blob://logo"})
    assert (readme.text, readme.is_error) == ("# Docs\nThe answer is 42.", False)
    assert greeting.text == "Hello, Ada!"
    assert logo.text == "[binary resource: blob://logo (image/png, 108 B); not shown as text]"


async def test_an_unknown_resource_or_a_missing_uri_is_an_error_outcome():
    async with hub_for(docs()) as hub:
        missing = await hub.call("docs__read_resource", {"uri": "memo://nope"})
        no_uri = await hub.call("docs__read_resource", {})
    assert missing.is_error and "memo://nope" in missing.text and missing.text.startswith("Tool docs__read_resource")
    assert no_uri.is_error and "give 'uri'" in no_uri.text


async def test_prompts_are_listed_with_their_arguments_and_got_as_text():
    async with hub_for(docs()) as hub:
        listed = (await hub.call("docs__list_prompts", {})).text
        got = await hub.call("docs__get_prompt", {"name": "review", "arguments": {"code": "x = 1", "focus": "style"}})
        bad = await hub.call("docs__get_prompt", {"name": "review"})
    assert listed == "- review (Review code): Ask for a code review.\n    code (required)\n    focus (optional)"
    assert got.text == "(Ask for a code review.)\n\n[user]\nReview this code for style:\nx = 1"
    assert bad.is_error


async def test_allow_and_deny_globs_apply_to_the_resource_tools():
    async with hub_for(docs(deny=["*_prompt*"])) as hub:
        assert [t.name for t in hub.tools] == ["docs__set_status", "docs__list_resources", "docs__read_resource"]
    async with hub_for(docs(allow=["read_resource"])) as hub:
        assert [t.name for t in hub.tools] == ["docs__read_resource"]


async def test_a_servers_own_tool_named_read_resource_wins_over_the_synthetic_one():
    async with hub_for(docs("--own-read-tool")) as hub:
        names = [t.name for t in hub.tools]
        outcome = await hub.call("docs__read_resource", {"uri": "memo://readme"})
    assert names.count("docs__read_resource") == 1 and "docs__list_resources" in names
    assert outcome.text == "own tool read memo://readme"


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_an_update_of_a_resource_read_is_noted_once_in_the_next_tool_result(protocol):
    async with hub_for(docs(protocol=protocol)) as hub:
        assert hub.protocol_versions["docs"] == ("2026-07-28" if protocol == "auto" else "2025-11-25")
        before = await hub.call("docs__read_resource", {"uri": "memo://status"})
        changed = await hub.call("docs__set_status", {"text": "busy"})
        if "resource updated" not in changed.text:  # the update may arrive just after the tool's answer
            changed = await hub.call("docs__list_prompts", {})
        after = await hub.call("docs__read_resource", {"uri": "memo://status"})
    assert before.text == "status: all quiet"
    assert ("[resource updated: server 'docs' reports that memo://status changed since it was read; read it again "
            "with docs__read_resource if you need the current content]") in changed.text
    assert after.text == "status: busy"


async def test_a_resource_not_read_is_not_noted_when_it_changes():
    async with hub_for(docs()) as hub:
        await hub.call("docs__read_resource", {"uri": "memo://readme"})
        changed = await hub.call("docs__set_status", {"text": "busy"})
        later = await hub.call("docs__list_prompts", {})
    assert "resource updated" not in changed.text + later.text


# -- the SDK -------------------------------------------------------------------------------------------------------


async def test_an_entered_agent_lists_and_reads_resources_and_gets_prompts():
    with ScriptedModelServer([]) as model:
        async with Agent(model.model_string, docs(), trace_dir=None) as agent:
            listed = await agent.list_resources()
            readme = await agent.read_resource("docs", "memo://readme")
            prompt = await agent.get_prompt("docs", "review", {"code": "y"})
            prompts = await agent.list_prompts("docs")
            with pytest.raises(ResourceError, match="no MCP server named 'nope'"):
                await agent.read_resource("nope", "memo://readme")
            with pytest.raises(ResourceError, match="memo://missing"):
                await agent.read_resource("docs", "memo://missing")
    assert [(r.uri, r.template) for r in listed] == [
        ("memo://readme", False), ("memo://status", False), ("blob://logo", False), ("greeting://{name}", True)]
    assert resource_text(readme) == "# Docs\nThe answer is 42."
    assert prompt_text(prompt).endswith("Review this code for bugs:\ny")
    assert [p.name for p in prompts] == ["review"]


async def test_the_model_is_offered_the_resource_tools_and_reads_their_results(tmp_path):
    script = [
        ScriptedTurn(tool_calls=[ScriptedToolCall("docs__list_resources", {}),
                                 ScriptedToolCall("docs__read_resource", {"uri": "greeting://Bo"})]),
        ScriptedTurn(content="done"),
    ]
    with ScriptedModelServer(script) as model:
        result = await Agent(model.model_string, docs(), trace_dir=tmp_path).run("look around")
        offered = [t["function"]["name"] for t in model.requests[0].body["tools"]]
        results = tool_messages(model)
    assert result.ok
    assert offered[:5] == ["docs__set_status", *RESOURCE_TOOLS]
    assert "memo://readme" in results[0] and results[1] == "Hello, Bo!"


async def test_mentions_in_the_prompt_and_system_prompt_become_the_resources_text(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="ok")]) as model:
        agent = Agent(model.model_string, docs(), trace_dir=tmp_path, system="Context: @docs:memo://readme")
        result = await agent.run("Greet: @docs:greeting://Ada. Mail me@example.com, keep @@docs:memo://readme.")
        messages = model.requests[0].body["messages"]
    assert result.ok
    assert messages[0] == {"role": "system", "content": "Context: # Docs\nThe answer is 42."}
    assert user_messages(model) == ["Greet: Hello, Ada!. Mail me@example.com, keep @docs:memo://readme."]


async def test_a_mention_of_a_missing_resource_raises_naming_the_mention(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="never")]) as model:
        agent = Agent(model.model_string, docs(), trace_dir=tmp_path)
        with pytest.raises(MentionError, match=r"prompt: the mention @docs:memo://gone could not be replaced"):
            await agent.run("Read @docs:memo://gone please")
        assert model.requests == []


def test_only_configured_server_names_make_mentions_and_trailing_punctuation_is_not_the_uri():
    text = "See @docs:memo://a/(b). @web:https://x.org @docs:<memo://c.> x@docs:memo://d"
    assert [(server, uri) for _, _, server, uri, _ in find_mentions(text, {"docs"})] == [
        ("docs", "memo://a/(b)"), ("docs", "memo://c.")]


# -- agent run -------------------------------------------------------------------------------------------------------


def run_agent(task: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return subprocess.run([str(AGENT), "run", str(path), "--trace", str(folder / "trace.jsonl")], cwd=folder,
                          capture_output=True, text=True, timeout=90)


def test_agent_run_replaces_a_mention_in_the_task_prompt_before_the_run(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="42")]) as model:
        proc = run_agent({"name": "mention", "model": model.model_string, "servers": docs(),
                          "prompt": "Answer from this memo:\n@docs:memo://readme"}, tmp_path)
        users = user_messages(model)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
    assert users == ["Answer from this memo:\n# Docs\nThe answer is 42."]
    started = next(e for e in read_trace(tmp_path / "trace.jsonl") if e.type == "run_started")
    assert started.prompt == users[0]


def test_agent_run_with_a_mention_of_a_missing_resource_exits_2_naming_it(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="never")]) as model:
        proc = run_agent({"name": "mention", "model": model.model_string, "servers": docs(),
                          "prompt": "Read @docs:memo://gone"}, tmp_path)
    assert proc.returncode == 2
    assert "the mention @docs:memo://gone could not be replaced" in proc.stderr


# -- our files server --------------------------------------------------------------------------------------------------


def files_server(root: Path) -> dict[str, Any]:
    return {"files": {"command": sys.executable, "args": ["-m", "agent.servers.files", str(root)]}}


async def test_the_files_server_offers_text_files_below_its_roots_as_file_uris(tmp_path):
    (tmp_path / "notes.txt").write_text("hello notes\n")
    async with hub_for(files_server(tmp_path)) as hub:
        listed = (await hub.call("files__list_resources", {})).text
        inside = await hub.call("files__read_resource", {"uri": (tmp_path / "notes.txt").as_uri()})
        outside = await hub.call("files__read_resource", {"uri": "file:///etc/passwd"})
    assert "file:///{+path}" in listed
    assert inside.text == "hello notes\n"
    assert outside.is_error and "outside the allowed roots: /etc/passwd" in outside.text


async def test_a_files_mention_puts_the_files_text_in_the_prompt(tmp_path):
    (tmp_path / "plan.md").write_text("Step 1: test.")
    with ScriptedModelServer([ScriptedTurn(content="ok")]) as model:
        result = await Agent(model.model_string, files_server(tmp_path), trace_dir=None).run(
            f"Follow @files:{(tmp_path / 'plan.md').as_uri()}")
        users = user_messages(model)
    assert result.ok and users == ["Follow Step 1: test."]


async def test_resource_tools_false_keeps_the_tools_from_the_model_but_mentions_still_read(tmp_path):
    (tmp_path / "plan.md").write_text("Step 1: test.")
    hidden = {"files": {**files_server(tmp_path)["files"], "resource_tools": False}}
    with ScriptedModelServer([ScriptedTurn(content="ok")]) as model:
        result = await Agent(model.model_string, hidden, trace_dir=None).run(
            f"Follow @files:{(tmp_path / 'plan.md').as_uri()}")
        users = user_messages(model)
        offered = [t["function"]["name"] for t in model.requests[0].body["tools"]]
    assert result.ok and users == ["Follow Step 1: test."]
    assert "files__read_file" in offered and not [name for name in offered if name.endswith("_resource")
                                                  or name.endswith("_resources")]


def test_the_builtin_files_server_offers_no_resource_tools_and_other_servers_keep_theirs(tmp_path):
    from agent.eval.importers import OUR_SERVERS
    from agent.task import TaskSpec, bind_workspace

    bound = bind_workspace(TaskSpec(prompt="x", builtin_servers=["files", "shell"],
                                    servers=parse_servers(docs(), where="test")), tmp_path)
    assert {name: spec.resource_tools for name, spec in bound.servers.items()} == {
        "docs": True, "files": False, "shell": True}
    assert OUR_SERVERS["files"]["resource_tools"] is False
