"""MCP logging from our servers: the capability, `logging/setLevel`, and log notifications for notable events.

Each server runs as users start it (`agent server NAME ...`, the installed console script) under a real
mcp.Client over stdio: mode="legacy" is the handshake era Claude Desktop and the MCP Inspector speak, the
default mode lands on 2026-07-28, where each request names its own level.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import free_port
from mcp import Client, StdioServerParameters
from mcp.types import LoggingMessageNotificationParams

AGENT = Path(sys.executable).parent / "agent"
WAIT_S = 20.0

pytestmark = pytest.mark.filterwarnings("ignore:The logging capability is deprecated")  # logging is the point


class Logs:
    """A logging_callback that keeps what arrives, and waits (with a deadline) for a message to turn up."""

    def __init__(self) -> None:
        self.messages: list[LoggingMessageNotificationParams] = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.messages.append(params)

    async def wait_for(
        self, predicate: Callable[[LoggingMessageNotificationParams], bool]
    ) -> LoggingMessageNotificationParams:
        with anyio.fail_after(WAIT_S):
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                await anyio.sleep(0.02)

    def levels(self) -> list[str]:
        return [message.level for message in self.messages]


def agent_server(*args: str) -> StdioServerParameters:
    return StdioServerParameters(command=str(AGENT), args=["server", *args])


def about(level: str, *words: str) -> Callable[[LoggingMessageNotificationParams], bool]:
    return lambda m: m.level == level and all(word in str(m.data) for word in words)


# --- the capability ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["files", "shell", "web"])
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_servers_declare_the_logging_capability(name: str, mode: str, tmp_path: Path) -> None:
    args = [name] if name == "web" else [name, str(tmp_path)]
    async with Client(agent_server(*args), mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        assert client.server_capabilities is not None and client.server_capabilities.logging is not None


@pytest.mark.parametrize("name", ["files", "shell", "web"])
async def test_set_level_is_accepted(name: str, tmp_path: Path) -> None:
    args = [name] if name == "web" else [name, str(tmp_path)]
    async with Client(agent_server(*args), mode="legacy") as client:
        for level in ("debug", "warning", "emergency"):
            await client.set_logging_level(level)  # raises MCPError if the server did not accept it


# --- files ------------------------------------------------------------------------------------------------


async def test_files_logs_a_refused_path_as_a_warning(tmp_path: Path) -> None:
    logs = Logs()
    async with Client(agent_server("files", str(tmp_path)), mode="legacy", logging_callback=logs) as client:
        result = await client.call_tool("read_file", {"path": "/etc/passwd"})
        assert result.is_error
        message = await logs.wait_for(about("warning", "outside the allowed roots", "/etc/passwd"))
    assert message.logger == "files" and "read_file" in str(message.data)


async def test_files_logs_a_failed_write_as_an_error(tmp_path: Path) -> None:
    logs = Logs()
    async with Client(agent_server("files", str(tmp_path)), mode="legacy", logging_callback=logs) as client:
        result = await client.call_tool("write_file", {"path": "missing/new.txt", "content": "x"})
        assert result.is_error
        message = await logs.wait_for(about("error", "write_file", "parent directory does not exist"))
    assert message.logger == "files"


async def test_files_sends_nothing_below_the_level_set_by_the_client(tmp_path: Path) -> None:
    logs = Logs()
    async with Client(agent_server("files", str(tmp_path)), mode="legacy", logging_callback=logs) as client:
        await client.set_logging_level("error")
        assert (await client.call_tool("read_file", {"path": "/etc/passwd"})).is_error
        assert (await client.call_tool("write_file", {"path": "missing/new.txt", "content": "x"})).is_error
        await logs.wait_for(about("error", "write_file"))
        await client.list_tools()  # one more round trip: anything sent before the error has arrived by now
    assert logs.levels() == ["error"]


async def test_files_on_2026_07_28_sends_what_each_request_asks_for(tmp_path: Path) -> None:
    logs = Logs()
    params = agent_server("files", str(tmp_path))
    async with Client(params, logging_callback=logs, log_level="error") as client:
        assert client.protocol_version == "2026-07-28"
        assert (await client.call_tool("read_file", {"path": "/etc/passwd"})).is_error
        assert (await client.call_tool("write_file", {"path": "missing/new.txt", "content": "x"})).is_error
        await logs.wait_for(about("error", "write_file"))
        await client.list_tools()
    assert logs.levels() == ["error"]


# --- shell ------------------------------------------------------------------------------------------------


async def timeout_command(client: Client) -> Any:
    result = await client.call_tool("run_command", {"command": "sleep 30", "timeout": 0.3})
    assert result.structured_content["timed_out"] is True
    return result


async def test_shell_logs_a_timed_out_command_as_a_warning(tmp_path: Path) -> None:
    logs = Logs()
    async with Client(agent_server("shell", str(tmp_path)), mode="legacy", logging_callback=logs) as client:
        await timeout_command(client)
        message = await logs.wait_for(about("warning", "timed out", "sleep 30"))
    assert message.logger == "shell"


async def test_shell_logs_a_command_killed_by_a_signal_as_a_warning(tmp_path: Path) -> None:
    logs = Logs()
    async with Client(agent_server("shell", str(tmp_path)), mode="legacy", logging_callback=logs) as client:
        result = await client.call_tool("run_command", {"command": "kill -KILL $$"})
        assert result.structured_content["exit_code"] == -9
        await logs.wait_for(about("warning", "killed by signal 9", "kill -KILL $$"))


async def test_shell_logs_a_refused_command_as_a_warning(tmp_path: Path) -> None:
    logs = Logs()
    params = agent_server("shell", str(tmp_path), "--deny", "^rm ")
    async with Client(params, mode="legacy", logging_callback=logs) as client:
        assert (await client.call_tool("run_command", {"command": "rm -rf data"})).is_error
        await logs.wait_for(about("warning", "deny pattern", "rm -rf data"))


async def test_shell_sends_nothing_below_the_level_set_by_the_client(tmp_path: Path) -> None:
    logs = Logs()
    async with Client(agent_server("shell", str(tmp_path)), mode="legacy", logging_callback=logs) as client:
        await client.set_logging_level("error")
        await timeout_command(client)
        await client.set_logging_level("warning")
        await timeout_command(client)
        await logs.wait_for(about("warning", "timed out"))
        await client.list_tools()
    assert logs.levels() == ["warning"]  # only the second timeout's


# --- web --------------------------------------------------------------------------------------------------


async def test_web_logs_a_refused_fetch_as_a_warning() -> None:
    logs = Logs()
    async with Client(agent_server("web"), mode="legacy", logging_callback=logs) as client:
        url = f"http://127.0.0.1:{free_port()}/"
        assert (await client.call_tool("fetch", {"url": url})).is_error
        message = await logs.wait_for(about("warning", "refused", url))
    assert message.logger == "web"


async def test_web_logs_a_failed_fetch_as_an_error() -> None:
    logs = Logs()
    params = agent_server("web", "--allow-host", "127.0.0.1")
    async with Client(params, mode="legacy", logging_callback=logs) as client:
        url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
        assert (await client.call_tool("fetch", {"url": url})).is_error
        await logs.wait_for(about("error", "fetch failed", url))


async def test_web_sends_nothing_below_the_level_set_by_the_client() -> None:
    logs = Logs()
    params = agent_server("web", "--allow-host", "127.0.0.1")
    async with Client(params, mode="legacy", logging_callback=logs) as client:
        await client.set_logging_level("error")
        port = free_port()
        assert (await client.call_tool("fetch", {"url": f"http://127.0.0.2:{port}/"})).is_error  # refused
        assert (await client.call_tool("fetch", {"url": f"http://127.0.0.1:{port}/"})).is_error  # failed
        await logs.wait_for(about("error", "fetch failed"))
        await client.list_tools()
    assert logs.levels() == ["error"]
