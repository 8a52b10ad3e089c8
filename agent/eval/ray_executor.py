"""Running a suite's jobs on a Ray cluster: each run is a Ray task whose workspace, sandbox and servers are made
on its node; its record and trace come back to the driver. One limiter actor per suite shares each model
endpoint's limits (requests in flight, requests per second, 429 backoff) across every node."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal

import anyio
from pydantic import BaseModel

from ..errors import ConfigError
from ..models.config import parse_model
from ..models.gate import request_gate
from .discovery import EvalTask
from .executor import Done, Work
from .jobs import Judges, RunJob, RunRecord, RunSettings, run_job
from .report import HARNESS_ERROR
from .site import SuiteSites

INSTALL_HINT = ("--executor ray needs Ray on this machine and on every node of the cluster: "
                "pip install 'deepseek-mcp-agent[ray]'")
DOCKER_RESOURCE = "docker"
"""The custom resource a node offers when it can run Docker sandboxes (`ray start --resources '{"docker": N}'`)."""


def import_ray() -> Any:
    """The `ray` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


# -- limits per model endpoint, shared by the cluster ---------------------------------------------------------


@dataclass
class _Endpoint:
    in_flight: int = 0
    next_start: float = 0.0  # token bucket of one: the earliest monotonic time the next request may start
    paused_until: float = 0.0  # a 429's backoff, for everyone
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class EndpointLimits:
    """Per endpoint (`BASE_URL#MODEL`): at most `max_in_flight` requests at once, at most `per_second` request
    starts a second, and after a 429 nobody starts one until its backoff has passed. Slots are held per
    `holder` (a run), so a run whose worker died can be forgotten. Plain asyncio: the Ray actor wraps it."""

    def __init__(self, max_in_flight: int | None = None, per_second: float | None = None):
        self.max_in_flight, self.per_second = max_in_flight, per_second
        self._endpoints: dict[str, _Endpoint] = {}
        self._held: dict[str, dict[str, int]] = {}  # holder -> endpoint -> slots
        self.stats: dict[str, Any] = {"requests": 0, "throttled": 0, "peak_in_flight": 0}

    async def acquire(self, endpoint: str, holder: str) -> None:
        state = self._endpoints.setdefault(endpoint, _Endpoint())
        async with state.changed:
            while True:
                now = time.monotonic()
                if state.paused_until > now:
                    await _wait(state.changed, state.paused_until - now)
                elif self.max_in_flight is not None and state.in_flight >= self.max_in_flight:
                    await state.changed.wait()
                else:
                    break
            state.in_flight += 1
            held = self._held.setdefault(holder, {})
            held[endpoint] = held.get(endpoint, 0) + 1
            self.stats["requests"] += 1
            self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], state.in_flight)
            start = max(time.monotonic(), state.next_start)
            if self.per_second:
                state.next_start = start + 1 / self.per_second
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def release(self, endpoint: str, holder: str, backoff_s: float | None = None) -> None:
        state = self._endpoints.setdefault(endpoint, _Endpoint())
        async with state.changed:
            held = self._held.get(holder, {})
            if held.get(endpoint):
                held[endpoint] -= 1
                state.in_flight -= 1
            if backoff_s:
                self.stats["throttled"] += 1
                state.paused_until = max(state.paused_until, time.monotonic() + backoff_s)
            state.changed.notify_all()

    async def forget(self, holder: str) -> None:
        """Give back every slot a run holds (its worker died holding them; a retry starts afresh)."""
        for endpoint, count in self._held.pop(holder, {}).items():
            state = self._endpoints[endpoint]
            async with state.changed:
                state.in_flight -= count
                state.changed.notify_all()

    async def report(self) -> dict[str, Any]:
        return dict(self.stats)


async def _wait(condition: asyncio.Condition, timeout: float) -> None:
    try:
        await asyncio.wait_for(condition.wait(), timeout)
    except TimeoutError:
        pass


class _ClusterGate:
    """The model client's `RequestGate` on a worker: asks the suite's limiter actor."""

    def __init__(self, limiter: Any, holder: str):
        self.limiter, self.holder = limiter, holder

    async def acquire(self, endpoint: str) -> None:
        await self.limiter.acquire.remote(endpoint, self.holder)

    async def release(self, endpoint: str, *, backoff_s: float | None = None) -> None:
        await self.limiter.release.remote(endpoint, self.holder, backoff_s)


# -- task data: where the driver's paths are on a node --------------------------------------------------------


def task_paths(value: Any) -> Iterator[PurePath]:
    """Every path object inside jobs (dataclasses, pydantic models, lists, dicts)."""
    if isinstance(value, PurePath):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from task_paths(getattr(value, name))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from task_paths(getattr(value, f.name))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from task_paths(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from task_paths(item)


def relocate(value: Any, old: str, new: str) -> Any:
    """`value` with every path (Path objects and path strings, e.g. server arguments) under the folder `old`
    moved under `new`: the driver's task data as unpacked on a node."""
    if isinstance(value, str):
        if value == old:
            return new
        return value.replace(old + os.sep, new + os.sep) if old + os.sep in value else value
    if isinstance(value, PurePath):
        moved = relocate(str(value), old, new)
        return value if moved == str(value) else type(value)(moved)
    if isinstance(value, BaseModel):
        update = {}
        for name in type(value).model_fields:
            before = getattr(value, name)
            after = relocate(before, old, new)
            if after is not before:
                update[name] = after
        return value.model_copy(update=update) if update else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            before = getattr(value, f.name)
            after = relocate(before, old, new)
            if after is not before:
                changes[f.name] = after
        return dataclasses.replace(value, **changes) if changes else value
    if isinstance(value, (list, tuple)):
        items = [relocate(item, old, new) for item in value]
        return type(value)(items) if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        moved_items = {k: relocate(v, old, new) for k, v in value.items()}
        return moved_items if any(moved_items[k] is not value[k] for k in value) else value
    return value


def data_root(jobs: Sequence[RunJob]) -> Path:
    """The folder holding every file the jobs name (task files, solutions, seeds, sites): the working_dir."""
    found = {Path(p) for job in jobs for p in task_paths(job.task) if Path(p).is_absolute() and Path(p).exists()}
    if not found:
        raise ConfigError("--ray-data upload: the tasks name no files to upload; use --ray-data shared")
    root = Path(os.path.commonpath([str(p) for p in found]))
    if root.is_file():
        root = root.parent
    if len(root.parts) < 2:
        raise ConfigError(f"--ray-data upload: the tasks' files have no common folder but {root}; keep the suite "
                          "under one folder, or put it on a path every node shares and pass --ray-data shared")
    return root


# -- the remote side ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shipment:
    """What a node needs besides the job and settings: where the driver's task data was (upload mode)."""

    driver_root: str | None  # None: the data is at the same paths on every node (shared)
    limiter: Any = None


def agent_eval_run(job: RunJob, settings: RunSettings, shipment: Shipment) -> Generator[Any, None, None]:
    """The Ray task of one run (a streaming generator): yields where it started, then (record JSON, trace text)."""
    import ray

    node = ray.util.get_node_ip_address()
    yield {"node": ray.get_runtime_context().get_node_id(), "ip": node, "pid": os.getpid()}
    if shipment.driver_root is not None:  # working_dir: the task data was unpacked in our cwd
        here = os.getcwd()
        job = relocate(job, shipment.driver_root, here)
        settings = relocate(settings, shipment.driver_root, here)
    local_out = Path(tempfile.mkdtemp(prefix="agent-eval-run-"))
    try:
        with SuiteSites([job.task]) as sites:
            remote = dataclasses.replace(settings, out=local_out,
                                         site_urls={key: site.url for key, site in sites.items()})
            holder = f"{job.task.id}#{job.repeat}"
            limiter = shipment.limiter
            if limiter is not None:
                ray.get(limiter.forget.remote(holder))  # slots left by an attempt whose worker died
            with request_gate(_ClusterGate(limiter, holder) if limiter is not None else None):
                record = anyio.run(_run_promptly_cancellable, job, remote)
        trace = (local_out / record.trace).read_text(encoding="utf-8") if record.trace and (
            local_out / record.trace).exists() else None
        if record.workspace is not None:
            record.workspace = f"{node}:{record.workspace}"
        yield record.model_dump_json(), trace
    finally:
        shutil.rmtree(local_out, ignore_errors=True)


async def _run_promptly_cancellable(job: RunJob, settings: RunSettings) -> RunRecord:
    """`run_job` with a tick: Ray cancels a task by interrupting its main thread, which Python only notices
    when the event loop wakes up; the tick wakes it so the run's cleanup starts at once."""
    async with anyio.create_task_group() as group:

        async def tick() -> None:
            while True:  # noqa: ASYNC110 - the wake-ups are the point
                await anyio.sleep(0.2)

        group.start_soon(tick)
        async with Judges(settings.judge) as judges:
            record = await run_job(job, settings, judges)
        group.cancel_scope.cancel()
    return record


# -- the driver side ------------------------------------------------------------------------------------------


@dataclass
class RayOptions:
    """`agent eval --executor ray` settings."""

    address: str | None = None  # None: Ray's default (RAY_ADDRESS, else a cluster on this machine, else a new one)
    cpus_per_run: float = 1.0
    retries: int = 1  # a run whose worker or node died is run again elsewhere this many times
    data: Literal["upload", "shared"] = "upload"
    max_in_flight: int | None = None  # runs at once across the cluster (None: as many as its CPUs allow)
    endpoint_in_flight: int | None = None  # model requests at once per endpoint, cluster-wide
    endpoint_per_second: float | None = None
    cancel_grace_s: float = 20.0  # Ctrl-C: how long runs may clean up before their workers are killed
    env: dict[str, str] = field(default_factory=dict)  # environment for the runs (API keys)


class RayExecutor:
    """Each job a Ray task on some node of the cluster; records and traces come back here, where `done` logs
    them. A worker or node that dies mid-run: the run is retried (`retries`), then recorded as a harness error.
    Cancelled (Ctrl-C): every remote run is cancelled and awaited, then force-killed after a grace period."""

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()
        if self.options.cpus_per_run <= 0:
            raise ConfigError(f"--cpus-per-run: expected a positive number, got {self.options.cpus_per_run:g}")
        if self.options.retries < 0:
            raise ConfigError(f"--ray-retries: expected 0 or more, got {self.options.retries}")
        self.ray = import_ray()
        self.limits: dict[str, Any] = {}  # the limiter's figures after map()
        self.nodes: dict[str, int] = {}  # node id -> runs started there
        self._owns_connection = False
        self._working_dir: str | None = None

    def connect(self, working_dir: str | None = None) -> None:
        """Join the cluster (blocking; a few seconds on first use). `working_dir` is uploaded for the job's
        workers: Ray takes local folders only at the job level."""
        ray = self.ray
        if ray.is_initialized():
            if working_dir == self._working_dir:
                return
            if not self._owns_connection:
                raise ConfigError("--ray-data upload: Ray was initialised before, without the suite's folder as its "
                                  f"working_dir; call ray.init(runtime_env={{'working_dir': '{working_dir}'}}) or "
                                  "use --ray-data shared")
            ray.shutdown()
        quiet = logging.getLogger("ray._private.worker")  # we join from a thread on purpose: see _NoSigtermWarning
        if not any(isinstance(f, _NoSigtermWarning) for f in quiet.filters):
            quiet.addFilter(_NoSigtermWarning())
        try:
            ray.init(address=self.options.address, log_to_driver=False, logging_level="WARNING",
                     runtime_env={"working_dir": working_dir} if working_dir else None)
            self._owns_connection, self._working_dir = True, working_dir
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.options.address or os.environ.get("RAY_ADDRESS") or "a local cluster"
            raise ConfigError(f"--executor ray: cannot reach the Ray cluster at {where}: {exc}. Start one with "
                              "`ray start --head` (see README: Larger than one machine) or pass --ray-address") from None

    async def map(self, jobs: Sequence[RunJob], work: Work, done: Done) -> None:
        if not jobs:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigError("the Ray executor runs on anyio's asyncio backend (Ray's futures are asyncio's)") from None
        options = self.options
        driver_root = str(data_root(jobs)) if options.data == "upload" else None
        await anyio.to_thread.run_sync(self.connect, driver_root)
        ray = self.ray
        self._check_feasible(jobs)
        settings = work.settings
        runtime_env: dict[str, Any] = {"env_vars": dict(options.env)} if options.env else {}
        limiter = ray.remote(EndpointLimits).options(num_cpus=0, max_concurrency=10_000).remote(
            options.endpoint_in_flight, options.endpoint_per_second)
        shipment = Shipment(driver_root, limiter)
        remote = ray.remote(agent_eval_run)
        task_options = {"num_returns": "streaming", "max_retries": options.retries, "retry_exceptions": False,
                        "num_cpus": options.cpus_per_run, "runtime_env": runtime_env or None}
        settings_ref = ray.put(settings)
        shipment_ref = ray.put(shipment)
        live: dict[tuple[str, int], Any] = {}
        slots = anyio.Semaphore(options.max_in_flight) if options.max_in_flight else None

        async def one(job: RunJob) -> None:
            if slots is not None:
                await slots.acquire()
            try:
                resources = {DOCKER_RESOURCE: 1} if job.task.spec.sandbox.kind == "docker" else None
                generator = remote.options(**task_options, resources=resources).remote(job, settings_ref, shipment_ref)
                live[job.key] = generator
                record = await self._collect(job, generator, work, settings)
                del live[job.key]
            finally:
                if slots is not None:
                    slots.release()
            await done(record)

        try:
            async with anyio.create_task_group() as group:
                for job in jobs:
                    group.start_soon(one, job)
        finally:
            with anyio.CancelScope(shield=True):
                if live:
                    await self._cancel(list(live.values()))
                try:
                    self.limits = await limiter.report.remote()
                except Exception:
                    self.limits = {}
                ray.kill(limiter)

    def _check_feasible(self, jobs: Sequence[RunJob]) -> None:
        """Ray waits forever for a node that fits a run: say now that none does."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        most = max((n.get("CPU", 0) for n in nodes), default=0)
        if most < self.options.cpus_per_run:
            raise ConfigError(f"--cpus-per-run {self.options.cpus_per_run:g}: no node of the cluster has that many "
                              f"CPUs (the most is {most:g})")
        docker = [job.task.id for job in jobs if job.task.spec.sandbox.kind == "docker"]
        if docker and not any(n.get(DOCKER_RESOURCE) for n in nodes):
            raise ConfigError(f"task {docker[0]} runs in a Docker sandbox but no node offers the '{DOCKER_RESOURCE}' "
                              f"resource; start Docker nodes with: ray start ... --resources '{{\"{DOCKER_RESOURCE}\": 4}}'")

    async def _collect(self, job: RunJob, generator: Any, work: Work, settings: RunSettings) -> RunRecord:
        """Wait for the run's start (progress) and its record; write its trace under the driver's --out."""
        ray = self.ray
        try:
            started = await (await generator.__anext__())
            self.nodes[started["node"]] = self.nodes.get(started["node"], 0) + 1
            work.started(job)
            record_json, trace = await (await generator.__anext__())
        except (ray.exceptions.RayError, StopAsyncIteration) as exc:
            return self._harness_error(job, exc)
        record = RunRecord.model_validate_json(record_json)
        if record.trace and trace is not None:
            path = settings.out / record.trace
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(trace, encoding="utf-8")
        return record

    def _harness_error(self, job: RunJob, exc: BaseException) -> RunRecord:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        what = type(exc).__name__
        detail = next((line.strip() for line in lines if "died" in line or "Error" in line), lines[0] if lines else "")
        tries = self.options.retries + 1
        failure = (f"harness: the run's Ray worker failed ({what}) after {tries} attempt{'s' * (tries > 1)}: "
                   f"{detail[:300]}")
        return RunRecord(task=job.task.id, repeat=job.repeat, passed=False, stop_reason=HARNESS_ERROR, failure=failure)

    async def _cancel(self, generators: list[Any]) -> None:
        """Cancel the remote runs (they clean up: workspaces, containers, servers), wait until they are gone;
        kill the workers of those that do not stop within the grace period."""
        ray = self.ray
        for generator in generators:
            ray.cancel(generator, force=False)
        stuck = await self._wait_gone(generators, self.options.cancel_grace_s)
        if stuck:
            for generator in stuck:
                ray.cancel(generator, force=True)
            await self._wait_gone(stuck, 30.0)

    async def _wait_gone(self, generators: list[Any], timeout: float) -> list[Any]:
        ray = self.ray
        refs = [generator.completed() for generator in generators]
        deadline = time.monotonic() + timeout
        pending = list(refs)
        while pending and time.monotonic() < deadline:
            _, pending = await anyio.to_thread.run_sync(functools.partial(
                ray.wait, pending, num_returns=len(pending), timeout=0.5, fetch_local=False))
        gone = set(refs) - set(pending)
        return [g for g, ref in zip(generators, refs, strict=True) if ref not in gone]


class _NoSigtermWarning(logging.Filter):
    """Ray warns that it sets no SIGTERM handler off the main thread: the CLI's own one (runs cancelled as on
    Ctrl-C) is the one wanted."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def api_key_env(tasks: Sequence[EvalTask], model: str | None, judge: str | None) -> dict[str, str]:
    """The API keys the runs' models and judges read, from this environment: the nodes may not have them."""
    models = [parse_model(model, where="--model")] if model else [task.spec.model for task in tasks]
    if judge:
        models.append(parse_model(judge, where="--judge"))
    names = {m.key_env() for m in models}
    return {name: os.environ[name] for name in sorted(n for n in names if n) if os.environ.get(name)}
