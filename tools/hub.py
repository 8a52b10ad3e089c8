"""`ToolHub`: connects MCP servers in parallel, offers their tools under qualified names, and calls them.

Tool-level problems (bad arguments, timeouts, a server that died) come back as error outcomes, never raise.
Servers that exit are restarted, dropped HTTP connections reconnected, and tool-list changes followed.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx2
import mcp.types as types
from anyio.abc import TaskGroup
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import Subscription, SubscriptionLost, ToolsListChanged
from mcp.shared.message import SessionMessage
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from agent.errors import ConfigError, ToolServerError
from agent.tools.config import ServerSpec, server_environment
from agent.tools.local import LocalTool
from agent.tools.results import ToolOutcome, error_outcome, outcome_from_result
from agent.tools.schema import to_openai_function, unique_names
from agent.version import package_version

# Bounds how long closing may take: the SDK's stdio shutdown needs up to ~6 s for a server that ignores
# stdin EOF and SIGTERM; past this the runners are cancelled (the SDK still kills the process tree).
CLOSE_TIMEOUT = 10.0
_MAX_TOOL_PAGES = 1000
_STDERR_TAIL_LINES = 20
_STDERR_TAIL_BYTES = 4000
_SHOWN_ARGUMENTS = 300
_HTTP_CONNECT_TIMEOUT = 30.0
_MAX_RESTART_BACKOFF = 8.0
# After a call saw the connection close, how long to wait for the runner's own account of why.
_GONE_GRACE_S = 0.2
# When a listen stream drops, how long the server has to answer the probe that tells a dead connection.
_PROBE_TIMEOUT_S = 10.0
_SHOWN_GARBAGE = 200
# After a stdout line that is not JSON-RPC, how long calls in flight still wait for their answer.
GARBAGE_GRACE_S = 5.0
logger = logging.getLogger("agent.tools")
# Announced to every server (the SDK's default is `mcp 0.1.0`).
CLIENT_INFO = types.Implementation(name="deepseek-agent", title="DeepSeek V4 agent", version=package_version())


@dataclass(frozen=True)
class ToolInfo:
    """One tool as the model sees it, and where it comes from."""

    name: str
    """Qualified, model-facing name (`<server>__<tool>`, sanitised)."""
    server: str | None
    """Server name; None for a local tool."""
    tool: str
    """The tool's own name on its server."""
    description: str
    input_schema: dict[str, Any]
    read_only: bool | None
    destructive: bool | None
    openai: dict[str, Any]
    """The OpenAI function schema sent to the model."""


@dataclass
class _Connection:
    """One server's runner state; the runner task alone enters and exits its `Client`s."""

    name: str
    spec: ServerSpec
    tool_timeout: float
    roots: list[types.Root] | None
    """Offered when the server asks; None: the roots capability is not declared."""
    ready: anyio.Event = field(default_factory=anyio.Event)
    """Set once the first connection attempt has settled (connected or failed)."""
    stop: anyio.Event = field(default_factory=anyio.Event)
    wake: anyio.Event = field(default_factory=anyio.Event)
    """Ends the current connection's hold: set on stop, or when the connection broke."""
    done: anyio.Event = field(default_factory=anyio.Event)
    deadline: float = math.inf
    client: Client | None = None
    tools: list[types.Tool] = field(default_factory=list)
    protocol_version: str | None = None
    error: str | None = None
    """Why the first start failed."""
    trouble: str | None = None
    """Why the current connection broke; a restart is pending while it is set."""
    lost: str | None = None
    """Why the server can no longer be used: restarts used up, or the hub closed."""
    restarts: int = 0
    generation: int = 0
    """Counts connections; a call compares it to tell whether the server was restarted meanwhile."""
    last_trouble: str | None = None
    tools_stale: bool = False
    """The server announced a tool-list change (or came back with other tools) since the hub last listed."""
    stderr_path: Path | None = None
    calls: set[anyio.CancelScope] = field(default_factory=set)
    """Scopes of the calls in flight, cancelled when the server writes something that is not JSON-RPC."""
    http_refusal: tuple[int, str] | None = None
    """The last 401/403 answer of an HTTP server: (status, URL)."""
    garbage: str | None = None
    """What the last line of stdout that was not JSON-RPC said (it may have been a lost answer)."""


@dataclass(frozen=True)
class _Route:
    info: ToolInfo
    conn: _Connection | None
    local: LocalTool | None


class ToolHub:
    """Owns the connections to a set of MCP servers and the tool list offered to the model.

    Enter and exit it from the same task (`async with ToolHub(...) as hub:`). A server that exits or drops
    its connection is restarted in the background (`ServerSpec.max_restarts`, with backoff); the call that
    saw it fail reports the failure. Tool-list changes announced by servers are applied by `refresh()`,
    which the agent loop calls between steps when `tools_changed` is set, so the tool list (part of the
    prompt prefix) never changes in the middle of a step.
    """

    def __init__(
        self,
        servers: Mapping[str, ServerSpec],
        *,
        tool_timeout: float = 120.0,
        local_tools: Sequence[LocalTool] = (),
        stderr_dir: Path | None = None,
        roots: Sequence[str | os.PathLike[str]] | None = None,
        restart_backoff: float = 0.5,
        on_notice: Callable[[str, str], None] | None = None,
    ) -> None:
        if tool_timeout <= 0:
            raise ConfigError(f"tool_timeout must be positive, got {tool_timeout}")
        if restart_backoff < 0:
            raise ConfigError(f"restart_backoff must not be negative, got {restart_backoff}")
        self._conns = {
            name: _Connection(name, spec, spec.tool_timeout or tool_timeout, _roots_for(spec, roots))
            for name, spec in servers.items()
        }
        local_names = [tool.name for tool in local_tools]
        if len(set(local_names)) != len(local_names):
            raise ConfigError(f"local tool names must be unique, got {local_names}")
        self._local_tools = list(local_tools)
        self._restart_backoff = restart_backoff
        self._stderr_dir_arg = stderr_dir
        self._stderr_dir: Path | None = None
        self._owns_stderr_dir = False
        self._task_group: TaskGroup | None = None
        self._entered = False
        self._tools: list[ToolInfo] = []
        self._openai_tools: list[dict[str, Any]] = []
        self._routes: dict[str, _Route] = {}
        self._tools_version = 0
        self._notices: list[tuple[str, str]] = []
        self.on_notice = on_notice
        """Called with (server, text) for each protocol problem a server shows (text on stdout that is not
        JSON-RPC); None logs a warning on the `agent.tools` logger instead. `notices()` keeps them all."""
        self.failures: dict[str, str] = {}
        """Optional servers that failed to start, with the reason."""
        self.servers: list[str] = []
        """Connected server names, in config order."""

    @property
    def tools(self) -> list[ToolInfo]:
        """Servers in config order, each server's tools in its order, then local tools."""
        return self._tools

    @property
    def openai_tools(self) -> list[dict[str, Any]]:
        """The OpenAI `tools` list; the same object on every access until `refresh()` changes it."""
        return self._openai_tools

    @property
    def tools_changed(self) -> bool:
        """True when a server announced a tool-list change (or came back with other tools) not yet applied."""
        return any(conn.tools_stale for conn in self._conns.values())

    @property
    def tools_version(self) -> int:
        """Starts at 0; goes up by one each time `refresh()` changes the offered tool list."""
        return self._tools_version

    @property
    def restarts(self) -> dict[str, int]:
        """Restart (stdio) or reconnect (HTTP, SSE) attempts so far, per server."""
        return {name: conn.restarts for name, conn in self._conns.items()}

    @property
    def protocol_versions(self) -> dict[str, str]:
        """The MCP protocol version negotiated with each connected server (e.g. '2026-07-28', '2025-11-25')."""
        return {n: c.protocol_version for n, c in self._conns.items() if c.protocol_version and c.error is None}

    def notices(self) -> list[str]:
        """Every protocol problem seen so far, oldest first."""
        return [text for _, text in self._notices]

    def notices_since(self, start: int) -> list[tuple[str, str]]:
        """(server, text) of the protocol problems after the first `start`."""
        return self._notices[start:]

    def info(self, name: str) -> ToolInfo | None:
        route = self._routes.get(name)
        return route.info if route else None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> ToolHub:
        if self._entered:
            raise RuntimeError("a ToolHub can be entered only once")
        self._entered = True
        self._open_stderr_dir()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            for conn in self._conns.values():
                task_group.start_soon(self._run_server, conn, name=f"mcp-server:{conn.name}")
            # Each runner bounds its own startup, so this wait is bounded too.
            for conn in self._conns.values():
                await conn.ready.wait()
            required = [c.error for c in self._conns.values() if c.error is not None and c.spec.required]
            if required:
                raise ToolServerError("\n\n".join(required))
            self.failures = {c.name: c.error for c in self._conns.values() if c.error is not None}
            self.servers = [c.name for c in self._conns.values() if c.error is None]
            self._install_tools(self._build_tools())
            for conn in self._conns.values():
                conn.tools_stale = False  # the list just built is current
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def _close(self) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        for conn in self._conns.values():
            conn.stop.set()
            conn.wake.set()
        try:
            # Shielded so Ctrl-C or a cancelled run still lets every server shut down properly.
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                for conn in self._conns.values():
                    await conn.done.wait()
            if not all(conn.done.is_set() for conn in self._conns.values()):
                task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        finally:
            self._remove_stderr_dir()

    def _open_stderr_dir(self) -> None:
        if not any(c.spec.transport == "stdio" for c in self._conns.values()):
            return
        if self._stderr_dir_arg is not None:
            self._stderr_dir = Path(self._stderr_dir_arg)
            self._stderr_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._stderr_dir = Path(tempfile.mkdtemp(prefix="mcp-stderr-"))
            self._owns_stderr_dir = True

    def _remove_stderr_dir(self) -> None:
        if self._owns_stderr_dir and self._stderr_dir is not None:
            shutil.rmtree(self._stderr_dir, ignore_errors=True)
            self._owns_stderr_dir = False

    # -- one runner task per server ----------------------------------------------------------------

    async def _run_server(self, conn: _Connection) -> None:
        """Connect; while the connection breaks and restarts are left, back off and connect again."""
        try:
            await self._connect(conn, starting=True)
            while conn.trouble is not None and not conn.stop.is_set():
                if conn.restarts >= conn.spec.max_restarts:
                    limit = conn.spec.max_restarts
                    conn.lost = (
                        f"{conn.trouble}\n(not restarted: max_restarts is 0)" if limit == 0
                        else f"{conn.trouble}\n(gave up after {limit} restart{'s' if limit != 1 else ''})"
                    )
                    break
                delay = min(self._restart_backoff * 2**conn.restarts, _MAX_RESTART_BACKOFF)
                conn.restarts += 1
                with anyio.move_on_after(delay):
                    await conn.stop.wait()
                if conn.stop.is_set():
                    break
                await self._connect(conn, starting=False)
        finally:
            conn.client = None
            if conn.error is None and conn.lost is None:
                conn.lost = conn.trouble or f"MCP server {conn.name!r} has been closed"
            conn.ready.set()
            conn.done.set()

    async def _connect(self, conn: _Connection, *, starting: bool) -> None:
        """One connection: connect and list tools within startup_timeout, then hold it until stop or trouble.

        Failures are recorded (`error` on the first start, `trouble` later), never raised: an exception
        here would cancel the hub's task group, and with it the run.
        """
        spec = conn.spec
        conn.wake = anyio.Event()
        if conn.stop.is_set():
            return
        conn.trouble = None
        conn.generation += 1
        conn.deadline = anyio.current_time() + spec.startup_timeout
        connected = False
        scope = anyio.CancelScope(deadline=conn.deadline)

        async def cancel_startup_on_stop() -> None:
            await conn.stop.wait()
            if not connected:
                scope.cancel()

        try:
            async with anyio.create_task_group() as watcher:
                watcher.start_soon(cancel_startup_on_stop)
                with scope:
                    async with AsyncExitStack() as stack:
                        stderr_file: TextIO | None = None
                        if spec.transport == "stdio":
                            stderr_file = self._open_stderr_file(conn, append=not starting)
                            stack.callback(stderr_file.close)
                        transport = await self._transport(conn, stack, stderr_file)
                        client = await stack.enter_async_context(self._client(conn, transport))
                        # Subscribed before listing, so no change can fall between the two.
                        subscription = await self._subscribe(client, stack)
                        tools = await _list_all_tools(client)
                        scope.deadline = math.inf
                        connected = True
                        if not starting and _tool_key(tools) != _tool_key(conn.tools):
                            conn.tools_stale = True
                        conn.client, conn.tools = client, tools
                        conn.protocol_version = client.protocol_version
                        conn.ready.set()
                        await self._hold(conn, client, subscription)
                        conn.client = None
                watcher.cancel_scope.cancel()
            if scope.cancelled_caught and not connected and not conn.stop.is_set():
                self._startup_failed(conn, self._startup_timeout_message(conn), starting)
        except Exception as exc:
            if connected:
                self._break(conn, self._failure_message(conn, _describe_loss(conn, exc), starting=False))
            elif anyio.current_time() >= conn.deadline:
                self._startup_failed(conn, self._startup_timeout_message(conn), starting)
            else:
                what = _refusal_text(conn.http_refusal, conn.spec) or _describe_startup(exc)
                self._startup_failed(conn, self._failure_message(conn, what, starting=True), starting)
        finally:
            conn.client = None

    def _startup_failed(self, conn: _Connection, message: str, starting: bool) -> None:
        if starting:
            conn.error = message
        else:
            conn.trouble = conn.last_trouble = message

    @staticmethod
    async def _subscribe(client: Client, stack: AsyncExitStack) -> Subscription | None:
        """On 2026-07-28 connections, `subscriptions/listen` for tool-list changes (None when not offered)."""
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return None  # handshake-era servers send notifications/tools/list_changed instead
        try:
            return await stack.enter_async_context(client.listen(tools_list_changed=True))
        except Exception:
            # Not offered (method not found), or refused: the server announces no changes. A broken
            # connection shows up in the tool listing that follows.
            return None

    async def _hold(self, conn: _Connection, client: Client, subscription: Subscription | None) -> None:
        """Keep the connection until stop or trouble, following tool-list changes meanwhile."""
        async with anyio.create_task_group() as group:
            if subscription is not None:
                group.start_soon(self._follow, conn, client, subscription)
            await conn.wake.wait()
            group.cancel_scope.cancel()

    async def _follow(self, conn: _Connection, client: Client, subscription: Subscription | None) -> None:
        """Mark the tools stale on each change event. When the stream drops, ask the server whether it is
        still there: a dead connection is broken (and restarted), a live one is listened to again."""
        stack: AsyncExitStack | None = None
        try:
            while subscription is not None:
                if not await _until_lost(conn, subscription):
                    return
                try:
                    with anyio.fail_after(_PROBE_TIMEOUT_S):
                        await client.list_tools()
                except Exception:
                    self._break(conn, self._gone_message(conn))  # the restart re-lists the tools
                    return
                conn.tools_stale = True  # alive: changes may have been missed while the stream was down
                if stack is not None:
                    await stack.aclose()
                stack = AsyncExitStack()
                subscription = await self._subscribe(client, stack)
        finally:
            if stack is not None:
                await stack.aclose()

    def _client(self, conn: _Connection, transport: Any) -> Client:
        async def on_message(message: Any) -> None:
            # Handshake-era servers announce tool-list changes as notifications.
            if isinstance(message, types.ToolListChangedNotification):
                conn.tools_stale = True

        roots_callback = None
        if conn.roots is not None:
            roots = types.ListRootsResult(roots=conn.roots)

            async def roots_callback(context: Any) -> types.ListRootsResult:
                return roots

        # The response cache only matters for re-listing, and `refresh()` must always see the server's list.
        return Client(transport, cache=None, message_handler=on_message, list_roots_callback=roots_callback,
                      client_info=CLIENT_INFO)

    def _break(self, conn: _Connection, message: str) -> None:
        """Mark the current connection broken: the runner drops it and restarts the server (if allowed)."""
        if conn.trouble is None and conn.lost is None and not conn.stop.is_set():
            conn.trouble = conn.last_trouble = message
        conn.wake.set()

    def _open_stderr_file(self, conn: _Connection, *, append: bool) -> TextIO:
        assert self._stderr_dir is not None
        conn.stderr_path = self._stderr_dir / f"{conn.name}.stderr.log"
        # Closed by the runner's exit stack; a restart appends, so earlier output stays readable.
        f = open(conn.stderr_path, "a" if append else "w", encoding="utf-8")
        if append:
            f.write(f"--- restart {conn.restarts} ---\n")
            f.flush()
        return f

    async def _transport(self, conn: _Connection, stack: AsyncExitStack, stderr_file: TextIO | None) -> Any:
        spec = conn.spec
        read_timeout = max(300.0, conn.tool_timeout + 30.0)
        if spec.transport == "stdio":
            assert spec.command is not None and stderr_file is not None
            env = server_environment(spec)
            _check_command(spec, env)
            params = StdioServerParameters(command=spec.command, args=spec.args, env=env, cwd=spec.cwd,
                                           encoding_error_handler="replace")
            return _screened(stdio_client(params, errlog=stderr_file), lambda exc: self._garbage(conn, exc))
        assert spec.url is not None
        headers = spec.headers or None
        if spec.transport == "sse":
            return sse_client(
                spec.url, headers=headers, timeout=_HTTP_CONNECT_TIMEOUT, sse_read_timeout=read_timeout
            )
        async def note_refusal(response: httpx2.Response) -> None:
            # The SDK turns a non-2xx answer into "Server returned an error response"; keep what the user needs.
            if response.status_code in (401, 403):
                conn.http_refusal = (response.status_code, str(response.request.url))

        http_client = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=headers, timeout=httpx2.Timeout(_HTTP_CONNECT_TIMEOUT, read=read_timeout),
                event_hooks={"response": [note_refusal]},
            )
        )
        return streamable_http_client(spec.url, http_client=http_client)

    def _garbage(self, conn: _Connection, exc: Exception) -> SessionMessage | None:
        """A stdout line that is not JSON-RPC: salvage a message glued to it, else fail the calls in flight.

        MCP servers must write only JSON-RPC to stdout; a stray print() is common. One warning line goes to
        the console, the details to `notices`. The line may have been a call's answer: calls in flight get
        GARBAGE_GRACE_S more for their answer, then fail, instead of waiting out their tool_timeout.
        """
        line = _raw_input(exc)
        salvaged = _salvage(line)
        shown = _shorten(line.strip(), _SHOWN_GARBAGE)
        if salvaged is not None:
            notice = f"MCP server {conn.name!r} wrote text before a JSON-RPC message on stdout: {shown}"
        else:
            notice = f"MCP server {conn.name!r} wrote a line that is not JSON-RPC on stdout: {shown}"
        self._notices.append((conn.name, notice))
        if self.on_notice is not None:
            self.on_notice(conn.name, notice)
        else:
            logger.warning("%s", notice)
        if salvaged is None and conn.calls:
            conn.garbage = shown
            deadline = anyio.current_time() + GARBAGE_GRACE_S
            for scope in conn.calls:
                scope.deadline = min(scope.deadline, deadline)
        return salvaged

    # -- messages ----------------------------------------------------------------------------------

    def _stderr_note(self, conn: _Connection) -> str:
        tail = _stderr_tail(conn.stderr_path) if conn.stderr_path else ""
        if not tail:
            return ""
        return "\nLast lines of its stderr:\n" + "\n".join(f"  {line}" for line in tail.splitlines())

    def _failure_message(self, conn: _Connection, what: str, *, starting: bool) -> str:
        kind = "command" if conn.spec.transport == "stdio" else conn.spec.transport
        head = f"MCP server {conn.name!r} ({kind}: {conn.spec.target})"
        verb = ("failed to restart" if conn.restarts else "failed to start") if starting else "stopped working"
        return f"{head} {verb}: {what}{self._stderr_note(conn)}"

    def _gone_message(self, conn: _Connection) -> str:
        if conn.spec.transport == "stdio":
            what = "the server process exited (or closed its stdout)"
        else:
            what = "the connection to the server closed"
        return self._failure_message(conn, what, starting=False)

    def _startup_timeout_message(self, conn: _Connection) -> str:
        what = (
            f"no answer within its startup_timeout of {conn.spec.startup_timeout:g} s (connect and list tools); "
            "is it an MCP server, and does it start that fast?"
        )
        return self._failure_message(conn, what, starting=True)

    def _restart_note(self, conn: _Connection) -> str:
        if conn.lost is not None or conn.stop.is_set():
            return ""
        if conn.restarts < conn.spec.max_restarts:
            what = "restarted" if conn.spec.transport == "stdio" else "reconnected"
            return (f"\nThe server is being {what} (attempt {conn.restarts + 1} of {conn.spec.max_restarts}); "
                    "call the tool again in a moment if you still need it.")
        return "\nIt will not be restarted: its restart limit is used up."

    def _unavailable(self, conn: _Connection) -> str:
        if conn.lost is not None:
            return conn.lost
        if conn.trouble is not None:
            return conn.trouble + self._restart_note(conn)
        return "its server is not connected"

    # -- tool list -----------------------------------------------------------------------------------

    def _build_tools(self) -> dict[str, _Route]:
        entries: list[tuple[_Connection, types.Tool]] = []
        for conn in self._conns.values():
            if conn.error is None:
                entries.extend((conn, tool) for tool in conn.tools if _offered(conn.spec, tool.name))
        local_names = {tool.name for tool in self._local_tools}
        names = unique_names([(conn.name, tool.name) for conn, tool in entries], reserved=local_names)
        routes: dict[str, _Route] = {}
        for name, (conn, tool) in zip(names, entries, strict=True):
            hints = tool.annotations
            description = tool.description or tool.title or ""
            info = ToolInfo(
                name=name,
                server=conn.name,
                tool=tool.name,
                description=description,
                input_schema=tool.input_schema,
                read_only=hints.read_only_hint if hints else None,
                destructive=hints.destructive_hint if hints else None,
                openai=to_openai_function(name, description, tool.input_schema),
            )
            routes[name] = _Route(info, conn, None)
        for local in self._local_tools:
            info = ToolInfo(
                name=local.name,
                server=None,
                tool=local.name,
                description=local.description,
                input_schema=local.input_schema,
                read_only=local.read_only,
                destructive=None,
                openai=to_openai_function(local.name, local.description, local.input_schema),
            )
            routes[local.name] = _Route(info, None, local)
        return routes

    def _install_tools(self, routes: dict[str, _Route]) -> None:
        self._routes = routes
        self._tools = [route.info for route in routes.values()]
        self._openai_tools = [info.openai for info in self._tools]

    async def refresh(self) -> bool:
        """Re-list the tools of servers that announced a change; True when the offered tool list changed.

        Call it between steps: on True, `openai_tools` is a new list (re-serialise it); on False the
        same list object stays, so the prompt prefix stays byte-stable. Servers that are restarting keep
        their flag until they are back.
        """
        for conn in self._conns.values():
            if not conn.tools_stale:
                continue
            client = conn.client
            if conn.lost is not None or conn.error is not None:
                conn.tools_stale = False
                continue
            if client is None or conn.trouble is not None:
                continue
            conn.tools_stale = False  # a change announced while listing sets it again
            try:
                with anyio.fail_after(conn.spec.startup_timeout):
                    conn.tools = await _list_all_tools(client)
            except Exception:
                continue  # a dead connection shows up in the next call; keep the tools we have
        routes = self._build_tools()
        if [r.info.openai for r in routes.values()] == self._openai_tools:
            return False
        self._install_tools(routes)
        self._tools_version += 1
        return True

    # -- calls ---------------------------------------------------------------------------------------

    async def call(self, name: str, arguments: dict[str, Any] | str | None) -> ToolOutcome:
        """Call a tool by its qualified name; every tool-level problem becomes an error outcome."""
        route = self._routes.get(name)
        if route is None:
            return error_outcome(self._unknown_tool_message(name))
        args = _parse_arguments(name, arguments)
        if isinstance(args, ToolOutcome):
            return args
        if route.local is not None:
            try:
                return await route.local.handler(args)
            except Exception as exc:
                return error_outcome(f"Tool {name} failed: {_describe(exc)}")
        conn = route.conn
        assert conn is not None
        client = conn.client
        if client is None or conn.lost is not None or conn.trouble is not None:
            return error_outcome(f"Tool {name} is unavailable: {self._unavailable(conn)}")
        generation = conn.generation
        screen = anyio.CancelScope()
        conn.calls.add(screen)
        with anyio.move_on_after(conn.tool_timeout), screen:
            try:
                result = await client.call_tool(route.info.tool, args)
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED:
                    return error_outcome(await self._server_gone(conn, name, generation))
                if exc.code == REQUEST_TIMEOUT:
                    return error_outcome(f"Tool {name} timed out ({exc.message}).")
                refusal = _refusal_text(conn.http_refusal, conn.spec)
                conn.http_refusal = None
                if refusal is not None:
                    return error_outcome(f"Tool {name} failed: {refusal}")
                return error_outcome(f"Tool {name} failed: MCP error {exc.code}: {exc.message}")
            except Exception as exc:
                if conn.spec.transport != "stdio" and _is_transport_error(exc):
                    return error_outcome(await self._server_gone(conn, name, generation))
                # E.g. RuntimeError from the SDK's output-schema check.
                return error_outcome(f"Tool {name} failed: {_describe(exc)}")
            finally:
                conn.calls.discard(screen)
            return outcome_from_result(result)
        if screen.cancelled_caught:
            return error_outcome(
                f"Tool {name} failed: its server wrote a line that is not JSON-RPC on stdout ({conn.garbage!r}) "
                f"and no answer followed within {GARBAGE_GRACE_S:g} s; the answer was probably lost (MCP servers "
                "must write only JSON-RPC to stdout). Call the tool again, or use another tool."
            )
        # The SDK sends notifications/cancelled when the scope above is cancelled, so the server stops too.
        return error_outcome(
            f"Tool {name} timed out after {conn.tool_timeout:g} s and was cancelled. "
            "Try a smaller request, or a different approach."
        )

    async def _server_gone(self, conn: _Connection, name: str, generation: int) -> str:
        if conn.generation == generation and conn.trouble is None and conn.lost is None:
            # The runner may be about to record the transport's own error (HTTP), which says more.
            with anyio.move_on_after(_GONE_GRACE_S):
                await conn.wake.wait()
            if conn.generation == generation:
                self._break(conn, self._gone_message(conn))
        if conn.generation != generation and conn.trouble is None and conn.lost is None:
            return (f"Tool {name} failed: {conn.last_trouble or self._gone_message(conn)}\n"
                    "The server has been restarted since; call the tool again if you still need it.")
        return f"Tool {name} failed: {self._unavailable(conn)}"

    def _unknown_tool_message(self, name: str) -> str:
        names = list(self._routes)
        if not names:
            return f"Unknown tool {name!r}: no tools are available."
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        shown = close or names[:8]
        label = "Did you mean" if close else "Available tools include"
        return f"Unknown tool {name!r}. {label}: {', '.join(shown)} ({len(names)} tools in all)."


# -- module helpers ------------------------------------------------------------------------------------


def _roots_for(spec: ServerSpec, hub_roots: Sequence[str | os.PathLike[str]] | None) -> list[types.Root] | None:
    """The roots offered to one server: its own `roots`, else the hub's; None (no roots capability) otherwise.

    Only what was asked for: the reference filesystem server replaces its directory arguments with a
    client's roots, so offering the working directory unasked would shut it out of the folders it was given.
    """
    base = Path(spec.cwd) if spec.cwd else Path.cwd()
    if spec.roots is not None:
        paths = [base / root for root in spec.roots]
    elif hub_roots is not None:
        paths = [Path(root) for root in hub_roots]
    else:
        return None
    if not paths:
        return None
    resolved = [path.resolve() for path in paths]
    return [types.Root(uri=path.as_uri(), name=path.name or str(path)) for path in resolved]


async def _until_lost(conn: _Connection, subscription: Subscription) -> bool:
    """Follow change events; True when the stream dropped, False when it ended on purpose (or oddly)."""
    try:
        async for event in subscription:
            if isinstance(event, ToolsListChanged):
                conn.tools_stale = True
    except SubscriptionLost:
        return True
    except Exception:
        pass  # an odd stream ends the following, not the connection
    return False


@asynccontextmanager
async def _screened(transport: Any, on_garbage: Any) -> AsyncIterator[Any]:
    """A transport whose read stream passes stdout lines that failed to parse to `on_garbage`, which may give
    back a salvaged message; the SDK would hand them to the session as exceptions, where nothing answers."""
    _quiet_sdk_parse_errors()
    async with transport as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def forward() -> None:
            async with send, read:
                async for item in read:
                    if isinstance(item, Exception):
                        item = on_garbage(item)
                        if item is None:
                            continue
                    await send.send(item)

        async with anyio.create_task_group() as group, receive:
            group.start_soon(forward)
            try:
                yield receive, write
            finally:
                group.cancel_scope.cancel()


class _DropParseTracebacks(logging.Filter):
    """The SDK logs each unparsable stdout line with a full traceback; the hub reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to parse JSONRPC message")


_PARSE_FILTER = _DropParseTracebacks()


def _quiet_sdk_parse_errors() -> None:
    sdk_logger = logging.getLogger("mcp.client.stdio")
    if _PARSE_FILTER not in sdk_logger.filters:
        sdk_logger.addFilter(_PARSE_FILTER)


def _raw_input(exc: Exception) -> str:
    """The offending line, from the SDK's parse error."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            value = errors()[0].get("input")
        except (IndexError, TypeError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
        if value is not None:
            return json.dumps(value, default=str)
    return str(exc)


def _salvage(line: str) -> SessionMessage | None:
    """A JSON-RPC message that follows other text on the same line (`print(..., end="")` before the answer)."""
    start = line.find("{")
    while start > 0:
        try:
            return SessionMessage(types.jsonrpc_message_adapter.validate_json(line[start:], by_name=False))
        except ValueError:
            start = line.find("{", start + 1)
    return None


def _tool_key(tools: list[types.Tool]) -> list[dict[str, Any]]:
    return [tool.model_dump(mode="json") for tool in tools]


def _offered(spec: ServerSpec, tool: str) -> bool:
    if spec.allow is not None and not any(fnmatch.fnmatchcase(tool, pattern) for pattern in spec.allow):
        return False
    return not any(fnmatch.fnmatchcase(tool, pattern) for pattern in spec.deny)


async def _list_all_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(_MAX_TOOL_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        # A server that repeats a cursor would otherwise page forever.
        if cursor is None or cursor in seen:
            break
        seen.add(cursor)
    return tools


def _shorten(text: str, limit: int = _SHOWN_ARGUMENTS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parse_arguments(name: str, arguments: dict[str, Any] | str | None) -> dict[str, Any] | ToolOutcome:
    if arguments is None:
        return {}
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return error_outcome(
                f"Arguments for {name} are not valid JSON ({exc.msg} at position {exc.pos}); "
                f"send the arguments as one JSON object. Received: {_shorten(arguments)}"
            )
        if isinstance(parsed, dict):
            return parsed
        shown = _shorten(arguments)
        kind = type(parsed).__name__
    else:
        shown = _shorten(repr(arguments))
        kind = type(arguments).__name__
    return error_outcome(f"Arguments for {name} must be a JSON object, received a {kind}: {shown}")


def _check_command(spec: ServerSpec, env: Mapping[str, str]) -> None:
    """Fail early with a clear message instead of a bare FileNotFoundError from the spawn."""
    command = spec.command or ""
    if spec.cwd is not None and not os.path.isdir(spec.cwd):
        raise _StartupError(f"its working directory {spec.cwd!r} does not exist")
    if os.sep in command:
        path = command if os.path.isabs(command) or spec.cwd is None else os.path.join(spec.cwd, command)
        if not os.path.exists(path):
            raise _StartupError(f"the command {command!r} does not exist")
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise _StartupError(f"the command {command!r} is not an executable file")
        return
    if shutil.which(command, path=env.get("PATH") or os.defpath) is None:
        raise _StartupError(f"the command {command!r} was not found on PATH; is it installed?")


class _StartupError(Exception):
    """A startup problem already phrased for the user."""


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaf_exceptions(sub)]
    return [exc]


def _describe(exc: BaseException) -> str:
    leaves = [e for e in _leaf_exceptions(exc) if not isinstance(e, anyio.get_cancelled_exc_class())] or [exc]
    parts = []
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            parts.append(f"MCP error {leaf.code}: {leaf.message}")
        elif isinstance(leaf, httpx2.HTTPStatusError):
            parts.append(f"HTTP {leaf.response.status_code} from {leaf.request.url}")
        else:
            parts.append(f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__)
    return "; ".join(dict.fromkeys(parts))


def _describe_loss(conn: _Connection, exc: BaseException) -> str:
    if conn.spec.transport == "stdio":
        return f"the server process exited or its connection failed ({_describe(exc)})"
    return f"the connection failed: {_describe(exc)}"


def _is_transport_error(exc: BaseException) -> bool:
    """True for errors that mean the connection itself is gone (refused, reset, closed streams)."""
    transport_errors = (httpx2.TransportError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError,
                        anyio.EndOfStream)
    return any(isinstance(leaf, transport_errors) for leaf in _leaf_exceptions(exc))


def _refusal_text(refusal: tuple[int, str] | None, spec: ServerSpec) -> str | None:
    """A 401/403 from an HTTP server, with the status, the URL and the fix."""
    if refusal is None:
        return None
    status, url = refusal
    sent = "its Authorization header was refused" if any(k.lower() == "authorization" for k in spec.headers) \
        else "no Authorization header was sent"
    if status == 401:
        return (f"HTTP 401 Unauthorized from {url}: the server needs credentials and {sent}. Give the entry "
                "`headers: {Authorization: Bearer ${TOKEN_VAR}}` (or the header the server documents) with a valid "
                "token.")
    return (f"HTTP 403 Forbidden from {url}: the credentials were accepted but lack access ({sent}). Use a token "
            "with the scopes this server needs, in the entry's `headers`.")


def _describe_startup(exc: BaseException) -> str:
    for leaf in _leaf_exceptions(exc):
        if isinstance(leaf, _StartupError):
            return str(leaf)
        if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            return "the connection closed before the server answered (did the server exit?)"
        if isinstance(leaf, FileNotFoundError):
            return f"the command or working directory was not found ({leaf})"
        if isinstance(leaf, PermissionError):
            return f"the command could not be run ({leaf})"
    return _describe(exc)


def _stderr_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _STDERR_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    if size > _STDERR_TAIL_BYTES:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-_STDERR_TAIL_LINES:]).strip()
