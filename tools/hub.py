"""`ToolHub`: runs one `ServerSupervisor` per MCP server beside any `ToolSource`s, offers all their tools under
qualified names in one prefix-stable list, and routes each call. Tool-level problems come back as error outcomes;
restarts, reconnects and tool-list changes of a server are its supervisor's business. A server's resources and
prompts are offered as read-only tools of its own (`agent.tools.resources`) and readable through the hub.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from anyio.abc import TaskGroup

from agent.errors import ConfigError, ToolServerError
from agent.tools import resources
from agent.tools.config import ServerSpec
from agent.tools.local import LocalTool, LocalTools
from agent.tools.resources import PromptInfo, ResourceError, ResourceInfo
from agent.tools.results import ToolOutcome, error_outcome
from agent.tools.schema import to_openai_function, unique_names
from agent.tools.server_requests import ServerRequests
from agent.tools.source import SourceTool, ToolSource
from agent.tools.supervisor import ServerSupervisor, describe_error

# Bounds how long closing may take: the SDK's stdio shutdown needs up to ~6 s for a server that ignores
# stdin EOF and SIGTERM; past this the runners are cancelled (the SDK still kills the process tree).
CLOSE_TIMEOUT = 10.0
_SHOWN_ARGUMENTS = 300
logger = logging.getLogger("agent.tools")


@dataclass(frozen=True)
class ToolInfo:
    """One tool as the model sees it, and where it comes from."""

    name: str
    """Qualified, model-facing name (`<server>__<tool>`, sanitised)."""
    server: str | None
    """Server name, or the tool source's prefix; None for a local tool or a source without prefix."""
    tool: str
    """The tool's own name on its server (or in its source)."""
    description: str
    input_schema: dict[str, Any]
    read_only: bool | None
    destructive: bool | None
    openai: dict[str, Any]
    """The OpenAI function schema sent to the model."""
    open_world: bool | None = None
    """Whether the tool reaches outside the run (MCP's openWorldHint); None: not said."""


@dataclass(frozen=True)
class _Route:
    info: ToolInfo
    server: ServerSupervisor | None
    source: ToolSource | None
    synthetic: bool = False
    """One of the tools for a server's resources and prompts (agent.tools.resources), answered by the hub."""


class ToolHub:
    """Owns the connections to a set of MCP servers, the tool sources beside them, and the tool list offered.

    Enter and exit it from the same task (`async with ToolHub(...) as hub:`); sources are entered and exited
    with it, in that task. A server that exits or drops its connection is restarted in the background
    (`ServerSpec.max_restarts`, with backoff); the call that saw it fail reports the failure. Tool-list changes
    announced by servers or sources are applied by `refresh()`, which the agent loop calls between steps when
    `tools_changed` is set, so the tool list (part of the prompt prefix) never changes in the middle of a step.

    `fork_server`: stdio servers of ours (`python -m agent.servers.<name>`) start as forks of a preloaded process
    (`agent.tools.forkserver`) where that is exactly the ordinary start; None (default) unless the environment
    says `AGENT_FORKSERVER=0`, False never.

    `server_requests` answers what servers ask during calls (elicitation, sampling) and takes their progress and
    log messages (`agent.tools.server_requests`); without it no such capability is declared.
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
        sources: Sequence[ToolSource] = (),
        fork_server: bool | None = None,
        server_requests: ServerRequests | None = None,
    ) -> None:
        if tool_timeout <= 0:
            raise ConfigError(f"tool_timeout must be positive, got {tool_timeout}")
        if restart_backoff < 0:
            raise ConfigError(f"restart_backoff must not be negative, got {restart_backoff}")
        _check_prefixes(sources, servers)
        self._supervisors = {
            name: ServerSupervisor(name, spec, tool_timeout=spec.tool_timeout or tool_timeout, roots=roots,
                                   restart_backoff=restart_backoff, on_notice=self._notice, fork_server=fork_server,
                                   requests=server_requests)
            for name, spec in servers.items()
        }
        # Local tools are the last source: their names are reserved, and they come last in the list.
        self._sources: list[ToolSource] = [*sources, LocalTools(local_tools)]
        self._source_tools: list[list[SourceTool]] = [[] for _ in self._sources]
        self._sources_stop = anyio.Event()
        self._sources_done: list[anyio.Event] = []
        self._source_scopes: list[anyio.CancelScope] = []
        """Each source lives in a task of its own in the hub's task group, entered and exited there: a source may
        hold task groups of its own (an Agent offered as a tool), which must exit where they were entered."""
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
        JSON-RPC) or a source's new tool list that could not be applied; None logs a warning on the
        `agent.tools` logger instead. `notices()` keeps them all."""
        self.failures: dict[str, str] = {}
        """Optional servers that failed to start, with the reason."""
        self.servers: list[str] = []
        """Connected server names, in config order."""

    @property
    def tools(self) -> list[ToolInfo]:
        """Servers in config order, each server's tools in its order, then the sources' tools, then local tools."""
        return self._tools

    @property
    def openai_tools(self) -> list[dict[str, Any]]:
        """The OpenAI `tools` list; the same object on every access until `refresh()` changes it."""
        return self._openai_tools

    @property
    def tools_changed(self) -> bool:
        """True when a server or source announced a tool-list change (or a server came back with other tools)
        not yet applied."""
        return (any(sup.tools_stale for sup in self._supervisors.values())
                or any(source.tools_changed for source in self._sources))

    @property
    def tools_version(self) -> int:
        """Starts at 0; goes up by one each time `refresh()` changes the offered tool list."""
        return self._tools_version

    @property
    def restarts(self) -> dict[str, int]:
        """Restart (stdio) or reconnect (HTTP, SSE) attempts so far, per server."""
        return {name: sup.restarts for name, sup in self._supervisors.items()}

    @property
    def protocol_versions(self) -> dict[str, str]:
        """The MCP protocol version negotiated with each connected server (e.g. '2026-07-28', '2025-11-25')."""
        return {name: sup.protocol_version for name, sup in self._supervisors.items()
                if sup.protocol_version and sup.error is None}

    def notices(self) -> list[str]:
        """Every protocol problem seen so far, oldest first."""
        return [text for _, text in self._notices]

    def notices_since(self, start: int) -> list[tuple[str, str]]:
        """(server, text) of the protocol problems after the first `start`."""
        return self._notices[start:]

    def info(self, name: str) -> ToolInfo | None:
        route = self._routes.get(name)
        return route.info if route else None

    def _notice(self, origin: str, text: str) -> None:
        self._notices.append((origin, text))
        if self.on_notice is not None:
            self.on_notice(origin, text)
        else:
            logger.warning("%s", text)

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
            for sup in self._supervisors.values():
                task_group.start_soon(sup.run, self._stderr_dir, name=f"mcp-server:{sup.name}")
            # Sources are entered while the servers start.
            failed: list[BaseException] = []
            for source in self._sources:
                entered, done = anyio.Event(), anyio.Event()
                self._sources_done.append(done)
                task_group.start_soon(self._hold_source, source, entered, done, failed,
                                      name=f"tool-source:{type(source).__name__}")
                await entered.wait()
                if failed:
                    raise failed[0]
            source_tools = [list(source.list_tools()) for source in self._sources]
            self._check_source_tools(source_tools)
            self._source_tools = source_tools
            # Each supervisor bounds its own startup, so this wait is bounded too.
            for sup in self._supervisors.values():
                await sup.ready.wait()
            required = [s.error for s in self._supervisors.values() if s.error is not None and s.spec.required]
            if required:
                raise ToolServerError("\n\n".join(required))
            self.failures = {s.name: s.error for s in self._supervisors.values() if s.error is not None}
            self.servers = [s.name for s in self._supervisors.values() if s.error is None]
            self._install_tools(self._build_tools())
            for sup in self._supervisors.values():
                sup.tools_stale = False  # the list just built is current
        except BaseException:
            await self._close(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._close(*exc_info)

    async def _close(self, *exc_info: Any) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        for sup in self._supervisors.values():
            sup.stop()
        self._sources_stop.set()
        try:
            # Shielded so Ctrl-C or a cancelled run still lets every source and server shut down properly.
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                for done in self._sources_done:
                    await done.wait()
            for scope in self._source_scopes:
                scope.cancel()  # no-op for sources that closed; the rest are past CLOSE_TIMEOUT
        finally:
            try:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                    for sup in self._supervisors.values():
                        await sup.done.wait()
                if not all(e.is_set() for e in [*(s.done for s in self._supervisors.values()), *self._sources_done]):
                    task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
            finally:
                self._remove_stderr_dir()

    async def _hold_source(self, source: ToolSource, entered: anyio.Event, done: anyio.Event,
                           failed: list[BaseException]) -> None:
        """Enter `source`, keep it until the hub closes, exit it; a failure to enter is handed to __aenter__.

        One shielded scope around all of it: the hub, not an outer cancellation, says when the source goes (so
        it closes properly on Ctrl-C too), and the source's own scopes are entered and exited inside that one
        scope. `_close` cancels it when closing takes longer than CLOSE_TIMEOUT.
        """
        with anyio.CancelScope(shield=True) as scope:
            self._source_scopes.append(scope)
            try:
                try:
                    await source.__aenter__()
                except Exception as exc:
                    failed.append(exc)
                    return
                finally:
                    entered.set()
                await self._sources_stop.wait()
                try:
                    await source.__aexit__(None, None, None)
                except Exception as exc:  # a source that fails to close must not take the hub down
                    logger.warning("tool source %s failed to close: %s", type(source).__name__, exc)
            finally:
                done.set()

    def _open_stderr_dir(self) -> None:
        if not any(s.spec.transport == "stdio" for s in self._supervisors.values()):
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

    # -- tool list -----------------------------------------------------------------------------------

    def _build_tools(self) -> dict[str, _Route]:
        # Each server's own tools, then the tools for its resources and prompts; a tool of its own by the same
        # name wins over a synthetic one (even when `deny` hides it). allow/deny apply to both.
        served = [(sup, tool, synthetic) for sup in self._supervisors.values() if sup.error is None
                  for tool, synthetic in _server_tools(sup) if _offered(sup.spec, tool.name)]
        listed = list(zip(self._sources, self._source_tools, strict=True))
        prefixed = [(prefix, tool.name) for source, tools in listed if (prefix := source.prefix) is not None
                    for tool in tools]
        bare = {tool.name for source, tools in listed if source.prefix is None for tool in tools}
        names = iter(unique_names([(sup.name, tool.name) for sup, tool, _ in served] + prefixed, reserved=bare))
        routes: dict[str, _Route] = {}
        for sup, mcp_tool, synthetic in served:
            name = next(names)
            routes[name] = _Route(_server_tool_info(name, sup.name, mcp_tool), sup, None, synthetic)
        for source, tools in listed:
            for tool in tools:
                name = tool.name if source.prefix is None else next(names)
                info = ToolInfo(
                    name=name, server=source.prefix, tool=tool.name, description=tool.description,
                    input_schema=tool.input_schema, read_only=tool.read_only, destructive=tool.destructive,
                    openai=to_openai_function(name, tool.description, tool.input_schema), open_world=tool.open_world,
                )
                routes[name] = _Route(info, None, source)
        return routes

    def _install_tools(self, routes: dict[str, _Route]) -> None:
        self._routes = routes
        self._tools = [route.info for route in routes.values()]
        self._openai_tools = [info.openai for info in self._tools]

    def _check_source_tools(self, lists: Sequence[Sequence[SourceTool]]) -> None:
        """Names must be unique within each source, and across all sources offered without a prefix."""
        owners: dict[str, ToolSource] = {}
        for source, tools in zip(self._sources, lists, strict=True):
            repeated = sorted(name for name, n in Counter(tool.name for tool in tools).items() if n > 1)
            if repeated:
                raise ConfigError(f"{_label(source)} lists the tool names {repeated} more than once; "
                                  "the tools of a source need unique names")
            if source.prefix is not None:
                continue
            for tool in tools:
                other = owners.setdefault(tool.name, source)
                if other is not source:
                    raise ConfigError(
                        f"two tools offered without a prefix are both named {tool.name!r}: one from {_label(other)}, "
                        f"one from {_label(source)}. Give one of the sources a `prefix`, or rename one of the tools."
                    )

    def _relist_source(self, index: int) -> None:
        """Take a source's new tool list; one that fails or clashes is not applied (its earlier tools stay)."""
        source = self._sources[index]
        try:
            tools = list(source.list_tools())
            self._check_source_tools([*self._source_tools[:index], tools, *self._source_tools[index + 1:]])
        except Exception as exc:
            self._notice(source.prefix or type(source).__name__,
                         f"The new tool list of {_label(source)} was not applied ({describe_error(exc)}); "
                         "its earlier tools stay offered.")
            return
        self._source_tools[index] = tools

    async def refresh(self) -> bool:
        """Re-list the tools of servers and sources that announced a change; True when the offered list changed.

        Call it between steps: on True, `openai_tools` is a new list (re-serialise it); on False the
        same list object stays, so the prompt prefix stays byte-stable. Servers that are restarting keep
        their flag until they are back.
        """
        for sup in self._supervisors.values():
            await sup.relist()
        for index, source in enumerate(self._sources):
            if source.tools_changed:
                self._relist_source(index)
        routes = self._build_tools()
        if [r.info.openai for r in routes.values()] == self._openai_tools:
            if [r.info for r in routes.values()] != self._tools:
                # Only hints changed: keep the model's list object, so the prompt prefix stays byte-stable.
                self._routes, self._tools = routes, [r.info for r in routes.values()]
            return False
        self._install_tools(routes)
        self._tools_version += 1
        return True

    # -- calls ---------------------------------------------------------------------------------------

    async def call(self, name: str, arguments: dict[str, Any] | str | None) -> ToolOutcome:
        """Call a tool by its qualified name; every tool-level problem becomes an error outcome.

        Resources read through the hub that their server has since reported updated are named in a note at the
        end of the result (once per update).
        """
        outcome = await self._call(name, arguments)
        notes = self._update_notes()
        if notes:
            outcome.text = f"{outcome.text}\n\n{notes}"
        return outcome

    async def _call(self, name: str, arguments: dict[str, Any] | str | None) -> ToolOutcome:
        route = self._routes.get(name)
        if route is None:
            return error_outcome(self._unknown_tool_message(name))
        args = _parse_arguments(name, arguments)
        if isinstance(args, ToolOutcome):
            return args
        if route.server is not None and route.synthetic:
            return await self._answer(name, route.server, route.info.tool, args)
        if route.server is not None:
            return await route.server.call(name, route.info.tool, args)
        assert route.source is not None
        try:
            return await route.source.call(route.info.tool, args)
        except Exception as exc:
            return error_outcome(f"Tool {name} failed: {describe_error(exc)}")

    async def _answer(self, name: str, sup: ServerSupervisor, tool: str, args: dict[str, Any]) -> ToolOutcome:
        try:
            outcome = await sup.request(name, lambda client: resources.answer(client, sup.name, tool, args))
        except ResourceError as exc:
            text = str(exc)
            return error_outcome(text if text.startswith("Tool ") else f"Tool {name}: {text}")
        if tool == resources.READ_RESOURCE and sup.catalog.subscribe:
            await sup.resource_watch.watch(str(args["uri"]).strip())
        return outcome

    def _update_notes(self) -> str:
        lines = []
        for sup in self._supervisors.values():
            for uri in sup.resource_watch.take():
                reader = next((n for n, r in self._routes.items() if r.server is sup and r.synthetic
                               and r.info.tool == resources.READ_RESOURCE), None)
                again = f"read it again with {reader}" if reader else "read it again"
                lines.append(f"[resource updated: server {sup.name!r} reports that {uri} changed since it was read; "
                             f"{again} if you need the current content]")
        return "\n".join(lines)

    # -- resources and prompts -------------------------------------------------------------------------------

    def _server(self, server: str) -> ServerSupervisor:
        sup = self._supervisors.get(server)
        if sup is None:
            known = ", ".join(self._supervisors) or "none"
            raise ResourceError(f"no MCP server named {server!r} (servers: {known})")
        if sup.error is not None:
            raise ResourceError(f"MCP server {server!r} is not connected: {sup.error}")
        return sup

    def _with(self, server: str | None, what: str) -> list[ServerSupervisor]:
        if server is not None:
            return [self._server(server)]
        return [sup for sup in self._supervisors.values() if sup.error is None and getattr(sup.catalog, what)]

    async def list_resources(self, server: str | None = None) -> list[ResourceInfo]:
        """Resources, then resource templates (`template=True`), of one server or of every server that has some,
        all pages. Raises ResourceError for an unknown or failed server, or the server's error."""
        found: list[ResourceInfo] = []
        for sup in self._with(server, "resources"):
            if sup.catalog.resources:
                found += await sup.request(f"{sup.name}__{resources.LIST_RESOURCES}",
                                           functools.partial(resources.list_all_resources, server=sup.name))
        return found

    async def read_resource(self, server: str, uri: str, *, watch: bool = False) -> types.ReadResourceResult:
        """Read a resource (a URI from a template included) as the server gives it; `resources.resource_text`
        makes text of it. `watch`: report the server's updates of it in later tool results (as a read by the
        model does). Raises ResourceError (unknown server, no such resource: the server's error)."""
        sup = self._server(server)
        result = await sup.request(f"{server}__{resources.READ_RESOURCE}", lambda client: client.read_resource(uri))
        if watch and sup.catalog.subscribe:
            await sup.resource_watch.watch(uri)
        return result

    async def list_prompts(self, server: str | None = None) -> list[PromptInfo]:
        """Prompts of one server or of every server that has some; raises ResourceError."""
        found: list[PromptInfo] = []
        for sup in self._with(server, "prompts"):
            if sup.catalog.prompts:
                found += await sup.request(f"{sup.name}__{resources.LIST_PROMPTS}",
                                           functools.partial(resources.list_all_prompts, server=sup.name))
        return found

    async def get_prompt(self, server: str, name: str,
                         arguments: Mapping[str, str] | None = None) -> types.GetPromptResult:
        """A prompt filled in with `arguments` (`resources.prompt_text` makes text of it); raises ResourceError."""
        sup = self._server(server)
        values = {k: str(v) for k, v in (arguments or {}).items()}
        return await sup.request(f"{server}__{resources.GET_PROMPT}", lambda client: client.get_prompt(name, values))

    def _unknown_tool_message(self, name: str) -> str:
        names = list(self._routes)
        if not names:
            return f"Unknown tool {name!r}: no tools are available."
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        shown = close or names[:8]
        label = "Did you mean" if close else "Available tools include"
        return f"Unknown tool {name!r}. {label}: {', '.join(shown)} ({len(names)} tools in all)."


# -- module helpers ------------------------------------------------------------------------------------


def _check_prefixes(sources: Sequence[ToolSource], servers: Mapping[str, ServerSpec]) -> None:
    """Each source is a ToolSource; a prefix is a non-empty string used by no server and no other source."""
    seen: set[str] = set()
    for index, source in enumerate(sources):
        if not isinstance(source, ToolSource):
            raise ConfigError(f"sources[{index}] ({type(source).__name__}) is not a ToolSource: it needs `prefix`, "
                              "`list_tools()`, `tools_changed`, `call()` and `async with` support")
        prefix = source.prefix
        if prefix is None:
            continue
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"{_label(source)}: prefix must be a non-empty string or None, got {prefix!r}")
        if prefix in servers:
            raise ConfigError(f"{_label(source)}: the prefix {prefix!r} is also the name of an MCP server; "
                              "give the source another prefix")
        if prefix in seen:
            raise ConfigError(f"two tool sources have the prefix {prefix!r}; give each source its own prefix")
        seen.add(prefix)


def _label(source: ToolSource) -> str:
    if isinstance(source, LocalTools):
        return "local_tools"
    prefix = f" (prefix {source.prefix!r})" if source.prefix is not None else " (no prefix)"
    return f"tool source {type(source).__name__}{prefix}"


def _server_tool_info(name: str, server: str, tool: types.Tool) -> ToolInfo:
    hints = tool.annotations
    description = tool.description or tool.title or ""
    return ToolInfo(
        name=name,
        server=server,
        tool=tool.name,
        description=description,
        input_schema=tool.input_schema,
        read_only=hints.read_only_hint if hints else None,
        destructive=hints.destructive_hint if hints else None,
        openai=to_openai_function(name, description, tool.input_schema),
        open_world=hints.open_world_hint if hints else None,
    )


def _server_tools(sup: ServerSupervisor) -> list[tuple[types.Tool, bool]]:
    """(tool, synthetic) for a server: its own tools, then those for its resources and prompts not named like one."""
    own = {tool.name for tool in sup.tools}
    offered = resources.synthetic_tools(sup.catalog) if sup.spec.resource_tools else []
    extra = [tool for tool in offered if tool.name not in own]
    return [(tool, False) for tool in sup.tools] + [(tool, True) for tool in extra]


def _offered(spec: ServerSpec, tool: str) -> bool:
    if spec.allow is not None and not any(fnmatch.fnmatchcase(tool, pattern) for pattern in spec.allow):
        return False
    return not any(fnmatch.fnmatchcase(tool, pattern) for pattern in spec.deny)


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
