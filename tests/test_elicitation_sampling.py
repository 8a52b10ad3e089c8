"""What MCP servers ask of the agent during tool calls: elicitation (the Agent's callback, a terminal form in
`agent run`, the host under `agent serve`, else declined), sampling under a policy (off by default, capped,
counted in usage and cost), and progress and log notifications as events and console lines.

The server (tests/servers/asking_server.py) runs as a real stdio subprocess; the model is the scripted HTTP server.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SERVERS_DIR, terminal
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult

from agent import Agent, Event
from agent.elicitation import NO_TERMINAL, ElicitationAnswer, ElicitationRequest, terminal_form
from agent.render import ConsoleRenderer
from agent.sampling import SamplingPolicy
from agent.task import TaskSpec
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.trace import read_trace

REPO = Path(__file__).resolve().parent.parent
AGENT_COMMAND = str(Path(sys.executable).parent / "agent")
ASKING = str(SERVERS_DIR / "asking_server.py")


def servers(**extra: Any) -> dict[str, Any]:
    return {"asking": {"command": sys.executable, "args": [ASKING], **extra}}


def call(tool: str, **arguments: Any) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=[ScriptedToolCall(f"asking__{tool}", arguments)])


BOOK = [call("book_table", date="friday"), ScriptedTurn(content="finished")]
SUMMARISE = [call("summarise", text="a long text"), ScriptedTurn(content="the gist"), ScriptedTurn(content="finished")]


async def run_agent(script: list[ScriptedTurn], tmp_path: Path, **options: Any) -> tuple[Any, list[Event],
                                                                                          ScriptedModelServer]:
    events: list[Event] = []
    spec = options.pop("servers", servers())
    with ScriptedModelServer(script) as model:
        result = await Agent(model.model_string, spec, trace_dir=tmp_path, **options).run("go", on_event=events.append)
    return result, events, model


def tool_results(result: Any) -> list[str]:
    return [m["content"] for m in result.messages if m["role"] == "tool"]


def of_type(events: list[Event], kind: str) -> list[dict[str, Any]]:
    return [e.model_dump(exclude={"t"}) for e in events if e.type == kind]


# -- elicitation through the SDK --------------------------------------------------------------------------------


async def test_the_callback_gets_the_servers_question_and_its_answer_reaches_the_tool(tmp_path):
    asked: list[ElicitationRequest] = []

    async def answer(request: ElicitationRequest) -> ElicitationAnswer:
        asked.append(request)
        return ElicitationAnswer.accept({"guests": 3, "name": "Ada", "vegan": True})

    result, _, _ = await run_agent(BOOK, tmp_path, elicitation=answer)
    assert tool_results(result) == ["Booked a table on friday at 20:00 for 3 under Ada, vegan."]
    (request,) = asked
    assert (request.server, request.message, request.tool) == ("asking", "Book a table for friday?",
                                                              "asking__book_table")
    assert request.fields == ["guests", "time", "vegan", "name"] and request.schema["required"] == ["guests", "name"]
    assert request.run_id == result.run_id


async def test_the_trace_records_question_and_action_but_never_the_values_given(tmp_path):
    result, _, _ = await run_agent(BOOK, tmp_path, elicitation=lambda request: {"guests": 2, "name": "Zebedee"})
    events = read_trace(result.trace_path)
    (asked,) = of_type(events, "elicitation_request")
    (answered,) = of_type(events, "elicitation_result")
    assert asked == {"type": "elicitation_request", "server": "asking", "tool": "asking__book_table", "step": 1,
                     "mode": "form", "message": "Book a table for friday?",
                     "fields": ["guests", "time", "vegan", "name"], "url": None}
    assert answered == {"type": "elicitation_result", "server": "asking", "tool": "asking__book_table", "step": 1,
                        # time and vegan: the schema's defaults, filled in for the callback (SEP-1034)
                        "action": "accept", "answered_by": "callback", "fields": ["guests", "name", "time", "vegan"],
                        "reason": None}
    assert "Zebedee" not in json.dumps(asked) + json.dumps(answered)


async def test_a_declined_question_fails_the_call_and_the_model_reads_why(tmp_path):
    result, events, _ = await run_agent(BOOK, tmp_path, elicitation=lambda r: ElicitationAnswer.decline("not today"))
    (text,) = tool_results(result)
    assert "could not resolve: elicitation was decline" in text  # the server's own error
    assert text.endswith("[During this call the MCP server 'asking' asked the user: 'Book a table for friday?'. "
                         "The question was declined: not today.]")
    assert of_type(events, "elicitation_result")[0]["action"] == "decline"


async def test_a_cancelled_question_is_reported_as_cancelled(tmp_path):
    result, _, _ = await run_agent(BOOK, tmp_path, elicitation=lambda r: ElicitationAnswer.cancel())
    assert tool_results(result)[0].endswith("The question was cancelled.]")


async def test_a_callback_that_fails_cancels_the_question_with_the_error_noted(tmp_path):
    def broken(request: ElicitationRequest) -> None:
        raise RuntimeError("no form today")

    result, _, _ = await run_agent(BOOK, tmp_path, elicitation=broken)
    assert tool_results(result)[0].endswith("was cancelled: the elicitation callback failed (RuntimeError: no form "
                                            "today).]")


async def test_without_a_callback_no_elicitation_capability_is_declared(tmp_path):
    result, events, _ = await run_agent(BOOK, tmp_path)
    (text,) = tool_results(result)
    assert "did not declare the form elicitation capability" in text
    assert of_type(events, "elicitation_request") == []


async def test_a_handshake_era_request_is_attributed_to_the_call_in_flight(tmp_path):
    # protocol: legacy -> the server pushes elicitation/create on the connection's own task mid-call.
    asked: list[ElicitationRequest] = []

    def answer(request: ElicitationRequest) -> dict[str, Any]:
        asked.append(request)
        return {"guests": 4, "name": "Bo"}

    result, events, _ = await run_agent(BOOK, tmp_path, elicitation=answer, servers=servers(protocol="legacy"))
    assert tool_results(result) == ["Booked a table on friday at 20:00 for 4 under Bo."]
    assert (asked[0].tool, asked[0].run_id) == ("asking__book_table", result.run_id)
    assert of_type(events, "elicitation_result")[0]["tool"] == "asking__book_table"


async def test_a_handshake_era_decline_is_noted_in_the_result_of_the_call_it_came_during(tmp_path):
    result, _, _ = await run_agent(BOOK, tmp_path, elicitation=lambda r: None, servers=servers(protocol="legacy"))
    assert tool_results(result)[0].endswith("The question was declined.]")


# -- sampling --------------------------------------------------------------------------------------------------


async def test_sampling_is_off_by_default_and_the_server_is_refused(tmp_path):
    script = [call("summarise", text="a long text"), ScriptedTurn(content="finished")]
    result, events, model = await run_agent(script, tmp_path)
    (text,) = tool_results(result)
    assert "did not declare the sampling capability" in text
    assert len(model.requests) == 2 and of_type(events, "sampling_request") == []


async def test_allowed_sampling_is_served_by_the_agents_model_without_thinking_and_capped(tmp_path):
    result, _, model = await run_agent(SUMMARISE, tmp_path, sampling=SamplingPolicy(allow=True, max_tokens=100))
    assert tool_results(result) == ["Summary by deepseek-v4-flash: the gist"]
    body = model.requests[1].body
    assert body["messages"] == [{"role": "system", "content": "You write one-line summaries."},
                                {"role": "user", "content": "Summarise: a long text"}]
    assert body["max_tokens"] == 100 and "tools" not in body  # the server asked for 5000
    assert model.think_modes[1] == "none"


async def test_sampling_usage_and_cost_are_counted_in_the_run_and_traced(tmp_path):
    result, events, _ = await run_agent(SUMMARISE, tmp_path, sampling=True)
    (answered,) = of_type(events, "sampling_result")
    responses = [e for e in events if e.type == "model_response"]
    assert result.usage.requests == 3 and answered["usage"]["requests"] == 1
    assert result.usage.prompt_tokens == sum(r.usage.prompt_tokens for r in responses) + \
        answered["usage"]["prompt_tokens"]
    assert result.cost == pytest.approx(sum(r.cost for r in responses) + answered["cost"], abs=1e-7)
    assert answered["ok"] and answered["content"] == "the gist" and answered["tool"] == "asking__summarise"
    traced = read_trace(result.trace_path)
    (asked,) = of_type(traced, "sampling_request")
    assert asked["prompt"] == "user: Summarise: a long text" and asked["max_tokens"] == 5000
    assert [e["type"] for e in of_type(traced, "sampling_result")] == ["sampling_result"]


async def test_sampling_beyond_the_runs_allowance_is_refused_with_an_error_the_server_sees(tmp_path):
    script = [call("summarise", text="x"), ScriptedTurn(content="finished")]
    result, events, model = await run_agent(script, tmp_path, sampling={"allow": True, "max_requests_per_run": 0})
    (text,) = tool_results(result)
    assert "Sampling refused: this run's limit of 0 sampling requests is used up" in text
    assert len(model.requests) == 2
    assert of_type(events, "sampling_result")[0]["ok"] is False


async def test_sampling_may_be_allowed_for_named_servers_only(tmp_path):
    script = [call("summarise", text="x"), ScriptedTurn(content="finished")]
    result, _, _ = await run_agent(script, tmp_path, sampling=SamplingPolicy(servers=["other"]))
    assert "did not declare the sampling capability" in tool_results(result)[0]
    assert SamplingPolicy(servers=["asking"]).allows("asking") and not SamplingPolicy().allows("asking")


async def test_sampling_may_use_a_model_of_its_own(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="from the other model")], model="deepseek-v4-pro") as other:
        result, _, model = await run_agent(SUMMARISE[:1] + SUMMARISE[2:], tmp_path,
                                           sampling=SamplingPolicy(allow=True, model=other.model_string))
    assert tool_results(result) == ["Summary by deepseek-v4-pro: from the other model"]
    assert len(model.requests) == 2 and len(other.requests) == 1


def test_a_task_file_sets_the_sampling_policy():
    task = TaskSpec(prompt="x", sampling={"servers": ["asking"], "max_tokens": 50})
    agent = Agent.from_task(task)
    assert agent.sampling.allows("asking") and agent.sampling.max_tokens == 50
    assert TaskSpec(prompt="x", sampling=True).sampling.allow and not TaskSpec(prompt="x").sampling.enabled


# -- progress and log notifications ---------------------------------------------------------------------------


COUNT = [call("count", n=3), ScriptedTurn(content="finished")]


async def test_progress_and_log_messages_become_events_of_the_run(tmp_path):
    result, events, _ = await run_agent(COUNT, tmp_path)
    progress = of_type(events, "server_progress")
    assert [(p["progress"], p["total"], p["message"]) for p in progress] == [(1, 3, "counted 1"), (2, 3, "counted 2"),
                                                                            (3, 3, "counted 3")]
    assert {p["tool"] for p in progress} == {"asking__count"}
    logs = of_type(events, "server_log")
    assert [(log["level"], log["data"], log["tool"]) for log in logs] == [
        ("info", "counting to 3", "asking__count"), ("warning", "done counting", "asking__count")]
    assert len(of_type(read_trace(result.trace_path), "server_progress")) == 3


async def test_the_log_level_filters_log_messages(tmp_path):
    _, events, _ = await run_agent(COUNT, tmp_path, server_log_level="warning")
    assert [log["data"] for log in of_type(events, "server_log")] == ["done counting"]
    _, events, _ = await run_agent(COUNT, tmp_path, server_log_level=None)
    assert of_type(events, "server_log") == []


async def test_handshake_era_servers_log_messages_are_filtered_by_level_too(tmp_path):
    # MCPServer declares no logging capability on 2025-11-25 (no logging/setLevel) and sends every level.
    _, events, _ = await run_agent(COUNT, tmp_path, server_log_level="warning", servers=servers(protocol="legacy"))
    assert [log["data"] for log in of_type(events, "server_log")] == ["done counting"]
    assert len(of_type(events, "server_progress")) == 3


async def test_the_console_shows_progress_logs_questions_and_sampling(tmp_path):
    out = io.StringIO()
    script = [call("count", n=2), call("summarise", text="x"), ScriptedTurn(content="gist"),
              call("book_table", date="friday"), ScriptedTurn(content="finished")]
    with ScriptedModelServer(script) as model:
        await Agent(model.model_string, servers(), trace_dir=tmp_path, sampling=True,
                    elicitation=lambda r: ElicitationAnswer.decline("busy")).run(
            "go", on_event=ConsoleRenderer(out, color=False))
    shown = out.getvalue()
    assert "  … asking__count 1/2 counted 1\n" in shown
    assert "  [asking info] counting to 2\n" in shown and "  [asking warning] done counting\n" in shown
    assert "  ⚙ asking sampled deepseek-v4-flash: gist · " in shown
    assert "  ? asking asked for input: declined by callback: busy\n" in shown


# -- the terminal form ------------------------------------------------------------------------------------------


BOOKING_SCHEMA = {
    "type": "object",
    "properties": {
        "guests": {"type": "integer", "title": "Guests", "description": "How many people", "minimum": 1,
                   "maximum": 12},
        "time": {"type": "string", "title": "Time", "enum": ["18:00", "20:00"], "default": "20:00"},
        "vegan": {"type": "boolean", "title": "Vegan", "default": False},
        "name": {"type": "string", "title": "Name"},
        "note": {"type": "string", "title": "Note"},
    },
    "required": ["guests", "name"],
}


def form_request(**changes: Any) -> ElicitationRequest:
    return ElicitationRequest(**{"server": "asking", "message": "Book a table?", "schema": BOOKING_SCHEMA,
                                 "tool": "asking__book_table", **changes})


async def fill(typed: bytes, request: ElicitationRequest | None = None) -> tuple[ElicitationAnswer, str]:
    stderr = io.StringIO()
    with terminal() as (stdin, master):
        os.write(master, typed)
        answer = await terminal_form(request or form_request(), stdin=stdin, stderr=stderr)
    return answer, stderr.getvalue()


async def test_the_terminal_form_asks_each_field_with_its_type_and_default():
    answer, shown = await fill(b"y\n3\n1\nyes\nAda\n\n")
    assert answer == ElicitationAnswer.accept({"guests": 3, "time": "18:00", "vegan": True, "name": "Ada"},
                                              by="terminal")
    assert "The MCP server 'asking' asks (during asking__book_table): Book a table?" in shown
    assert "Guests (integer, How many people, required): " in shown
    assert "Time (choose one, optional) [20:00]: " in shown and "    1. 18:00\n" in shown
    assert "Vegan (yes/no, optional) [no]: " in shown


async def test_the_terminal_form_takes_defaults_and_asks_again_until_an_answer_fits():
    answer, shown = await fill(b"\n99\nmany\n2\n\n\n\nBo\nsome note\n")
    assert answer.content == {"guests": 2, "time": "20:00", "vegan": False, "name": "Bo", "note": "some note"}
    assert "Give at most 12." in shown and "Give a whole number." in shown and "A value is needed." in shown


async def test_the_terminal_form_declines_or_cancels_when_asked_to():
    assert (await fill(b"d\n"))[0] == ElicitationAnswer.decline("the user declined", by="terminal")
    assert (await fill(b"c\n"))[0] == ElicitationAnswer.cancel("the user cancelled", by="terminal")


async def test_end_of_input_in_the_middle_of_the_form_cancels_it():
    answer, _ = await fill(b"y\n3\n\x04")
    assert answer.action == "cancel" and answer.reason == "the user ended the input"


async def test_a_url_question_shows_the_url_and_accepts_without_content():
    answer, shown = await fill(b"y\n", form_request(mode="url", url="https://example.com/login", schema={}))
    assert answer == ElicitationAnswer.accept({}, by="terminal") and "https://example.com/login" in shown


async def test_the_terminal_form_declines_without_a_terminal():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "r") as stdin, os.fdopen(write_end, "w") as pipe:
        pipe.write("y\n3\nAda\n")
        pipe.flush()
        answer = await terminal_form(form_request(), stdin=stdin, stderr=io.StringIO())
    assert answer == ElicitationAnswer.decline(NO_TERMINAL, by="nobody")


# -- agent run ---------------------------------------------------------------------------------------------------


def write_task(folder: Path, model: str, **fields: Any) -> Path:
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump({"name": "asking", "prompt": "go", "model": model, "servers": servers(),
                                    **fields}))
    return path


def agent_run(task: Path, *args: str, stdin: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL")}
    return subprocess.run([AGENT_COMMAND, "run", str(task), *args], stdin=stdin, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_agent_run_asks_the_servers_question_on_the_terminal(tmp_path):
    with terminal() as (stdin, master):
        os.write(master, b"y\n5\n18:00\nn\nAda\n")
        with ScriptedModelServer(BOOK) as model:
            done = agent_run(write_task(tmp_path, model.model_string), stdin=stdin, cwd=tmp_path)
            observed = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert done.returncode == 0, done.stderr
    assert observed == ["Booked a table on friday at 18:00 for 5 under Ada."]
    assert "The MCP server 'asking' asks (during asking__book_table): Book a table for friday?" in done.stderr
    assert "? asking asked for input: answered by terminal" in done.stderr


def test_agent_run_without_a_terminal_declines_and_the_model_is_told(tmp_path):
    with ScriptedModelServer(BOOK) as model:
        done = agent_run(write_task(tmp_path, model.model_string), stdin=subprocess.DEVNULL, cwd=tmp_path)
        (observed,) = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert done.returncode == 0, done.stderr
    assert observed.endswith(f"The question was declined: {NO_TERMINAL}.]")
    assert f"? asking asked for input: declined: {NO_TERMINAL}" in done.stderr


def test_agent_run_prints_progress_logs_and_sampling_and_quiet_hides_them(tmp_path):
    script = [call("count", n=2), call("summarise", text="x"), ScriptedTurn(content="gist"),
              ScriptedTurn(content="finished")]
    with ScriptedModelServer(script) as model:
        task = write_task(tmp_path, model.model_string, sampling=True)
        done = agent_run(task, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "… asking__count 2/2 counted 2" in done.stderr and "[asking warning] done counting" in done.stderr
    assert "⚙ asking sampled deepseek-v4-flash: gist" in done.stderr
    with ScriptedModelServer(script) as model:
        quiet = agent_run(write_task(tmp_path, model.model_string, sampling=True), "--quiet",
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == "finished\n"
    assert "counted" not in quiet.stderr and "sampled" not in quiet.stderr


# -- agent serve: the host answers the forwarded question --------------------------------------------------------


@asynccontextmanager
async def serve(tmp_path: Path, *, mode: str, elicitation_callback: Any = None) -> AsyncIterator[Client]:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"servers": servers(), "think": "high"}))
    params = StdioServerParameters(command=AGENT_COMMAND, args=["serve", "--config", str(config), "--runs-dir",
                                   str(tmp_path / "runs"), "--workspace", str(tmp_path)],
                                   env=dict(os.environ), cwd=str(REPO))
    async with Client(params, mode=mode, elicitation_callback=elicitation_callback) as client:
        yield client


async def test_serve_forwards_the_servers_question_to_the_host(tmp_path):
    asked: list[ElicitRequestParams] = []

    async def host(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept", content={"guests": 6, "name": "Host"})

    with ScriptedModelServer(BOOK) as model:
        async with serve(tmp_path, mode="legacy", elicitation_callback=host) as client:
            result = await client.call_tool("run", {"prompt": "book", "model": model.model_string})
        observed = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert result.structured_content["answer"] == "finished"
    (question,) = asked
    assert question.message == "The agent's MCP server 'asking' asks: Book a table for friday?"
    assert question.requested_schema["required"] == ["guests", "name"]
    assert observed == ["Booked a table on friday at 20:00 for 6 under Host."]


async def test_serve_declines_when_the_hosts_connection_carries_no_questions(tmp_path):
    async def host(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        raise AssertionError("a 2026-07-28 connection carries no questions from the server")

    with ScriptedModelServer(BOOK) as model:
        async with serve(tmp_path, mode="auto", elicitation_callback=host) as client:
            await client.call_tool("run", {"prompt": "book", "model": model.model_string})
        (observed,) = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert observed.endswith("The question was declined: the MCP host's connection (protocol 2026-07-28) carries no "
                             "questions from the server.]")


async def test_an_acceptance_gets_the_schemas_defaults_for_the_fields_it_leaves_out():
    """SEP-1034: the client applies the defaults a server gives; what the callback gave wins."""
    from agent.elicitation import ElicitationAnswer, ElicitationRequest, ask

    schema = {"type": "object", "properties": {"name": {"type": "string", "default": "John Doe"},
                                               "age": {"type": "integer", "default": 30}, "note": {"type": "string"}}}
    request = ElicitationRequest(server="s", message="m", schema=schema)
    assert (await ask(lambda r: {"age": 41}, request)).content == {"age": 41, "name": "John Doe"}
    assert (await ask(lambda r: ElicitationAnswer.accept(), request)).content == {"name": "John Doe", "age": 30}
    assert (await ask(lambda r: None, request)).content is None
