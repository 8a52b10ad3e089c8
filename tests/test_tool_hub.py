"""ToolHub against real MCP servers in subprocesses (stdio, streamable HTTP, SSE); server specs and config files."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from conftest import SERVERS_DIR, child_pids

from agent.errors import ConfigError, ToolServerError
from agent.tools.config import ServerSpec, expand_secrets, load_mcp_config, parse_servers
from agent.tools.hub import ToolHub
from agent.tools.local import claim_done_tool

PY = sys.executable


def stdio(script: str = "demo_server.py", *args: str, **options: Any) -> dict[str, Any]:
    return {"command": PY, "args": [str(SERVERS_DIR / script), *args], **options}


def make_hub(servers: dict[str, dict[str, Any]], **kwargs: Any) -> ToolHub:
    return ToolHub(parse_servers(servers, where="test"), **kwargs)


async def wait_for_text(path: Path, text: str, within: float = 5.0) -> bool:
    """Poll a server's stderr file: it is written by another process, so there is nothing to wait on."""
    deadline = anyio.current_time() + within
    while anyio.current_time() < deadline:
        if text in await anyio.Path(path).read_text():
            return True
        await anyio.sleep(0.05)
    return False


# -- one shared stdio hub for tests that only call tools (each server start costs about a second) -----------


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[anyio.from_thread.BlockingPortal, ToolHub]]:
    """A hub with the demo server and claim_done, running in a portal thread (entered and exited by one task)."""
    os.environ["TOOLHUB_TEST_INHERITED"] = "from-parent"
    hub = make_hub(
        {"demo": stdio(env={"TOOLHUB_TEST_GIVEN": "from-spec"})},
        local_tools=[claim_done_tool()],
    )
    try:
        with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(hub):
            yield portal, hub
    finally:
        del os.environ["TOOLHUB_TEST_INHERITED"]


def call(shared: tuple[anyio.from_thread.BlockingPortal, ToolHub], name: str, arguments: Any):
    portal, hub = shared
    return portal.call(hub.call, name, arguments)


def test_tools_are_named_server__tool_in_server_order_then_local_tools(shared):
    _, hub = shared
    names = [t.name for t in hub.tools]
    assert names[:3] == ["demo__echo", "demo__add", "demo__slow"]
    assert names[-1] == "claim_done"
    assert hub.servers == ["demo"] and hub.failures == {}


def test_tool_info_keeps_origin_and_annotations(shared):
    _, hub = shared
    echo, note = hub.info("demo__echo"), hub.info("demo__note")
    assert (echo.server, echo.tool, echo.read_only) == ("demo", "echo", True)
    assert (note.read_only, note.destructive) == (False, False)
    assert hub.info("demo__add").read_only is None
    assert hub.info("claim_done").server is None
    assert hub.info("nope") is None


async def test_tool_info_carries_the_open_world_hint(tmp_path):
    async with make_hub({"files": {"command": PY, "args": ["-m", "agent.servers.files", str(tmp_path)]},
                         "demo": stdio()}) as hub:
        assert hub.info("files__read_file").open_world is False
        assert hub.info("demo__echo").open_world is None  # not said
        assert hub.info("files__read_file").read_only is True


def test_openai_tools_is_the_same_list_object_on_every_access(shared):
    _, hub = shared
    assert hub.openai_tools is hub.openai_tools
    first = hub.openai_tools[0]
    assert first["type"] == "function"
    assert first["function"]["name"] == "demo__echo"
    assert first["function"]["parameters"]["properties"]["text"]["type"] == "string"
    assert [t["function"]["name"] for t in hub.openai_tools] == [t.name for t in hub.tools]


def test_call_returns_the_tool_text(shared):
    outcome = call(shared, "demo__add", {"a": 2, "b": 3})
    assert (outcome.text, outcome.is_error, outcome.structured) == ("5", False, {"result": 5})


def test_arguments_may_be_a_json_string(shared):
    assert call(shared, "demo__echo", '{"text": "hi"}').text == "hi"


def test_invalid_json_arguments_become_an_error_outcome(shared):
    outcome = call(shared, "demo__echo", '{"text": "hi"')
    assert outcome.is_error
    assert "not valid JSON" in outcome.text and '{"text": "hi"' in outcome.text


def test_arguments_that_are_not_an_object_become_an_error_outcome(shared):
    outcome = call(shared, "demo__echo", '["hi"]')
    assert outcome.is_error and "must be a JSON object" in outcome.text and "list" in outcome.text


def test_overlong_bad_arguments_are_truncated_in_the_message(shared):
    outcome = call(shared, "demo__echo", "x" * 5000)
    assert outcome.is_error and len(outcome.text) < 1000 and "5000 characters" in outcome.text


def test_unknown_tool_becomes_an_error_outcome_naming_valid_tools(shared):
    outcome = call(shared, "demo__ecko", {})
    assert outcome.is_error
    assert "Unknown tool 'demo__ecko'" in outcome.text and "demo__echo" in outcome.text


def test_tool_error_text_reaches_the_outcome(shared):
    outcome = call(shared, "demo__fail", {"message": "the disk is full"})
    assert outcome.is_error and "the disk is full" in outcome.text


def test_arguments_rejected_by_the_server_become_an_error_outcome(shared):
    outcome = call(shared, "demo__add", {"a": "one", "b": 2})
    assert outcome.is_error and "validation error" in outcome.text


def test_image_result_is_kept_and_described(shared):
    outcome = call(shared, "demo__image", {})
    assert len(outcome.images) == 1 and outcome.images[0][0] == "image/png"
    assert outcome.text.startswith("[image: image/png, ") and outcome.text.endswith(" B]")


def test_structured_result_is_kept_and_not_duplicated_in_text(shared):
    outcome = call(shared, "demo__structured", {})
    assert outcome.structured == {"city": "Oslo", "celsius": 4.5}
    assert outcome.text.count("Oslo") == 1


def test_stdio_server_does_not_inherit_this_process_environment(shared):
    assert call(shared, "demo__getenv", {"name": "TOOLHUB_TEST_INHERITED"}).text == "<unset>"


def test_stdio_server_gets_the_sdk_safe_default_environment(shared):
    assert call(shared, "demo__getenv", {"name": "PATH"}).text == os.environ["PATH"]


def test_stdio_server_gets_the_spec_env(shared):
    assert call(shared, "demo__getenv", {"name": "TOOLHUB_TEST_GIVEN"}).text == "from-spec"


def test_local_claim_done_tool_is_callable(shared):
    outcome = call(shared, "claim_done", {"summary": "all tests pass"})
    assert not outcome.is_error and outcome.text


# -- transports ----------------------------------------------------------------------------------------


async def test_streamable_http_server_connects_and_calls_tools(demo_http_url):
    async with make_hub({"web": {"url": demo_http_url}}) as hub:
        assert hub.info("web__add") is not None
        assert (await hub.call("web__add", {"a": 1, "b": 2})).text == "3"
        assert "boom" in (await hub.call("web__fail", {"message": "boom"})).text


async def test_sse_server_connects_and_calls_tools(demo_sse_url):
    spec = parse_servers({"old": {"url": demo_sse_url}}, where="test")["old"]
    assert spec.transport == "sse"
    async with ToolHub({"old": spec}) as hub:
        assert (await hub.call("old__echo", {"text": "over sse"})).text == "over sse"


async def test_servers_start_in_parallel(tmp_path):
    # Each server waits at startup until the other has started: a sequential start would time out.
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    servers = {
        "one": stdio("demo_server.py", "--announce", a, "--wait-for", b, startup_timeout=20),
        "two": stdio("demo_server.py", "--announce", b, "--wait-for", a, startup_timeout=20),
    }
    async with make_hub(servers) as hub:
        assert hub.servers == ["one", "two"]
        assert hub.info("one__echo") and hub.info("two__echo")


async def test_all_pages_of_tools_list_are_read():
    async with make_hub({"paged": stdio("paged_server.py")}) as hub:
        assert [t.tool for t in hub.tools] == ["alpha", "beta", "gamma", "delta"]
        assert (await hub.call("paged__delta", {})).text == "called delta"


async def test_allow_and_deny_filter_the_offered_tools():
    async with make_hub({"demo": stdio(allow=["e*", "add", "note"], deny=["note"])}) as hub:
        assert [t.name for t in hub.tools] == ["demo__echo", "demo__add"]
        assert (await hub.call("demo__note", {"key": "k", "value": "v"})).is_error


async def test_inherit_env_true_passes_this_process_environment_but_not_the_credentials(monkeypatch):
    monkeypatch.setenv("TOOLHUB_TEST_PLAIN", "inherited")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-do-not-leak")
    monkeypatch.setenv("AGENT_SERVE_TOKEN", "serve-do-not-leak")
    async with make_hub({"demo": stdio(inherit_env=True)}) as hub:
        assert (await hub.call("demo__getenv", {"name": "TOOLHUB_TEST_PLAIN"})).text == "inherited"
        assert (await hub.call("demo__getenv", {"name": "DEEPSEEK_API_KEY"})).text == "<unset>"
        assert (await hub.call("demo__getenv", {"name": "AGENT_SERVE_TOKEN"})).text == "<unset>"


async def test_a_credential_named_in_env_reaches_the_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-meant-for-this-server")
    entry = expand_secrets(stdio(env={"OPENAI_API_KEY": "${OPENAI_API_KEY}"}), where="test")
    spec = parse_servers({"demo": entry}, where="test")
    async with ToolHub(spec) as hub:
        assert (await hub.call("demo__getenv", {"name": "OPENAI_API_KEY"})).text == "sk-meant-for-this-server"


# -- startup failures -----------------------------------------------------------------------------------


async def test_optional_server_failure_is_recorded_and_the_hub_runs_on():
    async with make_hub({"demo": stdio(), "broken": stdio("broken_server.py", required=False)}) as hub:
        assert hub.servers == ["demo"]
        assert "DEMO_TOKEN" in hub.failures["broken"]
        assert all(t.server == "demo" for t in hub.tools)
        assert (await hub.call("demo__echo", {"text": "still here"})).text == "still here"


async def test_required_server_failure_raises_naming_the_server_and_quoting_its_stderr():
    before = child_pids()
    with pytest.raises(ToolServerError) as raised:
        async with make_hub({"demo": stdio(), "broken": stdio("broken_server.py")}):
            pytest.fail("the hub should not start")
    message = str(raised.value)
    assert "'broken'" in message and "broken_server.py" in message
    assert "RuntimeError: broken server: missing configuration value DEMO_TOKEN" in message
    assert child_pids() - before == set()


async def test_nonexistent_command_error_says_it_was_not_found_on_path():
    with pytest.raises(ToolServerError, match="'no-such-mcp-server-xyz' was not found on PATH"):
        async with make_hub({"ghost": {"command": "no-such-mcp-server-xyz"}}):
            pass


async def test_missing_working_directory_is_reported(tmp_path):
    with pytest.raises(ToolServerError, match="working directory .* does not exist"):
        async with make_hub({"demo": stdio(cwd=str(tmp_path / "missing"))}):
            pass


async def test_silent_server_fails_within_its_startup_timeout():
    with anyio.fail_after(15):  # a bound against hanging, far above the 2 s under test
        with pytest.raises(ToolServerError) as raised:
            async with make_hub({"silent": stdio("silent_server.py", startup_timeout=2)}):
                pass
    message = str(raised.value)
    assert "'silent'" in message and "startup_timeout of 2 s" in message
    assert "silent server starting" in message


async def test_unreachable_url_is_reported_as_an_optional_failure():
    async with make_hub({"web": {"url": "http://127.0.0.1:9/mcp", "required": False}}) as hub:
        assert "'web'" in hub.failures["web"] and "http://127.0.0.1:9/mcp" in hub.failures["web"]
        assert hub.tools == []


# -- calls that go wrong --------------------------------------------------------------------------------


async def test_tool_timeout_becomes_an_error_outcome_naming_tool_and_limit(tmp_path):
    async with make_hub({"demo": stdio(tool_timeout=0.5)}, stderr_dir=tmp_path) as hub:
        outcome = await hub.call("demo__slow", {"seconds": 30})
        assert outcome.is_error and "demo__slow timed out after 0.5 s" in outcome.text
        assert await wait_for_text(tmp_path / "demo.stderr.log", "slow was cancelled")
        assert (await hub.call("demo__echo", {"text": "next"})).text == "next"


async def test_hub_tool_timeout_applies_when_the_spec_sets_none():
    async with make_hub({"demo": stdio()}, tool_timeout=0.3) as hub:
        assert "timed out after 0.3 s" in (await hub.call("demo__slow", {"seconds": 30})).text


async def test_server_crash_mid_call_becomes_an_error_outcome_and_the_hub_still_closes():
    before = child_pids()
    with anyio.fail_after(20):  # a crash must not hang the call or the close
        async with make_hub({"demo": stdio()}) as hub:
            outcome = await hub.call("demo__crash", {})
            assert outcome.is_error
            assert "'demo'" in outcome.text and "exited" in outcome.text
            assert "crashing on purpose" in outcome.text
            later = await hub.call("demo__echo", {"text": "anyone?"})
            assert later.is_error and "crashing on purpose" in later.text
    assert child_pids() - before == set()


async def test_cancelled_call_reaches_the_server_and_leaves_no_child_processes(tmp_path):
    before = child_pids()
    async with make_hub({"demo": stdio()}, stderr_dir=tmp_path) as hub:
        assert child_pids() - before
        with anyio.move_on_after(0.5) as scope:
            await hub.call("demo__slow", {"seconds": 30})
        assert scope.cancelled_caught
        assert await wait_for_text(tmp_path / "demo.stderr.log", "slow was cancelled")
    assert child_pids() - before == set()


async def test_cancelling_the_task_that_owns_the_hub_stops_every_server():
    before = child_pids()
    started = anyio.Event()

    async def run_agent() -> None:
        async with make_hub({"a": stdio(), "b": stdio()}) as hub:
            started.set()
            await hub.call("a__slow", {"seconds": 30})

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_agent)
            await started.wait()
            await anyio.sleep(0.2)
            tg.cancel_scope.cancel()
    assert child_pids() - before == set()


async def test_stderr_dir_created_by_the_hub_is_removed_on_close():
    async with make_hub({"demo": stdio()}) as hub:
        stderr_dir = hub._stderr_dir
        assert stderr_dir is not None and stderr_dir.is_dir()
    assert not stderr_dir.exists()


# -- server specs and config files ----------------------------------------------------------------------


def test_transport_is_inferred_from_command_or_url():
    specs = parse_servers(
        {"a": {"command": "x"}, "b": {"url": "http://h/mcp"}, "c": {"url": "http://h/sse"}}, where="t"
    )
    assert [s.transport for s in specs.values()] == ["stdio", "http", "sse"]
    assert ServerSpec(url="http://h/sse", type="http").transport == "http"


def test_spec_needs_exactly_one_of_command_and_url():
    with pytest.raises(ConfigError, match=r"cfg.json: server 'x': .*exactly one of 'command'.*or 'url'"):
        parse_servers({"x": {"command": "a", "url": "http://h"}}, where="cfg.json")
    with pytest.raises(ConfigError, match="exactly one"):
        parse_servers({"x": {"args": ["a"]}}, where="cfg.json")


def test_spec_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"server 'x': startup_timeout: .*greater than 0"):
        parse_servers({"x": {"command": "a", "startup_timeout": 0}}, where="cfg")
    with pytest.raises(ConfigError, match=r"server 'x': comand: unknown field"):
        parse_servers({"x": {"comand": "a"}}, where="cfg")


def test_server_names_must_be_simple():
    with pytest.raises(ConfigError, match="server name 'my server' is invalid"):
        parse_servers({"my server": {"command": "a"}}, where="cfg")


def test_load_claude_desktop_config_expands_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLHUB_TOKEN", "t0k")
    monkeypatch.delenv("TOOLHUB_UNSET", raising=False)
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "fs": {
                        "command": "npx",
                        "args": ["-y", "server-fs", "${TOOLHUB_UNSET:-/tmp}"],
                        "env": {"TOKEN": "${TOOLHUB_TOKEN}"},
                    },
                    "remote": {
                        "type": "http",
                        "url": "https://example.com/mcp",
                        "headers": {"Authorization": "Bearer ${TOOLHUB_TOKEN}"},
                    },
                }
            }
        )
    )
    specs = load_mcp_config(path)
    assert specs["fs"].args == ["-y", "server-fs", "/tmp"]
    assert specs["fs"].env == {"TOKEN": "t0k"}
    assert specs["remote"].headers == {"Authorization": "Bearer t0k"}
    assert specs["remote"].transport == "http"


def test_load_vs_code_config_reads_servers_key(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(
        '{"servers": {"book": {"type": "stdio", "command": "uv", "args": ["run", "s.py"]},'
        ' "old": {"type": "sse", "url": "http://localhost:8000/sse"}}}'
    )
    specs = load_mcp_config(path)
    assert list(specs) == ["book", "old"]
    assert (specs["book"].transport, specs["old"].transport) == ("stdio", "sse")


def test_unset_variable_without_default_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLHUB_MISSING", raising=False)
    path = tmp_path / ".mcp.json"
    path.write_text('{"mcpServers": {"s": {"command": "x", "env": {"K": "${TOOLHUB_MISSING}"}}}}')
    with pytest.raises(
        ConfigError, match=r"\.mcp\.json: mcpServers\.s\.env\.K: environment variable TOOLHUB_MISSING"
    ):
        load_mcp_config(path)


def test_config_without_a_servers_key_is_a_config_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"tools": {}}')
    with pytest.raises(ConfigError, match="no 'mcpServers'"):
        load_mcp_config(path)


async def test_a_server_that_dies_on_the_discovery_probe_is_restarted_with_the_handshake(tmp_path):
    """Handshake-era servers on mcp 1.x die on `server/discover`: the hub starts them again with `initialize`,
    and later starts of the same program go straight to the handshake; `protocol: legacy` never probes."""
    starts = tmp_path / "starts.txt"
    servers = {"old": stdio("handshake_era_server.py", env={"STARTS_FILE": str(starts)})}
    async with make_hub(servers) as hub:
        assert (await hub.call("old__echo", {"text": "hi"})).text == "echo: hi"
    assert starts.read_text().splitlines() == ["server/discover", "initialize"]
    async with make_hub(servers) as hub:  # the same program again, in this process
        assert (await hub.call("old__echo", {"text": "again"})).text == "echo: again"
    assert starts.read_text().splitlines()[2:] == ["initialize"]
    starts.unlink()
    pinned = {"pinned": stdio("handshake_era_server.py", "--pinned", env={"STARTS_FILE": str(starts)},
                              protocol="legacy")}
    async with make_hub(pinned) as hub:
        assert (await hub.call("pinned__echo", {"text": "x"})).text == "echo: x"
    assert starts.read_text().splitlines() == ["initialize"]
