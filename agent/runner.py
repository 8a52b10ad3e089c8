"""The SDK entry point: `Agent` wires a model, MCP servers, a think policy and limits into runs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agent.tools.config import ServerSpec, parse_servers
from agent.tools.hub import ToolHub
from agent.tools.local import LocalTool, claim_done_tool, context_status_tool, output_tools

from .context import ContextConfig, ContextKeeper, Conversation, OutputStore, snapshot
from .errors import AgentError
from .events import ErrorEvent, Event, RunFinished, RunStarted, ServerNotice
from .limits import Limits
from .loop import AgentLoop, Stop
from .models.base import ModelClient
from .models.client import ChatModel
from .models.config import ModelConfig, parse_model
from .result import RunResult
from .task import DEFAULT_MODEL, TaskSpec
from .think import ThinkMode, ThinkPolicy, policy_label, think_policy
from .trace import TraceWriter

DEFAULT_SYSTEM_PROMPT = (
    "You are an autonomous agent. Work step by step: use the tools to inspect and change things rather "
    "than guessing, check results before relying on them, and keep going until the task is done. "
    "When you are finished, reply with the final answer and no tool calls."
)

EventSink = Callable[[Event], None]


class Agent:
    """An agent: a model endpoint plus MCP servers, reusable across runs.

    ```python
    async with Agent("deepseek:deepseek-v4-pro", servers={"fs": {"command": "npx", "args": [...]}}) as agent:
        result = await agent.run("List the files")
    ```
    Used without `async with`, each `run` connects the servers and closes them again.
    """

    def __init__(
        self,
        model: str | ModelConfig | Mapping[str, Any] | ModelClient = DEFAULT_MODEL,
        servers: Mapping[str, ServerSpec | Mapping[str, Any]] | None = None,
        *,
        think: ThinkPolicy | ThinkMode | str | Mapping[str, Any] | Callable[..., Any] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        system: str | None = None,
        claim_done: bool = False,
        local_tools: Sequence[LocalTool] = (),
        trace_dir: str | Path | None = "runs",
        name: str | None = None,
        http_client: Any | None = None,
        context: ContextConfig | Mapping[str, Any] | None = None,
        workspace: str | Path | None = None,
    ):
        self._model_instance: ModelClient | None = None
        self.model_config: ModelConfig | None = None
        """The parsed model string or mapping; None when a `ModelClient` instance was given."""
        if isinstance(model, ModelClient):
            self._model_instance = model
        else:
            self.model_config = parse_model(dict(model) if isinstance(model, Mapping) else model)
        self.servers = {n: _with_interpreter(s) for n, s in parse_servers(servers or {}, where="servers").items()}
        self.policy = think_policy(think)
        self.limits = limits if isinstance(limits, Limits) else Limits.model_validate(dict(limits or {}))
        self.system = DEFAULT_SYSTEM_PROMPT if system is None else system
        self.context = context if isinstance(context, ContextConfig) else ContextConfig.model_validate(dict(context or {}))
        self.workspace = Path(workspace) if workspace is not None else None
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        self._outputs_dir: tempfile.TemporaryDirectory[str] | None = None
        self._keeper: ContextKeeper | None = None
        self._notices_seen = 0
        """Server notices already written to an earlier run's trace."""
        self._notice_sink: Callable[[str, str], None] | None = None
        """Where the running run takes server notices; between runs they wait in the hub."""
        self._conversation: Conversation | None = None
        self.local_tools = [
            *local_tools,
            *([claim_done_tool()] if claim_done else []),
            *output_tools(lambda output_id: self._keeper.outputs.path(output_id) if self._keeper else None),
            context_status_tool(self._context_status),
        ]
        self.name = name
        self._http_client = http_client
        self._stack: AsyncExitStack | None = None
        self._model: ModelClient | None = None
        self._hub: ToolHub | None = None

    @classmethod
    def from_task(cls, task: TaskSpec, **overrides: Any) -> Agent:
        options: dict[str, Any] = dict(
            model=task.model, servers=task.all_servers(), think=task.think, limits=task.limits,
            system=task.system, claim_done=task.claim_done, name=task.name, context=task.context,
            workspace=task.workdir,
        )
        options.update(overrides)
        return cls(**options)

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._model_instance is not None:
                client: ModelClient = self._model_instance
            else:
                assert self.model_config is not None
                client = ChatModel(self.model_config, http_client=self._http_client)
            self._model = model = await stack.enter_async_context(client)
            await model.resolve_model()
            self._hub = await stack.enter_async_context(
                ToolHub(self.servers, tool_timeout=self.limits.tool_timeout_s, local_tools=self.local_tools,
                        on_notice=self._on_notice)
            )
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack, self._model, self._hub = self._stack, None, None, None
        if stack is not None:
            # No shield here: the hub's task group must exit in the scope it was entered in; the hub
            # shields its own cleanup.
            await stack.aclose()
        if self._outputs_dir is not None:
            self._outputs_dir.cleanup()
            self._outputs_dir = None

    def _on_notice(self, server: str, message: str) -> None:
        if self._notice_sink is not None:
            self._notice_sink(server, message)

    def _outputs_folder(self, run_id: str) -> Path:
        """Where cut tool outputs are saved: the workspace when there is one, else beside the traces."""
        if self.workspace is not None:
            return self.workspace / ".agent" / "outputs"
        if self.trace_dir is not None:
            return self.trace_dir / f"outputs-{run_id}"
        if self._outputs_dir is None:
            self._outputs_dir = tempfile.TemporaryDirectory(prefix="agent-outputs-")
        return Path(self._outputs_dir.name)

    def _context_status(self) -> dict[str, Any]:
        if self._keeper is None or self._conversation is None:
            return {"error": "no run in progress"}
        return self._keeper.status(self._conversation)

    @property
    def tools(self) -> list[str]:
        """Names of the tools offered to the model (inside `async with`)."""
        return [t.name for t in self._hub.tools] if self._hub else []

    # -- runs ----------------------------------------------------------------------------------

    async def run(
        self,
        prompt: str,
        *,
        trace_path: str | Path | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
        on_event: EventSink | None = None,
    ) -> RunResult:
        """Run the agent on `prompt` until it answers or a limit stops it.

        `history` continues an earlier conversation (`RunResult.messages`). Model and tool failures end
        the run with `stop_reason="error"` and the message in `error`; bad configuration raises.
        """
        if self._stack is None:
            async with self:
                return await self.run(prompt, trace_path=trace_path, history=history, on_event=on_event)
        return await self._run(prompt, trace_path, history, [on_event] if on_event else [])

    def stream(
        self, prompt: str, *, trace_path: str | Path | None = None, history: Sequence[Mapping[str, Any]] | None = None
    ) -> EventStream:
        """Run the agent and give its events as they happen (streamed text as `model_delta`).

        `async with agent.stream(prompt) as events: async for event in events: ...`; leaving the block early
        cancels the run and closes what it opened. Plain `async for` works too (see `EventStream`).
        """
        return EventStream(lambda sink: self.run(prompt, trace_path=trace_path, history=history, on_event=sink))

    async def _run(
        self, prompt: str, trace_path: str | Path | None, history: Sequence[Mapping[str, Any]] | None,
        sinks: list[EventSink],
    ) -> RunResult:
        assert self._model is not None and self._hub is not None
        if self._keeper is not None:
            raise AgentError("this Agent is already running a task; use one Agent per concurrent run")
        model, hub = self._model, self._hub
        run_id = uuid.uuid4().hex[:12]
        path = Path(trace_path) if trace_path else self._default_trace_path(run_id)
        trace = TraceWriter(path) if path else None

        def emit(event: Event) -> None:
            if trace:
                trace.write(event)
            for sink in sinks:
                sink(event)

        with_tools = bool(hub.openai_tools)
        conversation = Conversation(lambda m: model.render(m, with_tools=with_tools))
        repo_text, tracker = await anyio.to_thread.run_sync(
            lambda: snapshot(self.context, base_url=model.base_url, model=model.model))
        keeper = ContextKeeper(self.context, OutputStore(self._outputs_folder(run_id)), tracker=tracker)
        if history:
            for message in history:
                conversation.append(dict(message))
        else:
            if self.system:
                conversation.append({"role": "system", "content": self.system})
            # The snapshot goes first so runs on the same repository share the prompt prefix.
            prompt = f"{repo_text}\n\n# Task\n\n{prompt}" if repo_text else prompt
            keeper.head_messages = len(conversation) + 1
        conversation.append({"role": "user", "content": prompt})
        self._keeper, self._conversation = keeper, conversation

        started = time.perf_counter()
        emit(RunStarted(
            run_id=run_id, prompt=prompt, model=model.label, profile=model.profile.name,
            think=policy_label(self.policy), servers=hub.servers, failed_servers=dict(hub.failures),
            tools=[t.name for t in hub.tools], limits=self.limits.model_dump(), task=self.name,
        ))
        # Server notices (e.g. text that is not JSON-RPC on stdout): those from start-up, then live.
        for source, text in hub.notices_since(self._notices_seen):
            emit(ServerNotice(server=source, message=text))
        self._notice_sink = lambda source, text: emit(ServerNotice(server=source, message=text))
        loop = AgentLoop(model=model, hub=hub, conversation=conversation, policy=self.policy, limits=self.limits,
                         emit=emit, context=keeper)
        stop, error = Stop("error"), None
        try:
            stop = await loop.run()
        except AgentError as exc:
            error = str(exc)
            emit(ErrorEvent(kind=type(exc).__name__, message=error, step=loop.totals.steps))
        except BaseException:  # cancellation, Ctrl-C: the trace still ends with run_finished
            self._finish(emit, run_id, loop, Stop("cancelled"), "cancelled", started)
            if trace:
                trace.close()
            raise
        finally:
            self._keeper = self._conversation = None
            self._notice_sink = None
            self._notices_seen = len(hub.notices())
        finished = self._finish(emit, run_id, loop, stop, error, started)
        if trace:
            trace.close()
        return RunResult(
            run_id=run_id, answer=finished.answer, stop_reason=finished.stop_reason, steps=finished.steps,
            tool_calls=finished.tool_calls, usage=finished.usage, cost=finished.cost,
            duration_s=finished.duration_s, error=error, think=finished.think, trace_path=path,
            messages=conversation.messages,
        )

    @staticmethod
    def _finish(emit: EventSink, run_id: str, loop: AgentLoop, stop: Stop, error: str | None,
                started: float) -> RunFinished:
        totals = loop.totals
        event = RunFinished(
            run_id=run_id, answer=stop.answer, stop_reason=stop.reason, steps=totals.steps,
            tool_calls=totals.tool_calls, usage=totals.usage, cost=round(totals.cost, 8),
            duration_s=round(time.perf_counter() - started, 3), error=error, think=totals.think,
        )
        emit(event)
        return event

    def _default_trace_path(self, run_id: str) -> Path | None:
        if self.trace_dir is None:
            return None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.trace_dir / f"{stamp}-{self.name or 'run'}-{run_id}.jsonl"


class EventStream:
    """The events of one run as they happen; `result` is the `RunResult` once the run has finished.

    Best used as `async with agent.stream(prompt) as events: async for event in events: ...`: leaving the
    block, early or not, cancels a run still going and waits until its servers are closed (the trace ends
    with `stop_reason: cancelled`). Plain `async for` works too; after breaking out, `await events.aclose()`
    does the same, and a stream dropped unclosed is cancelled when it is garbage collected. The run's
    errors are raised where the events end.

    The run goes on in a task of its own, which owns everything the run opens: the stream can then be left
    from any task, or from none (garbage collection), without exiting a cancel scope in a foreign task.
    """

    def __init__(self, start: Callable[[EventSink], Awaitable[RunResult]]):
        self._start = start
        self._run: _StreamedRun | None = None
        self._receive: MemoryObjectReceiveStream[Event] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def result(self) -> RunResult | None:
        return self._run.result if self._run else None

    async def __aenter__(self) -> EventStream:
        self._begin()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        error = await self._close()
        if error is not None and exc_type is None:
            raise error

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        self._begin()
        assert self._receive is not None and self._run is not None
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            self._closed = True
            self._receive.close()
            await self._run.done.wait()
            error = self._run.take_error()
            if error is not None:
                raise error from None
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Cancel the run if it is still going and wait until it has closed everything (idempotent)."""
        error = await self._close()
        if error is not None:
            raise error

    def _begin(self) -> None:
        if self._run is not None:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise AgentError("Agent.stream needs the asyncio event loop (anyio's default backend)") from None
        send, self._receive = anyio.create_memory_object_stream[Event](math.inf)
        self._run = _StreamedRun()
        task = self._loop.create_task(self._run.produce(self._start, send), name="agent-stream")
        _STREAM_TASKS.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(_STREAM_TASKS.discard)

    async def _close(self) -> BaseException | None:
        """Cancel and wait for the run; its error, unless the run ended because of this cancellation."""
        self._closed = True
        run, receive = self._run, self._receive
        if run is None or receive is None:
            return None
        run.scope.cancel()
        with anyio.CancelScope(shield=True):  # the servers' own shutdown is bounded
            await run.done.wait()
        receive.close()
        return run.take_error()

    def __del__(self) -> None:
        run, receive, loop = self._run, self._receive, self._loop
        if run is None or receive is None or loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: its shutdown cancelled the run
            # Not here: a finalizer may run in the middle of anyio's own bookkeeping.
            loop.call_soon_threadsafe(_abandon, run, receive)


_STREAM_TASKS: set[asyncio.Task[None]] = set()


class _StreamedRun:
    """The task side of an `EventStream`: runs the agent, sends the events, records how it ended."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.result: RunResult | None = None
        self._error: BaseException | None = None

    async def produce(self, start: Callable[[EventSink], Awaitable[RunResult]],
                      send: MemoryObjectSendStream[Event]) -> None:
        def sink(event: Event) -> None:
            with contextlib.suppress(anyio.BrokenResourceError):  # nobody listens any more
                send.send_nowait(event)

        try:
            with self.scope, send:
                self.result = await start(sink)
        except Exception as exc:
            self._error = exc
        finally:
            self.done.set()

    def take_error(self) -> BaseException | None:
        error, self._error = self._error, None
        return error


def _abandon(run: _StreamedRun, receive: MemoryObjectReceiveStream[Event]) -> None:
    if not run.done.is_set():
        run.scope.cancel()
    receive.close()


def _with_interpreter(spec: ServerSpec) -> ServerSpec:
    """`python`/`python3` as a server command means the interpreter running the agent (venvs included)."""
    if spec.command in ("python", "python3"):
        return spec.model_copy(update={"command": sys.executable})
    return spec
