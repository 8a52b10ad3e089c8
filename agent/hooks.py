"""Hooks that can act on a run: before each model request, before and after each tool call, after each step.

Subclass `Hooks`, override what you need, and pass instances to `Agent(hooks=[...])`; they run in order.
A hook may change the think mode or append messages before a request, allow / deny / rewrite a tool call,
rewrite a tool's observation, or end the run (`raise StopRun(reason)`). Approval gates and guardrails are
built on them. With no hooks the loop does no extra work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .think import ThinkMode

if TYPE_CHECKING:
    from agent.tools.hub import ToolInfo
    from agent.tools.results import ToolOutcome

    from .models.base import AssistantTurn, ToolCall
    from .run import RunContext


class StopRun(Exception):
    """Raised by a hook to end the run now: stop reason `stopped`, with `reason` in the result's error."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ModelRequestInfo:
    """The request about to be sent."""

    step: int
    mode: ThinkMode
    messages: int
    """Messages in the conversation (the history itself is append-only and not handed out)."""
    tools: list[str]


@dataclass(frozen=True)
class RequestChange:
    """What `before_model_request` may change: the think mode of this step, and messages appended first
    (append-only, so the prompt prefix providers cache stays intact)."""

    mode: ThinkMode | None = None
    append: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call the model made, before it runs."""

    step: int
    call_id: str
    tool: str
    """The qualified, model-facing name (`<server>__<tool>`)."""
    arguments: dict[str, Any] | str | None
    """Parsed JSON object when the model sent valid JSON, else the raw text."""
    info: ToolInfo | None
    """Where the tool comes from and its annotations (read_only, destructive, open_world); None when unknown."""


@dataclass(frozen=True)
class ToolDecision:
    """The answer of `before_tool_call`: run the call as asked, refuse it with a reason the model reads, or
    run it with other arguments."""

    action: Literal["allow", "deny", "rewrite"]
    reason: str = ""
    arguments: dict[str, Any] | None = None

    @classmethod
    def allow(cls) -> ToolDecision:
        return cls("allow")

    @classmethod
    def deny(cls, reason: str) -> ToolDecision:
        return cls("deny", reason=reason)

    @classmethod
    def rewrite(cls, arguments: dict[str, Any]) -> ToolDecision:
        return cls("rewrite", arguments=arguments)


@dataclass(frozen=True)
class StepRecord:
    """One finished step: the think choice, the assistant turn, and the tool calls with their outcomes."""

    number: int
    mode: ThinkMode
    reason: str
    """Why the think policy chose `mode`."""
    turn: AssistantTurn
    cost: float
    tool_calls: list[ToolCall] = field(default_factory=list)
    outcomes: list[ToolOutcome] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        """The final answer, when this step gave one (no tool calls)."""
        return None if self.tool_calls else self.turn.content


class Hooks:
    """Base class with do-nothing hooks; override the ones you need (all are async)."""

    async def before_model_request(self, ctx: RunContext, request: ModelRequestInfo) -> RequestChange | None:
        """Before each model request (compaction requests excluded). Return a change, or None."""
        return None

    async def before_tool_call(self, ctx: RunContext, call: ToolCallRequest) -> ToolDecision | None:
        """Before each tool call. None or `ToolDecision.allow()` runs it; `deny(reason)` refuses it (the model
        sees the reason as the tool's error result); `rewrite(arguments)` runs it with other arguments."""
        return None

    async def after_tool_call(self, ctx: RunContext, call: ToolCallRequest, outcome: ToolOutcome) -> ToolOutcome | None:
        """After each tool call (refused ones included). Return a replacement outcome (what the model reads), or
        None to keep it."""
        return None

    async def after_step(self, ctx: RunContext, step: StepRecord) -> None:
        """After each step, once its tool results are in the conversation. Raise StopRun to end the run."""
        return None
