"""Running a suite: jobs planned in rounds and handed to an executor, each record logged and shown as it
finishes (runs already in results.jsonl are kept), then the reports written."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from .discovery import EvalTask, SkippedTask
from .executor import Executor, LocalExecutor
from .jobs import Judges, RunJob, RunRecord, RunSettings, run_job
from .progress import Progress
from .report import NOT_GRADED_STOPS, build_report, write_reports
from .results import ResultsLog
from .site import SuiteSites


@dataclass
class SuiteOutcome:
    """What a suite run leaves: every record (earlier ones kept by --resume included) and the report."""

    records: list[RunRecord]
    report: dict[str, Any]
    interrupted: bool = False


@dataclass
class SuiteWork:
    """The suite's `Work`: a run in this process, or (`settings`, `started`) for a remote executor."""

    settings: RunSettings
    judges: Judges
    progress: Progress

    def started(self, job: RunJob) -> None:
        self.progress.started_run()

    async def __call__(self, job: RunJob) -> RunRecord:
        self.started(job)
        return await run_job(job, self.settings, self.judges)


def plan(tasks: Sequence[EvalTask], repeats: int, done: Iterable[tuple[str, int]] = ()) -> list[RunJob]:
    """Jobs in rounds (every task once, then every task again), so early results cover the whole suite."""
    finished = set(done)
    return [RunJob(task, r) for r in range(repeats) for task in tasks if (task.id, r) not in finished]


async def run_suite(tasks: Sequence[EvalTask], settings: RunSettings, *, repeats: int = 1,
                    executor: Executor | None = None, progress: Progress | None = None,
                    skipped: Sequence[SkippedTask] = (), config: dict[str, Any] | None = None) -> SuiteOutcome:
    """Run every task `repeats` times (skipping runs already in results.jsonl), then write the reports."""
    settings.out.mkdir(parents=True, exist_ok=True)
    log = ResultsLog(settings.out)
    wanted = {(t.id, r) for t in tasks for r in range(repeats)}
    previous = [r for r in log.read() if r.key in wanted]
    jobs = plan(tasks, repeats, (r.key for r in previous))
    records = list(previous)
    executor = executor or LocalExecutor(1)
    progress = progress or Progress(len(wanted), quiet=True, done=len(previous))
    progress.passed = sum(r.passed for r in previous)
    progress.not_graded = sum(r.stop_reason in NOT_GRADED_STOPS for r in previous)
    started = time.time()
    interrupted = False

    judges = Judges(settings.judge)
    work = SuiteWork(settings, judges, progress)

    async def done(record: RunRecord) -> None:
        log.append(record)
        records.append(record)
        progress.finished(record)

    try:
        with SuiteSites(tasks) as sites:
            settings.site_urls = {key: site.url for key, site in sites.items()}
            async with judges:
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
