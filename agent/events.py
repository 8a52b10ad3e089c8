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


class ElicitationAsked(_Event):
    """A server asked for input from the user during a tool call (MCP elicitation)."""

    type: Literal["elicitation_request"] = "elicitation_request"
    server: str
    tool: str | None = Field(None, description="the tool call it came during, when known")
    step: int | None = None
    mode: Literal["form", "url"] = "form"
    message: str
    fields: list[str] = Field(default=[], description="the form's field names (form mode)")
    url: str | None = Field(None, description="where the user is sent (url mode)")


class ElicitationAnswered(_Event):
    """How the server's question was answered. The values given are never traced, only the fields answered."""

    type: Literal["elicitation_result"] = "elicitation_result"
    server: str
    tool: str | None = None
    step: int | None = None
    action: Literal["accept", "decline", "cancel"]
    answered_by: str = Field(description="callback, terminal, host, or nobody")
    fields: list[str] = Field(default=[], description="the fields the accepted answer filled in")
    reason: str | None = Field(None, description="why it was declined or cancelled, when known")


class SamplingAsked(_Event):
    """A server asked our model for a completion (MCP sampling)."""

    type: Literal["sampling_request"] = "sampling_request"
    server: str
    tool: str | None = None
    step: int | None = None
    messages: int
    max_tokens: int = Field(description="what the server asked for (the policy's cap may lower it)")
    prompt: str = Field(description="the request's text, shortened")


class SamplingAnswered(_Event):
    """The answer to a server's sampling request, or why it was refused; its usage and cost are in the run's."""

    type: Literal["sampling_result"] = "sampling_result"
    server: str
    tool: str | None = None
    step: int | None = None
    ok: bool
    model: str | None = None
    content: str = ""
    stop_reason: str | None = None
    error: str | None = Field(None, description="why it was refused or failed")
    usage: Usage = Usage()
    cost: float = 0.0
    duration_s: float = 0.0


class ServerProgress(_Event):
    """A progress notification for one of the run's tool calls."""

    type: Literal["server_progress"] = "server_progress"
    server: str
    tool: str
    step: int | None = None
    progress: float
    total: float | None = None
    message: str | None = None


class ServerLog(_Event):
    """A log message a server sent (notifications/message), during a tool call of the run or between calls."""

    type: Literal["server_log"] = "server_log"
    server: str
    tool: str | None = None
    step: int | None = None
    level: str
    logger: str | None = None
    data: Any = None


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
    | Graded | ElicitationAsked | ElicitationAnswered | SamplingAsked | SamplingAnswered | ServerProgress
    | ServerLog,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
