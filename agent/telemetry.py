"""OpenTelemetry spans for runs (run > step > model request and tool calls), built from the run's typed events.

`OpenTelemetryTracer` is an event sink: `await agent.run(prompt, on_event=OpenTelemetryTracer())`. It follows the
OpenTelemetry GenAI semantic conventions; it needs the `otel` extra (`pip install 'deepseek-mcp-agent[otel]'`).
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .events import (
    ContextCompacted,
    ErrorEvent,
    Event,
    ModelRequest,
    ModelResponse,
    ModelRetry,
    RunFinished,
    RunStarted,
    ServerNotice,
    ThinkChosen,
    ToolCallStarted,
    ToolResult,
    ToolsChanged,
)
from .models.profiles import PROFILES
from .result import StopReason
from .usage import Usage
from .version import package_version

try:
    from opentelemetry import trace as otel
except ImportError:  # the `otel` extra is missing: importing works, constructing the tracer says what to install
    otel = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OpenTelemetryTracer", "tracing_from_environment"]

INSTALL_HINT = "pip install 'deepseek-mcp-agent[otel]'"

# GenAI semantic conventions (open-telemetry/semantic-conventions-genai, the registry as of 2026; the same names
# are in opentelemetry-semantic-conventions' gen_ai_attributes). Reasoning and cache-read tokens are standard
# there now (`gen_ai.usage.reasoning.output_tokens`, `gen_ai.usage.cache_read.input_tokens`), included in the
# output and input counts as DeepSeek reports them. `gen_ai.system` is the deprecated name of
# `gen_ai.provider.name`, still read by some backends, so both are set.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"
AGENT_NAME = "gen_ai.agent.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

# What the conventions have no name for lives under the project's namespace. The semconv `mcp.*` attributes
# describe the protocol (method, session), none names the server, so the server is ours too.
NS = "deepseek_agent"
RUN_ID = f"{NS}.run_id"
THINK_POLICY = f"{NS}.think_policy"
THINK_MODE = f"{NS}.think_mode"
THINK_REASON = f"{NS}.think_reason"
STEP = f"{NS}.step"
COST = f"{NS}.cost_usd"
CONTEXT_TOKENS = f"{NS}.context_tokens"
ESTIMATED = f"{NS}.usage.estimated"
STOP_REASON = f"{NS}.stop_reason"
STEPS = f"{NS}.steps"
TOOL_CALLS = f"{NS}.tool_calls"
MCP_SERVER = f"{NS}.mcp.server"
TOOL_SOURCE = f"{NS}.tool.source"

TOOL_ERROR = "tool_error"
"""`error.type` of a tool call whose result is an error (the model reads it; the run goes on)."""

_STATUS_LIMIT = 500  # characters of a tool's error text kept as the span's status description


@dataclass
class _Step:
    number: int
    span: Span
    context: Context
    last_t: float


@dataclass
class _RunSpans:
    """The open spans of one run."""

    run_id: str
    span: Span
    context: Context
    model: str
    common: dict[str, Any]
    """Attributes the run and each model request share: provider, model, endpoint."""
    servers: list[str]
    step: _Step | None = None
    chat: Span | None = None
    tools: dict[str, Span] = field(default_factory=dict)


_RUN_IN_CONTEXT: contextvars.ContextVar[Mapping[OpenTelemetryTracer, _RunSpans] | None]
_RUN_IN_CONTEXT = contextvars.ContextVar("agent_otel_run", default=None)
"""Which run a tracer's events belong to, per task: one tracer may follow several runs at once (events carry no
run id). The run's task and the tool-call tasks it starts see what `run_started` set."""


class OpenTelemetryTracer:
    """An event sink that turns a run's events into OpenTelemetry spans.

    `invoke_agent` (the run) > `step` > `chat <model>` (each model request) and `execute_tool <tool>` (each tool
    call, several open at once when the model calls tools in parallel), timed by the events' own timestamps.
    Failed model requests, tool calls whose result is an error, runs that end with an error and cancelled runs
    end with status ERROR and the message; spans a run leaves open (cancelled, wall time) are ended with it.
    Prompts, answers and tool arguments are not recorded (the JSONL trace has them).

    `tracer_provider=None` uses the global provider, which the user's OpenTelemetry setup configures (for example
    `opentelemetry-instrument python app.py` with `OTEL_EXPORTER_OTLP_ENDPOINT`, or `trace.set_tracer_provider`
    with an OTLP exporter); without one the spans go nowhere and cost next to nothing. One tracer may follow any
    number of runs, concurrent ones included.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        if otel is None:
            raise ConfigError(f"OpenTelemetryTracer needs the OpenTelemetry packages, which are not installed: "
                              f"{INSTALL_HINT}")
        self._tracer = otel.get_tracer("deepseek-mcp-agent", package_version(), tracer_provider=tracer_provider)
        self._runs: dict[str, _RunSpans] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_started(event)
            return
        run = self._runs.get(event.run_id) if isinstance(event, RunFinished) else self._current()
        if run is None:
            return
        if isinstance(event, ThinkChosen):
            self._step(run, event.step, event.t).span.set_attributes(
                {THINK_MODE: event.mode, THINK_REASON: event.reason})
        elif isinstance(event, ModelRequest):
            self._model_request(run, event)
        elif isinstance(event, ModelRetry):
            step = self._step(run, event.step, event.t)
            (run.chat or step.span).add_event(
                f"{NS}.model_retry", {"attempt": event.attempt, "error": event.error, "delay_s": event.delay_s},
                timestamp=_ns(event.t))
        elif isinstance(event, ModelResponse):
            self._model_response(run, event)
        elif isinstance(event, ToolCallStarted):
            self._tool_call(run, event)
        elif isinstance(event, ToolResult):
            self._tool_result(run, event)
        elif isinstance(event, ToolsChanged | ContextCompacted):
            self._step(run, event.step, event.t).span.add_event(f"{NS}.{event.type}", timestamp=_ns(event.t))
        elif isinstance(event, ServerNotice):
            run.span.add_event(f"{NS}.server_notice", {"server": event.server, "level": event.level,
                                                       "message": event.message}, timestamp=_ns(event.t))
        elif isinstance(event, ErrorEvent):
            self._error(run, event)
        elif isinstance(event, RunFinished):
            self._run_finished(run, event)

    # -- runs ------------------------------------------------------------------------------------------------

    def _current(self) -> _RunSpans | None:
        run = (_RUN_IN_CONTEXT.get() or {}).get(self)
        if run is not None and run.run_id in self._runs:
            return run
        # An event from outside the run's tasks (a server notice): unambiguous only while one run is open.
        return next(iter(self._runs.values())) if len(self._runs) == 1 else None

    def _run_started(self, event: RunStarted) -> None:
        model = _model_name(event.model)
        common: dict[str, Any] = {PROVIDER: event.profile, SYSTEM: event.profile, REQUEST_MODEL: model,
                                  **_endpoint(event.model)}
        attributes = {OPERATION: "invoke_agent", **common, RUN_ID: event.run_id, THINK_POLICY: event.think}
        if event.task:
            attributes[AGENT_NAME] = event.task
        span = self._tracer.start_span(f"invoke_agent {event.task}" if event.task else "invoke_agent",
                                       kind=otel.SpanKind.INTERNAL, attributes=attributes, start_time=_ns(event.t))
        run = _RunSpans(run_id=event.run_id, span=span, context=otel.set_span_in_context(span), model=model,
                        common=common, servers=event.servers)
        self._runs[event.run_id] = run
        _RUN_IN_CONTEXT.set({**(_RUN_IN_CONTEXT.get() or {}), self: run})

    def _run_finished(self, run: _RunSpans, event: RunFinished) -> None:
        del self._runs[run.run_id]
        active = _RUN_IN_CONTEXT.get() or {}
        if active.get(self) is run:
            _RUN_IN_CONTEXT.set({k: v for k, v in active.items() if k is not self})
        failed = event.stop_reason in (StopReason.error, StopReason.cancelled)
        message = event.error or event.stop_reason.value
        kind = event.error_info.kind if event.error_info else event.stop_reason.value
        # Spans still open were cut short by the end of the run (cancelled, wall time, an error).
        cut_short = [*run.tools.values(), *([run.chat] if run.chat is not None else [])]
        why = message if failed else f"cut short: the run stopped ({event.stop_reason.value})"
        for span in cut_short:
            _fail(span, kind, why)
            span.end(end_time=_ns(event.t))
        run.tools.clear()
        run.chat = None
        if run.step is not None:
            if cut_short:
                run.step.last_t = event.t
                _fail(run.step.span, kind, why)
            self._end_step(run)
        run.span.set_attributes({
            STOP_REASON: event.stop_reason.value, STEPS: event.steps, TOOL_CALLS: event.tool_calls,
            COST: event.cost, **_usage(event.usage),
        })
        if failed:
            _fail(run.span, kind, message)
        run.span.end(end_time=_ns(event.t))

    # -- steps -----------------------------------------------------------------------------------------------

    def _step(self, run: _RunSpans, number: int, t: float) -> _Step:
        """The step span of `number`, opened by the step's first event; the previous step ends at its last."""
        step = run.step
        if step is None or step.number != number:
            if step is not None:
                self._end_step(run)
            span = self._tracer.start_span("step", context=run.context, kind=otel.SpanKind.INTERNAL,
                                           attributes={STEP: number}, start_time=_ns(t))
            step = run.step = _Step(number, span, otel.set_span_in_context(span), t)
        step.last_t = max(step.last_t, t)
        return step

    def _end_step(self, run: _RunSpans) -> None:
        if run.step is not None:
            run.step.span.end(end_time=_ns(run.step.last_t))
            run.step = None

    # -- model requests --------------------------------------------------------------------------------------

    def _model_request(self, run: _RunSpans, event: ModelRequest) -> None:
        step = self._step(run, event.step, event.t)
        if run.chat is not None:  # refused (prompt too long), compacted and sent again
            _fail(run.chat, "_OTHER", "no response: the request was sent again")
            run.chat.end(end_time=_ns(event.t))
        attributes = {OPERATION: "chat", **run.common, THINK_MODE: event.mode}
        if event.context_tokens:
            attributes[CONTEXT_TOKENS] = event.context_tokens
        run.chat = self._tracer.start_span(f"chat {run.model}", context=step.context, kind=otel.SpanKind.CLIENT,
                                           attributes=attributes, start_time=_ns(event.t))

    def _model_response(self, run: _RunSpans, event: ModelResponse) -> None:
        step = self._step(run, event.step, event.t)
        span = run.chat or self._tracer.start_span(
            f"chat {run.model}", context=step.context, kind=otel.SpanKind.CLIENT,
            attributes={OPERATION: "chat", **run.common}, start_time=_ns(event.t - event.duration_s))
        run.chat = None
        span.set_attributes({RESPONSE_MODEL: event.model, COST: event.cost, **_usage(event.usage)})
        if event.finish_reason:
            span.set_attribute(FINISH_REASONS, [event.finish_reason])
        span.end(end_time=_ns(event.t))

    # -- tool calls ------------------------------------------------------------------------------------------

    def _tool_call(self, run: _RunSpans, event: ToolCallStarted) -> None:
        step = self._step(run, event.step, event.t)
        attributes: dict[str, Any] = {OPERATION: "execute_tool", TOOL_NAME: event.tool, TOOL_CALL_ID: event.call_id,
                                      TOOL_TYPE: "function"}
        server = next((s for s in run.servers if event.tool.startswith(f"{s}__")), None)
        if server is not None:
            attributes[MCP_SERVER] = server
        elif "__" in event.tool:
            attributes[TOOL_SOURCE] = event.tool.partition("__")[0]
        run.tools[event.call_id] = self._tracer.start_span(
            f"execute_tool {event.tool}", context=step.context, kind=otel.SpanKind.INTERNAL, attributes=attributes,
            start_time=_ns(event.t))

    def _tool_result(self, run: _RunSpans, event: ToolResult) -> None:
        step = self._step(run, event.step, event.t)
        span = run.tools.pop(event.call_id, None) or self._tracer.start_span(
            f"execute_tool {event.tool}", context=step.context, kind=otel.SpanKind.INTERNAL,
            attributes={OPERATION: "execute_tool", TOOL_NAME: event.tool, TOOL_CALL_ID: event.call_id},
            start_time=_ns(event.t - event.duration_s))
        if event.is_error:
            _fail(span, TOOL_ERROR, event.content[:_STATUS_LIMIT])
        span.end(end_time=_ns(event.t))

    # -- errors ----------------------------------------------------------------------------------------------

    def _error(self, run: _RunSpans, event: ErrorEvent) -> None:
        """The step failed: the request or calls in flight failed with it; the run span fails at run_finished."""
        if not event.step:
            run.span.add_event("exception", _exception(event), timestamp=_ns(event.t))
            return
        step = self._step(run, event.step, event.t)
        failed = [*run.tools.values(), *([run.chat] if run.chat is not None else [])]
        for span in failed or [step.span]:
            span.add_event("exception", _exception(event), timestamp=_ns(event.t))
        for span in failed:
            _fail(span, event.kind, event.message)
            span.end(end_time=_ns(event.t))
        run.tools.clear()
        run.chat = None
        _fail(step.span, event.kind, event.message)


def _ns(t: float) -> int:
    """Unix seconds (an event's `t`) as the nanoseconds OpenTelemetry takes."""
    return int(t * 1_000_000_000)


def _fail(span: Span, kind: str, message: str) -> None:
    span.set_attribute(ERROR_TYPE, kind)
    span.set_status(otel.Status(otel.StatusCode.ERROR, message))


def _exception(event: ErrorEvent) -> dict[str, Any]:
    return {"exception.type": event.kind, "exception.message": event.message}


def _usage(usage: Usage) -> dict[str, Any]:
    """A `Usage` as GenAI attributes: input counts cache hits, output counts reasoning (as DeepSeek reports)."""
    attributes: dict[str, Any] = {
        INPUT_TOKENS: usage.prompt_tokens, OUTPUT_TOKENS: usage.completion_tokens,
        REASONING_TOKENS: usage.reasoning_tokens, CACHE_READ_TOKENS: usage.cache_hit_tokens,
    }
    if usage.estimated_requests:
        attributes[ESTIMATED] = True
    return attributes


def _model_name(label: str) -> str:
    """The model from a model client's label: `deepseek:deepseek-v4-pro`, `vllm:http://gpu:8000/v1#name`."""
    if "#" in label:
        return label.rpartition("#")[2]
    return label.partition(":")[2] or label


def _endpoint(label: str) -> dict[str, Any]:
    """`server.address` and `server.port` of the endpoint a model label names (its base URL or the profile's)."""
    prefix, _, rest = label.partition(":")
    if "#" in rest:
        url: str | None = rest.rpartition("#")[0]
    else:
        profile = PROFILES.get(prefix)
        url = profile.default_base_url if profile else None
    if not url:
        return {}
    parts = urlsplit(url)
    if not parts.hostname:
        return {}
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return {SERVER_ADDRESS: parts.hostname}
    return {SERVER_ADDRESS: parts.hostname, SERVER_PORT: port}


def tracing_from_environment() -> Callable[[], None]:
    """For `agent run --otel`: use the global tracer provider; when nothing has set one up (no
    `opentelemetry-instrument`), build one from the standard variables: `OTEL_TRACES_EXPORTER` = otlp (default,
    needs the otlp exporter package; `OTEL_EXPORTER_OTLP_ENDPOINT` and friends are read by it) | console | none,
    `OTEL_SERVICE_NAME` (default `deepseek-agent`). Returns the function that flushes and shuts it down."""
    if otel is None:
        raise ConfigError(f"--otel needs the OpenTelemetry packages, which are not installed: {INSTALL_HINT}")
    if not isinstance(otel.get_tracer_provider(), otel.ProxyTracerProvider):
        return lambda: None  # configured already (opentelemetry-instrument, or the embedding program)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporters: list[SpanExporter] = []
    for name in (n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()):
        if name == "console":
            exporters.append(ConsoleSpanExporter(out=sys.stderr))
        elif name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                raise ConfigError(f"OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: {INSTALL_HINT}") from None
            exporters.append(OTLPSpanExporter())
        elif name != "none":
            raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: expected otlp, console or none")
    service = os.environ.get("OTEL_SERVICE_NAME", "deepseek-agent")
    provider = SdkTracerProvider(resource=Resource.create({"service.name": service}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    otel.set_tracer_provider(provider)
    return provider.shutdown
