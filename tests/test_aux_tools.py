"""Toolathlon's local tools (agent.toolkits) in real runs: the scripted model over HTTP drives an Agent, the MCP
demo server runs as a subprocess, python-execute runs in a sandbox, web_search talks to a local HTTP stub."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import Agent
from agent.errors import ConfigError
from agent.runtime.local import LocalSandbox
from agent.runtime.sandbox import SandboxSpec
from agent.task import TaskSpec, load_task
from agent.testing import RecordedRequest, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.toolkits import LOCAL_TOOLKITS, missing_local_tools
from agent.trace import read_trace
from tests.conftest import DEMO_SERVER

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}
AGENT = Path(sys.executable).parent / "agent"


def call(name: str, reasoning: str = "", content: str = "", **arguments: Any) -> ScriptedTurn:
    return ScriptedTurn(reasoning=reasoning or f"call {name}", content=content,
                        tool_calls=[ScriptedToolCall(name, arguments)])


def answer(text: str = "done") -> ScriptedTurn:
    return ScriptedTurn(reasoning="finish", content=text)


def tool_texts(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m["role"] == "tool"]


def last_tool_text(request: RecordedRequest) -> str:
    return tool_texts(request)[-1]


def chat_requests(server: ScriptedModelServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path.endswith("chat/completions")]


@pytest.fixture(autouse=True)
def no_search_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SERPER_API_KEY", "SERPER_BASE_URL", "BENCH_MAX_SINGLE_TURN_RETURN_CHARS"):
        monkeypatch.delenv(name, raising=False)


# -- names and configuration -----------------------------------------------------------------------------------


async def test_each_toolkit_name_offers_toolathlons_tool_names(tmp_path):
    names = [n for n in LOCAL_TOOLKITS if n != "web_search"]
    with ScriptedModelServer([answer()]) as server:
        async with Agent(server.model_string, local_tools=names, trace_dir=tmp_path, workspace=tmp_path) as agent:
            offered = agent.tools
    assert offered == ["claim_done", "python-execute", "search_history", "view_history_turn", "browse_history",
                       "history_stats", "search_in_turn", "check_context_status", "manage_context",
                       "smart_context_truncate", "search_overlong_tooloutput", "search_overlong_tooloutput_navigate",
                       "view_overlong_tooloutput", "view_overlong_tooloutput_navigate", "sleep"]


async def test_without_toolkits_the_frameworks_own_local_tools_stay(tmp_path):
    with ScriptedModelServer([answer()]) as server:
        async with Agent(server.model_string, claim_done=True, trace_dir=tmp_path) as agent:
            assert agent.tools == ["claim_done", "read_output", "search_output", "context_status"]
        async with Agent(server.model_string, local_tools=["history"], trace_dir=tmp_path) as agent:
            assert agent.tools[-3:] == ["read_output", "search_output", "context_status"]


def test_a_task_file_with_an_unknown_local_tool_is_refused_naming_the_field_and_the_allowed_values(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump({"prompt": "go", "local_tools": ["history", "ai_webpage_summary"]}))
    with pytest.raises(ConfigError) as info:
        load_task(path)
    message = str(info.value)
    assert str(path) in message and "local_tools" in message and "'ai_webpage_summary'" in message
    for name in LOCAL_TOOLKITS:
        assert name in message


def test_an_agent_refuses_an_unknown_toolkit_name():
    with pytest.raises(ConfigError, match="local_tools\\[0\\].*'histroy'.*python_execute"):
        Agent("deepseek:deepseek-flash", local_tools=["histroy"])


def test_missing_local_tools_names_what_this_machine_cannot_offer(monkeypatch):
    assert missing_local_tools(["claim_done", "history", "python_execute"]) == {}
    missing = missing_local_tools(["web_search", "ai_webpage_summary", "sleep"])
    assert set(missing) == {"web_search", "ai_webpage_summary"}
    assert "SERPER_API_KEY" in missing["web_search"]
    monkeypatch.setenv("SERPER_API_KEY", "k")
    assert missing_local_tools(["web_search"]) == {}


async def test_toolathlons_claim_done_ends_the_run(tmp_path):
    with ScriptedModelServer([call("claim_done", content="All set.")]) as server:
        agent = Agent(server.model_string, local_tools=["claim_done"], claim_done=True, trace_dir=tmp_path)
        result = await agent.run("go")
        tools = chat_requests(server)[0].body["tools"]
    assert (result.stop_reason, result.answer) == ("claim_done", "All set.")
    (claim,) = [t["function"] for t in tools if t["function"]["name"] == "claim_done"]
    assert claim["description"] == "claim the task is done" and claim["parameters"]["properties"] == {}
    finished = [e for e in read_trace(result.trace_path) if e.type == "tool_result"]
    assert finished[0].content == "you have claimed the task is done!"


# -- python-execute ------------------------------------------------------------------------------------------------


async def test_python_execute_runs_the_code_in_the_workspace_and_reports_output_status_and_timing(tmp_path):
    code = ("import sys, pathlib\npathlib.Path('made.txt').write_text('hi')\nprint('out line')\n"
            "print('err line', file=sys.stderr)\nsys.exit(3)\n")
    script = [call("python-execute", code=code, filename="job"), answer()]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, local_tools=["python_execute"], workspace=tmp_path,
                             trace_dir=tmp_path).run("go")
        text = last_tool_text(chat_requests(server)[-1])
    assert result.ok
    assert (tmp_path / "made.txt").read_text() == "hi"
    assert (tmp_path / ".python_tmp" / "job.py").read_text() == code
    assert text.startswith("=== STDOUT ===\nout line\n=== STDERR ===\nerr line\n=== EXECUTION INFO ===\nReturn code: 3\n")
    assert re.search(r"\nExecution time: \d+\.\d{3} seconds\nTimeout limit: 30 seconds$", text)


async def test_python_execute_times_out_caps_the_timeout_and_says_when_nothing_was_printed(tmp_path):
    script = [call("python-execute", code="import time\ntime.sleep(60)\n", timeout=0.5),
              call("python-execute", code="x = 1\n", timeout=500), answer()]
    with ScriptedModelServer(script) as server:
        await Agent(server.model_string, local_tools=["python_execute"], workspace=tmp_path,
                    trace_dir=tmp_path).run("go")
        timed_out, quiet = tool_texts(chat_requests(server)[-1])
    assert timed_out.startswith("=== EXECUTION TIMEOUT ===\nExecution timed out after 0.5 seconds\nExecution time: ")
    assert quiet.startswith("No console output produced.\n=== EXECUTION INFO ===\nReturn code: 0\n")
    assert quiet.endswith("Timeout limit: 120 seconds")


async def test_python_execute_reports_errors_in_the_code_and_refuses_paths_as_file_names(tmp_path):
    script = [call("python-execute", code="def broken(:\n"), call("python-execute", code="1", filename="../evil.py"),
              answer()]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, local_tools=["python_execute"], workspace=tmp_path,
                             trace_dir=tmp_path).run("go")
        syntax, refused = tool_texts(chat_requests(server)[-1])
    assert "=== STDERR ===" in syntax and "SyntaxError" in syntax and "Return code: 1" in syntax
    assert "plain file name" in refused and not (tmp_path.parent / "evil.py").exists()
    errors = [e.is_error for e in read_trace(result.trace_path) if e.type == "tool_result"]
    assert errors == [True, True]


class RecordingSandbox(LocalSandbox):
    """A real local sandbox that remembers the commands it ran."""

    def __init__(self, workspace: Path):
        super().__init__(workspace)
        self.commands: list[Any] = []

    async def exec(self, command, **options):  # type: ignore[no-untyped-def, override]
        self.commands.append(command)
        return await super().exec(command, **options)


async def test_python_execute_runs_through_the_agents_sandbox_without_host_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("HOST_SECRET_TOKEN", "s3cret")
    script = [call("python-execute", code="import os\nprint(repr(os.environ.get('HOST_SECRET_TOKEN')))\n"), answer()]
    async with RecordingSandbox(tmp_path) as sandbox:
        with ScriptedModelServer(script) as server:
            await Agent(server.model_string, local_tools=["python_execute"], sandbox=sandbox, trace_dir=tmp_path,
                        workspace=tmp_path).run("go")
            text = last_tool_text(chat_requests(server)[-1])
    assert len(sandbox.commands) == 1 and sandbox.commands[0][1].startswith("./.python_tmp/")
    assert text.startswith("=== STDOUT ===\nNone\n")


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot run here, or None (as in test_sandbox_bubblewrap.py)."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    done = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "true"], capture_output=True, text=True)
    return f"bwrap cannot make namespaces here: {done.stderr.strip()}" if done.returncode else None


@pytest.mark.xdist_group("sandboxes")
async def test_python_execute_in_a_bubblewrap_sandbox_sees_only_the_workspace(tmp_path):
    if problem := bwrap_problem():
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run .ci/docker-setup.sh before the tests", pytrace=False)
        pytest.skip(problem)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "outside.txt").write_text("host file")
    code = (f"import os\nprint(os.getcwd(), os.path.exists({str(tmp_path / 'outside.txt')!r}))\n"
            "open('inside.txt', 'w').write('made in the sandbox')\n")
    with ScriptedModelServer([call("python-execute", code=code), answer()]) as server:
        await Agent(server.model_string, local_tools=["python_execute"], sandbox=SandboxSpec(kind="bubblewrap"),
                    workspace=workspace, trace_dir=tmp_path).run("go")
        text = last_tool_text(chat_requests(server)[-1])
    assert text.startswith("=== STDOUT ===\n/workspace False\n"), text
    assert (workspace / "inside.txt").read_text() == "made in the sandbox"


# -- history and context -----------------------------------------------------------------------------------------


async def test_manage_context_removes_old_turns_from_the_next_request_and_history_still_finds_them(tmp_path):
    script = [
        call("check_context_status", content="Noted the code word PAPAYA-42 for later."),
        call("history_stats"),
        call("manage_context", method="keep_recent_turns", value=1),
        call("search_history", keywords=["papaya-42"]),
        call("view_history_turn", turn=1, context_turns=0),
        call("check_context_status"),
        answer(),
    ]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, local_tools=["history", "manage_context"], think="high",
                             trace_dir=tmp_path).run("Remember things.")
        requests = chat_requests(server)
    assert result.ok, result.error
    before, after = requests[2].body["messages"], requests[3].body["messages"]
    assert "PAPAYA-42" in json.dumps(before) and "PAPAYA-42" not in json.dumps(after)
    # Only the turn that asked for the truncation is left, whole: its call and its result.
    assert [m["role"] for m in after] == ["system", "user", "assistant", "tool"]
    assert after[2]["tool_calls"][0]["function"]["name"] == "manage_context"
    assert after[2]["reasoning_content"] == "call manage_context"
    assert len(requests[3].body["messages"]) < len(requests[2].body["messages"])
    scheduled = json.loads(after[3]["content"])
    assert scheduled["status"] == "scheduled" and scheduled["details"]["will_delete"] == 2

    found = json.loads(last_tool_text(requests[4]))
    assert found["total_matches"] == 1 and found["results"][0]["turn"] == 1
    assert "**" not in found["results"][0]["preview"] and "PAPAYA-42" in found["results"][0]["preview"]
    viewed = json.loads(last_tool_text(requests[5]))
    assert viewed["status"] == "success"
    assert [r["type"] for r in viewed["records"]] == ["Message", "Tool Call", "Tool Output"]
    assert viewed["records"][0]["content"] == "Noted the code word PAPAYA-42 for later."
    status = json.loads(last_tool_text(requests[6]))
    turns = status["turn_statistics (turns before invoking this tool)"]
    assert turns["current_turn"] == 6 and turns["truncated_turns"] == 2
    assert status["truncation_history"][0]["method"] == "keep_recent_turns"
    assert status["token_usage"]["context_limit"] == 1_000_000
    compacted = [e for e in read_trace(result.trace_path) if e.type == "context_compacted"]
    assert len(compacted) == 1 and compacted[0].reason.startswith("manage_context: keep_recent_turns(1)")


async def test_smart_context_truncate_keeps_the_named_turns_with_their_tool_results(tmp_path):
    script = [call("history_stats", content="first"), call("history_stats", content="second"),
              call("history_stats", content="third"), call("smart_context_truncate", ranges=[[0, 0], [3, 3]]),
              answer()]
    with ScriptedModelServer(script) as server:
        await Agent(server.model_string, local_tools=["history", "manage_context"], trace_dir=tmp_path).run("go")
        last = chat_requests(server)[-1].body["messages"]
    assistants = [m.get("content") or m["tool_calls"][0]["function"]["name"] for m in last if m["role"] == "assistant"]
    assert assistants == ["first", "smart_context_truncate"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "tool", "assistant", "tool"]


async def test_manage_context_refuses_bad_arguments_and_does_nothing_with_too_few_turns(tmp_path):
    script = [call("manage_context", method="drop_everything", value=1),
              call("manage_context", method="keep_recent_percent", value=150),
              call("manage_context", method="keep_recent_turns", value=10), answer()]
    with ScriptedModelServer(script) as server:
        await Agent(server.model_string, local_tools=["manage_context"], trace_dir=tmp_path).run("go")
        bad_method, bad_percent, nothing = [json.loads(t) for t in tool_texts(chat_requests(server)[-1])]
    assert bad_method["status"] == "error" and "keep_recent_turns" in bad_method["message"]
    assert bad_percent["message"] == "Percentage must be between 0-100, current value: 150"
    assert nothing["status"] == "no_action" and nothing["current_turns"] == 3


async def test_search_in_turn_and_browse_history_page_through_a_turn(tmp_path):
    lines = "\n".join(f"row {i} value={i * 7}" for i in range(30))

    def reply(request: RecordedRequest) -> ScriptedTurn:
        step = sum(1 for m in request.body["messages"] if m["role"] == "assistant") + 1
        if step == 1:
            return call("demo__echo", text=lines)
        if step == 2:
            return call("search_in_turn", turn=1, pattern=r"value=\d+", per_page=5)
        if step == 3:  # page on with the search id the first search gave
            return call("search_in_turn", search_id=json.loads(last_tool_text(request))["search_id"], jump_to="last",
                        turn=1)
        if step == 4:
            return call("browse_history", limit=2, direction="backward")
        return answer()

    with ScriptedModelServer(reply) as server:
        await Agent(server.model_string, DEMO, local_tools=["history"], trace_dir=tmp_path).run("go")
        texts = tool_texts(chat_requests(server)[-1])[1:]
    first, last_page, browsed = [json.loads(t) for t in texts]
    last_page_text = texts[1]
    # Turn 1 holds the echo call (its arguments) and the echo's output: 30 matches in each.
    assert first["total_matches"] == 60 and first["pagination"]["total_pages"] == 12
    assert [(m["record_type"], m["match_text"]) for m in first["matches"][:2]] == [("Tool Call", "value=0"),
                                                                                  ("Tool Call", "value=7")]
    assert last_page["pagination"] == {"current_page": 12, "total_pages": 12, "per_page": 5, "has_next": False,
                                       "has_prev": True, "showing": "56-60"}
    assert (last_page["matches"][-1]["record_type"], last_page["matches"][-1]["match_text"]) == ("Tool Output",
                                                                                                "value=203")
    assert "**value=203**" in last_page["matches"][-1]["context"]
    assert [t["turn"] for t in browsed["results"]] == [3, 2]  # the turn in progress is not history yet
    assert browsed["navigation"]["last_turn"] == 3 and browsed["navigation"]["first_turn"] == 0
    assert browsed["results"][0]["messages"] == [{"type": "tool_call", "tool": "search_in_turn"}, {
        "type": "tool_output", "preview": last_page_text[:100] + "...", "original_length": len(last_page_text),
        "truncated": True}]


# -- overlong outputs ---------------------------------------------------------------------------------------------


async def test_overlong_results_are_cut_saved_in_the_workspace_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_MAX_SINGLE_TURN_RETURN_CHARS", "1000")
    text = "".join(f"line {i:04d} " + "x" * 40 + "\n" for i in range(100))  # 5,000 characters
    text = text.replace("line 0061", "line 0061 NEEDLE")

    def reply(request: RecordedRequest) -> ScriptedTurn:
        tools = tool_texts(request)
        if not tools:
            return call("demo__echo", text=text)
        output_id = re.search(r"shortuuid identifier: (\w+)", tools[0]).group(1)  # type: ignore[union-attr]
        steps = [call("search_overlong_tooloutput", shortuuid=output_id, pattern="needle", context_size=100),
                 call("view_overlong_tooloutput", shortuuid=output_id, page_size=2000)]
        if len(tools) - 1 < len(steps):
            return steps[len(tools) - 1]
        if len(tools) == 3:
            session = re.search(r"View Session ID: (\w+)", tools[2]).group(1)  # type: ignore[union-attr]
            return call("view_overlong_tooloutput_navigate", view_session_id=session, action="last_page")
        return answer()

    with ScriptedModelServer(reply) as server:
        result = await Agent(server.model_string, DEMO, local_tools=["handle_overlong_tool_outputs"],
                             workspace=tmp_path, trace_dir=tmp_path).run("go")
        cut, searched, viewed, last_page = tool_texts(chat_requests(server)[-1])
    assert result.ok
    output_id = re.search(r"shortuuid identifier: (\w+)", cut).group(1)  # type: ignore[union-attr]
    saved = tmp_path / ".overlong_tool_outputs" / f"{output_id}.json"
    assert saved.read_text() == text
    assert cut == (text[:1000] + f" ...\n\n(The output of the tool call (shortuuid identifier: {output_id}) is too "
                   "long! Only the first 1000 characters are shown here. The original output length is "
                   f"{len(text)} characters. The full output has been saved to the file {saved}. Please check this file "
                   "carefully, as it may be very long!)")
    assert searched.startswith(f"Search Results in {output_id} (Page 1/1)\nPattern: 'needle' | Total matches: 1")
    assert ">>>NEEDLE<<<" in searched and "Line ~62" in searched
    assert viewed.startswith(f"Viewing {output_id} (Page 1/3)\nCharacters 0-2000 of 5107 | Lines ~1-40\n")
    view_session = re.search(r"View Session ID: (\w+)", viewed).group(1)  # type: ignore[union-attr]
    assert viewed.endswith(f"{text[:2000]}\n\n[Page 1 of 3 - 3107 more characters available]\nUse view_session_id "
                           f"'{view_session}' with view_navigate tool for pagination\nAvailable commands: next_page, "
                           "prev_page, jump_to_page, first_page, last_page")
    assert "(Page 3/3)" in last_page and "[End of file reached - 5107 characters total]" in last_page
    saved_events = [e.saved_output for e in read_trace(result.trace_path) if e.type == "tool_result"]
    assert saved_events[0] == str(saved) and saved_events[1:] == [None, None, None]


async def test_overlong_readers_report_unknown_ids_as_errors(tmp_path):
    script = [call("view_overlong_tooloutput", shortuuid="../../etc/passwd"), answer()]
    with ScriptedModelServer(script) as server:
        await Agent(server.model_string, local_tools=["handle_overlong_tool_outputs"], workspace=tmp_path,
                    trace_dir=tmp_path).run("go")
        text = last_tool_text(chat_requests(server)[-1])
    assert text == "Error: No overlong tool output found for shortuuid: ../../etc/passwd"


# -- sleep ----------------------------------------------------------------------------------------------------------


async def test_sleep_answers_and_the_runs_wall_time_interrupts_a_long_one(tmp_path):
    with ScriptedModelServer([call("sleep", seconds=0.01), call("sleep", seconds=250), answer()]) as server:
        result = await Agent(server.model_string, local_tools=["sleep"], limits={"wall_time_s": 2},
                             trace_dir=tmp_path).run("go")
        first = last_tool_text(chat_requests(server)[1])
    assert first == "has slept 0.01 seconds, wake up!"
    assert result.stop_reason == "wall_time"


# -- web_search -----------------------------------------------------------------------------------------------------


@pytest.fixture
def serper_stub() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server answering serper.dev's /search; yields its URL and the requests it got."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "key": self.headers.get("X-API-KEY"), "body": body})
            organic = [{"title": f"Result {i}", "link": f"https://example.org/{i}", "snippet": f"About {body['q']}",
                        "position": i} for i in range(1, body["num"] + 1)]
            data = json.dumps({"organic": organic}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_web_search_asks_the_configured_serper_endpoint(tmp_path, monkeypatch, serper_stub):
    url, seen = serper_stub
    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    monkeypatch.setenv("SERPER_BASE_URL", url)
    with ScriptedModelServer([call("web_search", query="alita paper", num_results=2), answer()]) as server:
        await Agent(server.model_string, local_tools=["web_search"], trace_dir=tmp_path).run("go")
        text = last_tool_text(chat_requests(server)[-1])
    assert seen == [{"path": "/search", "key": "test-key", "body": {"q": "alita paper", "num": 2}}]
    assert text == ("Title: Result 1\nLink: https://example.org/1\nSnippet: About alita paper\nSitelinks: No sitelinks\n"
                    "\nTitle: Result 2\nLink: https://example.org/2\nSnippet: About alita paper\n"
                    "Sitelinks: No sitelinks\n")


async def test_without_a_search_key_web_search_is_not_offered_and_the_trace_says_why(tmp_path):
    with ScriptedModelServer([answer()]) as server:
        agent = Agent(server.model_string, local_tools=["web_search", "claim_done"], trace_dir=tmp_path)
        result = await agent.run("go")
        offered = [t["function"]["name"] for t in chat_requests(server)[0].body["tools"]]
    assert "web_search" not in offered and "claim_done" in offered
    assert "SERPER_API_KEY" in agent.unavailable_local_tools["web_search"]
    notices = [e.message for e in read_trace(result.trace_path) if e.type == "server_notice"]
    assert any("'web_search' is not offered" in n and "SERPER_API_KEY" in n for n in notices)


# -- through the command line ---------------------------------------------------------------------------------------


def test_agent_run_with_local_tools_in_the_task_file(tmp_path):
    workspace = tmp_path / "ws"
    script = [call("python-execute", code="open('answer.txt', 'w').write(str(6 * 7))\nprint('wrote it')\n"),
              call("search_history", keywords=["wrote it"]), answer("42 is in answer.txt")]
    with ScriptedModelServer(script) as server:
        task = {"name": "toolkits", "prompt": "Compute 6*7 into answer.txt.", "model": server.model_string,
                "local_tools": ["python_execute", "history"], "workspace": {"path": str(workspace)}}
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
        environment = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL")}
        proc = subprocess.run([str(AGENT), "run", str(tmp_path / "task.yaml"), "--trace", str(tmp_path / "t.jsonl")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, env=environment)
        found = json.loads(last_tool_text(chat_requests(server)[-1]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42 is in answer.txt"
    assert (workspace / "answer.txt").read_text() == "42"
    # The code that printed it (turn 1's call) and what it printed (its output); not the search itself.
    assert found["total_matches"] == 2
    assert [(r["turn"], r["item_type"]) for r in found["results"]] == [(1, "tool_call_item"), (1, "tool_call_output_item")]
    assert TaskSpec.model_validate(task).local_tools == ["python_execute", "history"]
