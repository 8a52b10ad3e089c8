"""One run's state, apart from the `Agent` that starts it: conversation, context keeper, loop, trace, result.

`Agent.iter(prompt)` gives an `AgentRun` to step through (`async for step in run`); `Agent.run` and
`Agent.stream` drive the same object to the end. Runs of one Agent share its model client and MCP servers
and keep everything else here, so several can go at once.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .context import ContextKeeper, Conversation, OutputStore, snapshot
from .errors import AgentError
from .events import ErrorEvent, Event, RunFinished, RunStarted, ServerNotice
from .hooks import StepRecord
from .loop import AgentLoop, LoopTotals, Stop
from .mentions import expand_mentions
from .output import OutputSpec
from .overlong import OverlongOutputs
from .result import RunError, RunResult, StopReason
from .run_history import RunHistory
from .think import policy_label
from .trace import TraceWriter

if TYPE_CHECKING:
    from agent.tools.hub import ToolHub

    from .models.base import ModelClient
    from .runner import Agent

EventSink = Callable[[Event], None]

CURRENT_RUN: contextvars.ContextVar[AgentRun | None] = contextvars.ContextVar("agent_current_run", default=None)
"""The run whose task is executing: local tools (read_output, context_status, agent.toolkits) answer for their
own run."""


@dataclass
class RunContext:
    """What hooks and tools may know about the run they serve."""

    run_id: str
    workspace: Path | None
    emit: EventSink
    """Add an event to the run's trace and live output."""
    totals: LoopTotals
    """Steps, tool calls, usage and cost so far."""
    step: int = 0
    """The step in progress (0 before the first)."""


class AgentRun:
    """A run in progress. Enter it (`async with`), then step through it; `result` is set once it ended.

    Leaving the block before the run ended (break, an exception, cancellation) finishes it as `cancelled`;
    its trace always ends with `run_finished`.
    """

    def __init__(self, agent: Agent, prompt: str, *, trace_path: str | Path | None = None,
                 history: Sequence[dict[str, Any]] | None = None, sinks: Sequence[EventSink] = (),
                 output: OutputSpec | None = None):
        self.agent = agent
        self.output = output
        """What the run must produce (a final_result call that validates), when it has an output type."""
        self.prompt = prompt
        self.run_id = uuid.uuid4().hex[:12]
        self.trace_path = Path(trace_path) if trace_path else agent.default_trace_path(self.run_id)
        self._history = history
        self._sinks = list(sinks)
        self._trace: TraceWriter | None = None
        self.result: RunResult | None = None
        """The outcome, once the run has ended."""
        self.steps: list[StepRecord] = []
        """The steps so far."""
        self.conversation: Conversation | None = None
        self.keeper: ContextKeeper | None = None
        self.context: RunContext | None = None
        self.history: RunHistory | None = RunHistory() if agent.keeps_history else None
        """Every turn of the run, also those removed from the context (for the history tools), when kept."""
        self.overlong: OverlongOutputs | None = agent.overlong_outputs(self.run_id)
        """Tool results cut the Toolathlon way and saved for the overlong-output tools, when asked for."""
        self.started_at = dt.datetime.now().isoformat()
        self.sampling_requests = 0
        """Servers' sampling requests answered for this run so far (SamplingPolicy.max_requests_per_run)."""
        self._loop: AgentLoop | None = None
        self._started = 0.0
        self._deadline = float("inf")

    # -- events ---------------------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if self.history is not None:
            self.history(event)
        if self._trace is not None:
            self._trace.write(event)
        for sink in self._sinks:
            sink(event)

    def notice(self, server: str, message: str) -> None:
        self.emit(ServerNotice(server=server, message=message))

    # -- lifetime -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> AgentRun:
        model, hub = self.agent.connected()
        self._trace = TraceWriter(self.trace_path) if self.trace_path else None
        try:
            await self._start(model, hub)
        except BaseException:
            if self._trace is not None:
                self._trace.close()
            self.agent.release_notices(self)
            raise
        return self

    async def _start(self, model: ModelClient, hub: ToolHub) -> None:
        agent = self.agent
        with_tools = bool(hub.openai_tools)
        conversation = Conversation(lambda m: model.render(m, with_tools=with_tools))
        repo_text, tracker = await anyio.to_thread.run_sync(
            lambda: snapshot(agent.context, base_url=model.base_url, model=model.model))
        keeper = ContextKeeper(agent.context, OutputStore(agent.outputs_folder(self.run_id)), tracker=tracker,
                               cut=self.overlong)
        # `@server:uri` mentions become the resources' text, now that the servers are connected.
        prompt = await expand_mentions(self.prompt, hub, where="prompt")
        if self._history:
            for message in self._history:
                conversation.append(dict(message))
        else:
            if agent.system:
                system = await expand_mentions(agent.system, hub, where="system prompt")
                conversation.append({"role": "system", "content": system})
            # The snapshot goes first so runs on the same repository share the prompt prefix.
            prompt = f"{repo_text}\n\n# Task\n\n{prompt}" if repo_text else prompt
            keeper.head_messages = len(conversation) + 1
        conversation.append({"role": "user", "content": prompt})
        self.conversation, self.keeper = conversation, keeper

        self._started = time.perf_counter()
        self.started_at = dt.datetime.now().isoformat()
        if agent.limits.wall_time_s is not None:
            self._deadline = anyio.current_time() + agent.limits.wall_time_s
        parent = CURRENT_RUN.get()  # a run started from another run's tool call (a sub-agent) names it
        self.emit(RunStarted(
            run_id=self.run_id, parent_run_id=parent.run_id if parent is not None else None,
            prompt=prompt, model=model.label, profile=model.profile.name,
            think=policy_label(agent.policy), servers=hub.servers, failed_servers=dict(hub.failures),
            tools=[t.name for t in hub.tools], limits=agent.limits.model_dump(), task=agent.name,
        ))
        for server, text in agent.take_notices(self):
            self.notice(server, text)
        for tool, why in agent.unavailable_local_tools.items():
            self.emit(ServerNotice(server="local_tools", message=f"local tool {tool!r} is not offered: {why}"))
        loop = AgentLoop(model=model, hub=hub, conversation=conversation, policy=agent.policy, limits=agent.limits,
                         emit=self.emit, context=keeper, hooks=agent.hooks, output=self.output)
        self.context = RunContext(run_id=self.run_id, workspace=agent.workspace, emit=self.emit, totals=loop.totals)
        loop.ctx = self.context
        self._loop = loop

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if self.result is None:
                # Left before the end: a break, an exception of the caller's, cancellation, Ctrl-C.
                self._finish(Stop(StopReason.cancelled), RunError(kind="cancelled", message="cancelled"))
        finally:
            self.agent.release_notices(self)

    # -- stepping -------------------------------------------------------------------------------------------

    def __aiter__(self) -> AgentRun:
        return self

    async def __anext__(self) -> StepRecord:
        step = await self.next_step()
        if step is None:
            raise StopAsyncIteration
        return step

    async def next_step(self) -> StepRecord | None:
        """Run one step; None once the run has ended (then `result` is set, also after the final step)."""
        if self.result is not None:
            return None
        loop = self._loop
        if loop is None:
            raise AgentError("enter the run first: `async with agent.iter(prompt) as run:`")
        error: RunError | None = None
        token = CURRENT_RUN.set(self)  # the tools this step calls answer for this run
        # The wall-time limit spans the whole run and interrupts a model call or tool call in flight.
        try:
            with anyio.CancelScope(deadline=self._deadline) as scope:
                try:
                    step = await loop.step()
                except Stop as stop:
                    self._finish(stop, None)
                    if stop.record is not None:  # the step that ended the run is still a step
                        self.steps.append(stop.record)
                    return stop.record
                except AgentError as exc:
                    error = RunError(kind=type(exc).__name__, message=str(exc), step=loop.totals.steps or None)
                    self.emit(ErrorEvent(kind=error.kind, message=error.message, step=loop.totals.steps))
        finally:
            CURRENT_RUN.reset(token)
        if scope.cancelled_caught:
            self._finish(Stop(StopReason.wall_time), None)
            return None
        if error is not None:
            self._finish(Stop(StopReason.error), error)
            return None
        self.steps.append(step)
        return step

    async def run_to_end(self) -> RunResult:
        while await self.next_step() is not None:
            pass
        assert self.result is not None
        return self.result

    def _finish(self, stop: Stop, error: RunError | None) -> None:
        loop, conversation = self._loop, self.conversation
        assert loop is not None and conversation is not None
        if stop.reason == StopReason.stopped and stop.detail:
            error = RunError(kind="StopRun", message=stop.detail, step=loop.totals.steps or None)
        message = None if error is None else error.message
        totals = loop.totals
        output_json = None if stop.output is None or self.output is None else self.output.output_json(stop.output)
        event = RunFinished(
            run_id=self.run_id, answer=stop.answer, stop_reason=stop.reason, steps=totals.steps,
            tool_calls=totals.tool_calls, usage=totals.usage, cost=round(totals.cost, 8),
            duration_s=round(time.perf_counter() - self._started, 3), error=message, error_info=error,
            think=totals.think, output=output_json,
        )
        self.emit(event)
        if self._trace is not None:
            self._trace.close()
        self.result = RunResult(
            run_id=self.run_id, answer=event.answer, stop_reason=event.stop_reason, steps=event.steps,
            tool_calls=event.tool_calls, usage=event.usage, cost=event.cost, duration_s=event.duration_s,
            error=message, error_info=error, think=event.think, trace_path=self.trace_path,
            messages=conversation.messages, output=stop.output,
        )
