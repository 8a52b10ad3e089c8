"""How a suite's jobs get run: the `Executor` protocol and `LocalExecutor`, anyio workers in this process
(`agent.eval.ray_executor.RayExecutor` runs them on a Ray cluster)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import anyio

from ..errors import ConfigError
from .jobs import RunJob, RunRecord, RunSettings


class Work(Protocol):
    """What the suite does with one job. Calling it runs the job in this process; a remote executor instead
    ships `(job, settings)` to a worker (which calls `run_job_sync` or `run_job`) and calls `started(job)`
    when the run begins there."""

    settings: RunSettings

    def __call__(self, job: RunJob) -> Awaitable[RunRecord]: ...

    def started(self, job: RunJob) -> None: ...


Done = Callable[[RunRecord], Awaitable[None]]


class Executor(Protocol):
    """Runs jobs and reports each record, on the driver, as soon as it exists. The local one calls `work` in
    anyio workers; a distributed one (Ray, Dask, a queue) ships `(job, work.settings)` to remote workers that
    call `run_job_sync`, and calls `done` on the driver as results come back."""

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
