"""ToolHub against servers that misbehave: crashes and restarts, dropped HTTP connections, tool lists that
change at runtime (both protocol eras), roots, and handshake-era fallback; plus the loop-level view of a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from conftest import DEMO_SERVER, SERVERS_DIR, child_pids, free_port, running_server

from agent import Agent
from agent.testing import RecordedRequest, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.tools.config import parse_servers
from agent.tools.hub import ToolHub

PY = sys.executable
CHANGING = str(SERVERS_DIR / "changing_server.py")
FLAKY = str(SERVERS_DIR / "flaky_server.py")


def make_hub(servers: dict[str, dict[str, Any]], **kwargs: Any) -> ToolHub:
    kwargs.setdefault("restart_backoff", 0.1)
    return ToolHub(parse_servers(servers, where="test"), **kwargs)


async def call_until_ok(hub: ToolHub, name: str, arguments: dict[str, Any], within: float = 20.0):
    """Retry a call while the server restarts, as a model would on the next step."""
    with anyio.fail_after(within):
        while True:
            outcome = await hub.call(name, arguments)
            if not outcome.is_error:
                return outcome
            await anyio.sleep(0.1)


async def until(predicate, within: float = 30.0) -> None:
    """Wait for a condition that another process brings about (a notification, a restart)."""
    with anyio.fail_after(within):
        while True:
            if predicate():
                return
            await anyio.sleep(0.02)


# -- restarts ------------------------------------------------------------------------------------------


async def test_a_stdio_server_that_exits_is_restarted_and_the_failing_call_is_reported():
    before = child_pids()
    async with make_hub({"f": {"command": PY, "args": [FLAKY]}}) as hub:
        first_pid = (await hub.call("f__pid", {})).structured
        crashed = await hub.call("f__crash", {})
        assert crashed.is_error
        assert "exited" in crashed.text and "crashing on purpose" in crashed.text
        assert "being restarted (attempt 1 of 3)" in crashed.text
        second_pid = (await call_until_ok(hub, "f__pid", {})).structured
        assert first_pid != second_pid
        assert hub.restarts == {"f": 1}
        assert not hub.tools_changed  # it came back with the same tools
    assert child_pids() - before == set()


async def test_restarts_are_bounded_and_the_reason_reaches_the_model(tmp_path):
    starts = tmp_path / "starts"
    args = [FLAKY, "--starts", str(starts), "--max-starts", "1"]
    async with make_hub({"f": {"command": PY, "args": args, "max_restarts": 2}}) as hub:
        await hub.call("f__crash", {})
        with anyio.fail_after(20):
            while True:
                outcome = await hub.call("f__pid", {})
                if "gave up" in outcome.text:
                    break
                await anyio.sleep(0.05)
        assert outcome.is_error
        assert "gave up after 2 restarts" in outcome.text
        assert "refusing to start again" in outcome.text  # the restarted server's own stderr
        assert hub.restarts == {"f": 2}
    assert len(starts.read_text().splitlines()) == 1


async def test_max_restarts_zero_never_restarts():
    async with make_hub({"f": {"command": PY, "args": [FLAKY], "max_restarts": 0}}) as hub:
        crashed = await hub.call("f__crash", {})
        assert "will not be restarted" in crashed.text
        await anyio.sleep(0.3)
        later = await hub.call("f__pid", {})
        assert later.is_error and "not restarted" in later.text
        assert hub.restarts == {"f": 0}


@contextmanager
def killed_at_exit(port: int) -> Iterator[None]:
    """The demo server over HTTP, killed (not asked to stop) at the end of the block: a dropped server."""
    with running_server([str(DEMO_SERVER), "--http", str(port)], port) as proc:
        yield
        proc.kill()  # running_server's terminate() then finds it gone


async def test_a_dropped_http_server_is_reconnected_when_it_comes_back():
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with killed_at_exit(port):
        hub = make_hub({"web": {"url": url, "max_restarts": 12}}, restart_backoff=0.05)
        await hub.__aenter__()
    try:
        # The server is gone now: the call fails with a message, and the hub keeps trying to reconnect.
        down = await hub.call("web__echo", {"text": "anyone?"})
        assert down.is_error and "'web'" in down.text and url in down.text and "reconnected" in down.text
        with killed_at_exit(port):
            assert (await call_until_ok(hub, "web__echo", {"text": "back"})).text == "back"
            assert hub.restarts["web"] >= 1
    finally:
        await hub.__aexit__(None, None, None)


# -- tool-list changes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "era"), [([], "2026-07-28"), (["--legacy"], "2025-11-25")])
async def test_announced_tool_list_changes_are_applied_by_refresh(flags, era):
    async with make_hub({"ch": {"command": PY, "args": [CHANGING, *flags]}}) as hub:
        assert hub.protocol_versions == {"ch": era}
        before = hub.openai_tools
        assert (hub.tools_changed, hub.tools_version) == (False, 0)
        assert (await hub.call("ch__add_tool", {"name": "zeta"})).text == "added zeta"
        await until(lambda: hub.tools_changed)
        assert hub.info("ch__zeta") is None  # nothing changes until refresh: not mid-step
        assert await hub.refresh() is True
        assert hub.tools_version == 1 and not hub.tools_changed
        assert hub.openai_tools is not before
        assert [t["function"]["name"] for t in hub.openai_tools][-1] == "ch__zeta"
        assert (await hub.call("ch__zeta", {"text": "hi"})).text == "zeta: hi"
        await hub.call("ch__remove_tool", {"name": "zeta"})
        await until(lambda: hub.tools_changed)
        assert await hub.refresh() is True
        assert hub.info("ch__zeta") is None and hub.tools_version == 2


async def test_refresh_without_a_change_keeps_the_same_tool_list_object():
    async with make_hub({"ch": {"command": PY, "args": [CHANGING]}}) as hub:
        before = hub.openai_tools
        assert await hub.refresh() is False
        # An unannounced change is not picked up: refresh only re-lists servers that said something changed.
        await hub.call("ch__quiet_add_tool", {"name": "hidden"})
        assert await hub.refresh() is False
        assert hub.openai_tools is before and hub.tools_version == 0


async def test_a_change_notice_that_changes_nothing_keeps_the_prefix_byte_stable():
    async with make_hub({"ch": {"command": PY, "args": [CHANGING], "deny": ["zeta"]}}) as hub:
        before = json.dumps(hub.openai_tools)
        await hub.call("ch__add_tool", {"name": "zeta"})  # announced, but filtered out by deny
        await until(lambda: hub.tools_changed)
        assert await hub.refresh() is False
        assert json.dumps(hub.openai_tools) == before and hub.tools_version == 0


# -- roots ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["--legacy"]])
async def test_no_roots_are_offered_unless_asked_for(tmp_path, flags):
    async with make_hub({"ch": {"command": PY, "args": [CHANGING, *flags], "cwd": str(tmp_path)}}) as hub:
        refused = await hub.call("ch__roots", {})
        assert refused.is_error and "roots capability" in refused.text


@pytest.mark.parametrize("flags", [[], ["--legacy"]])
async def test_roots_named_by_the_entry_are_offered(tmp_path, flags):
    spec = {"command": PY, "args": [CHANGING, *flags], "cwd": str(tmp_path), "roots": ["."]}
    async with make_hub({"ch": spec}) as hub:
        assert (await hub.call("ch__roots", {})).structured == {"result": [tmp_path.resolve().as_uri()]}


async def test_hub_roots_and_server_roots_are_offered(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    servers = {
        "hubroots": {"command": PY, "args": [CHANGING]},
        "own": {"command": PY, "args": [CHANGING], "cwd": str(tmp_path), "roots": ["b"]},
        "none": {"command": PY, "args": [CHANGING], "roots": []},
    }
    async with make_hub(servers, roots=[tmp_path / "a"]) as hub:
        assert (await hub.call("hubroots__roots", {})).structured == {"result": [(tmp_path / "a").as_uri()]}
        assert (await hub.call("own__roots", {})).structured == {"result": [(tmp_path / "b").as_uri()]}
        refused = await hub.call("none__roots", {})
        assert refused.is_error and "roots capability" in refused.text


# -- the loop's view --------------------------------------------------------------------------------------


async def test_a_server_crash_mid_run_is_an_observation_and_the_run_continues_on_the_restarted_server(tmp_path):
    """The model calls crash, sees the failure, and retries pid until the restarted server answers."""

    def model(request: RecordedRequest) -> ScriptedTurn:
        tool_messages = [m for m in request.body["messages"] if m["role"] == "tool"]
        if not tool_messages:
            return ScriptedTurn(tool_calls=[ScriptedToolCall("f__crash", {})])
        last = tool_messages[-1]["content"]
        if last.isdigit():
            return ScriptedTurn(content=f"restarted as {last}")
        return ScriptedTurn(tool_calls=[ScriptedToolCall("f__pid", {})], delay_s=0.2)

    servers = {"f": {"command": PY, "args": [FLAKY]}}
    before = child_pids()
    with ScriptedModelServer(model) as server:
        with anyio.fail_after(60):
            result = await Agent(server.model_string, servers, limits={"max_steps": 40}, trace_dir=tmp_path).run("go")
        observations = [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]
    assert result.ok and result.answer.startswith("restarted as ")
    assert "crashing on purpose" in observations[0] and "being restarted" in observations[0]
    assert child_pids() - before == set()


def test_flaky_server_refuses_to_start_once_its_starts_are_used_up(tmp_path):
    """The fixture behaves as the bounded-restart test assumes."""
    starts = tmp_path / "starts"
    starts.write_text("1\n")
    done = subprocess.run([PY, FLAKY, "--starts", str(starts), "--max-starts", "1"], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "refusing to start again" in done.stderr




async def test_a_dropped_listen_stream_on_a_live_connection_is_reopened_not_restarted():
    """Unit test with stand-ins: the stream drops (a proxy's idle timeout, say) while the server still answers."""
    from contextlib import asynccontextmanager

    from mcp.client.subscriptions import SubscriptionLost

    class Stream:
        def __init__(self, lost: bool):
            self.lost = lost

        def __aiter__(self):
            return self

        async def __anext__(self):
            if self.lost:
                raise SubscriptionLost("dropped")
            raise StopAsyncIteration

    class LiveClient:
        protocol_version = "2026-07-28"
        listens = 0

        async def list_tools(self):
            return []

        @asynccontextmanager
        async def listen(self, **kwargs):
            self.listens += 1
            yield Stream(lost=False)

    hub = make_hub({"x": {"command": PY}})
    supervisor = hub._supervisors["x"]
    client = LiveClient()
    await supervisor._follow(client, Stream(lost=True))
    assert client.listens == 1 and supervisor.tools_stale and supervisor.trouble is None
