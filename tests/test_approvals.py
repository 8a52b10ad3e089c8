"""Approvals: `ApprovalPolicy` asks before the calls its globs and MCP annotations select; yes, no and always; the
terminal prompt on a real pseudo-terminal; and `agent serve` asking its host by MCP elicitation.

SDK runs use the in-process `FakeModel` with local tools or the demo stdio MCP server (whose annotations travel
on the wire); the serve tests drive `agent serve` as a subprocess with a real MCP client and the scripted model
server, and read what the model was told.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEMO_SERVER, terminal
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult

from agent import Agent, ToolCallRequest, ToolOutcome
from agent.approvals import (
    NO_TERMINAL,
    Approval,
    ApprovalPolicy,
    approval_preset,
    policy_for_cli,
    terminal_prompt,
)
from agent.errors import ConfigError
from agent.testing import FakeModel, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.tools.local import LocalTool

REPO = Path(__file__).resolve().parent.parent
AGENT_COMMAND = str(Path(sys.executable).parent / "agent")
DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}


# -- helpers --------------------------------------------------------------------------------------------------


def local_tool(name: str, ran: list[str], **annotations: Any) -> LocalTool:
    """A local tool that records each call it runs."""

    async def handler(arguments: dict[str, Any]) -> ToolOutcome:
        ran.append(name)
        return ToolOutcome(text=f"{name} done")

    return LocalTool(name=name, description=f"The {name} tool.", input_schema={"type": "object", "properties": {}},
                     handler=handler, **annotations)


def calls(*names: str, **arguments: Any) -> ScriptedTurn:
    """One turn calling each of `names` (in parallel when several)."""
    return ScriptedTurn(tool_calls=[ScriptedToolCall(name, dict(arguments)) for name in names])


def tool_messages(model: FakeModel) -> list[str]:
    return [m["content"] for m in model.calls[-1].messages if m["role"] == "tool"]


class Asker:
    """A confirm callback that answers from a list and records what it was asked."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.asked: list[ToolCallRequest] = []

    async def __call__(self, call: ToolCallRequest) -> Any:
        self.asked.append(call)
        return self.answers.pop(0)

    @property
    def tools(self) -> list[str]:
        return [call.tool for call in self.asked]


async def run_with(policy: ApprovalPolicy, script: list[ScriptedTurn], tmp_path: Path, *,
                   tools: list[LocalTool] = (), servers: dict | None = None) -> FakeModel:
    model = FakeModel([*script, ScriptedTurn(content="finished")])
    result = await Agent(model, servers, local_tools=tools, hooks=[policy], trace_dir=tmp_path).run("go")
    assert result.answer == "finished", result.error
    return model


# -- the callback: yes, no, always ----------------------------------------------------------------------------


async def test_a_yes_runs_the_call_after_asking_with_the_call_in_hand(tmp_path):
    ran: list[str] = []
    asker = Asker(Approval.yes())
    model = await run_with(ApprovalPolicy(asker), [calls("wipe", target="db")], tmp_path,
                           tools=[local_tool("wipe", ran, read_only=False, destructive=True)])
    assert ran == ["wipe"] and tool_messages(model) == ["wipe done"]
    (asked,) = asker.asked
    assert (asked.tool, asked.arguments, asked.info and asked.info.destructive) == ("wipe", {"target": "db"}, True)


async def test_a_no_reaches_the_model_as_the_refusal_with_its_reason(tmp_path):
    ran: list[str] = []
    model = await run_with(ApprovalPolicy(Asker(Approval.no("the user said no: not on a Friday"))),
                           [calls("wipe")], tmp_path, tools=[local_tool("wipe", ran, read_only=False)])
    assert ran == []
    assert tool_messages(model) == ["The call to wipe was refused: the user said no: not on a Friday"]


async def test_always_asks_once_for_two_calls_to_the_same_tool(tmp_path):
    ran: list[str] = []
    asker = Asker(Approval.always())
    await run_with(ApprovalPolicy(asker), [calls("wipe"), calls("wipe")], tmp_path,
                   tools=[local_tool("wipe", ran, read_only=False)])
    assert asker.tools == ["wipe"] and ran == ["wipe", "wipe"]


async def test_always_covers_a_parallel_call_to_the_same_tool_that_waited_for_the_question(tmp_path):
    ran: list[str] = []
    asker = Asker(Approval.always())
    await run_with(ApprovalPolicy(asker), [calls("wipe", "wipe")], tmp_path,
                   tools=[local_tool("wipe", ran, read_only=False)])
    assert asker.tools == ["wipe"] and ran == ["wipe", "wipe"]


async def test_a_yes_is_asked_again_for_the_next_call(tmp_path):
    ran: list[str] = []
    asker = Asker(Approval.yes(), False)
    model = await run_with(ApprovalPolicy(asker), [calls("wipe"), calls("wipe")], tmp_path,
                           tools=[local_tool("wipe", ran, read_only=False)])
    assert asker.tools == ["wipe", "wipe"] and ran == ["wipe"]
    assert tool_messages(model)[-1] == "The call to wipe was refused: the user said no"


@pytest.mark.parametrize(("reply", "runs"), [(True, True), ("yes", True), ("always", True), (False, False),
                                             ("no", False)])
async def test_a_sync_callback_may_answer_a_bool_or_the_verdict_name(tmp_path, reply, runs):
    ran: list[str] = []
    await run_with(ApprovalPolicy(lambda call: reply), [calls("wipe")], tmp_path,
                   tools=[local_tool("wipe", ran, read_only=False)])
    assert ran == (["wipe"] if runs else [])


# -- which calls are asked about: globs and annotations --------------------------------------------------------


async def test_deny_globs_refuse_without_asking(tmp_path):
    ran: list[str] = []
    asker = Asker()
    model = await run_with(ApprovalPolicy(asker, deny=["shell_*"]), [calls("shell_exec")], tmp_path,
                           tools=[local_tool("shell_exec", ran)])
    assert asker.asked == [] and ran == []
    assert tool_messages(model) == ["The call to shell_exec was refused: the approval policy denies this tool"]


async def test_allow_globs_run_destructive_tools_without_asking(tmp_path):
    ran: list[str] = []
    asker = Asker()
    await run_with(ApprovalPolicy(asker, allow=["scratch_*"]), [calls("scratch_wipe")], tmp_path,
                   tools=[local_tool("scratch_wipe", ran, read_only=False, destructive=True)])
    assert asker.asked == [] and ran == ["scratch_wipe"]


async def test_ask_globs_ask_even_for_read_only_tools(tmp_path):
    ran: list[str] = []
    asker = Asker(Approval.yes())
    await run_with(ApprovalPolicy(asker, ask=["peek"]), [calls("peek", "look")], tmp_path,
                   tools=[local_tool("peek", ran), local_tool("look", ran)])
    assert asker.tools == ["peek"] and sorted(ran) == ["look", "peek"]


async def test_by_default_destructive_calls_are_asked_about_as_mcp_reads_the_hints(tmp_path):
    # demo: write_file destructive, add unannotated (MCP's defaults: destructive), note marked not destructive,
    # echo read-only. The annotations come over the wire from a real stdio MCP server.
    asker = Asker(Approval.yes(), Approval.yes())
    await run_with(ApprovalPolicy(asker), [calls("demo__add", "demo__note", "demo__echo", "demo__write_file")],
                   tmp_path, servers=DEMO)
    assert sorted(asker.tools) == ["demo__add", "demo__write_file"]


async def test_the_ask_preset_asks_before_every_tool_not_marked_read_only(tmp_path):
    asker = Asker(Approval.yes(), Approval.yes(), Approval.yes())
    policy = approval_preset("ask", asker)
    assert policy is not None
    await run_with(policy, [calls("demo__add", "demo__note", "demo__echo", "demo__write_file")], tmp_path,
                   servers=DEMO)
    assert sorted(asker.tools) == ["demo__add", "demo__note", "demo__write_file"]


async def test_the_destructive_preset_spares_tools_marked_not_destructive(tmp_path):
    asker = Asker(Approval.yes(), Approval.yes())
    policy = approval_preset("destructive", asker)
    assert policy is not None
    await run_with(policy, [calls("demo__add", "demo__note", "demo__echo", "demo__write_file")], tmp_path,
                   servers=DEMO)
    assert sorted(asker.tools) == ["demo__add", "demo__write_file"]


async def test_open_world_asks_before_tools_that_do_not_say_they_stay_inside(tmp_path):
    ran: list[str] = []
    asker = Asker(Approval.yes(), Approval.yes())
    await run_with(ApprovalPolicy(asker, destructive=False, open_world=True), [calls("fetch", "unsaid", "local")],
                   tmp_path, tools=[local_tool("fetch", ran, open_world=True), local_tool("unsaid", ran),
                                    local_tool("local", ran, open_world=False)])
    assert sorted(asker.tools) == ["fetch", "unsaid"] and sorted(ran) == ["fetch", "local", "unsaid"]


def test_the_never_preset_is_no_policy_and_unknown_presets_are_refused():
    assert policy_for_cli("never") is None
    assert isinstance(policy_for_cli("ask"), ApprovalPolicy)
    with pytest.raises(ConfigError, match="--approve: expected one of ask, destructive, never, got 'sometimes'"):
        policy_for_cli("sometimes")


# -- the terminal prompt --------------------------------------------------------------------------------------


def request(tool: str = "demo__write_file", arguments: Any = None) -> ToolCallRequest:
    return ToolCallRequest(step=1, call_id="c1", tool=tool, arguments=arguments if arguments is not None else {},
                           info=None)


@pytest.mark.parametrize(("typed", "answer"), [
    (b"y\n", Approval.yes()),
    (b"always\n", Approval.always()),
    (b"\n", Approval.no()),
    (b"n too risky\n", Approval.no("the user said no: too risky")),
])
async def test_the_terminal_prompt_reads_the_answer_from_the_terminal(typed, answer):
    with terminal() as (stdin, master):
        os.write(master, typed)
        assert await terminal_prompt(request(), stdin=stdin, stderr=io.StringIO()) == answer


async def test_the_terminal_prompt_shows_the_tool_and_its_arguments_shortened():
    stderr = io.StringIO()
    with terminal() as (stdin, master):
        os.write(master, b"y\n")
        await terminal_prompt(request(arguments={"path": "/tmp/out.txt", "text": "x" * 5000}), stdin=stdin,
                              stderr=stderr)
    shown = stderr.getvalue()
    assert 'Approve demo__write_file with path="/tmp/out.txt", text="xxx' in shown
    assert "(5002 characters)" in shown and len(shown) < 1000


async def test_the_terminal_prompt_asks_again_after_an_answer_it_does_not_know():
    stderr = io.StringIO()
    with terminal() as (stdin, master):
        os.write(master, b"maybe\na\n")
        assert await terminal_prompt(request(), stdin=stdin, stderr=stderr) == Approval.always()
    assert "Answer y, n (optionally followed by a reason) or a." in stderr.getvalue()


async def test_the_terminal_prompt_refuses_at_end_of_input():
    with terminal() as (stdin, master):
        os.write(master, b"\x04")  # Ctrl-D on an empty line
        assert await terminal_prompt(request(), stdin=stdin, stderr=io.StringIO()) == Approval.no(NO_TERMINAL)


async def test_a_run_whose_stdin_is_a_pipe_refuses_the_call_with_no_terminal_to_ask(tmp_path):
    read_end, write_end = os.pipe()
    ran: list[str] = []
    with os.fdopen(read_end, "r") as stdin, os.fdopen(write_end, "w") as pipe:
        pipe.write("y\n")  # a pipe is not a person: even a ready answer is not taken
        pipe.flush()
        stderr = io.StringIO()
        policy = approval_preset("destructive", partial(terminal_prompt, stdin=stdin, stderr=stderr))
        assert policy is not None
        model = await run_with(policy, [calls("wipe")], tmp_path, tools=[local_tool("wipe", ran, read_only=False)])
    assert ran == [] and stderr.getvalue() == ""
    assert tool_messages(model) == ["The call to wipe was refused: no terminal to ask"]


# -- agent serve: the host is asked by MCP elicitation ---------------------------------------------------------


Elicited = list[ElicitRequestParams]


def answering(action: str, content: dict[str, Any] | None = None) -> tuple[Any, Elicited]:
    """An elicitation callback that answers every question the same way, and the questions it got."""
    asked: Elicited = []

    async def callback(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action=action, content=content)

    return callback, asked


@asynccontextmanager
async def serve(tmp_path: Path, *, mode: str = "legacy", approve: str | None = None,
                elicitation_callback: Any = None) -> AsyncIterator[Client]:
    """`agent serve` as a stdio subprocess with the demo server, driven by a real MCP client."""
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"servers": DEMO, "think": "high", **({"approve": approve} if approve else {})}))
    params = StdioServerParameters(command=AGENT_COMMAND, args=["serve", "--config", str(config), "--runs-dir",
                                   str(tmp_path / "runs"), "--workspace", str(tmp_path)],
                                   env=dict(os.environ), cwd=str(REPO))
    async with Client(params, mode=mode, elicitation_callback=elicitation_callback) as client:
        yield client


def write_script(path: Path) -> list[ScriptedTurn]:
    return [calls("demo__write_file", path=str(path), text="hello"), ScriptedTurn(content="finished")]


def observations(model: ScriptedModelServer) -> list[str]:
    return [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]


async def test_serve_asks_the_host_and_runs_the_call_it_approves(tmp_path):
    target = tmp_path / "out.txt"
    callback, asked = answering("accept", {"approve": True, "always": False})
    with ScriptedModelServer(write_script(target)) as model:
        async with serve(tmp_path, elicitation_callback=callback) as client:
            result = await client.call_tool("run", {"prompt": "write it", "model": model.model_string,
                                                    "approve": "destructive"})
    assert result.structured_content["answer"] == "finished"
    (question,) = asked
    assert question.mode == "form" and "demo__write_file (destructive)" in question.message
    assert str(target) in question.message
    assert set(question.requested_schema["properties"]) == {"approve", "always"}
    assert target.read_text() == "hello" and observations(model) == [f"wrote 5 characters to {target}"]


async def test_serve_reports_a_declined_question_to_the_model_and_skips_the_call(tmp_path):
    target = tmp_path / "out.txt"
    callback, asked = answering("decline")
    with ScriptedModelServer(write_script(target)) as model:
        async with serve(tmp_path, elicitation_callback=callback) as client:
            await client.call_tool("run", {"prompt": "write it", "model": model.model_string, "approve": "ask"})
    assert len(asked) == 1 and not target.exists()
    assert observations(model) == ["The call to demo__write_file was refused: the user declined"]


async def test_serve_takes_an_unticked_approve_box_as_a_no(tmp_path):
    target = tmp_path / "out.txt"
    callback, _ = answering("accept", {"approve": False})
    with ScriptedModelServer(write_script(target)) as model:
        async with serve(tmp_path, elicitation_callback=callback) as client:
            await client.call_tool("run", {"prompt": "write it", "model": model.model_string, "approve": "ask"})
    assert not target.exists()
    assert observations(model) == ["The call to demo__write_file was refused: the user said no"]


async def test_serve_refuses_the_call_when_the_host_cannot_elicit_and_the_config_asks(tmp_path):
    # No `approve` argument: the config's `approve: destructive` applies, and this host declared no elicitation.
    target = tmp_path / "out.txt"
    with ScriptedModelServer(write_script(target)) as model:
        async with serve(tmp_path, approve="destructive") as client:
            await client.call_tool("run", {"prompt": "write it", "model": model.model_string, "approve": "never"})
    assert not target.exists()
    assert observations(model) == ["The call to demo__write_file was refused: the user could not be asked: the "
                                   "MCP host does not support elicitation"]


async def test_serve_refuses_the_call_on_a_2026_connection_which_carries_no_questions(tmp_path):
    target = tmp_path / "out.txt"
    callback, asked = answering("accept", {"approve": True})
    with ScriptedModelServer(write_script(target)) as model:
        async with serve(tmp_path, mode="auto", elicitation_callback=callback) as client:
            assert client.protocol_version == "2026-07-28"
            await client.call_tool("run", {"prompt": "write it", "model": model.model_string,
                                           "approve": "destructive"})
    assert asked == [] and not target.exists()
    (observation,) = observations(model)
    assert observation.startswith("The call to demo__write_file was refused: the user could not be asked: the MCP "
                                  "host's connection (protocol 2026-07-28) carries no questions")
