"""`agent eval`: benchmark suites (discovery, jobs, executors, progress), graders, benchmark importers and
reports. The core (`agent.Agent`, the loop, models, tools) never imports this package."""

from .cli import build_parser, main
from .discovery import (
    Discovery,
    EvalTask,
    ImportOptions,
    LoadedSuite,
    SkippedTask,
    SuiteSpec,
    attach_scripts,
    discover,
    load_suite,
    select,
)
from .executor import Done, Executor, LocalExecutor, Work
from .jobs import Judges, RunJob, RunRecord, RunSettings, load_trajectory, run_job, run_job_sync, trace_path
from .progress import Progress
from .results import ResultsLog
from .site import SiteServer
from .suite import SuiteOutcome, plan, run_suite

__all__ = [
    "Discovery",
    "Done",
    "EvalTask",
    "Executor",
    "ImportOptions",
    "Judges",
    "LoadedSuite",
    "LocalExecutor",
    "Progress",
    "ResultsLog",
    "RunJob",
    "RunRecord",
    "RunSettings",
    "SiteServer",
    "SkippedTask",
    "SuiteOutcome",
    "SuiteSpec",
    "Work",
    "attach_scripts",
    "build_parser",
    "discover",
    "load_suite",
    "load_trajectory",
    "main",
    "plan",
    "run_job",
    "run_job_sync",
    "run_suite",
    "select",
    "trace_path",
]
