"""`ToolHub`: connects MCP servers in parallel, offers their tools under qualified names, and calls them.

Tool-level problems (bad arguments, timeouts, a server that died) come back as error outcomes, never raise.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import mcp.types as types
from anyio.abc import TaskGroup
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from agent.errors import ConfigError, ToolServerError
from tools.config import ServerSpec
from tools.local import LocalTool
from tools.results import ToolOutcome, error_outcome, outcome_from_result
from tools.schema import to_openai_function, unique_names

# Bounds how long closing may take: the SDK's stdio shutdown needs up to ~6 s for a server that ignores
# stdin EOF and SIGTERM; past this the runners are cancelled (the SDK still kills the process tree).
CLOSE_TIMEOUT = 10.0
_MAX_TOOL_PAGES = 1000
_STDERR_TAIL_LINES = 20
_STDERR_TAIL_BYTES = 4000
_SHOWN_ARGUMENTS = 300
_HTTP_CONNECT_TIMEOUT = 30.0


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
    """One server's runner state; the runner task alone enters and exits its `Client`."""

    name: str
    spec: ServerSpec
    tool_timeout: float
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    deadline: float = math.inf
    client: Client | None = None
    tools: list[types.Tool] = field(default_factory=list)
    error: str | None = None
    """Why startup failed."""
    lost: str | None = None
    """Why a connected server can no longer be used."""
    stderr_path: Path | None = None


@dataclass(frozen=True)
class _Route:
    info: ToolInfo
    conn: _Connection | None
    local: LocalTool | None


class ToolHub:
    """Owns the connections to a set of MCP servers and the tool list offered to the model.

    Enter and exit it from the same task (`async with ToolHub(...) as hub:`).
    """

    def __init__(
        self,
        servers: Mapping[str, ServerSpec],
        *,
        tool_timeout: float = 120.0,
        local_tools: Sequence[LocalTool] = (),
        stderr_dir: Path | None = None,
    ) -> None:
        if tool_timeout <= 0:
            raise ConfigError(f"tool_timeout must be positive, got {tool_timeout}")
        self._conns = {
            name: _Connection(name, spec, spec.tool_timeout or tool_timeout) for name, spec in servers.items()
        }
        local_names = [tool.name for tool in local_tools]
        if len(set(local_names)) != len(local_names):
            raise ConfigError(f"local tool names must be unique, got {local_names}")
        self._local_tools = list(local_tools)
        self._stderr_dir_arg = stderr_dir
        self._stderr_dir: Path | None = None
        self._owns_stderr_dir = False
        self._task_group: TaskGroup | None = None
        self._entered = False
        self._tools: list[ToolInfo] = []
        self._openai_tools: list[dict[str, Any]] = []
        self._routes: dict[str, _Route] = {}
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
        """The OpenAI `tools` list; built once, the same object on every access."""
        return self._openai_tools

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
            self._build_tools()
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
        """Connect, list tools, report ready, then hold the connection open until told to stop."""
        spec = conn.spec
        conn.deadline = anyio.current_time() + spec.startup_timeout
        stderr_file: IO[str] | None = None
        try:
            with anyio.CancelScope(deadline=conn.deadline) as scope:
                async with AsyncExitStack() as stack:
                    if spec.transport == "stdio":
                        stderr_file = self._open_stderr_file(conn)
                        stack.callback(stderr_file.close)
                    transport = await self._transport(conn, stack, stderr_file)
                    # The response cache only matters for re-listing, which the hub never does.
                    client = await stack.enter_async_context(Client(transport, cache=None))
                    tools = await _list_all_tools(client)
                    scope.deadline = math.inf
                    conn.client, conn.tools = client, tools
                    conn.ready.set()
                    await conn.stop.wait()
            if scope.cancelled_caught and not conn.ready.is_set():
                conn.error = self._startup_timeout_message(conn)
        except Exception as exc:
            # Recorded, never raised: an exception here would cancel the hub's task group, and with it the run.
            if conn.ready.is_set():
                conn.lost = self._failure_message(
                    conn, f"the connection failed: {_describe(exc)}", starting=False
                )
            elif anyio.current_time() >= conn.deadline:
                conn.error = self._startup_timeout_message(conn)
            else:
                conn.error = self._failure_message(conn, _describe_startup(exc), starting=True)
        finally:
            conn.client = None
            if conn.lost is None and conn.ready.is_set() and conn.error is None:
                conn.lost = f"MCP server {conn.name!r} has been closed"
            conn.ready.set()
            conn.done.set()

    def _open_stderr_file(self, conn: _Connection) -> IO[str]:
        assert self._stderr_dir is not None
        conn.stderr_path = self._stderr_dir / f"{conn.name}.stderr.log"
        return open(conn.stderr_path, "w", encoding="utf-8")  # closed by the runner's exit stack

    async def _transport(self, conn: _Connection, stack: AsyncExitStack, stderr_file: IO[str] | None) -> Any:
        spec = conn.spec
        read_timeout = max(300.0, conn.tool_timeout + 30.0)
        if spec.transport == "stdio":
            assert spec.command is not None and stderr_file is not None
            env = {**os.environ, **spec.env} if spec.inherit_env else dict(spec.env)
            _check_command(spec, env)
            params = StdioServerParameters(command=spec.command, args=spec.args, env=env, cwd=spec.cwd)
            return stdio_client(params, errlog=stderr_file)
        assert spec.url is not None
        headers = spec.headers or None
        if spec.transport == "sse":
            return sse_client(
                spec.url, headers=headers, timeout=_HTTP_CONNECT_TIMEOUT, sse_read_timeout=read_timeout
            )
        http_client = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=headers, timeout=httpx2.Timeout(_HTTP_CONNECT_TIMEOUT, read=read_timeout)
            )
        )
        return streamable_http_client(spec.url, http_client=http_client)

    # -- messages ----------------------------------------------------------------------------------

    def _stderr_note(self, conn: _Connection) -> str:
        tail = _stderr_tail(conn.stderr_path) if conn.stderr_path else ""
        if not tail:
            return ""
        return "\nLast lines of its stderr:\n" + "\n".join(f"  {line}" for line in tail.splitlines())

    def _failure_message(self, conn: _Connection, what: str, *, starting: bool) -> str:
        kind = "command" if conn.spec.transport == "stdio" else conn.spec.transport
        head = f"MCP server {conn.name!r} ({kind}: {conn.spec.target})"
        verb = "failed to start" if starting else "stopped working"
        return f"{head} {verb}: {what}{self._stderr_note(conn)}"

    def _startup_timeout_message(self, conn: _Connection) -> str:
        what = (
            f"no answer within its startup_timeout of {conn.spec.startup_timeout:g} s (connect and list tools); "
            "is it an MCP server, and does it start that fast?"
        )
        return self._failure_message(conn, what, starting=True)

    # -- tool list -----------------------------------------------------------------------------------

    def _build_tools(self) -> None:
        entries: list[tuple[_Connection, types.Tool]] = []
        for conn in self._conns.values():
            if conn.error is None:
                entries.extend((conn, tool) for tool in conn.tools if _offered(conn.spec, tool.name))
        local_names = {tool.name for tool in self._local_tools}
        names = unique_names([(conn.name, tool.name) for conn, tool in entries], reserved=local_names)
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
            self._routes[name] = _Route(info, conn, None)
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
            self._routes[local.name] = _Route(info, None, local)
        self._tools = [route.info for route in self._routes.values()]
        self._openai_tools = [info.openai for info in self._tools]

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
        if conn.lost is not None or client is None:
            return error_outcome(f"Tool {name} is unavailable: {conn.lost or 'its server is not connected'}")
        with anyio.move_on_after(conn.tool_timeout):
            try:
                result = await client.call_tool(route.info.tool, args)
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED:
                    return error_outcome(self._server_gone(conn, name))
                if exc.code == REQUEST_TIMEOUT:
                    return error_outcome(f"Tool {name} timed out ({exc.message}).")
                return error_outcome(f"Tool {name} failed: MCP error {exc.code}: {exc.message}")
            except Exception as exc:
                # E.g. RuntimeError from the SDK's output-schema check, or an HTTP transport error.
                return error_outcome(f"Tool {name} failed: {_describe(exc)}")
            return outcome_from_result(result)
        # The SDK sends notifications/cancelled when the scope above is cancelled, so the server stops too.
        return error_outcome(
            f"Tool {name} timed out after {conn.tool_timeout:g} s and was cancelled. "
            "Try a smaller request, or a different approach."
        )

    def _server_gone(self, conn: _Connection, name: str) -> str:
        if conn.lost is None:
            if conn.spec.transport == "stdio":
                what = "the server process exited (or closed its stdout) during the call"
            else:
                what = "the connection to the server closed during the call"
            conn.lost = self._failure_message(conn, what, starting=False)
            # Let the runner close the transport now: reaps the dead process instead of waiting for the hub to close.
            conn.stop.set()
        return f"Tool {name} failed: {conn.lost}"

    def _unknown_tool_message(self, name: str) -> str:
        names = list(self._routes)
        if not names:
            return f"Unknown tool {name!r}: no tools are available."
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        shown = close or names[:8]
        label = "Did you mean" if close else "Available tools include"
        return f"Unknown tool {name!r}. {label}: {', '.join(shown)} ({len(names)} tools in all)."


# -- module helpers ------------------------------------------------------------------------------------


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
    # Without PATH in `env` the SDK gives the child this process's PATH.
    if shutil.which(command, path=env.get("PATH") or os.environ.get("PATH", os.defpath)) is None:
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
