"""`agent serve`: the agent as an MCP server, over stdio or streamable HTTP (loopback, or a bearer token).

Tools: `run` (a prompt), `run_task` (a task file), `list_runs` and `read_run` (traces in the runs folder).
Every run gets its own `Agent` and MCP servers; progress goes out per step; a cancelled call stops its run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import platformdirs
from mcp.server import MCPServer
from mcp.server.elicitation import AcceptedElicitation
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from agent.runtime.workspace import Workspace
from agent.servers._http import TOKEN_ENV, bearer_auth, check_exposure, parse_host_port, url_of

from .approvals import Approval, ApproveMode, Confirm, approval_preset, describe_call
from .demo import demo_server
from .elicitation import Elicit, ElicitationAnswer, ElicitationRequest
from .errors import AgentError, ConfigError
from .events import (
    ErrorEvent,
    Event,
    ModelResponse,
    ModelRetry,
    RunFinished,
    RunStarted,
    ServerProgress,
    ThinkChosen,
    ToolCallStarted,
    ToolResult,
)
from .hooks import ToolCallRequest
from .limits import Limits
from .models.config import MODEL_SYNTAX, ModelConfig, parse_model
from .result import RunResult, StopReason
from .runner import Agent
from .task import (
    DEFAULT_MODEL,
    TaskSpec,
    bind_workspace,
    describe_validation_error,
    load_task,
    read_yaml_mapping,
    resolve_task_paths,
    validate_file,
)
from .trace import read_trace
from .usage import ModeStats, Usage
from .version import package_version

DEFAULT_PORT = 8765
EXIT_OK, EXIT_BAD_INPUT = 0, 2
_SHORT = 200

ThinkName = Literal["auto", "none", "high", "max"]
DEFAULT_BUILTIN_SERVERS: list[Literal["files", "shell", "web"]] = ["files", "shell"]
_STRICTNESS: list[ApproveMode] = ["never", "destructive", "ask"]
_APPROVE_HELP = (
    "Ask the user, through this host (MCP elicitation), before the agent's tool calls: ask = every call to a tool "
    "not marked read-only, destructive = calls that may delete or overwrite (marked destructive, or unmarked and "
    "not read-only), never = none. A refused call is reported to the agent. Default and minimum: the server "
    "config's `approve` (never unless it says otherwise)"
)


# -- configuration -----------------------------------------------------------------------------------------


class ServeConfig(TaskSpec):
    """Defaults for prompt runs started through `agent serve --config agent.yaml`: a task file without a prompt.

    Every task-file field means what it means there (model, think, servers, mcp_config, limits, context,
    system, claim_done, workdir, workspace, sandbox, builtin_servers); a run's arguments override model,
    think and limits, and a run's `workspace` argument replaces the `workspace:` section.
    """

    prompt: str = Field("", description="Ignored: each run's prompt comes from the host")
    runs_dir: Path | None = Field(None, description="Where traces are written and read back (default: the "
                                  "per-user state folder, see default_runs_dir)")
    approve: ApproveMode = Field("never", description="Approvals asked of the host's user before tool calls "
                                 "(ask, destructive, never); a run's `approve` argument may ask more, never less")


def default_runs_dir() -> Path:
    """Where `agent serve` keeps traces when neither --runs-dir nor the config names a folder.

    A per-user state folder (e.g. ~/.local/state/deepseek-agent/runs on Linux), never the working directory:
    hosts start servers with cwd `/` (Claude Desktop) or wherever they were launched.
    """
    return Path(platformdirs.user_state_dir("deepseek-agent", appauthor=False)) / "runs"


def load_config(path: str | Path) -> ServeConfig:
    """Read an agent.yaml; relative paths in it are resolved against its folder."""
    path = Path(path)
    data = read_yaml_mapping(path, "config file", "model, think, servers, limits, ...")
    config = validate_file(path, ServeConfig, data)
    base = path.parent.resolve()
    # Paths resolve as in a task file, except that a server without a cwd keeps none: each run fills in its
    # workspace (bind_workspace).
    resolved = resolve_task_paths(config.model_copy(update={"servers": {}}), base)
    servers = {
        name: spec.model_copy(update={"cwd": str(base / spec.cwd)}) if spec.cwd and not Path(spec.cwd).is_absolute()
        else spec
        for name, spec in config.servers.items()
    }
    runs_dir = config.runs_dir if config.runs_dir is None or config.runs_dir.is_absolute() else base / config.runs_dir
    return resolved.model_copy(update={"servers": servers, "runs_dir": runs_dir, "workdir": resolved.workdir or base})


# -- what the tools return ---------------------------------------------------------------------------------


class RunOutput(BaseModel):
    """The outcome of one run."""

    run_id: str
    ok: bool = Field(description="True when the run finished on its own: an answer or claim_done")
    answer: str | None
    stop_reason: str = Field(description="answer, claim_done, max_steps, max_tool_calls, wall_time, token_budget, "
                                         "error or cancelled")
    error: str | None = None
    steps: int
    tool_calls: int
    usage: Usage
    cost: float = Field(description="USD")
    duration_s: float
    think: dict[str, ModeStats] = Field(default_factory=dict, description="Steps, reasoning tokens, time per mode")
    trace_path: str | None = Field(description="The JSONL trace; read it back with read_run")
    scripted_demo: bool = Field(False, description="The model's turns were replayed from the task's demo script")

    @classmethod
    def of(cls, result: RunResult, *, scripted_demo: bool = False) -> RunOutput:
        return cls(
            run_id=result.run_id, ok=result.ok, answer=result.answer, stop_reason=result.stop_reason,
            error=result.error, steps=result.steps, tool_calls=result.tool_calls, usage=result.usage,
            cost=result.cost, duration_s=result.duration_s, think=result.think,
            trace_path=str(result.trace_path) if result.trace_path else None, scripted_demo=scripted_demo,
        )

    def summary(self) -> str:
        """What a host's model reads: the answer first, then one line on how the run went."""
        head = "SCRIPTED DEMO (model turns replayed offline)\n" if self.scripted_demo else ""
        body = self.answer or ("(no answer)" if self.ok else f"The run stopped before answering: {self.stop_reason}.")
        if self.error:
            body += f"\nError: {self.error}"
        tail = (f"\n\n[run {self.run_id}: {self.stop_reason}, {self.steps} steps, {self.tool_calls} tool calls, "
                f"{self.usage.total_tokens} tokens, ${self.cost:.4f}; trace {self.trace_path}]")
        return head + body + tail


class RunSummary(BaseModel):
    """One past (or running) run, as listed by list_runs."""

    run_id: str
    task: str | None = None
    started_at: str = Field(description="ISO 8601, local time")
    prompt: str = Field(description=f"The first {_SHORT} characters of the prompt")
    model: str
    status: str = Field(description="The stop reason; 'running' while in flight here; 'incomplete' for a run that "
                                    "died before finishing")
    ok: bool = False
    steps: int = 0
    cost: float = 0.0
    answer: str | None = Field(None, description=f"The first {_SHORT} characters of the answer")
    trace_path: str


class RunList(BaseModel):
    runs: list[RunSummary] = Field(description="Newest first")
    total: int = Field(description="How many traces the runs folder holds")
    runs_dir: str


class ToolCallRecord(BaseModel):
    tool: str
    arguments: str
    result: str | None = None
    is_error: bool | None = None
    duration_s: float | None = None


class StepRecord(BaseModel):
    step: int
    think: str | None = None
    think_reason: str | None = None
    reasoning: str = ""
    content: str = ""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)


class RunDetail(RunSummary):
    """A run read back from its trace: the summary, the full outcome and the steps."""

    prompt: str = Field(description="The prompt (up to max_chars)")
    answer: str | None = Field(None, description="The answer (up to max_chars)")
    stop_reason: str | None = None
    error: str | None = None
    tool_calls: int = 0
    usage: Usage = Field(default_factory=Usage)
    duration_s: float | None = None
    servers: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    transcript: list[StepRecord] = Field(default_factory=list, description="Texts cut to max_chars each")


# -- the service -------------------------------------------------------------------------------------------


class AgentService:
    """Starts isolated runs from the defaults of a `ServeConfig` and reads their traces back."""

    def __init__(self, config: ServeConfig | None = None, *, runs_dir: Path | None = None,
                 model: str | None = None, workspace: Path | None = None):
        self.config = config or ServeConfig()
        self.runs_dir = (runs_dir or self.config.runs_dir or default_runs_dir()).resolve()
        self.default_model = model
        self.default_workspace = workspace
        """The workspace of prompt runs that name none."""
        self.running: set[str] = set()

    # -- runs

    def model_for(self, override: str | None) -> ModelConfig:
        if override:
            return parse_model(override, where="model")
        if "model" in self.config.model_fields_set:
            return self.config.model
        if self.default_model:
            return parse_model(self.default_model, where="--model")
        return parse_model(os.environ.get("AGENT_MODEL") or DEFAULT_MODEL, where="AGENT_MODEL")

    def approve_mode(self, asked: ApproveMode | None) -> ApproveMode:
        """The stricter of a run's `approve` argument and the config's: a host's model cannot ask less."""
        floor = self.config.approve
        if asked is None:
            return floor
        return max(floor, asked, key=_STRICTNESS.index)

    async def prepare(self, task: TaskSpec, stack: AsyncExitStack, workspace: Path | None = None) -> TaskSpec:
        """Bind the task to its workspace as `agent run` does, and offer that folder as the MCP root.

        The workspace is `workspace` (a host's folder, used as is), else a fresh one when the task has a
        `workspace:` section or `builtin_servers`; stdio servers without a cwd run there and `builtin_servers`
        (files, shell) are confined to it. Without either, such servers run in the task's `workdir`.
        """
        if workspace is None and (task.workspace is not None or task.builtin_servers):
            workspace = (await stack.enter_async_context(Workspace(task.workspace, task.sandbox))).path
        if workspace is None:
            if task.workdir is None:
                return task
            servers = {name: spec.model_copy(update={"cwd": str(task.workdir)})
                       if spec.command is not None and spec.cwd is None else spec
                       for name, spec in task.servers.items()}
            return task.model_copy(update={"servers": servers})
        return bind_workspace(task, workspace)

    def limits_for(self, base: Limits, **overrides: float | int | None) -> Limits:
        updates = {k: v for k, v in overrides.items() if v is not None}
        try:
            return Limits.model_validate({**base.model_dump(), **updates})
        except ValidationError as exc:
            raise ConfigError(f"limits: {describe_validation_error(exc, Limits)}") from None

    async def execute(self, agent: Any, prompt: str, progress: ProgressReporter | None) -> RunResult:
        """Run `agent` on `prompt`, forwarding events as progress; cancellation stops the run and its servers."""
        run_ids: list[str] = []

        def on_event(event: Event) -> None:
            if isinstance(event, RunStarted):
                run_ids.append(event.run_id)
                self.running.add(event.run_id)
            if progress is not None:
                progress.event(event)

        try:
            async with anyio.create_task_group() as group:
                if progress is not None:
                    group.start_soon(progress.forward)
                try:
                    result = await agent.run(prompt, on_event=on_event)
                finally:
                    if progress is not None:
                        progress.close()
            return result
        except BaseExceptionGroup as group:
            # The task group wraps the run's own error (e.g. "DEEPSEEK_API_KEY is not set"): the caller turns
            # an AgentError into the message the host's model reads, so hand it over unwrapped.
            matched, _ = group.split(AgentError)
            if matched is None:
                raise
            first: BaseException = matched
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        finally:
            self.running.difference_update(run_ids)

    # -- traces

    def trace_files(self) -> list[Path]:
        if not self.runs_dir.is_dir():
            return []
        files = [p for p in self.runs_dir.glob("*.jsonl") if p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)

    def find_trace(self, run_id: str) -> Path:
        name = Path(run_id).name  # a run id, or the trace's file name; never a path outside runs_dir
        for path in self.trace_files():
            if path.name == name or path.stem.endswith(f"-{name}"):
                return path
        raise ConfigError(f"no run {run_id!r} in {self.runs_dir}; list_runs shows the runs there")

    def summary(self, path: Path) -> RunSummary | None:
        events = _read_events(path)
        started = next((e for e in events if isinstance(e, RunStarted)), None)
        if started is None:
            return None
        finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
        if finished is not None:
            status: str = finished.stop_reason.value
            ok = finished.stop_reason in (StopReason.answer, StopReason.claim_done)
            steps, cost, answer = finished.steps, finished.cost, finished.answer
        else:
            status = "running" if started.run_id in self.running else "incomplete"
            responses = [e for e in events if isinstance(e, ModelResponse)]
            ok, steps, cost, answer = False, len(responses), sum(r.cost for r in responses), None
        return RunSummary(
            run_id=started.run_id, task=started.task, started_at=_iso(started.t), prompt=_cut(started.prompt, _SHORT),
            model=started.model, status=status, ok=ok, steps=steps, cost=round(cost, 8),
            answer=_cut(answer, _SHORT) if answer is not None else None, trace_path=str(path),
        )

    def detail(self, path: Path, max_chars: int) -> RunDetail:
        events = _read_events(path)
        summary = self.summary(path)
        if summary is None:
            raise ConfigError(f"{path}: not a run trace (no run_started event)")
        started = next(e for e in events if isinstance(e, RunStarted))
        finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
        steps: dict[int, StepRecord] = {}
        calls: dict[str, ToolCallRecord] = {}
        for event in events:
            if isinstance(event, ThinkChosen):
                steps[event.step] = StepRecord(step=event.step, think=event.mode, think_reason=event.reason)
            elif isinstance(event, ModelResponse):
                record = steps.setdefault(event.step, StepRecord(step=event.step))
                record.reasoning = _cut(event.reasoning, max_chars)
                record.content = _cut(event.content, max_chars)
            elif isinstance(event, ToolCallStarted):
                call = ToolCallRecord(tool=event.tool, arguments=_cut(event.arguments, max_chars))
                calls[event.call_id] = call
                steps.setdefault(event.step, StepRecord(step=event.step)).tool_calls.append(call)
            elif isinstance(event, ToolResult) and event.call_id in calls:
                call = calls[event.call_id]
                call.result, call.is_error, call.duration_s = _cut(event.content, max_chars), event.is_error, event.duration_s
        usage = finished.usage if finished else sum((e.usage for e in events if isinstance(e, ModelResponse)), Usage())
        return RunDetail(
            **summary.model_dump(exclude={"prompt", "answer"}),
            prompt=_cut(started.prompt, max_chars),
            answer=_cut(finished.answer, max_chars) if finished and finished.answer is not None else None,
            stop_reason=finished.stop_reason if finished else None, error=finished.error if finished else None,
            tool_calls=finished.tool_calls if finished else len(calls), usage=usage,
            duration_s=finished.duration_s if finished else None, servers=started.servers, tools=started.tools,
            transcript=[steps[n] for n in sorted(steps)],
        )


class ProgressReporter:
    """Turns run events into progress notifications: one per step (its think mode) and one per tool call.

    The run's event sink is synchronous, so events queue here and `forward` sends them; `progress` counts
    the notifications (it must only grow) and the message says what happens.
    """

    def __init__(self, report: Callable[[float, float | None, str | None], Any], max_steps: int):
        self._report = report
        self._max_steps = max_steps
        self._count = 0
        self._send, self._receive = anyio.create_memory_object_stream[str](math.inf)

    def event(self, event: Event) -> None:
        message = self.describe(event)
        if message is not None:
            self._send.send_nowait(message)

    def describe(self, event: Event) -> str | None:
        if isinstance(event, RunStarted):
            return f"run {event.run_id} started: {event.model}, {len(event.tools)} tools"
        if isinstance(event, ThinkChosen):
            mode = "no thinking" if event.mode == "none" else f"think {event.mode}"
            return f"step {event.step}/{self._max_steps}: {mode} ({event.reason})"
        if isinstance(event, ToolCallStarted):
            return f"step {event.step}: calling {event.tool}"
        if isinstance(event, ToolResult) and event.is_error:
            return f"step {event.step}: {event.tool} failed"
        if isinstance(event, ServerProgress):
            total = f"/{event.total:g}" if event.total is not None else ""
            return f"step {event.step}: {event.tool} {event.progress:g}{total}" + (
                f" {event.message}" if event.message else "")
        if isinstance(event, ModelRetry):
            return f"step {event.step}: retrying the model call in {event.delay_s:g} s ({event.error})"
        if isinstance(event, ErrorEvent):
            return f"error: {event.message}"
        if isinstance(event, RunFinished):
            return f"finished: {event.stop_reason} after {event.steps} steps"
        return None

    async def forward(self) -> None:
        async with self._receive:
            async for message in self._receive:
                self._count += 1
                try:
                    await self._report(self._count, None, message)
                except Exception:
                    pass  # a host that went away must not end the run; cancellation does that

    def close(self) -> None:
        self._send.close()


# -- the MCP server ----------------------------------------------------------------------------------------


def build_server(service: AgentService, *, token: str | None = None, issuer_url: str | None = None) -> MCPServer:
    """The `MCPServer` with the run tools; with `token`, HTTP requests need `Authorization: Bearer <token>`."""
    # A static token: there is no authorization server to advertise, so no resource metadata either.
    auth = bearer_auth(token, issuer_url)
    server = MCPServer(
        "deepseek-agent", title="DeepSeek V4 agent", version=package_version(),
        instructions="Hands a task to an autonomous DeepSeek V4 agent that works through its own MCP tools. "
        "`run` takes a prompt, `run_task` a task file; both report progress per step and return the answer, "
        "stop reason, usage, cost and trace. `list_runs` and `read_run` show past runs.",
        log_level="WARNING", **auth,
    )

    def result(output: RunOutput) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=output.summary())],
                              structured_content=output.model_dump(mode="json"))

    async def execute(stack: AsyncExitStack, task: TaskSpec, ctx: Context, approve: ApproveMode | None,
                      workspace: Path | None = None, scripted_demo: bool = False) -> CallToolResult:
        try:
            task = await service.prepare(task, stack, workspace)
            progress = ProgressReporter(ctx.report_progress, task.limits.max_steps)
            policy = approval_preset(service.approve_mode(approve), ask_host(ctx), where="approve")
            agent = Agent.from_task(task, trace_dir=service.runs_dir, hooks=[policy] if policy else [],
                                    elicitation=forward_to_host(ctx))
            run = await service.execute(agent, task.prompt, progress)
        except AgentError as exc:  # bad configuration, a server that would not start, a model that is unreachable
            raise ToolError(str(exc)) from None
        return result(RunOutput.of(run, scripted_demo=scripted_demo))

    @server.tool(title="Run the agent on a prompt",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True))
    async def run(
        prompt: Annotated[str, Field(description="The task, as you would tell a capable colleague")],
        ctx: Context,
        workspace: Annotated[str | None, Field(
            description="Directory the agent works in (default: the server's, else a fresh one): the working "
            "directory and MCP root of its stdio servers; our files and shell servers are bound to it"
        )] = None,
        think: Annotated[ThinkName | None, Field(
            description="Reasoning per step: auto (chosen per step), none, high or max; default from the config"
        )] = None,
        model: Annotated[str | None, Field(description=f"Model override: {MODEL_SYNTAX}")] = None,
        max_steps: Annotated[int | None, Field(ge=1, description="Most model turns")] = None,
        max_tool_calls: Annotated[int | None, Field(ge=0, description="Most tool calls")] = None,
        wall_time_s: Annotated[float | None, Field(gt=0, description="Seconds for the whole run")] = None,
        max_total_tokens: Annotated[int | None, Field(ge=1, description="Prompt + completion tokens")] = None,
        approve: Annotated[ApproveMode | None, Field(description=_APPROVE_HELP)] = None,
    ) -> Annotated[CallToolResult, RunOutput]:
        """Run the DeepSeek V4 agent on a prompt with the configured MCP servers; returns its answer, stop reason,
        usage, cost and trace path. Progress notifications follow each step; cancelling the call stops the run."""
        root = _workspace(workspace) or service.default_workspace
        try:
            config = service.config
            task = config.model_copy(update={
                "prompt": prompt, "model": service.model_for(model), "think": think or config.think,
                "limits": service.limits_for(config.limits, max_steps=max_steps, max_tool_calls=max_tool_calls,
                                             wall_time_s=wall_time_s, max_total_tokens=max_total_tokens),
            })
        except ConfigError as exc:
            raise ToolError(str(exc)) from None
        async with AsyncExitStack() as stack:
            return await execute(stack, task, ctx, approve, root)

    @server.tool(title="Run a task file",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True))
    async def run_task(
        path: Annotated[str, Field(description="A task file (YAML); relative to the server's working directory")],
        ctx: Context,
        model: Annotated[str | None, Field(description=f"Model override: {MODEL_SYNTAX}")] = None,
        think: Annotated[ThinkName | None, Field(description="Think policy override")] = None,
        max_steps: Annotated[int | None, Field(ge=1, description="Most model turns")] = None,
        wall_time_s: Annotated[float | None, Field(gt=0, description="Seconds for the whole run")] = None,
        demo: Annotated[bool, Field(
            description="Replay the task's scripted demo offline (also done when the model's API key is not set)"
        )] = False,
        approve: Annotated[ApproveMode | None, Field(description=_APPROVE_HELP)] = None,
    ) -> Annotated[CallToolResult, RunOutput]:
        """Run a task file (its prompt, model, servers and limits) and return the answer, stop reason, usage, cost
        and trace path. Progress notifications follow each step; cancelling the call stops the run."""
        try:
            task = load_task(path)
            updates: dict[str, Any] = {}
            if model:
                updates["model"] = parse_model(model, where="model")
            if think:
                updates["think"] = think
            updates["limits"] = service.limits_for(task.limits, max_steps=max_steps, wall_time_s=wall_time_s)
            task = task.model_copy(update=updates)
        except ConfigError as exc:
            raise ToolError(str(exc)) from None
        async with AsyncExitStack() as stack:
            scripted = await _scripted_demo(task, demo and not model, stack)
            if scripted is not None:
                task = task.model_copy(update={"model": parse_model(scripted)})
            return await execute(stack, task, ctx, approve, scripted_demo=scripted is not None)

    @server.tool(title="List past runs", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def list_runs(
        limit: Annotated[int, Field(ge=1, le=500, description="How many runs, newest first")] = 20,
    ) -> RunList:
        """List recent runs from the runs folder (newest first): prompt, status, steps, cost, answer, trace."""
        files = service.trace_files()
        runs = [s for s in (service.summary(p) for p in files[:limit]) if s is not None]
        return RunList(runs=runs, total=len(files), runs_dir=str(service.runs_dir))

    @server.tool(title="Read a past run", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def read_run(
        run_id: Annotated[str, Field(description="A run id from list_runs (or its trace's file name)")],
        max_chars: Annotated[int, Field(ge=100, le=100_000, description="Cut each text to this length")] = 2000,
    ) -> RunDetail:
        """Read one run back from its trace: outcome, usage, cost and every step (think mode, reasoning, tool
        calls and results)."""
        try:
            return service.detail(service.find_trace(run_id), max_chars)
        except ConfigError as exc:
            raise ToolError(str(exc)) from None

    return server


class ApproveCall(BaseModel):
    """The form a host shows before one of the agent's tool calls."""

    approve: bool = Field(description="Let the agent make this call")
    always: bool = Field(False, description="Also allow its later calls to this tool in this run without asking")


def ask_host(ctx: Context) -> Confirm:
    """Approvals asked of the host's user by MCP elicitation (a form: approve, always). Push requests exist only
    on handshake-era connections (up to 2025-11-25); on 2026-07-28 a question would need the host to retry the
    whole `run` call (InputRequiredResult), which a run in progress cannot do, so such calls are refused."""

    async def confirm(call: ToolCallRequest) -> Approval:
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            return Approval.no("the user could not be asked: the MCP host does not support elicitation")
        try:
            reply = await ctx.elicit(f"The agent wants to call {describe_call(call)}. Allow it?", ApproveCall)
        except NoBackChannelError:
            return Approval.no("the user could not be asked: the MCP host's connection (protocol 2026-07-28) "
                             "carries no questions from the server")
        except (MCPError, ValueError) as exc:  # the host failed the request, or answered outside the form
            return Approval.no(f"the user could not be asked: {exc}")
        if isinstance(reply, AcceptedElicitation):
            if not reply.data.approve:
                return Approval.no()
            return Approval.always() if reply.data.always else Approval.yes()
        return Approval.no("the user declined" if reply.action == "decline" else "the user cancelled the question")

    return confirm


def forward_to_host(ctx: Context) -> Elicit:
    """Questions the agent's MCP servers ask during its tool calls, asked of the host's user in turn (MCP
    elicitation, form or url mode). As for approvals, only handshake-era host connections carry such questions;
    otherwise, or when the host declares no elicitation, the question is declined and the reason noted."""

    async def elicit(request: ElicitationRequest) -> ElicitationAnswer:
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            return ElicitationAnswer.decline("the MCP host does not support elicitation", by="nobody")
        session = ctx.request_context.session
        message = f"The agent's MCP server {request.server!r} asks: {request.message}"
        try:
            if request.mode == "url" and request.url is not None:
                reply = await session.elicit_url(message, request.url, uuid.uuid4().hex, related_request_id=ctx.request_id)
            else:
                reply = await session.elicit_form(message, request.schema, related_request_id=ctx.request_id)
        except NoBackChannelError:
            return ElicitationAnswer.decline("the MCP host's connection (protocol 2026-07-28) carries no questions "
                                             "from the server", by="nobody")
        except (MCPError, ValueError) as exc:
            return ElicitationAnswer.cancel(f"the host could not be asked: {exc}", by="host")
        if reply.action == "accept":
            return ElicitationAnswer.accept(reply.content, by="host")
        return ElicitationAnswer(reply.action, None, f"the host's user chose {reply.action}", "host")

    return elicit


async def _scripted_demo(task: TaskSpec, asked: bool, stack: AsyncExitStack) -> str | None:
    """Like `agent run`: without the official API's key (or when asked) replay the task's demo script."""
    server = demo_server(task, forced=asked)
    if server is None:
        return None
    await stack.enter_async_context(server)
    return server.model_string


def _workspace(workspace: str | None) -> Path | None:
    if workspace is None:
        return None
    path = Path(workspace).expanduser().resolve()
    if not path.is_dir():
        raise ToolError(f"workspace {workspace!r} is not a directory")
    return path


def _read_events(path: Path) -> list[Event]:
    try:
        return read_trace(path)
    except ConfigError:
        return []


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t).isoformat(timespec="seconds")


# -- command line ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent serve",
        description="Serve the agent as an MCP server: tools run (a prompt), run_task (a task file), list_runs "
        "and read_run. stdio by default (for Claude Desktop, Claude Code, Cursor, VS Code); --http for streamable "
        "HTTP, on 127.0.0.1 unless a host is given, which then needs a bearer token.",
    )
    parser.add_argument("--http", metavar="[HOST:]PORT", nargs="?", const=str(DEFAULT_PORT),
                        help=f"serve streamable HTTP at http://HOST:PORT/mcp (default 127.0.0.1:{DEFAULT_PORT})")
    parser.add_argument("--config", type=Path, metavar="agent.yaml",
                        help="defaults for prompt runs, as a task file without a prompt: model, think, servers, "
                        "builtin_servers, limits, workspace, sandbox, runs_dir (default: builtin_servers [files, "
                        "shell] confined to the run's workspace)")
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' over HTTP (default: ${TOKEN_ENV})")
    parser.add_argument("--workspace", type=Path, metavar="DIR",
                        help="workspace of prompt runs that name none (default: the config's, else a fresh one)")
    parser.add_argument("--runs-dir", type=Path, help="where traces go and are read from (default: the config's "
                        f"runs_dir, else {default_runs_dir()})")
    parser.add_argument("--model", default=None, help="default model when the config sets none "
                        "(default: $AGENT_MODEL, else " + DEFAULT_MODEL + ")")
    return parser


def service_from_args(args: argparse.Namespace) -> AgentService:
    """Without --config, runs get our files and shell servers, confined to the run's workspace."""
    config = load_config(args.config) if args.config else ServeConfig(builtin_servers=DEFAULT_BUILTIN_SERVERS)
    if args.model:
        parse_model(args.model, where="--model")
    workspace = None
    if args.workspace is not None:
        workspace = args.workspace.expanduser().resolve()
        if not workspace.is_dir():
            raise ConfigError(f"--workspace {args.workspace}: not a directory")
    return AgentService(config, runs_dir=args.runs_dir, model=args.model, workspace=workspace)


def main(argv: list[str] | None = None) -> int:
    """`agent serve ...` (the arguments after `serve`)."""
    args = build_parser().parse_args(argv)
    try:
        service = service_from_args(args)
        token = args.token or os.environ.get(TOKEN_ENV) or None
        if args.http is None:
            if args.token:
                print("agent serve: --token applies to --http only; stdio needs none", file=sys.stderr)
            anyio.run(build_server(service).run_stdio_async)
            return EXIT_OK
        try:
            host, port = parse_host_port(args.http)
            check_exposure(host, token)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        url = f"{url_of(host, port)}/mcp"
        server = build_server(service, token=token, issuer_url=url_of(host, port))
        print(f"agent serve: MCP over streamable HTTP at {url}"
              + (" (bearer token required)" if token else " (loopback only, no token)"), file=sys.stderr, flush=True)
        anyio.run(lambda: server.run_streamable_http_async(host=host, port=port))
        return EXIT_OK
    except ConfigError as exc:
        print(f"agent serve: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
