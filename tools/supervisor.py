"""`ServerSupervisor`: one MCP server's connection, from start to close, restarts and reconnects included.

It lists the server's tools, follows its tool-list changes and calls its tools; every problem is recorded as a
message (startup failure, trouble, loss) or returned as an error outcome, never raised into the hub.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio
import httpx2
import mcp.types as types
from mcp import Client, MCPDeprecationWarning, MCPError, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    Subscription,
    SubscriptionLost,
    ToolsListChanged,
)
from mcp.shared.message import SessionMessage
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from agent.tools import forkserver
from agent.tools.config import ServerSpec, server_environment
from agent.tools.oauth import LoginRequired, connection_auth
from agent.tools.resources import Catalog, ResourceError, ResourceWatch, all_pages, probe
from agent.tools.results import ToolOutcome, error_outcome, outcome_from_result
from agent.tools.server_requests import CURRENT_CALL, CallOrigin, ServerRequests
from agent.tools.stdout_screen import raw_line, salvage, screened
from agent.version import package_version

T = TypeVar("T")
_MAX_TOOL_PAGES = 1000
_STDERR_TAIL_LINES = 20
_STDERR_TAIL_BYTES = 4000
_HTTP_CONNECT_TIMEOUT = 30.0
_MAX_RESTART_BACKOFF = 8.0
# After a call saw the connection close, how long to wait for the runner's own account of why.
_GONE_GRACE_S = 0.2
# When a listen stream drops, how long the server has to answer the probe that tells a dead connection.
_PROBE_TIMEOUT_S = 10.0
_SHOWN_GARBAGE = 200
# After a stdout line that is not JSON-RPC, how long calls in flight still wait for their answer.
GARBAGE_GRACE_S = 5.0
# Announced to every server (the SDK's default is `mcp 0.1.0`).
CLIENT_INFO = types.Implementation(name="deepseek-agent", title="DeepSeek V4 agent", version=package_version())


class ServerSupervisor:
    """Runs one server: `run()` is its runner task, the only one that enters and exits its `Client`s.

    The first connection attempt settles `ready` (connected, or `error` says why not). A connection that
    breaks sets `trouble` and is replaced after a backoff while `spec.max_restarts` allows; after that, or
    once stopped, `lost` says why the server can no longer be used, and `done` is set.
    """

    def __init__(
        self,
        name: str,
        spec: ServerSpec,
        *,
        tool_timeout: float,
        roots: Sequence[str | os.PathLike[str]] | None,
        restart_backoff: float,
        on_notice: Callable[[str, str], None],
        fork_server: bool | None = None,
        requests: ServerRequests | None = None,
    ) -> None:
        self.name = name
        self.requests = requests
        """Answers the server's elicitation and sampling requests, progress and log messages; None: none declared."""
        self._in_flight: list[CallOrigin] = []
        """Tool calls in flight, oldest first: handshake-era server requests are attributed to the latest."""
        self.spec = spec
        self.tool_timeout = tool_timeout
        self.roots = _roots_for(spec, roots)
        """Offered when the server asks; None: the roots capability is not declared."""
        self.restart_backoff = restart_backoff
        self.on_notice = on_notice
        """Called with (server, text) for each protocol problem the server shows."""
        self.fork_server = fork_server
        self.mode: str = "legacy" if spec.protocol == "legacy" or _legacy_key(spec) in _LEGACY_SERVERS else "auto"
        """The SDK client's mode: `auto` probes with `server/discover` first, `legacy` goes to `initialize`."""
        """Start a stdio server through the fork server where that is exactly the ordinary start (False: never;
        None: unless `AGENT_FORKSERVER=0`)."""
        self.process: forkserver.ForkedProcess | None = None
        """The current stdio server's process, when the fork server started it (its exit code, its pid)."""
        self.ready = anyio.Event()
        """Set once the first connection attempt has settled (connected or failed)."""
        self.done = anyio.Event()
        self._stop = anyio.Event()
        self._wake = anyio.Event()
        """Ends the current connection's hold: set on stop, or when the connection broke."""
        self._deadline = math.inf
        self.client: Client | None = None
        self.tools: list[types.Tool] = []
        self.catalog = Catalog()
        """Whether the server has resources and prompts to offer (as the hub's synthetic tools)."""
        self.resource_watch = ResourceWatch()
        """Resources read through the hub that the server reports updates for (when it offers subscriptions)."""
        self.protocol_version: str | None = None
        self.error: str | None = None
        """Why the first start failed."""
        self.trouble: str | None = None
        """Why the current connection broke; a restart is pending while it is set."""
        self.lost: str | None = None
        """Why the server can no longer be used: restarts used up, or the hub closed."""
        self.restarts = 0
        self.generation = 0
        """Counts connections; a call compares it to tell whether the server was restarted meanwhile."""
        self.last_trouble: str | None = None
        self.tools_stale = False
        """The server announced a tool-list change (or came back with other tools) since the tools were listed."""
        self.stderr_path: Path | None = None
        self._calls: set[anyio.CancelScope] = set()
        """Scopes of the calls in flight, cancelled when the server writes something that is not JSON-RPC."""
        self._http_refusal: tuple[int, str] | None = None
        """The last 401/403 answer of an HTTP server: (status, URL)."""
        self._garbage: str | None = None
        """What the last line of stdout that was not JSON-RPC said (it may have been a lost answer)."""

    def stop(self) -> None:
        """Ask the runner to close the connection and end; `done` is set when it has."""
        self._stop.set()
        self._wake.set()

    # -- the runner ------------------------------------------------------------------------------------

    async def run(self, stderr_dir: Path | None) -> None:
        """Connect; while the connection breaks and restarts are left, back off and connect again.

        `stderr_dir` receives `<name>.stderr.log` for a stdio server (a restart appends to it).
        """
        if stderr_dir is not None and self.spec.transport == "stdio":
            self.stderr_path = stderr_dir / f"{self.name}.stderr.log"
        try:
            await self._connect(starting=True)
            while self.trouble is not None and not self._stop.is_set():
                if self.restarts >= self.spec.max_restarts:
                    limit = self.spec.max_restarts
                    self.lost = (
                        f"{self.trouble}\n(not restarted: max_restarts is 0)" if limit == 0
                        else f"{self.trouble}\n(gave up after {limit} restart{'s' if limit != 1 else ''})"
                    )
                    break
                delay = min(self.restart_backoff * 2**self.restarts, _MAX_RESTART_BACKOFF)
                self.restarts += 1
                with anyio.move_on_after(delay):
                    await self._stop.wait()
                if self._stop.is_set():
                    break
                await self._connect(starting=False)
        finally:
            self.client = None
            if self.error is None and self.lost is None:
                self.lost = self.trouble or f"MCP server {self.name!r} has been closed"
            self.ready.set()
            self.done.set()

    async def _connect(self, *, starting: bool) -> None:
        """One connection: connect and list tools within startup_timeout, then hold it until stop or trouble.

        Failures are recorded (`error` on the first start, `trouble` later), never raised: an exception
        here would cancel the hub's task group, and with it the run.
        """
        spec = self.spec
        self._wake = anyio.Event()
        if self._stop.is_set():
            return
        self.trouble = None
        self.generation += 1
        self._deadline = anyio.current_time() + spec.startup_timeout
        connected = False
        retry_legacy = False
        scope = anyio.CancelScope(deadline=self._deadline)

        async def cancel_startup_on_stop() -> None:
            await self._stop.wait()
            if not connected:
                scope.cancel()

        try:
            async with anyio.create_task_group() as watcher:
                watcher.start_soon(cancel_startup_on_stop)
                with scope:
                    async with AsyncExitStack() as stack:
                        stderr_file: TextIO | None = None
                        if spec.transport == "stdio":
                            stderr_file = self._open_stderr_file(append=not starting)
                            stack.callback(stderr_file.close)
                        transport = await self._transport(stack, stderr_file)
                        client = await stack.enter_async_context(self._client(transport))
                        # Subscribed before listing, so no change can fall between the two.
                        subscription = await _subscribe(client, stack)
                        tools = await _list_all_tools(client)
                        catalog = await probe(client)
                        scope.deadline = math.inf
                        connected = True
                        if not starting and (_tool_key(tools) != _tool_key(self.tools) or catalog != self.catalog):
                            self.tools_stale = True
                        self.client, self.tools, self.catalog = client, tools, catalog
                        self.protocol_version = client.protocol_version
                        await self._ask_for_logs(client)
                        self.ready.set()
                        await self._hold(client, subscription)
                        self.client = None
                watcher.cancel_scope.cancel()
            if scope.cancelled_caught and not connected and not self._stop.is_set():
                self._startup_failed(self._startup_timeout_message(), starting)
        except Exception as exc:
            if connected:
                self._break(self._failure_message(self._describe_loss(exc), starting=False))
            elif anyio.current_time() >= self._deadline:
                self._startup_failed(self._startup_timeout_message(), starting)
            elif self.mode == "auto" and spec.transport == "stdio" and not self._stop.is_set():
                # Handshake-era servers on mcp 1.x die on the 2026-07-28 `server/discover` probe (it fails
                # their request validation): start it again, straight to the `initialize` handshake.
                retry_legacy = True
            else:
                what = (_login_required(exc) or _refusal_text(self._http_refusal, spec)
                        or _describe_startup(exc) + self._exit_note())
                self._startup_failed(self._failure_message(what, starting=True), starting)
        finally:
            self.client = None
        if retry_legacy:
            self.mode = "legacy"
            _LEGACY_SERVERS.add(_legacy_key(spec))  # later starts of the same program skip the probe
            await self._connect(starting=starting)

    def _startup_failed(self, message: str, starting: bool) -> None:
        if starting:
            self.error = message
        else:
            self.trouble = self.last_trouble = message

    async def _hold(self, client: Client, subscription: Subscription | None) -> None:
        """Keep the connection until stop or trouble, following tool-list changes meanwhile."""
        async with anyio.create_task_group() as group:
            if subscription is not None:
                group.start_soon(self._follow, client, subscription)
            if self.catalog.subscribe:
                group.start_soon(self.resource_watch.follow, client)
            await self._wake.wait()
            group.cancel_scope.cancel()

    async def _follow(self, client: Client, subscription: Subscription | None) -> None:
        """Mark the tools stale on each change event. When the stream drops, ask the server whether it is
        still there: a dead connection is broken (and restarted), a live one is listened to again."""
        stack: AsyncExitStack | None = None
        try:
            while subscription is not None:
                if not await self._until_lost(subscription):
                    return
                try:
                    with anyio.fail_after(_PROBE_TIMEOUT_S):
                        await client.list_tools()
                except Exception:
                    self._break(self._gone_message())  # the restart re-lists the tools
                    return
                self.tools_stale = True  # alive: changes may have been missed while the stream was down
                if stack is not None:
                    await stack.aclose()
                stack = AsyncExitStack()
                subscription = await _subscribe(client, stack)
        finally:
            if stack is not None:
                await stack.aclose()

    async def _until_lost(self, subscription: Subscription) -> bool:
        """Follow change events; True when the stream dropped, False when it ended on purpose (or oddly)."""
        try:
            async for event in subscription:
                if isinstance(event, ToolsListChanged | PromptsListChanged | ResourcesListChanged):
                    self.tools_stale = True  # resources and prompts decide the synthetic tools
        except SubscriptionLost:
            return True
        except Exception:
            pass  # an odd stream ends the following, not the connection
        return False

    def _client(self, transport: Any) -> Client:
        async def on_message(message: Any) -> None:
            # Handshake-era servers announce tool-list changes as notifications.
            if isinstance(message, types.ToolListChangedNotification | types.ResourceListChangedNotification
                          | types.PromptListChangedNotification):
                self.tools_stale = True
            elif isinstance(message, types.ResourceUpdatedNotification):
                self.resource_watch.mark(message.params.uri)

        roots_callback = None
        if self.roots is not None:
            roots = types.ListRootsResult(roots=self.roots)

            async def roots_callback(context: Any) -> types.ListRootsResult:
                return roots

        # The response cache only matters for re-listing, and `relist()` must always see the server's list.
        return Client(transport, cache=None, message_handler=on_message, list_roots_callback=roots_callback,
                      client_info=CLIENT_INFO, mode=self.mode, **self._request_callbacks())

    # -- what the server asks of us (agent.tools.server_requests) ---------------------------------------

    def _request_callbacks(self) -> dict[str, Any]:
        """The SDK callbacks for `requests`; a capability is declared only where `requests` answers it."""
        requests = self.requests
        if requests is None:
            return {}

        async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
            return await requests.elicit(self.name, self._origin(), params)

        async def on_sample(context: Any, params: types.CreateMessageRequestParams
                            ) -> types.CreateMessageResult | types.ErrorData:
            return await requests.sample(self.name, self._origin(), params)

        async def on_log(params: types.LoggingMessageNotificationParams) -> None:
            requests.log(self.name, self._origin(), params)

        callbacks: dict[str, Any] = {"logging_callback": on_log, "log_level": requests.log_level}
        if requests.answers_elicitation(self.name):
            callbacks["elicitation_callback"] = on_elicit
        if requests.answers_sampling(self.name):
            callbacks["sampling_callback"] = on_sample
        return callbacks

    def _origin(self) -> CallOrigin | None:
        """The call a request from the server belongs to: the one whose task it arrives in (on 2026-07-28 the SDK
        answers input requests inside `call_tool`), else the latest of the server's calls in flight (handshake-era
        requests arrive on the connection's task and say nothing of their call); None outside calls."""
        current = CURRENT_CALL.get()
        if current is not None and current.server == self.name:
            return current
        return self._in_flight[-1] if self._in_flight else None

    async def _ask_for_logs(self, client: Client) -> None:
        """`logging/setLevel` on a handshake-era connection to a server that declares logging (2026-07-28
        connections ask per request, through the client's `log_level`)."""
        level = self.requests.log_level if self.requests is not None else None
        if level is None or client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        if client.server_capabilities.logging is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                with anyio.fail_after(_PROBE_TIMEOUT_S):
                    await client.session.set_logging_level(level)
        except Exception:
            pass  # a server that refuses sends what it sends; its tools still work

    def _break(self, message: str) -> None:
        """Mark the current connection broken: the runner drops it and restarts the server (if allowed)."""
        if self.trouble is None and self.lost is None and not self._stop.is_set():
            self.trouble = self.last_trouble = message
        self._wake.set()

    def _open_stderr_file(self, *, append: bool) -> TextIO:
        assert self.stderr_path is not None, "a stdio server needs a stderr_dir"
        # Closed by the connection's exit stack; a restart appends, so earlier output stays readable.
        f = open(self.stderr_path, "a" if append else "w", encoding="utf-8")
        if append:
            f.write(f"--- restart {self.restarts} ---\n")
            f.flush()
        return f

    async def _transport(self, stack: AsyncExitStack, stderr_file: TextIO | None) -> Any:
        spec = self.spec
        read_timeout = max(300.0, self.tool_timeout + 30.0)
        if spec.transport == "stdio":
            assert spec.command is not None and stderr_file is not None
            env = server_environment(spec)
            _check_command(spec, env)
            self.process = None
            forked = await self._fork(env, stderr_file)
            if forked is not None:
                stack.callback(forked.close)  # a safety net: the transport stops the process itself
                self.process = forked
                return screened(forkserver.forked_stdio_client(forked), self._on_garbage)
            params = StdioServerParameters(command=spec.command, args=spec.args, env=env, cwd=spec.cwd,
                                           encoding_error_handler="replace")
            return screened(stdio_client(params, errlog=stderr_file), self._on_garbage)
        assert spec.url is not None
        headers = spec.headers or None
        auth = connection_auth(self.name, spec)  # OAuth: stored tokens, refreshed; None without `oauth`
        if spec.transport == "sse":
            return sse_client(
                spec.url, headers=headers, timeout=_HTTP_CONNECT_TIMEOUT, sse_read_timeout=read_timeout, auth=auth
            )

        async def note_refusal(response: httpx2.Response) -> None:
            # The SDK turns a non-2xx answer into "Server returned an error response"; keep what the user needs.
            if response.status_code in (401, 403):
                self._http_refusal = (response.status_code, str(response.request.url))

        http_client = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=headers, timeout=httpx2.Timeout(_HTTP_CONNECT_TIMEOUT, read=read_timeout), auth=auth,
                event_hooks={"response": [note_refusal]},
            )
        )
        return streamable_http_client(spec.url, http_client=http_client)

    async def _fork(self, env: Mapping[str, str], stderr_file: TextIO) -> forkserver.ForkedProcess | None:
        """The server forked by the fork server, or None: not eligible, switched off, or the fork server failed
        (the caller starts it the ordinary way, and the user sees no difference)."""
        if self.fork_server is False or not forkserver.enabled():
            return None
        from mcp.client.stdio import get_default_environment

        assert self.spec.command is not None
        # What the SDK's stdio client would give the child: its safe default under the entry's environment.
        plan = forkserver.fork_plan(self.spec.command, self.spec.args, self.spec.cwd,
                                    {**get_default_environment(), **env})
        if plan is None:
            return None
        stderr_file.flush()
        # Half the start-up time at most for the fork server (it may be starting): the rest is for falling back.
        wait = max(0.0, self._deadline - anyio.current_time()) / 2
        return await forkserver.spawn(plan, stderr_file.fileno(), wait)

    def _on_garbage(self, exc: Exception) -> SessionMessage | None:
        """A stdout line that is not JSON-RPC: salvage a message glued to it, else fail the calls in flight.

        MCP servers must write only JSON-RPC to stdout; a stray print() is common. The hub gets one notice.
        The line may have been a call's answer: calls in flight get GARBAGE_GRACE_S more for their answer,
        then fail, instead of waiting out their tool_timeout.
        """
        line = raw_line(exc)
        salvaged = salvage(line)
        shown = line.strip()
        shown = shown if len(shown) <= _SHOWN_GARBAGE else f"{shown[:_SHOWN_GARBAGE]}... ({len(shown)} characters)"
        if salvaged is not None:
            notice = f"MCP server {self.name!r} wrote text before a JSON-RPC message on stdout: {shown}"
        else:
            notice = f"MCP server {self.name!r} wrote a line that is not JSON-RPC on stdout: {shown}"
        self.on_notice(self.name, notice)
        if salvaged is None and self._calls:
            self._garbage = shown
            deadline = anyio.current_time() + GARBAGE_GRACE_S
            for scope in self._calls:
                scope.deadline = min(scope.deadline, deadline)
        return salvaged

    # -- tools ---------------------------------------------------------------------------------------------

    async def relist(self) -> None:
        """Re-list the tools if the server announced a change; one that is restarting keeps its flag until back."""
        if not self.tools_stale:
            return
        client = self.client
        if self.lost is not None or self.error is not None:
            self.tools_stale = False
            return
        if client is None or self.trouble is not None:
            return
        self.tools_stale = False  # a change announced while listing sets it again
        try:
            with anyio.fail_after(self.spec.startup_timeout):
                self.tools = await _list_all_tools(client)
                self.catalog = await probe(client)
        except Exception:
            pass  # a dead connection shows up in the next call; keep the tools we have

    async def call(self, name: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call `tool` (offered to the model as `name`); every problem becomes an error outcome. What became of the
        server's requests during the call (a declined question, a refused sampling request) ends the result."""
        origin = CallOrigin(self.name, name, self.requests.caller() if self.requests is not None else None)
        token = CURRENT_CALL.set(origin)
        self._in_flight.append(origin)
        try:
            outcome = await self._call_tool(name, tool, arguments, origin)
        finally:
            self._in_flight.remove(origin)
            CURRENT_CALL.reset(token)
        if origin.notes:
            outcome.text = "\n\n".join([outcome.text, *origin.notes])
        return outcome

    async def _call_tool(self, name: str, tool: str, arguments: dict[str, Any], origin: CallOrigin) -> ToolOutcome:
        client = self.client
        if client is None or self.lost is not None or self.trouble is not None:
            return error_outcome(f"Tool {name} is unavailable: {self._unavailable()}")
        generation = self.generation
        screen = anyio.CancelScope()
        self._calls.add(screen)
        with anyio.move_on_after(self.tool_timeout), screen:
            try:
                result = await client.call_tool(tool, arguments, progress_callback=self._progress_for(origin))
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED:
                    return error_outcome(await self._server_gone(name, generation))
                if exc.code == REQUEST_TIMEOUT:
                    return error_outcome(f"Tool {name} timed out ({exc.message}).")
                refusal = _refusal_text(self._http_refusal, self.spec)
                self._http_refusal = None
                if refusal is not None:
                    return error_outcome(f"Tool {name} failed: {refusal}")
                return error_outcome(f"Tool {name} failed: MCP error {exc.code}: {exc.message}")
            except Exception as exc:
                if self.spec.transport != "stdio" and _is_transport_error(exc):
                    return error_outcome(await self._server_gone(name, generation))
                # E.g. RuntimeError from the SDK's output-schema check.
                return error_outcome(f"Tool {name} failed: {describe_error(exc)}")
            finally:
                self._calls.discard(screen)
            return outcome_from_result(result)
        if screen.cancelled_caught:
            return error_outcome(
                f"Tool {name} failed: its server wrote a line that is not JSON-RPC on stdout ({self._garbage!r}) "
                f"and no answer followed within {GARBAGE_GRACE_S:g} s; the answer was probably lost (MCP servers "
                "must write only JSON-RPC to stdout). Call the tool again, or use another tool."
            )
        # The SDK sends notifications/cancelled when the scope above is cancelled, so the server stops too.
        return error_outcome(
            f"Tool {name} timed out after {self.tool_timeout:g} s and was cancelled. "
            "Try a smaller request, or a different approach."
        )

    def _progress_for(self, origin: CallOrigin) -> Any:
        """A progress callback for one call (the SDK then sends a progress token with it); None without `requests`."""
        requests = self.requests
        if requests is None:
            return None

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            requests.progress(origin, progress, total, message)

        return on_progress

    async def request(self, name: str, work: Callable[[Client], Awaitable[T]]) -> T:
        """A request other than a tool call (resources, prompts; `name`: the tool that asks) under the rules of
        `call`: within tool_timeout, problems raised as ResourceError in the words a tool result would use."""
        client = self.client
        if client is None or self.lost is not None or self.trouble is not None:
            raise ResourceError(f"Tool {name} is unavailable: {self._unavailable()}")
        generation = self.generation
        with anyio.move_on_after(self.tool_timeout):
            try:
                return await work(client)
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED:
                    raise ResourceError(await self._server_gone(name, generation)) from None
                raise ResourceError(f"Tool {name} failed: MCP error {exc.code}: {exc.message}") from None
            except ResourceError:
                raise
            except Exception as exc:
                if self.spec.transport != "stdio" and _is_transport_error(exc):
                    raise ResourceError(await self._server_gone(name, generation)) from None
                raise ResourceError(f"Tool {name} failed: {describe_error(exc)}") from None
        raise ResourceError(f"Tool {name} timed out after {self.tool_timeout:g} s and was cancelled.")

    async def _server_gone(self, name: str, generation: int) -> str:
        if self.generation == generation and self.trouble is None and self.lost is None:
            # The runner may be about to record the transport's own error (HTTP), which says more.
            with anyio.move_on_after(_GONE_GRACE_S):
                await self._wake.wait()
            if self.generation == generation:
                self._break(self._gone_message())
        if self.generation != generation and self.trouble is None and self.lost is None:
            return (f"Tool {name} failed: {self.last_trouble or self._gone_message()}\n"
                    "The server has been restarted since; call the tool again if you still need it.")
        return f"Tool {name} failed: {self._unavailable()}"

    # -- messages --------------------------------------------------------------------------------------

    def _stderr_note(self) -> str:
        tail = _stderr_tail(self.stderr_path) if self.stderr_path else ""
        if not tail:
            return ""
        return "\nLast lines of its stderr:\n" + "\n".join(f"  {line}" for line in tail.splitlines())

    def _failure_message(self, what: str, *, starting: bool) -> str:
        kind = "command" if self.spec.transport == "stdio" else self.spec.transport
        head = f"MCP server {self.name!r} ({kind}: {self.spec.target})"
        verb = ("failed to restart" if self.restarts else "failed to start") if starting else "stopped working"
        return f"{head} {verb}: {what}{self._stderr_note()}"

    def _exit_note(self) -> str:
        """How the server process ended, where that is known (a forked server's exit code), else ""."""
        process = self.process
        if process is None or process.returncode is None:
            return ""
        code = process.returncode
        if code >= 0:
            return f" (exit code {code})"
        try:
            return f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f" (killed by signal {-code})"

    def _gone_message(self) -> str:
        if self.spec.transport == "stdio":
            note = self._exit_note()
            what = f"the server process exited{note}" if note else "the server process exited (or closed its stdout)"
        else:
            what = "the connection to the server closed"
        return self._failure_message(what, starting=False)

    def _startup_timeout_message(self) -> str:
        what = (
            f"no answer within its startup_timeout of {self.spec.startup_timeout:g} s (connect and list tools); "
            "is it an MCP server, and does it start that fast?"
        )
        return self._failure_message(what, starting=True)

    def _describe_loss(self, exc: BaseException) -> str:
        if self.spec.transport == "stdio":
            return f"the server process exited or its connection failed ({describe_error(exc)}){self._exit_note()}"
        return f"the connection failed: {describe_error(exc)}"

    def _restart_note(self) -> str:
        if self.lost is not None or self._stop.is_set():
            return ""
        if self.restarts < self.spec.max_restarts:
            what = "restarted" if self.spec.transport == "stdio" else "reconnected"
            return (f"\nThe server is being {what} (attempt {self.restarts + 1} of {self.spec.max_restarts}); "
                    "call the tool again in a moment if you still need it.")
        return "\nIt will not be restarted: its restart limit is used up."

    def _unavailable(self) -> str:
        if self.lost is not None:
            return self.lost
        if self.trouble is not None:
            return self.trouble + self._restart_note()
        return "its server is not connected"


# -- module helpers ------------------------------------------------------------------------------------


_LEGACY_SERVERS: set[tuple[str, ...]] = set()
"""Stdio programs (command and arguments) seen to die on the discovery probe in this process."""


def _legacy_key(spec: ServerSpec) -> tuple[str, ...]:
    return (spec.command or spec.url or "", *spec.args)


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


async def _subscribe(client: Client, stack: AsyncExitStack) -> Subscription | None:
    """On 2026-07-28 connections, `subscriptions/listen` for tool-list changes (None when not offered)."""
    if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return None  # handshake-era servers send notifications/tools/list_changed instead
    try:
        return await stack.enter_async_context(
            client.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True))
    except Exception:
        # Not offered (method not found), or refused: the server announces no changes. A broken
        # connection shows up in the tool listing that follows.
        return None


async def _list_all_tools(client: Client) -> list[types.Tool]:
    return await all_pages(lambda cursor: client.list_tools(cursor=cursor), lambda page: page.tools,
                           max_pages=_MAX_TOOL_PAGES)


def _tool_key(tools: list[types.Tool]) -> list[dict[str, Any]]:
    return [tool.model_dump(mode="json") for tool in tools]


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


def describe_error(exc: BaseException) -> str:
    """One line for an exception (each leaf of a group, cancellations left out), as tool results show it."""
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


def _login_required(exc: BaseException) -> str | None:
    """The `agent auth login` message of an OAuth server that needs a login, which a run never does."""
    return next((str(leaf) for leaf in _leaf_exceptions(exc) if isinstance(leaf, LoginRequired)), None)


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
    return describe_error(exc)


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
