"""`agent eval`: find tasks (suites, task files, Toolathlon folders, MCP-Atlas rows), run each k times in
its own workspace through an executor, grade the runs that ended normally, append results as they finish,
and write the reports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import functools
import http.server
import json
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AgentError, ConfigError, ToolServerError
from ..interrupts import EXIT_INTERRUPTED, EXIT_TERMINATED, sigterm_as_ctrl_c
from ..models.config import parse_model
from ..task import TaskSpec, bind_workspace, describe_validation_error, load_task
from ..usage import ModeStats, Usage
from .grading import GradeContext, GradeResult, ModelJudge, grade_run, not_graded

SITE_VAR = "${SITE_URL}"
SUITE_FILE = "suite.yaml"
DEFAULT_TIMEOUT_S = 1800.0
NOTHING_SCRIPT = [{"content": "I did not do anything."}]
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


# --- suites and tasks ---------------------------------------------------------------------------------


class SuiteSpec(BaseModel):
    """A suite file (`suite.yaml`): which task files belong to it and what the suite provides them."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Default: the suite folder's name")
    description: str | None = None
    tasks: list[str] = Field(default_factory=lambda: ["**/task.yaml"],
                             description="Globs of task files, relative to the suite folder")
    site: Path | None = Field(None, description="A folder served on http://127.0.0.1:PORT while the suite runs; "
                              "${SITE_URL} in task files and scripts becomes its URL")
    timeout_s: float | None = Field(None, gt=0, description="Wall time per run (workspace, agent, grading)")
    judge_model: str | dict[str, Any] | None = Field(None, description="Judge for claims when --judge is not given")


@dataclass
class LoadedSuite:
    spec: SuiteSpec
    folder: Path

    @property
    def name(self) -> str:
        return self.spec.name or self.folder.name


@dataclass
class EvalTask:
    """A runnable task of the suite."""

    id: str
    spec: TaskSpec
    source: str
    kind: str = "task"  # task | toolathlon | atlas
    folder: Path | None = None  # where solutions/ scripts are looked up
    suite: LoadedSuite | None = None
    warnings: list[str] = field(default_factory=list)
    script: Path | None = None  # --scripted: the trajectory to replay (None with --scripted nothing: built in)


@dataclass
class SkippedTask:
    """A task that cannot run here, and why (reported before anything runs)."""

    id: str
    source: str
    reason: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class Discovery:
    tasks: list[EvalTask] = field(default_factory=list)
    skipped: list[SkippedTask] = field(default_factory=list)


@dataclass
class ImportOptions:
    servers: Path | None = None  # mcpServers entries for benchmark servers we do not ship
    atlas_data: Path | None = None
    toolathlon_root: Path | None = None


def load_suite(path: Path) -> LoadedSuite:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        spec = SuiteSpec.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc, SuiteSpec)}") from None
    folder = path.parent.resolve()
    if spec.site is not None and not spec.site.is_absolute():
        spec = spec.model_copy(update={"site": folder / spec.site})
    return LoadedSuite(spec, folder)


def discover(paths: Sequence[Path], options: ImportOptions | None = None) -> Discovery:
    """Every task under `paths`: suite folders or files, task files, Toolathlon task folders (or folders of
    them), MCP-Atlas CSV/JSONL/JSON files. Tasks that cannot run here are in `skipped` with the reason."""
    from . import importers

    options = options or ImportOptions()
    servers = importers.load_server_entries(options.servers)
    found = Discovery()

    def add_task_file(path: Path, suite: LoadedSuite | None) -> None:
        try:
            spec = load_task(path)
        except ConfigError as exc:
            found.skipped.append(SkippedTask(path.parent.name if path.name == "task.yaml" else path.stem,
                                             str(path), f"bad task file: {exc}"))
            return
        task_id = spec.name or (path.parent.name if path.name == "task.yaml" else path.stem)
        found.tasks.append(EvalTask(task_id, spec, str(path), "task", path.parent.resolve(), suite))

    def add_imported(imported: importers.ImportedTask) -> None:
        if imported.runnable:
            assert imported.spec is not None
            folder = Path(imported.source) if imported.kind == "toolathlon" else None
            found.tasks.append(EvalTask(imported.id, imported.spec, imported.source, imported.kind, folder,
                                        None, list(imported.warnings)))
        else:
            found.skipped.append(SkippedTask(imported.id, imported.source, imported.problem or "cannot run",
                                             list(imported.warnings)))

    def visit(path: Path, depth: int) -> None:
        if path.is_file():
            suffix = path.suffix.lower()
            if path.name == SUITE_FILE:
                visit_suite(path)
            elif suffix in (".yaml", ".yml"):
                add_task_file(path, None)
            elif suffix in (".csv", ".jsonl", ".json"):
                for imported in importers.import_atlas_rows(path, servers=servers, data=options.atlas_data):
                    add_imported(imported)
            else:
                raise ConfigError(f"{path}: not a task file, suite, Toolathlon folder or MCP-Atlas file")
            return
        if not path.is_dir():
            raise ConfigError(f"{path}: no such file or folder")
        if (path / SUITE_FILE).is_file():
            visit_suite(path / SUITE_FILE)
        elif importers.is_toolathlon_task(path):
            add_imported(importers.import_toolathlon_task(path, servers=servers,
                                                          toolathlon_root=options.toolathlon_root))
        elif (path / "task.yaml").is_file():
            add_task_file(path / "task.yaml", None)
        elif depth < 3:
            for child in sorted(path.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    visit(child, depth + 1)

    def visit_suite(path: Path) -> None:
        suite = load_suite(path)
        files = sorted({p.resolve() for pattern in suite.spec.tasks for p in suite.folder.glob(pattern)})
        if not files:
            raise ConfigError(f"{path}: no task files match {suite.spec.tasks}")
        for file in files:
            add_task_file(file, suite)

    for path in paths:
        visit(Path(path), 0)
    _unique_ids(found.tasks)
    return found


def _unique_ids(tasks: list[EvalTask]) -> None:
    seen: dict[str, int] = {}
    for task in tasks:
        count = seen.get(task.id, 0) + 1
        seen[task.id] = count
        if count > 1:
            task.id = f"{task.id}-{count}"


def select(tasks: list[EvalTask], patterns: Sequence[str]) -> list[EvalTask]:
    """Tasks whose id matches one of `patterns` (a glob when it has * ? or [, else a substring)."""
    if not patterns:
        return tasks
    return [t for t in tasks if any(_matches(t.id, p) for p in patterns)]


def _matches(task_id: str, pattern: str) -> bool:
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(task_id, pattern)
    return pattern in task_id


def attach_scripts(found: Discovery, name: str) -> None:
    """--scripted NAME: each task replays `solutions/NAME.yaml` beside its task file (`reference` may be the
    task's `demo`; `nothing` has a built-in do-nothing answer). Tasks without one are skipped."""
    kept = []
    for task in found.tasks:
        candidates = [task.folder / "solutions" / f"{name}.yaml"] if task.folder else []
        if name == "reference" and task.spec.demo is not None:
            candidates.append(task.spec.demo)
        script = next((p for p in candidates if p.is_file()), None)
        if script is None and name != "nothing":
            found.skipped.append(SkippedTask(task.id, task.source, f"no scripted trajectory '{name}' "
                                             f"(solutions/{name}.yaml)", task.warnings))
            continue
        task.script = script
        kept.append(task)
    found.tasks = kept


# --- runs and their records ---------------------------------------------------------------------------


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


def _with_site(spec: TaskSpec, url: str) -> TaskSpec:
    """${SITE_URL} replaced wherever a task can mention it: prompts, server entries, setup and grade commands."""

    def sub(text: str) -> str:
        return text.replace(SITE_VAR, url)

    servers = {name: server.model_copy(update={
        "args": [sub(a) for a in server.args], "env": {k: sub(v) for k, v in server.env.items()},
        "url": sub(server.url) if server.url else None, "headers": {k: sub(v) for k, v in server.headers.items()},
    }) for name, server in spec.servers.items()}
    updates: dict[str, Any] = {"prompt": sub(spec.prompt), "system": sub(spec.system) if spec.system else None,
                               "servers": servers}
    if spec.workspace is not None:
        updates["workspace"] = spec.workspace.model_copy(update={"setup": [sub(c) for c in spec.workspace.setup]})
    if spec.grade is not None:
        commands = [c.model_copy(update={"run": sub(c.run)}) for c in spec.grade.commands]
        updates["grade"] = spec.grade.model_copy(update={"commands": commands})
    return spec.model_copy(update=updates)


def _allow_local_site(task: TaskSpec) -> TaskSpec:
    """Our web server refuses private addresses; a suite's own site on 127.0.0.1 is let through."""
    servers = {}
    for name, server in task.servers.items():
        if server.args[:2] == ["-m", "agent.servers.web"] and "--allow-host" not in server.args:
            server = server.model_copy(update={"args": [*server.args, "--allow-host", "127.0.0.1"]})
        servers[name] = server
    return task.model_copy(update={"servers": servers})


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


async def run_job(job: RunJob, settings: RunSettings, judges: Judges) -> RunRecord:
    """One isolated run: a fresh workspace and sandbox, the task's servers, the agent, then grading.

    Never raises for the run's own failures (they become the record's `failure`); cancellation propagates.
    """
    from agent.runtime.workspace import WorkspaceError

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
                    spec = _with_site(spec, site_url)
                updates: dict[str, Any] = {}
                if settings.scripted is not None:
                    from ..testing import ScriptedModelServer

                    model = spec.model
                    server = ScriptedModelServer(
                        load_trajectory(task.script, site_url), dialect="vllm" if model.profile == "vllm" else "deepseek",
                        model=model.model or "deepseek-v4-flash")
                    await anyio.to_thread.run_sync(server.start)
                    stack.push_async_callback(_stop_shielded, server)
                    updates["model"] = parse_model(server.model_string)
                elif settings.model:
                    updates["model"] = parse_model(settings.model, where="--model")
                if settings.think:
                    updates["think"] = settings.think
                if settings.max_steps:
                    updates["limits"] = spec.limits.model_copy(update={"max_steps": settings.max_steps})
                spec = spec.model_copy(update=updates)
                record.model = spec.model.label()
                from agent.runtime.workspace import Workspace

                from ..runner import Agent

                workspace = await stack.enter_async_context(
                    Workspace(spec.workspace, spec.sandbox, keep=True if settings.keep_workspaces else None))
                if workspace.keep:
                    record.workspace = str(workspace.path)
                bound = bind_workspace(spec, workspace.path)
                if site_url is not None:
                    bound = _allow_local_site(bound)
                lap("workspace_s")
                agent = await stack.enter_async_context(Agent.from_task(bound, trace_dir=None))
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
            from ..trace import result_from_trace

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
    record.wall_s = round(time.perf_counter() - started, 4)
    record.finished_at = time.time()
    return record


# --- executors ----------------------------------------------------------------------------------------

Work = Callable[[RunJob], Awaitable[RunRecord]]
Done = Callable[[RunRecord], Awaitable[None]]


class Executor(Protocol):
    """Runs jobs and reports each record as soon as it exists. The local one uses anyio workers; a
    distributed one (Ray, Dask, a queue) would ship `(job, settings)` to remote workers that call
    `run_job_sync` and call `done` on the driver as results come back."""

    async def map(self, jobs: Sequence[RunJob], work: Work, done: Done) -> None: ...


class LocalExecutor:
    """N anyio workers in this process; each run has its own workspace, sandbox and server processes."""

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ConfigError(f"-j: expected at least 1 worker, got {workers}")
        self.workers = workers

    async def map(self, jobs: Sequence[RunJob], work: Work, done: Done) -> None:
        send, receive = anyio.create_memory_object_stream[RunJob](len(jobs) or 1)
        for job in jobs:
            send.send_nowait(job)
        send.close()

        async def worker(queue: Any) -> None:
            async with queue:
                async for job in queue:
                    await done(await work(job))

        async with anyio.create_task_group() as group:
            for _ in range(min(self.workers, len(jobs))):
                group.start_soon(worker, receive.clone())
        receive.close()


def run_job_sync(job: RunJob, settings: RunSettings) -> RunRecord:
    """One run in a fresh event loop: the entry point for a remote worker of a distributed executor."""

    async def main() -> RunRecord:
        async with Judges(settings.judge) as judges:
            return await run_job(job, settings, judges)

    return anyio.run(main)


# --- a suite's local site -----------------------------------------------------------------------------


class SiteServer:
    """A folder served over HTTP on 127.0.0.1 (a free port) on a background thread."""

    def __init__(self, folder: Path):
        self.folder = folder
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="suite-site", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> SiteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# --- results.jsonl and resume ---------------------------------------------------------------------------


class ResultsLog:
    """results.jsonl in the output folder: one record per finished run, appended and synced as it finishes."""

    def __init__(self, out: Path):
        self.path = out / "results.jsonl"

    def read(self) -> list[RunRecord]:
        """Records so far; a line cut by a killed process is ignored (that run is simply run again)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(RunRecord.model_validate_json(line))
            except ValueError:
                continue
        return records

    def append(self, record: RunRecord) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            if file.tell() > 0 and not self._ends_with_newline():
                file.write("\n")  # after a line cut by a kill
            file.write(record.model_dump_json() + "\n")
            file.flush()
            os.fsync(file.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"


# --- live progress ------------------------------------------------------------------------------------


class Progress:
    """One status line (runs done, passes, tokens, cost, elapsed, running), redrawn on a terminal; a line
    per finished run otherwise."""

    def __init__(self, total: int, out: TextIO | None = None, *, quiet: bool = False, done: int = 0):
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.total, self.done, self.passed, self.tokens, self.cost = total, done, 0, 0, 0.0
        self.quiet = quiet
        self.running = 0
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        rate = f" ({self.passed / self.done:.0%})" if self.done else ""
        width = 20
        filled = int(width * self.done / self.total) if self.total else width
        bar = "█" * filled + "░" * (width - filled)
        return (f"{bar} {self.done}/{self.total} runs · pass {self.passed}{rate} · {self.tokens:,} tokens · "
                f"${self.cost:.4f} · {elapsed // 60}:{elapsed % 60:02d} · {self.running} running")

    def started_run(self) -> None:
        self.running += 1
        self._draw()

    def finished(self, record: RunRecord) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.passed += record.passed
        self.tokens += record.usage.total_tokens
        self.cost += record.cost + record.judge_cost
        if not self.quiet:
            mark = "PASS" if record.passed else "FAIL"
            why = f" — {record.failure.splitlines()[0][:140]}" if record.failure else ""
            text = f"{mark} {record.task} r{record.repeat} · {record.steps} steps · {record.wall_s:.1f}s{why}"
            self._write(text, newline=True)
        self._draw()

    def _draw(self) -> None:
        if self.tty:
            self._write(self.line(), newline=False)

    def _write(self, text: str, *, newline: bool) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + text + ("\n" if newline else ""))
        elif newline:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + self.line() + "\n")
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()


# --- the suite ------------------------------------------------------------------------------------------


@dataclass
class SuiteOutcome:
    records: list[RunRecord]
    report: dict[str, Any]
    interrupted: bool = False


def plan(tasks: Sequence[EvalTask], repeats: int, done: Iterable[tuple[str, int]] = ()) -> list[RunJob]:
    """Jobs in rounds (every task once, then every task again), so early results cover the whole suite."""
    finished = set(done)
    return [RunJob(task, r) for r in range(repeats) for task in tasks if (task.id, r) not in finished]


async def run_suite(tasks: Sequence[EvalTask], settings: RunSettings, *, repeats: int = 1,
                    executor: Executor | None = None, progress: Progress | None = None,
                    skipped: Sequence[SkippedTask] = (), config: dict[str, Any] | None = None) -> SuiteOutcome:
    """Run every task `repeats` times (skipping runs already in results.jsonl), then write the reports."""
    import agent.runtime.workspace  # noqa: F401  (imported before the first run, so its timings are not skewed)

    from .. import runner, testing  # noqa: F401
    from .report import build_report, write_reports

    settings.out.mkdir(parents=True, exist_ok=True)
    log = ResultsLog(settings.out)
    wanted = {(t.id, r) for t in tasks for r in range(repeats)}
    previous = [r for r in log.read() if r.key in wanted]
    jobs = plan(tasks, repeats, (r.key for r in previous))
    records = list(previous)
    executor = executor or LocalExecutor(1)
    progress = progress or Progress(len(wanted), quiet=True, done=len(previous))
    progress.passed = sum(r.passed for r in previous)
    started = time.time()
    interrupted = False

    async def work(job: RunJob) -> RunRecord:
        progress.started_run()
        return await run_job(job, settings, judges)

    async def done(record: RunRecord) -> None:
        log.append(record)
        records.append(record)
        progress.finished(record)

    sites = {}
    try:
        with _Sites(tasks) as sites:
            settings.site_urls = {key: site.url for key, site in sites.items()}
            async with Judges(settings.judge) as judges:
                await executor.map(jobs, work, done)
    except (KeyboardInterrupt, anyio.get_cancelled_exc_class()):
        interrupted = True
        raise
    finally:
        progress.close()
        report = build_report(records, tasks, repeats=repeats, skipped=skipped, config=config or {},
                              wall_s=time.time() - started, interrupted=interrupted)
        write_reports(settings.out, report)
    return SuiteOutcome(records, report, interrupted)


class _Sites:
    """The local sites of the suites being run, one server each, for the whole run."""

    def __init__(self, tasks: Sequence[EvalTask]):
        self.folders = {str(t.suite.folder): t.suite.spec.site for t in tasks
                        if t.suite is not None and t.suite.spec.site is not None}
        self.servers: dict[str, SiteServer] = {}

    def __enter__(self) -> dict[str, SiteServer]:
        for key, folder in self.folders.items():
            if not folder.is_dir():
                raise ConfigError(f"suite {key}: site folder {folder} does not exist")
            self.servers[key] = SiteServer(folder).__enter__()
        return self.servers

    def __exit__(self, *exc: object) -> None:
        for server in self.servers.values():
            server.__exit__(None, None, None)


# --- the command line -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent eval",
        description="Run tasks as a benchmark suite: each run in its own workspace, graded by the task's `grade` "
        "section; results.jsonl is appended as runs finish, then report.md, report.json and report.html are "
        "written. PATH: a suite folder (suite.yaml), task files, Toolathlon task folders (or a folder of them), "
        "MCP-Atlas rows (.csv, .jsonl, .json).",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="runs at the same time (default 1)")
    parser.add_argument("-k", "--repeats", type=int, default=1, help="runs per task, for pass@k and pass^k (default 1)")
    parser.add_argument("--model", default=os.environ.get("AGENT_MODEL"),
                        help="model for every task (default: $AGENT_MODEL or each task's)")
    parser.add_argument("--think", choices=["auto", "none", "high", "max"], help="think policy for every task")
    parser.add_argument("--max-steps", type=int, help="override limits.max_steps of every task")
    parser.add_argument("--filter", action="append", default=[], metavar="PATTERN",
                        help="only tasks whose id matches (glob with * ? [, else substring); repeatable")
    parser.add_argument("--out", type=Path, help="output folder (default evals/<time>-<suite>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the suite in --out: runs already in results.jsonl are kept")
    parser.add_argument("--timeout", type=float, help=f"wall seconds per run, everything included "
                        f"(default: the suite's, else {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--judge", default=os.environ.get("AGENT_JUDGE_MODEL"),
                        help="judge model for claims (default: $AGENT_JUDGE_MODEL, the task's or suite's; "
                        "without one, a deterministic matcher checks numbers and quoted text)")
    parser.add_argument("--scripted", metavar="NAME",
                        help="replay each task's solutions/NAME.yaml through the real loop instead of a model "
                        "(`reference` may be the task's demo; `nothing` is built in). Exit code 1 unless "
                        "`reference` passes every run and any other script fails every run")
    parser.add_argument("--servers", type=Path, help="mcpServers entries (JSON or YAML) for benchmark servers "
                        "we do not ship, named like the benchmark's servers")
    parser.add_argument("--atlas-data", type=Path, help="MCP-Atlas's /data folder, copied into each workspace")
    parser.add_argument("--toolathlon-root", type=Path, help="a Toolathlon checkout, for checkers that import its utils")
    parser.add_argument("--list", action="store_true", help="list the tasks and what they lack; run nothing")
    parser.add_argument("--keep-workspaces", action="store_true", help="keep each run's workspace")
    parser.add_argument("--quiet", action="store_true", help="only the progress line and the summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`agent eval ...` (the arguments after `eval`)."""
    args = build_parser().parse_args(argv)
    with sigterm_as_ctrl_c() as terminated:  # SIGTERM: the runs in flight are cancelled as on Ctrl-C
        try:
            return _main(args)
        except ConfigError as exc:
            print(f"agent eval: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            how = "terminated" if terminated() else "interrupted"
            print(f"agent eval: {how}; run again with --resume to continue", file=sys.stderr)
            return EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED


def _main(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise ConfigError(f"-k: expected at least 1 run per task, got {args.repeats}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps: expected an integer >= 1, got {args.max_steps}")
    found = discover(args.paths, ImportOptions(args.servers, args.atlas_data, args.toolathlon_root))
    found.tasks = select(found.tasks, args.filter)
    found.skipped = [s for s in found.skipped if not args.filter or any(_matches(s.id, p) for p in args.filter)]
    if args.scripted:
        attach_scripts(found, args.scripted)
    _print_plan(found, args)
    if args.list:
        return EXIT_OK
    _check_models(found.tasks, args)
    if not found.tasks:
        print("agent eval: no task can run", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or Path("evals") / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{_suite_name(found, args.paths)}"
    config = {
        "paths": [str(p) for p in args.paths], "model": args.model, "think": args.think, "scripted": args.scripted,
        "judge": args.judge, "repeats": args.repeats, "jobs": args.jobs, "filter": args.filter,
        "max_steps": args.max_steps, "tasks": [t.id for t in found.tasks], "started": dt.datetime.now().isoformat(),
    }
    _prepare_out(out, config, args.resume)
    settings = RunSettings(out=out, model=args.model, think=args.think, max_steps=args.max_steps,
                           timeout_s=args.timeout, scripted=args.scripted, judge=args.judge,
                           keep_workspaces=args.keep_workspaces)
    total = len(found.tasks) * args.repeats
    progress = Progress(total, quiet=args.quiet)
    outcome = anyio.run(functools.partial(
        run_suite, found.tasks, settings, repeats=args.repeats, executor=LocalExecutor(args.jobs),
        progress=progress, skipped=found.skipped, config=config))
    _print_summary(outcome.report, out)
    if args.scripted:
        return _scripted_verdict(outcome.records, found, args.scripted)
    return EXIT_OK


def _suite_name(found: Discovery, paths: Sequence[Path]) -> str:
    suites = {t.suite.name for t in found.tasks if t.suite}
    name = suites.pop() if len(suites) == 1 else Path(paths[0]).resolve().name or "suite"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)


def _check_models(tasks: Sequence[EvalTask], args: argparse.Namespace) -> None:
    """Fail before any run when the model cannot be reached for lack of a key."""
    if args.scripted:
        return
    if args.model:
        models = [parse_model(args.model, where="--model")]
    else:
        models = [t.spec.model for t in tasks]
    for model in models:
        if model.needs_key() and model.resolved_api_key() is None:
            raise ConfigError(f"model {model.label()}: {model.key_env()} is not set; export it, pass --model "
                              "(e.g. vllm:http://HOST:8000/v1#MODEL), or use --scripted reference to replay "
                              "the suite's reference solutions")
    for task in tasks:
        grade = task.spec.grade
        if grade is not None and grade.judge == "model" and grade.claims and not (
                args.judge or grade.judge_model or (task.suite and task.suite.spec.judge_model)):
            raise ConfigError(f"task {task.id}: grade.judge is 'model' but no judge model is configured (--judge)")


def _print_plan(found: Discovery, args: argparse.Namespace) -> None:
    out = sys.stderr if not args.list else sys.stdout
    if args.list:
        for task in found.tasks:
            grade = task.spec.grade
            checks = [] if grade is None else [
                *(["script"] if grade.script else []), *([f"{len(grade.commands)} commands"] if grade.commands else []),
                *([f"{len(grade.files)} file checks"] if grade.files else []),
                *([f"{len(grade.claims)} claims"] if grade.claims else [])]
            servers = ", ".join(task.spec.servers) or "-"
            builtin = ", ".join(task.spec.builtin_servers)
            print(f"{task.id}  [{task.kind}] servers: {servers}{' + ' + builtin if builtin else ''}; "
                  f"grade: {', '.join(checks) or 'none'}", file=out)
            for warning in task.warnings:
                print(f"    warning: {warning}", file=out)
    if found.skipped:
        print(f"{len(found.skipped)} task(s) cannot run here and are skipped:", file=out)
        for skip in found.skipped:
            print(f"  - {skip.id} ({skip.source}): {skip.reason}", file=out)
            for warning in skip.warnings:
                print(f"      warning: {warning}", file=out)
        if any("servers we do not have" in s.reason for s in found.skipped):
            print("  (supply missing servers as mcpServers entries named like the benchmark's, with --servers FILE)",
                  file=out)
    elif not args.list:
        for task in found.tasks:
            for warning in task.warnings:
                print(f"{task.id}: warning: {warning}", file=out)
    if not args.list:
        print(f"agent eval: {len(found.tasks)} task(s) × {args.repeats} run(s), {args.jobs} at a time"
              + (f", scripted '{args.scripted}'" if args.scripted else ""), file=sys.stderr)


def _prepare_out(out: Path, config: dict[str, Any], resume: bool) -> None:
    log = out / "results.jsonl"
    saved = out / "eval.json"
    if log.exists() and log.stat().st_size and not resume:
        raise ConfigError(f"{out} already holds results; pass --resume to continue it or choose another --out")
    if resume and saved.exists():
        before = json.loads(saved.read_text(encoding="utf-8"))
        for key in ("model", "scripted", "think", "max_steps"):
            if before.get(key) != config.get(key):
                raise ConfigError(f"--resume: {key} was {before.get(key)!r} for the runs in {out}, now "
                                  f"{config.get(key)!r}; use the same settings or another --out")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _print_summary(report: dict[str, Any], out: Path) -> None:
    suite = report["suite"]
    p1 = suite["pass@1"]
    line = f"pass@1 {p1['mean']:.1%} ± {p1['std']:.1%}"
    k = report["repeats"]
    if k > 1:
        line += f" · pass@{k} {suite['pass@k'].get(str(k), 0) or 0:.1%} · pass^{k} {suite['pass^k'].get(str(k), 0) or 0:.1%}"
    if suite.get("mean_coverage") is not None:
        line += f" · claims coverage {suite['mean_coverage']:.2f}"
    totals = suite["totals"]
    line += (f" · {totals['runs']} runs · {totals['total_tokens']:,} tokens · ${totals['cost']:.4f}"
             f" · {suite['wall_s']:.1f}s")
    print(line, file=sys.stderr)
    print(f"report: {out / 'report.md'} · {out / 'report.html'} · {out / 'results.jsonl'}", file=sys.stderr)


def _scripted_verdict(records: Sequence[RunRecord], found: Discovery, name: str) -> int:
    expect = name == "reference"
    wrong = [r for r in records if r.passed != expect]
    if wrong or found.skipped:
        what = "pass" if expect else "fail"
        for r in wrong:
            print(f"agent eval: {r.task} r{r.repeat} should {what} with the '{name}' trajectory: "
                  f"{r.failure or 'it passed'}", file=sys.stderr)
        for s in found.skipped:
            print(f"agent eval: {s.id} was not run: {s.reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"agent eval: graders proven: all {len(records)} '{name}' runs "
          f"{'passed' if expect else 'failed'} as expected", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
