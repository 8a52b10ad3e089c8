"""`agent serve` driven by the MCP `Client` over stdio and streamable HTTP, with the scripted model server as
the model: structured results, progress, cancellation, concurrent runs, past runs, auth and bad input."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from conftest import DEMO_SERVER, SERVERS_DIR, child_pids, free_port, running_server
from mcp import Client, StdioServerParameters

from agent.errors import ConfigError
from agent.serve import (
    ServeConfig,
    build_parser,
    load_config,
    main,
    service_from_args,
)
from agent.servers._http import is_loopback, parse_host_port
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def write_config(folder: Path, servers: dict[str, Any] | None = None, **extra: Any) -> Path:
    path = folder / "agent.yaml"
    default = {"demo": {"command": "python", "args": [str(DEMO_SERVER)]}}
    path.write_text(yaml.safe_dump({"servers": default if servers is None else servers, "think": "high", **extra}))
    return path


def serve_args(tmp_path: Path, *more: str, servers: dict[str, Any] | None = None) -> list[str]:
    return ["-m", "agent.serve", "--config", str(write_config(tmp_path, servers)),
            "--runs-dir", str(tmp_path / "runs"), *more]


@asynccontextmanager
async def stdio_serve(tmp_path: Path, servers: dict[str, Any] | None = None) -> AsyncIterator[tuple[Client, int]]:
    """`agent serve` as a stdio subprocess; yields the client and the serve process id."""
    before = child_pids()
    params = StdioServerParameters(command=PY, args=serve_args(tmp_path, servers=servers), env=dict(os.environ),
                                   cwd=str(REPO))
    async with Client(params) as client:
        (pid,) = child_pids() - before
        yield client, pid


@contextmanager
def http_serve(tmp_path: Path, *more: str, servers: dict[str, Any] | None = None) -> Iterator[str]:
    port = free_port()
    with running_server(serve_args(tmp_path, "--http", str(port), *more, servers=servers), port):
        yield f"http://127.0.0.1:{port}/mcp"


def trace_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.glob("*.jsonl")]


def call(name: str, arguments: dict | None = None) -> ScriptedToolCall:
    return ScriptedToolCall(name, arguments or {})


async def wait_until(predicate, within: float = 15.0) -> None:
    with anyio.fail_after(within):
        while True:
            if predicate():
                return
            await anyio.sleep(0.05)


# -- a run over stdio --------------------------------------------------------------------------------------


async def test_run_returns_a_structured_result_and_reports_progress_per_step(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__echo", {"text": "hello"})]), ScriptedTurn(content="it said hello")]
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    with ScriptedModelServer(script) as model:
        async with stdio_serve(tmp_path) as (client, _):
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert {"run", "run_task", "list_runs", "read_run"} <= set(tools)
            assert tools["run"].output_schema["properties"]["stop_reason"]
            result = await client.call_tool("run", {"prompt": "say hello", "model": model.model_string},
                                            progress_callback=on_progress)
            await wait_until(lambda: any(m.startswith("finished") for m in messages))
    out = result.structured_content
    assert not result.is_error and result.content[0].text.startswith("it said hello")
    assert (out["ok"], out["answer"], out["stop_reason"], out["steps"], out["tool_calls"]) == (
        True, "it said hello", "answer", 2, 1)
    assert out["usage"]["prompt_tokens"] > 0 and out["cost"] > 0
    assert trace_files(tmp_path / "runs") == [out["trace_path"]]
    assert any(m.startswith("step 1/50: think high") for m in messages)
    assert "step 1: calling demo__echo" in messages
    assert messages[-1] == "finished: answer after 2 steps"


async def test_past_runs_are_listed_and_read_back_from_their_traces(tmp_path):
    script = [ScriptedTurn(reasoning="look", tool_calls=[call("demo__add", {"a": 2, "b": 3})]),
              ScriptedTurn(content="five")]
    with ScriptedModelServer(script) as model:
        async with stdio_serve(tmp_path) as (client, _):
            run = (await client.call_tool("run", {"prompt": "add 2 and 3", "model": model.model_string}))
            run_id = run.structured_content["run_id"]
            listed = (await client.call_tool("list_runs", {})).structured_content
            detail = (await client.call_tool("read_run", {"run_id": run_id})).structured_content
            missing = await client.call_tool("read_run", {"run_id": "nope"})
    assert listed["total"] == 1
    (summary,) = listed["runs"]
    assert (summary["run_id"], summary["status"], summary["prompt"], summary["answer"]) == (
        run_id, "answer", "add 2 and 3", "five")
    assert detail["stop_reason"] == "answer" and detail["tools"][:2] == ["demo__echo", "demo__add"]
    first = detail["transcript"][0]
    assert (first["think"], first["reasoning"]) == ("high", "look")
    assert first["tool_calls"] == [{"tool": "demo__add", "arguments": '{"a": 2, "b": 3}', "result": "5",
                                    "is_error": False, "duration_s": first["tool_calls"][0]["duration_s"]}]
    assert missing.is_error and "no run 'nope'" in missing.content[0].text


async def test_cancelling_a_run_stops_it_and_its_servers(tmp_path):
    script = [ScriptedTurn(tool_calls=[call("demo__slow", {"seconds": 60})]), ScriptedTurn(content="never")]
    calling = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message == "step 1: calling demo__slow":
            calling.set()

    with ScriptedModelServer(script) as model:
        async with stdio_serve(tmp_path) as (client, serve_pid):
            async with anyio.create_task_group() as group:
                async def run() -> None:
                    await client.call_tool("run", {"prompt": "wait", "model": model.model_string},
                                           progress_callback=on_progress)

                group.start_soon(run)
                with anyio.fail_after(30):
                    await calling.wait()
                assert child_pids(serve_pid)  # the run's demo server
                group.cancel_scope.cancel()  # the host cancels: the SDK sends notifications/cancelled
            await wait_until(lambda: not child_pids(serve_pid))
            await wait_until(lambda: (tmp_path / "runs").is_dir() and any((tmp_path / "runs").iterdir()))
            listed = (await client.call_tool("list_runs", {})).structured_content
    assert [r["status"] for r in listed["runs"]] == ["cancelled"]


async def test_bad_input_comes_back_as_a_tool_error(tmp_path):
    async with stdio_serve(tmp_path, servers={}) as (client, _):
        no_dir = await client.call_tool("run", {"prompt": "x", "workspace": str(tmp_path / "missing")})
        no_task = await client.call_tool("run_task", {"path": str(tmp_path / "missing.yaml")})
        bad_model = await client.call_tool("run", {"prompt": "x", "model": "nosuch:thing"})
    assert no_dir.is_error and "is not a directory" in no_dir.content[0].text
    assert no_task.is_error and "no such task file" in no_task.content[0].text
    assert bad_model.is_error and "nosuch" in bad_model.content[0].text


async def test_the_workspace_is_the_working_directory_of_stdio_servers_and_a_root_when_asked(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # A relative script path: the server starts only if its working directory is the workspace.
    shutil.copy(SERVERS_DIR / "changing_server.py", workspace / "here.py")
    servers = {"ch": {"command": "python", "args": ["here.py"], "roots": ["${WORKSPACE}"]}}
    script = [ScriptedTurn(tool_calls=[call("ch__roots")]), ScriptedTurn(content="done")]
    with ScriptedModelServer(script) as model:
        async with stdio_serve(tmp_path, servers=servers) as (client, _):
            result = await client.call_tool("run", {"prompt": "where am I", "model": model.model_string,
                                                    "workspace": str(workspace)})
        observation = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert result.structured_content["ok"]
    assert observation == [workspace.resolve().as_uri()]


async def test_builtin_servers_from_the_config_are_confined_to_the_workspace(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.txt").write_text("inside\n")
    (tmp_path / "b.txt").write_text("outside\n")
    config = write_config(tmp_path, servers={}, builtin_servers=["files"])
    script = [ScriptedTurn(tool_calls=[call("files__read_file", {"path": str(workspace / "a.txt")}),
                                       call("files__read_file", {"path": str(tmp_path / "b.txt")})]),
              ScriptedTurn(content="done")]
    params = StdioServerParameters(command=PY, args=["-m", "agent.serve", "--config", str(config), "--runs-dir",
                                                     str(tmp_path / "runs")], env=dict(os.environ), cwd=str(REPO))
    with ScriptedModelServer(script) as model:
        async with Client(params) as client:
            result = await client.call_tool("run", {"prompt": "read", "model": model.model_string,
                                                    "workspace": str(workspace)})
        inside, outside = (m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool")
    assert result.structured_content["ok"]
    assert "inside" in inside
    assert "outside the allowed roots" in outside and f"allowed roots: {workspace}" in outside


async def test_run_task_runs_a_task_file_and_its_scripted_demo(tmp_path):
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump([
        {"tool_calls": [{"name": "demo__add", "arguments": {"a": 1, "b": 1}}]}, {"content": "two"}]))
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"name": "adder", "prompt": "1+1?", "demo": "demo.yaml", "servers": {
        "demo": {"command": "python", "args": [str(DEMO_SERVER)]}}}))
    async with stdio_serve(tmp_path, servers={}) as (client, _):
        result = await client.call_tool("run_task", {"path": str(task), "demo": True})
    out = result.structured_content
    assert (out["answer"], out["scripted_demo"], out["tool_calls"]) == ("two", True, 1)
    assert result.content[0].text.startswith("SCRIPTED DEMO")
    assert "-adder-" in Path(out["trace_path"]).name


# -- HTTP --------------------------------------------------------------------------------------------------


def meet(me: str, other: str, folder: Path) -> list[ScriptedTurn]:
    return [ScriptedTurn(tool_calls=[call("rv__meet", {"me": me, "other": other, "folder": str(folder)})]),
            ScriptedTurn(content=f"{me} is done")]


async def test_concurrent_runs_over_http_are_isolated(tmp_path):
    """Each run's tool waits for the other run's: both finish only if the runs overlap."""
    servers = {"rv": {"command": "python", "args": [str(SERVERS_DIR / "rendezvous_server.py")]}}
    with (ScriptedModelServer(meet("a", "b", tmp_path)) as model_a,
          ScriptedModelServer(meet("b", "a", tmp_path)) as model_b,
          http_serve(tmp_path, servers=servers) as url):
        results: dict[str, Any] = {}

        async def run(name: str, model: ScriptedModelServer) -> None:
            async with Client(url) as client:
                results[name] = await client.call_tool("run", {"prompt": f"run {name}", "model": model.model_string})

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                group.start_soon(run, "a", model_a)
                group.start_soon(run, "b", model_b)
        tool_results = [[m["content"] for m in s.requests[-1].body["messages"] if m["role"] == "tool"]
                        for s in (model_a, model_b)]
    assert results["a"].structured_content["answer"] == "a is done"
    assert results["b"].structured_content["answer"] == "b is done"
    assert results["a"].structured_content["run_id"] != results["b"].structured_content["run_id"]
    assert tool_results == [["a met b"], ["b met a"]]


async def test_http_with_a_token_refuses_requests_without_it(tmp_path):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with http_serve(tmp_path, "--token", "s3cret", servers={}) as url:
        async with httpx2.AsyncClient() as http:
            missing = await http.post(url, json=body, headers=headers)
            wrong = await http.post(url, json=body, headers={**headers, "Authorization": "Bearer nope"})
        async with httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"}) as http:
            from mcp.client.streamable_http import streamable_http_client

            async with Client(streamable_http_client(url, http_client=http)) as client:
                names = [t.name for t in (await client.list_tools()).tools]
    assert missing.status_code == 401 and wrong.status_code == 401
    assert "Bearer" in missing.headers["www-authenticate"]
    assert "run" in names


def test_refuses_a_non_loopback_address_without_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AGENT_SERVE_TOKEN", raising=False)
    assert main(["--http", f"0.0.0.0:{free_port()}", "--runs-dir", str(tmp_path)]) == 2
    assert "not a loopback address, without a bearer token" in capsys.readouterr().err


# -- configuration and helpers -------------------------------------------------------------------------------


def test_config_file_is_a_task_file_without_a_prompt(tmp_path):
    (tmp_path / "ws").mkdir()
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "model": "vllm:http://gpu:8000/v1#m", "think": "none", "limits": {"max_steps": 7}, "workdir": "ws",
        "runs_dir": "traces", "servers": {"a": {"command": "x", "cwd": "sub"}, "b": {"command": "y"}}}))
    config = load_config(path)
    assert isinstance(config, ServeConfig) and config.limits.max_steps == 7 and config.think == "none"
    assert config.runs_dir == tmp_path / "traces" and config.workdir == tmp_path / "ws"
    assert config.servers["a"].cwd == str(tmp_path / "sub") and config.servers["b"].cwd is None


def test_config_errors_name_the_file_and_field_and_exit_2(tmp_path, capsys):
    path = tmp_path / "agent.yaml"
    path.write_text("limits: {max_stepz: 3}\n")
    assert main(["--config", str(path)]) == 2
    assert "agent.yaml" in (err := capsys.readouterr().err) and "max_stepz" in err


@pytest.mark.parametrize(("value", "expected"), [
    ("8000", ("127.0.0.1", 8000)), ("0.0.0.0:9000", ("0.0.0.0", 9000)), ("[::1]:7000", ("::1", 7000)),
    ("localhost:81", ("localhost", 81)),
])
def test_http_addresses_parse(value, expected):
    assert parse_host_port(value) == expected


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com") and not is_loopback("192.168.1.2")


def test_without_a_config_runs_get_our_files_and_shell_servers(tmp_path):
    service = service_from_args(build_parser().parse_args(["--workspace", str(tmp_path), "--runs-dir", "r"]))
    assert service.config.builtin_servers == ["files", "shell"] and service.config.servers == {}
    assert service.default_workspace == tmp_path.resolve() and service.runs_dir == Path("r").resolve()
    with pytest.raises(ConfigError, match="not a directory"):
        service_from_args(build_parser().parse_args(["--workspace", str(tmp_path / "missing")]))


def test_http_flag_alone_means_the_default_port():
    assert build_parser().parse_args(["--http"]).http == "8765"
