"""The SDK entry point: `Agent` wires a model, MCP servers, a think policy, hooks and limits into runs."""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from mcp.types import GetPromptResult, LoggingLevel, ReadResourceResult

from agent.runtime.sandbox import Sandbox, SandboxSpec, open_sandbox
from agent.tools.config import ServerSpec, parse_servers
from agent.tools.hub import ToolHub
from agent.tools.local import LocalTool, claim_done_tool, context_status_tool, output_tools
from agent.tools.resources import PromptInfo, ResourceInfo
from agent.tools.source import ToolSource

from .context import ContextConfig
from .elicitation import Elicit
from .errors import AgentError, ConfigError
from .function_tools import FunctionTool, FunctionTools
from .hooks import Hooks
from .limits import Limits
from .models.base import ModelClient
from .models.client import ChatModel
from .models.config import ModelConfig, parse_model
from .output import OutputSpec
from .overlong import OVERLONG_DIR, OverlongOutputs
from .result import RunResult
from .run import CURRENT_RUN, AgentRun, EventSink
from .run_requests import RunRequests
from .sampling import SamplingPolicy, sampling_policy
from .session import Session
from .stream import EventStream
from .subagents import AgentTool
from .task import DEFAULT_MODEL, TaskSpec, load_function, load_task
from .telemetry import OpenTelemetryTracer
from .think import ThinkMode, ThinkPolicy, think_policy
from .toolkits import LOCAL_TOOLKITS, missing_local_tools, overlong_outputs, toolkit

DEFAULT_SYSTEM_PROMPT = (
    "You are an autonomous agent. Work step by step: use the tools to inspect and change things rather "
    "than guessing, check results before relying on them, and keep going until the task is done. "
    "When you are finished, reply with the final answer and no tool calls."
)


class Agent:
    """An agent: a model endpoint plus MCP servers, reusable across runs, several at once.

    ```python
    async with Agent("deepseek:deepseek-v4-pro", servers={"fs": {"command": "npx", "args": [...]}}) as agent:
        result = await agent.run("List the files")
    ```
    Used without `async with`, each run connects the servers and closes them again.
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
        local_tools: Sequence[LocalTool | str] = (),
        sandbox: Sandbox | SandboxSpec | Mapping[str, Any] | None = None,
        tool_sources: Sequence[ToolSource] = (),
        tools: Sequence[FunctionTool[..., Any] | Callable[..., Any]] = (),
        hooks: Sequence[Hooks] = (),
        trace_dir: str | Path | None = "runs",
        name: str | None = None,
        http_client: Any | None = None,
        fork_server: bool | None = None,
        context: ContextConfig | Mapping[str, Any] | None = None,
        workspace: str | Path | None = None,
        telemetry: Any | bool | None = None,
        output_type: Any = None,
        output_schema: Mapping[str, Any] | None = None,
        output_retries: int = 2,
        elicitation: Elicit | None = None,
        sampling: SamplingPolicy | bool | Mapping[str, Any] | None = None,
        server_log_level: LoggingLevel | None = "info",
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
        self.hooks = list(hooks)
        self.output_retries = output_retries
        self.output: OutputSpec | None = _output_spec(output_type, output_schema, output_retries)
        """What runs must produce: a final_result call whose arguments validate (RunResult.output)."""
        self._observers: list[EventSink] = []
        """Sinks every run's events also go to (OpenTelemetry spans)."""
        if telemetry:
            # True: the global tracer provider (configured by the OTEL_* variables); else the provider given.
            self._observers.append(OpenTelemetryTracer(None if telemetry is True else telemetry))
        self.tool_sources = [*tool_sources, *([FunctionTools(tools)] if tools else [])]
        """Tool providers beside the MCP servers (agent.tools.source.ToolSource), entered with the Agent;
        `tools` (Python functions, `@tool`-decorated or plain) become one FunctionTools source."""
        self._outputs_dir: tempfile.TemporaryDirectory[str] | None = None
        self._notices_seen = 0
        """Server notices already written to a run's trace."""
        self._notice_runs: list[AgentRun] = []
        """Runs in progress: each gets the server notices that arrive while it runs."""
        self.toolkits: list[str] = _toolkit_names(local_tools)
        """Toolathlon's local toolkits asked for by name (agent.toolkits.LOCAL_TOOLKITS), in order."""
        self.unavailable_local_tools = missing_local_tools(self.toolkits)
        """Toolkits asked for that cannot be offered here (web_search without a search key), with the reason; each
        run's trace says so in a notice."""
        offered = [name for name in self.toolkits if name not in self.unavailable_local_tools]
        self.local_tools = [
            *(tool for tool in local_tools if not isinstance(tool, str)),
            *(tool for name in offered for tool in toolkit(name)),
            *([claim_done_tool()] if claim_done and "claim_done" not in offered else []),
            # Toolathlon's readers and context tools replace ours where they were asked for.
            *(output_tools(_output_path) if "handle_overlong_tool_outputs" not in offered else []),
            *([context_status_tool(_context_status)] if "manage_context" not in offered else []),
        ]
        self._sandbox_spec: SandboxSpec | None = None
        self.sandbox: Sandbox | None = None
        """Where python-execute runs: given open, or opened from a spec on the workspace while the Agent is
        entered; None runs it on the host in the workspace folder."""
        if isinstance(sandbox, SandboxSpec | Mapping):
            self._sandbox_spec = sandbox if isinstance(sandbox, SandboxSpec) else SandboxSpec.model_validate(
                dict(sandbox))
        elif sandbox is not None:
            self.sandbox = sandbox
        self.name = name
        self.fork_server = fork_server
        """Our Python servers start as forks of a preloaded process (None: unless AGENT_FORKSERVER=0; see
        agent.tools.forkserver)."""
        self._http_client = http_client
        self._stack: AsyncExitStack | None = None
        self._model: ModelClient | None = None
        self._hub: ToolHub | None = None
        self.elicitation = elicitation
        """Answers servers' questions during tool calls (agent.elicitation); None: servers are told the client
        cannot be asked."""
        self.sampling = sampling_policy(dict(sampling) if isinstance(sampling, Mapping) else sampling)
        """Whether servers may ask the model for completions (off by default; agent.sampling)."""
        self.server_log_level = server_log_level
        """The least severe log messages asked of servers (they become `server_log` events); None: none."""
        self._sampling_model: ModelClient | None = None

    @classmethod
    def from_task(cls, task: TaskSpec, **overrides: Any) -> Agent:
        options: dict[str, Any] = dict(
            model=task.model, servers=task.all_servers(), think=task.think, limits=task.limits,
            system=task.system, claim_done=task.claim_done, name=task.name, context=task.context,
            local_tools=list(task.local_tools), sandbox=task.sandbox, sampling=task.sampling,
            workspace=task.workdir, output_schema=task.output_schema,
            tools=[load_function(ref, where=f"tools[{i}]") for i, ref in enumerate(task.tools)],
            tool_sources=[cls.from_task(load_task(sub.task, prompt_required=False),
                                        trace_dir=overrides.get("trace_dir", "runs"))
                          .as_tool(name, sub.description) for name, sub in task.agents.items()],
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
            if self.sampling.enabled and self.sampling.model is not None:
                self._sampling_model = await stack.enter_async_context(
                    ChatModel(parse_model(self.sampling.model, where="sampling.model"), http_client=self._http_client))
                await self._sampling_model.resolve_model()
            self._hub = await stack.enter_async_context(
                ToolHub(self.servers, tool_timeout=self.limits.tool_timeout_s, local_tools=self.local_tools,
                        on_notice=self._on_notice, sources=self.tool_sources, fork_server=self.fork_server,
                        server_requests=RunRequests(self))
            )
            if self._sandbox_spec is not None and "python_execute" in self.toolkits:
                folder = (self.workspace or Path.cwd()).resolve()
                self.sandbox = await stack.enter_async_context(open_sandbox(self._sandbox_spec, folder))
                stack.callback(self._forget_sandbox)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack, self._model, self._hub = self._stack, None, None, None
        self._sampling_model = None
        if stack is not None:
            # No shield here: the hub's task group must exit in the scope it was entered in; the hub
            # shields its own cleanup.
            await stack.aclose()
        if self._outputs_dir is not None:
            self._outputs_dir.cleanup()
            self._outputs_dir = None

    def _forget_sandbox(self) -> None:
        self.sandbox = None

    def connected(self) -> tuple[ModelClient, ToolHub]:
        """The model client and tool hub of an entered Agent."""
        if self._model is None or self._hub is None:
            raise AgentError("the Agent is not connected: use `async with agent:` (or agent.run / agent.iter)")
        return self._model, self._hub

    @property
    def tools(self) -> list[str]:
        """Names of the tools offered to the model (inside `async with`)."""
        return [t.name for t in self._hub.tools] if self._hub else []

    # -- resources and prompts of the connected servers (agent.tools.resources) -------------------------------

    async def list_resources(self, server: str | None = None) -> list[ResourceInfo]:
        """Resources and resource templates (`template=True`) of one server, or of every server that has some."""
        return await self.connected()[1].list_resources(server)

    async def read_resource(self, server: str, uri: str) -> ReadResourceResult:
        """Read one resource as the server gives it (`agent.tools.resources.resource_text(result)` for its text)."""
        return await self.connected()[1].read_resource(server, uri)

    async def list_prompts(self, server: str | None = None) -> list[PromptInfo]:
        """Prompts of one server, or of every server that has some."""
        return await self.connected()[1].list_prompts(server)

    async def get_prompt(self, server: str, name: str, arguments: Mapping[str, str] | None = None) -> GetPromptResult:
        """A server's prompt filled in (`agent.tools.resources.prompt_text(result)` for its text)."""
        return await self.connected()[1].get_prompt(server, name, arguments)

    def session(self, path: str | Path | None) -> Session:
        """A conversation kept in `path` (JSON): `await session.run(prompt)` continues it and saves it again."""
        return Session(self, path)

    def as_tool(self, name: str, description: str) -> AgentTool:
        """This agent as one tool `<name>(task)` of another agent: each call is a run of this agent (own model,
        think policy and servers), its trace linked to the caller's run, its usage and cost added to it."""
        return AgentTool(self, name, description)

    # -- what runs share -------------------------------------------------------------------

    def outputs_folder(self, run_id: str) -> Path:
        """Where cut tool outputs are saved: the workspace when there is one, else beside the traces."""
        if self.workspace is not None:
            return self.workspace / ".agent" / "outputs"
        if self.trace_dir is not None:
            return self.trace_dir / f"outputs-{run_id}"
        if self._outputs_dir is None:
            self._outputs_dir = tempfile.TemporaryDirectory(prefix="agent-outputs-")
        return Path(self._outputs_dir.name)

    @property
    def keeps_history(self) -> bool:
        """Whether runs record their full history (for the history toolkit)."""
        return "history" in self.toolkits and "history" not in self.unavailable_local_tools

    def overlong_outputs(self, run_id: str) -> OverlongOutputs | None:
        """The Toolathlon cut of long tool results for a run, when handle_overlong_tool_outputs was asked for: the
        full outputs go to `<workspace>/.overlong_tool_outputs/` (without a workspace, beside the cut outputs)."""
        if "handle_overlong_tool_outputs" not in self.toolkits:
            return None
        base = self.workspace if self.workspace is not None else self.outputs_folder(run_id)
        return overlong_outputs(base / OVERLONG_DIR)

    def default_trace_path(self, run_id: str) -> Path | None:
        if self.trace_dir is None:
            return None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.trace_dir / f"{stamp}-{self.name or 'run'}-{run_id}.jsonl"

    def _on_notice(self, server: str, message: str) -> None:
        for run in self._notice_runs:
            run.notice(server, message)

    def take_notices(self, run: AgentRun) -> list[tuple[str, str]]:
        """Notices from before `run` (start-up, between runs), once; then `run` gets the live ones."""
        _, hub = self.connected()
        backlog = hub.notices_since(self._notices_seen)
        self._notices_seen += len(backlog)
        self._notice_runs.append(run)
        return backlog

    def active_runs(self) -> list[AgentRun]:
        """The runs in progress."""
        return list(self._notice_runs)

    def sampling_model(self) -> ModelClient:
        """The model that answers servers' sampling requests: the sampling policy's, else the agent's."""
        if self._sampling_model is not None:
            return self._sampling_model
        return self.connected()[0]

    def release_notices(self, run: AgentRun) -> None:
        if run in self._notice_runs:
            self._notice_runs.remove(run)
        if self._hub is not None and not self._notice_runs:
            self._notices_seen = len(self._hub.notices())

    # -- runs ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def iter(
        self,
        prompt: str,
        *,
        trace_path: str | Path | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
        on_event: EventSink | None = None,
        output_type: Any = None,
    ) -> AsyncIterator[AgentRun]:
        """Step through a run: `async with agent.iter(prompt) as run: async for step in run: ...`.

        Each step is a `StepRecord` (think mode, assistant turn, tool calls and outcomes); `run.result` is set
        once the run ended. Leaving the block early ends the run as `cancelled`.
        """
        async with AsyncExitStack() as stack:
            if self._stack is None:
                await stack.enter_async_context(self)
            output = self.output if output_type is None else OutputSpec.of_type(output_type,
                                                                               max_retries=self.output_retries)
            run = AgentRun(self, prompt, trace_path=trace_path,
                           history=[dict(m) for m in history] if history else None,
                           sinks=[*([on_event] if on_event else []), *self._observers], output=output)
            yield await stack.enter_async_context(run)

    async def run(
        self,
        prompt: str,
        *,
        trace_path: str | Path | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
        on_event: EventSink | None = None,
        output_type: Any = None,
    ) -> RunResult:
        """Run the agent on `prompt` until it answers or a limit stops it.

        `history` continues an earlier conversation (`RunResult.messages`). Model and tool failures end
        the run with `stop_reason="error"` and the message in `error` (typed in `error_info`); bad
        configuration raises.
        """
        async with self.iter(prompt, trace_path=trace_path, history=history, on_event=on_event,
                             output_type=output_type) as run:
            return await run.run_to_end()

    def stream(
        self, prompt: str, *, trace_path: str | Path | None = None, history: Sequence[Mapping[str, Any]] | None = None
    ) -> EventStream:
        """Run the agent and give its events as they happen (streamed text as `model_delta`).

        `async with agent.stream(prompt) as events: async for event in events: ...`; leaving the block early
        cancels the run and closes what it opened. Plain `async for` works too (see `EventStream`).
        """
        return EventStream(lambda sink: self.run(prompt, trace_path=trace_path, history=history, on_event=sink))


def _toolkit_names(local_tools: Sequence[LocalTool | str]) -> list[str]:
    names: list[str] = []
    for index, entry in enumerate(local_tools):
        if isinstance(entry, str):
            if entry not in LOCAL_TOOLKITS:
                raise ConfigError(f"local_tools[{index}]: unknown local tool {entry!r}; expected a LocalTool or one "
                                  f"of: {', '.join(LOCAL_TOOLKITS)}")
            if entry not in names:
                names.append(entry)
        elif not isinstance(entry, LocalTool):
            raise ConfigError(f"local_tools[{index}]: expected a LocalTool or a toolkit name, got "
                              f"{type(entry).__name__}")
    return names


def _output_spec(output_type: Any, output_schema: Mapping[str, Any] | None, retries: int) -> OutputSpec | None:
    if output_type is not None and output_schema is not None:
        raise ConfigError("give output_type (a Python type) or output_schema (a JSON schema), not both")
    if output_type is not None:
        return OutputSpec.of_type(output_type, max_retries=retries)
    if output_schema is not None:
        return OutputSpec.of_schema(output_schema, max_retries=retries)
    return None


def _output_path(output_id: str) -> Path | None:
    run = CURRENT_RUN.get()
    return run.keeper.outputs.path(output_id) if run is not None and run.keeper is not None else None


def _context_status() -> dict[str, Any]:
    run = CURRENT_RUN.get()
    if run is None or run.keeper is None or run.conversation is None:
        return {"error": "no run in progress"}
    return run.keeper.status(run.conversation)


def _with_interpreter(spec: ServerSpec) -> ServerSpec:
    """`python`/`python3` as a server command means the interpreter running the agent (venvs included)."""
    if spec.command in ("python", "python3"):
        return spec.model_copy(update={"command": sys.executable})
    return spec
