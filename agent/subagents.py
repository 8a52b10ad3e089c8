"""Sub-agents: an `Agent` offered to another as one tool (`AgentTool`, a `ToolSource`) whose call is a full,
linked run of the child agent; the child's usage and cost roll up into the calling run."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from agent.tools.results import NO_OUTPUT, ToolOutcome, error_outcome
from agent.tools.schema import MAX_NAME_LEN
from agent.tools.source import SourceTool

from .errors import AgentError, ConfigError
from .events import SubagentRun
from .function_tools import outcome_of
from .result import RunResult
from .run import CURRENT_RUN, AgentRun

if TYPE_CHECKING:
    from .runner import Agent

_VALID_NAME = re.compile(rf"^[a-zA-Z0-9_-]{{1,{MAX_NAME_LEN}}}$")
TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"task": {"type": "string", "description": "What the sub-agent should do, with everything it "
                                                             "needs to know: it does not see this conversation."}},
    "required": ["task"],
}


class AgentTool:
    """`child.as_tool(name, description)`: the child Agent as one tool, `<name>(task: str)`, for another Agent.

    A call is a full run of the child on `task` (`child.iter(task)`; several calls at once run concurrently)
    with the child's own model, think policy, servers, output type and trace. The model reads the child's
    answer (its structured output as JSON when it has an output type) or, when the child did not finish, an
    error naming its stop reason. The calling run (`CURRENT_RUN` while the tool call runs) is linked both ways:
    the child's `run_started` names it as `parent_run_id`, and its own trace gets a `subagent_run` event (the
    child's run id, trace path, stop reason, usage and cost). The child's usage and cost are added to the
    calling run's totals, so its `RunResult` and `run_finished` include them. The source enters the child
    Agent (its servers start with the parent's) unless it is already entered, in which case its owner closes it.
    """

    prefix: str | None = None
    """The tool keeps its own name; it must not clash with the parent's other unprefixed tools."""

    def __init__(self, agent: Agent, name: str, description: str) -> None:
        if not _VALID_NAME.match(name):
            raise ConfigError(f"sub-agent tool name {name!r}: use 1-{MAX_NAME_LEN} letters, digits, '_' or '-'")
        if not description.strip():
            raise ConfigError(f"sub-agent tool {name!r}: give a description; it is all the model knows of the agent")
        self.agent = agent
        self.name = name
        self.description = description
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> AgentTool:
        stack = AsyncExitStack()
        try:
            self.agent.connected()
        except AgentError:  # not entered by its owner: this source owns its lifetime
            await stack.enter_async_context(self.agent)
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def list_tools(self) -> list[SourceTool]:
        return [SourceTool(self.name, self.description, TASK_SCHEMA)]

    @property
    def tools_changed(self) -> bool:
        return False

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        if tool != self.name:
            return error_outcome(f"Unknown tool {tool!r}; this source offers [{self.name!r}]")
        task = arguments.get("task")
        if not isinstance(task, str) or not task.strip():
            return error_outcome(f"{self.name} needs `task`: a non-empty string saying what to do; got {task!r}")
        parent = CURRENT_RUN.get()  # the child's run_started names it (agent/run.py)
        run: AgentRun | None = None
        try:
            async with self.agent.iter(task) as run:
                result = await run.run_to_end()
        except AgentError as exc:
            return error_outcome(f"The sub-agent {self.name} could not start: {exc}")
        finally:
            if parent is not None and run is not None and run.result is not None:
                # Also when the parent is cancelled mid-call: the child's figures are in the parent's totals.
                _roll_up(parent, self.name, run.result)
        return _observation(self.name, result)


def _roll_up(parent: AgentRun, tool: str, result: RunResult) -> None:
    ctx = parent.context
    if ctx is None:
        return
    ctx.totals.usage = ctx.totals.usage + result.usage
    ctx.totals.cost += result.cost
    parent.emit(SubagentRun(
        step=ctx.step, tool=tool, run_id=result.run_id,
        trace_path=str(result.trace_path) if result.trace_path else None, stop_reason=result.stop_reason,
        steps=result.steps, usage=result.usage, cost=result.cost, error=result.error,
    ))


def _observation(name: str, result: RunResult) -> ToolOutcome:
    if result.ok:
        return outcome_of(result.output) if result.output is not None else ToolOutcome(result.answer or NO_OUTPUT)
    lines = [f"The sub-agent {name} did not finish: stop reason {result.stop_reason.value}"
             + (f", error: {result.error}" if result.error else "") + "."]
    if result.answer:
        lines.append(f"Its last words: {result.answer}")
    return error_outcome("\n".join(lines))
