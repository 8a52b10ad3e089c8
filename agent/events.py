"""Typed events of a run: the loop emits them, the CLI renders them, the trace writes them."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from .result import RunError, StopReason
from .usage import ModeStats, Usage


class _Event(BaseModel):
    t: float = Field(default_factory=time.time, description="Unix time the event was emitted")


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    run_id: str
    prompt: str
    model: str
    profile: str
    think: str
    servers: list[str] = []
    failed_servers: dict[str, str] = Field(
        default={}, description="optional servers (required: false) that did not start, with the reason")
    tools: list[str] = []
    limits: dict[str, Any] = {}
    task: str | None = None
    parent_run_id: str | None = Field(
        default=None, description="the run whose tool call started this one (a sub-agent's run), if any")


class ThinkChosen(_Event):
    type: Literal["think_chosen"] = "think_chosen"
    step: int
    mode: str
    reason: str


class ModelRequest(_Event):
    type: Literal["model_request"] = "model_request"
    step: int
    mode: str
    messages: int
    body_bytes: int
    context_tokens: int = 0
    window_tokens: int = 0


class ModelDelta(_Event):
    """A streamed piece of the assistant turn; shown live, never written to the trace."""

    type: Literal["model_delta"] = "model_delta"
    step: int
    kind: Literal["reasoning", "content"]
    text: str


class ModelRetry(_Event):
    type: Literal["model_retry"] = "model_retry"
    step: int
    attempt: int
    error: str
    delay_s: float


class ToolCallInfo(BaseModel):
    id: str
    name: str
    arguments: str


class ModelResponse(_Event):
    type: Literal["model_response"] = "model_response"
    step: int
    model: str
    content: str
    reasoning: str
    tool_calls: list[ToolCallInfo] = []
    finish_reason: str | None = None
    usage: Usage = Usage()
    cost: float = 0.0
    duration_s: float = 0.0


class ToolCallStarted(_Event):
    type: Literal["tool_call"] = "tool_call"
    step: int
    call_id: str
    tool: str
    arguments: str


class ToolResult(_Event):
    type: Literal["tool_result"] = "tool_result"
    step: int
    call_id: str
    tool: str
    is_error: bool
    content: str
    duration_s: float
    saved_output: str | None = None


class ToolsChanged(_Event):
    """A server announced a new tool list; the run offers it from this step on."""

    type: Literal["tools_changed"] = "tools_changed"
    step: int
    version: int
    tools: list[str]


class ContextCompacted(_Event):
    """The middle of the conversation was summarised (rare, explicit: the prefix cache is lost once)."""

    type: Literal["context_compacted"] = "context_compacted"
    step: int
    reason: str
    removed_messages: int
    tokens_before: int
    tokens_after: int
    summary: str


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    kind: str
    message: str
    step: int | None = None


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    run_id: str
    answer: str | None
    stop_reason: StopReason
    steps: int
    tool_calls: int
    usage: Usage
    cost: float
    duration_s: float
    error: str | None = None
    error_info: RunError | None = None
    think: dict[str, ModeStats] = {}
    output: Any = None
    """The structured output as JSON data, when the run had an output type."""


class SubagentRun(_Event):
    """A sub-agent's run that one of this run's tool calls started (agent.subagents); its usage and cost are
    included in this run's totals."""

    type: Literal["subagent_run"] = "subagent_run"
    step: int
    tool: str
    run_id: str
    trace_path: str | None = None
    stop_reason: StopReason
    steps: int
    usage: Usage
    cost: float
    error: str | None = None


class ServerNotice(_Event):
    """Something a server did that the user should know about, e.g. text that is not JSON-RPC on its stdout."""

    type: Literal["server_notice"] = "server_notice"
    server: str
    level: Literal["info", "warning", "error"] = "warning"
    message: str


class Graded(_Event):
    """How `agent eval` graded the run (written after run_finished)."""

    type: Literal["graded"] = "graded"
    passed: bool
    coverage: float | None = None
    checks: list[dict[str, Any]] = []
    reason: str | None = None
    judge_model: str | None = None
    judge_cost: float = 0.0
    duration_s: float = 0.0


Event = Annotated[
    RunStarted | ThinkChosen | ModelRequest | ModelDelta | ModelRetry | ModelResponse | ToolCallStarted
    | ToolResult | ToolsChanged | ContextCompacted | ErrorEvent | ServerNotice | SubagentRun | RunFinished
    | Graded,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
