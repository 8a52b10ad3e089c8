"""One run of one task: the job, the settings all runs share, the judges, running it in a fresh workspace (or
replaying a scripted trajectory), and the record it leaves."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import yaml
from pydantic import BaseModel, Field

from agent.runtime.workspace import Workspace, WorkspaceError

from ..errors import AgentError, ConfigError, ToolServerError
from ..models.config import ModelConfig, parse_model
from ..runner import Agent
from ..task import bind_workspace
from ..testing import ScriptedModelServer
from ..trace import result_from_trace
from ..usage import ModeStats, Usage
from .discovery import EvalTask
from .grading import GradeContext, GradeResult, ModelJudge, grade_run, not_graded
from .report import HARNESS_ERROR, NOT_GRADED_STOPS
from .site import SITE_VAR, allow_local_site, with_site
from .taxonomy import classify_failure, read_trace

DEFAULT_TIMEOUT_S = 1800.0
NOTHING_SCRIPT = [{"content": "I did not do anything."}]


class RunRecord(BaseModel):
    """One run of one task, as appended to results.jsonl."""

    task: str
    repeat: int
    passed: bool
    failure: str | None = Field(None, description="Why it did not pass: a limit, an error, a failed check")
    stop_reason: str = Field(description="The agent's stop reason, or timeout / workspace_error / server_error / crash")
    coverage: float | None = None
    steps: int = 0
    tool_calls: int = 0
    usage: Usage = Usage()
    cost: float = 0.0
    judge_cost: float = 0.0
    duration_s: float = Field(0.0, description="The agent run alone")
    wall_s: float = Field(0.0, description="Workspace, servers, agent, grading and cleanup")
    timings: dict[str, float] = Field(default_factory=dict)
    think: dict[str, ModeStats] = Field(default_factory=dict)
    grade: GradeResult | None = None
    trace: str | None = None
    model: str = ""
    scripted: str | None = None
    error: str | None = Field(None, description="The agent's error message, when it stopped on one")
    failure_category: str | None = Field(
        None, description="Why a failed run failed, in MCP-Atlas's failure taxonomy (agent.eval.taxonomy); None when "
        "it passed or was not graded")
    workspace: str | None = Field(None, description="The kept workspace (--keep-workspaces)")
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, int]:
        return self.task, self.repeat


@dataclass(frozen=True)
class RunJob:
    task: EvalTask
    repeat: int

    @property
    def key(self) -> tuple[str, int]:
        return self.task.id, self.repeat


@dataclass
class RunSettings:
    """What every run of a suite shares; plain data, so a remote executor can ship it with the jobs."""

    out: Path
    model: str | None = None
    think: str | None = None
    max_steps: int | None = None
    timeout_s: float | None = None
    scripted: str | None = None
    judge: str | None = None
    keep_workspaces: bool = False
    site_urls: dict[str, str] = field(default_factory=dict)  # suite folder -> URL


class Judges:
    """Judge models shared by the runs of a suite, opened on first use."""

    def __init__(self, default: str | None):
        self.default = default
        self._open: dict[str, ModelJudge] = {}
        self._stack = AsyncExitStack()
        self._lock = anyio.Lock()

    async def __aenter__(self) -> Judges:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def for_task(self, task: EvalTask) -> ModelJudge | None:
        grade = task.spec.grade
        if grade is None or not grade.claims or grade.judge == "match":
            return None
        model = self.default or grade.judge_model or (task.suite.spec.judge_model if task.suite else None)
        if model is None:
            return None
        key = json.dumps(model, sort_keys=True) if not isinstance(model, str) else model
        async with self._lock:
            if key not in self._open:
                self._open[key] = await self._stack.enter_async_context(ModelJudge(model))
            return self._open[key]


def load_trajectory(path: Path | None, site_url: str | None) -> list[Any]:
    """A scripted trajectory (YAML list of turns) with ${SITE_URL} bound."""
    if path is None:
        return list(NOTHING_SCRIPT)
    text = path.read_text(encoding="utf-8")
    if site_url is not None:
        text = text.replace(SITE_VAR, site_url)
    data = yaml.safe_load(text)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of scripted turns")
    return data


async def _stop_shielded(server: Any) -> None:
    with anyio.CancelScope(shield=True):  # also when the run's wall timeout fired
        await anyio.to_thread.run_sync(server.stop)


def trace_path(out: Path, key: tuple[str, int]) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key[0])
    return out / "traces" / safe / f"r{key[1]}.jsonl"


GENERATION_FIELDS = ("temperature", "top_p", "max_tokens")


def with_task_generation(model: ModelConfig, task_model: ModelConfig) -> ModelConfig:
    """--model replaces the task's endpoint; sampling settings the task set (an imported benchmark's run
    settings, say) stay unless the new model string sets its own."""
    keep = {name: getattr(task_model, name) for name in GENERATION_FIELDS
            if getattr(model, name) is None and getattr(task_model, name) is not None}
    return model.model_copy(update=keep) if keep else model


async def run_job(job: RunJob, settings: RunSettings, judges: Judges) -> RunRecord:
    """One isolated run: a fresh workspace and sandbox, the task's servers, the agent, then grading.

    Never raises for the run's own failures (they become the record's `failure`); cancellation propagates.
    """
    task = job.task
    spec = task.spec
    suite_key = str(task.suite.folder) if task.suite else ""
    site_url = settings.site_urls.get(suite_key)
    timeout = settings.timeout_s or (task.suite.spec.timeout_s if task.suite else None) or DEFAULT_TIMEOUT_S
    trace = trace_path(settings.out, job.key)
    trace.parent.mkdir(parents=True, exist_ok=True)
    trace.unlink(missing_ok=True)  # a run cut short before --resume starts over
    record = RunRecord(task=task.id, repeat=job.repeat, passed=False, stop_reason="crash", scripted=settings.scripted,
                       trace=str(trace.relative_to(settings.out)))
    timings: dict[str, float] = {}
    started = mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 4)
        mark = now

    result = None
    stopped: str | None = None  # set when the run failed before or around the agent
    with anyio.move_on_after(timeout) as scope:
        try:
            async with AsyncExitStack() as stack:
                if site_url is not None:
                    spec = with_site(spec, site_url)
                updates: dict[str, Any] = {}
                if settings.scripted is not None:
                    model = spec.model
                    server = ScriptedModelServer(
                        load_trajectory(task.script, site_url), dialect="vllm" if model.profile == "vllm" else "deepseek",
                        model=model.model or "deepseek-v4-flash")
                    await anyio.to_thread.run_sync(server.start)
                    stack.push_async_callback(_stop_shielded, server)
                    updates["model"] = parse_model(server.model_string)
                elif settings.model:
                    updates["model"] = with_task_generation(parse_model(settings.model, where="--model"), spec.model)
                if settings.think:
                    updates["think"] = settings.think
                if settings.max_steps:
                    updates["limits"] = spec.limits.model_copy(update={"max_steps": settings.max_steps})
                spec = spec.model_copy(update=updates)
                record.model = spec.model.label()
                workspace = await stack.enter_async_context(
                    Workspace(spec.workspace, spec.sandbox, keep=True if settings.keep_workspaces else None))
                if workspace.keep:
                    record.workspace = str(workspace.path)
                bound = bind_workspace(spec, workspace.path)
                if site_url is not None:
                    bound = allow_local_site(bound)
                lap("workspace_s")
                # Local tools that run code (python-execute) use the workspace's sandbox, not a second one.
                shared = {"sandbox": workspace.sandbox} if workspace.sandbox is not None else {}
                agent = await stack.enter_async_context(Agent.from_task(bound, trace_dir=None, **shared))
                lap("servers_s")
                launch_time = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S %A")
                result = await agent.run(bound.prompt, trace_path=trace)
                lap("agent_s")
                if not result.ok:
                    record.failure = not_graded(result.stop_reason, result.error)
                elif spec.grade is None or spec.grade.empty:
                    record.passed = True  # nothing to check: finishing is passing
                else:
                    judge = await judges.for_task(task)
                    grade = await grade_run(spec.grade, GradeContext(
                        workspace=workspace.path, result=result, sandbox=workspace.sandbox, launch_time=launch_time,
                        judge=judge, extra_env={"SITE_URL": site_url} if site_url else {}))
                    record.grade, record.coverage, record.judge_cost = grade, grade.coverage, grade.judge_cost
                    record.passed, record.failure = grade.passed, grade.reason
                    if grade.harness_error is not None:
                        stopped = HARNESS_ERROR  # the checker could not run: not the model's failure
                    with trace.open("a", encoding="utf-8") as file:
                        file.write(grade.trace_line() + "\n")
                    lap("grade_s")
        except WorkspaceError as exc:
            stopped, record.failure = "workspace_error", f"workspace: {exc}"
        except ToolServerError as exc:
            stopped, record.failure = "server_error", f"servers: {exc}"
        except AgentError as exc:
            stopped, record.failure = "error", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug or an environment problem: this run fails, the suite goes on
            stopped, record.failure = "crash", f"crash: {type(exc).__name__}: {exc}"
        lap("cleanup_s")
    if stopped is not None:
        record.passed = False
    if scope.cancelled_caught:
        stopped, record.passed = "timeout", False
        record.failure = f"the run passed the wall timeout of {timeout:g} s"
        timings.setdefault("cleanup_s", round(time.perf_counter() - mark, 4))
        if result is None and trace.exists():
            try:
                result = result_from_trace(trace)  # what the cut run used, for tokens and cost
            except ConfigError:
                result = None
    record.stop_reason = stopped or (result.stop_reason if result is not None else "crash")
    if result is not None:
        record.steps, record.tool_calls, record.usage = result.steps, result.tool_calls, result.usage
        record.cost, record.duration_s, record.think = result.cost, result.duration_s, result.think
        record.error = result.error
    record.timings = timings
    if not record.passed and record.stop_reason not in NOT_GRADED_STOPS:
        record.failure_category = classify_failure(record, read_trace(trace))
    record.wall_s = round(time.perf_counter() - started, 4)
    record.finished_at = time.time()
    return record


def run_job_sync(job: RunJob, settings: RunSettings) -> RunRecord:
    """One run in a fresh event loop: the entry point for a remote worker of a distributed executor."""

    async def main() -> RunRecord:
        async with Judges(settings.judge) as judges:
            return await run_job(job, settings, judges)

    return anyio.run(main)
