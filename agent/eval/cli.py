"""`agent eval ...`: the command line. Arguments, the checks before any run, the plan and the summary printed,
and the exit codes (0 ok, 1 a scripted suite did not score as expected, 2 bad input)."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from ..errors import ConfigError
from ..interrupts import EXIT_INTERRUPTED, EXIT_TERMINATED, sigterm_as_ctrl_c
from ..models.config import parse_model
from .discovery import Discovery, EvalTask, ImportOptions, attach_scripts, discover, id_matches, select
from .executor import Executor, LocalExecutor
from .jobs import DEFAULT_TIMEOUT_S, RunRecord, RunSettings
from .progress import Progress
from .suite import run_suite

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent eval",
        description="Run tasks as a benchmark suite: each run in its own workspace, graded by the task's `grade` "
        "section; results.jsonl is appended as runs finish, then report.md, report.json and report.html are "
        "written. PATH: a suite folder (suite.yaml), task files, Toolathlon task folders (or a folder of them), "
        "MCP-Atlas rows (.csv, .jsonl, .json).",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("-j", "--jobs", type=int, help="runs at the same time (default 1; with --executor ray, as "
                        "many as the cluster's CPUs allow)")
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
                        help="judge model for claims, any model string (default: $AGENT_JUDGE_MODEL, the task's or "
                        "suite's); it scores each claim by MCP-Atlas's rules. Without one, an offline matcher checks "
                        "entity words, numbers and key terms, and the report names the runs it graded")
    parser.add_argument("--scripted", metavar="NAME",
                        help="replay each task's solutions/NAME.yaml through the real loop instead of a model "
                        "(`reference` may be the task's demo; `nothing` is built in). Exit code 1 unless "
                        "`reference` passes every run and any other script fails every run")
    parser.add_argument("--servers", type=Path, help="mcpServers entries (JSON or YAML) for benchmark servers "
                        "we do not ship, named like the benchmark's servers, e.g. MCP-Atlas's "
                        "mcp_server_template.json as it is: ${VAR} from the environment; a server whose variables "
                        "are unset is unavailable, and the tasks that need it are skipped with the variable named")
    parser.add_argument("--atlas-data", type=Path, metavar="DIR", help="MCP-Atlas's /data folder, copied into each "
                        "run's workspace, which the task's servers see as /data")
    parser.add_argument("--toolathlon-root", type=Path, metavar="DIR",
                        help="a Toolathlon checkout: its server definitions, its .venv for checkers and preprocess, "
                        "its run settings (default: the checkout above the task folders)")
    parser.add_argument("--grader-python", type=Path, metavar="PATH",
                        help="interpreter for Toolathlon checkers and preprocess (default: the root's .venv)")
    parser.add_argument("--our-servers", action="store_true",
                        help="our files/shell/web servers stand in for Toolathlon's filesystem/terminal/fetch")
    parser.add_argument("--toolathlon-services", default="", metavar="NAMES",
                        help="comma-separated external services that are running (canvas, emails, woocommerce, k8s, "
                        "google, github, notion, snowflake, huggingface, wandb, youtube)")
    parser.add_argument("--list", action="store_true", help="list the tasks and what they lack; run nothing")
    parser.add_argument("--keep-workspaces", action="store_true", help="keep each run's workspace")
    parser.add_argument("--quiet", action="store_true", help="only the progress line and the summary")
    ray = parser.add_argument_group("on a Ray cluster (pip install 'deepseek-mcp-agent[ray]')")
    ray.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: runs in this process (default); ray: each run a Ray task on some node of a cluster")
    ray.add_argument("--ray-address", metavar="ADDRESS", help="auto (a cluster this machine is part of), HOST:6379, "
                     "or ray://HOST:10001 (default: $RAY_ADDRESS, else a cluster on this machine, else a new one)")
    ray.add_argument("--cpus-per-run", type=float, default=1.0, metavar="N", help="CPUs a run reserves (default 1)")
    ray.add_argument("--ray-data", choices=["upload", "shared"], default="upload",
                     help="upload: the suite's folder goes to the nodes as Ray's working_dir (default); shared: "
                     "it is at the same path on every node")
    ray.add_argument("--ray-retries", type=int, default=1, metavar="N",
                     help="a run whose worker or node died is run again elsewhere N times (default 1), then "
                     "recorded as a harness error")
    ray.add_argument("--endpoint-concurrency", type=int, metavar="N",
                     help="model requests in flight per endpoint, across the cluster")
    ray.add_argument("--endpoint-rate", type=float, metavar="R",
                     help="model requests started per second per endpoint, across the cluster")
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
    if args.jobs is None and args.executor == "local":
        args.jobs = 1
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"-j: expected at least 1 run at a time, got {args.jobs}")
    if args.repeats < 1:
        raise ConfigError(f"-k: expected at least 1 run per task, got {args.repeats}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps: expected an integer >= 1, got {args.max_steps}")
    services = tuple(name.strip() for name in args.toolathlon_services.split(",") if name.strip())
    found = discover(args.paths, ImportOptions(args.servers, args.atlas_data, args.toolathlon_root,
                                               args.grader_python, args.our_servers, services))
    found.tasks = select(found.tasks, args.filter)
    found.skipped = [s for s in found.skipped if not args.filter or id_matches(s.id, args.filter)]
    if args.scripted:
        attach_scripts(found, args.scripted)
    _print_plan(found, args)
    if args.list:
        return EXIT_OK
    _check_models(found.tasks, args)
    executor = _executor(args, found.tasks)  # before anything is written: a missing Ray is bad input
    if not found.tasks:
        print("agent eval: no task can run", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or Path("evals") / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{_suite_name(found, args.paths)}"
    config = {
        "paths": [str(p) for p in args.paths], "model": args.model, "think": args.think, "scripted": args.scripted,
        "judge": args.judge, "repeats": args.repeats, "jobs": args.jobs, "filter": args.filter,
        "max_steps": args.max_steps, "tasks": [t.id for t in found.tasks], "started": dt.datetime.now().isoformat(),
    }
    servers_used = {t.id: t.servers_used for t in found.tasks if t.servers_used}
    if servers_used:
        config["servers_used"] = servers_used  # which benchmark servers were the benchmark's own, which ours
    _prepare_out(out, config, args.resume)
    settings = RunSettings(out=out, model=args.model, think=args.think, max_steps=args.max_steps,
                           timeout_s=args.timeout, scripted=args.scripted, judge=args.judge,
                           keep_workspaces=args.keep_workspaces)
    total = len(found.tasks) * args.repeats
    progress = Progress(total, quiet=args.quiet)
    outcome = anyio.run(functools.partial(
        run_suite, found.tasks, settings, repeats=args.repeats, executor=executor,
        progress=progress, skipped=found.skipped, config=config))
    _print_summary(outcome.report, out)
    if args.scripted:
        return _scripted_verdict(outcome.records, found, args.scripted)
    return EXIT_OK


def _executor(args: argparse.Namespace, tasks: Sequence[EvalTask]) -> Executor:
    if args.executor == "local":
        return LocalExecutor(args.jobs)
    from .ray_executor import RayExecutor, RayOptions, api_key_env

    for flag, value in (("--endpoint-concurrency", args.endpoint_concurrency), ("--endpoint-rate", args.endpoint_rate)):
        if value is not None and value <= 0:
            raise ConfigError(f"{flag}: expected a positive number, got {value:g}")
    return RayExecutor(RayOptions(
        address=args.ray_address, cpus_per_run=args.cpus_per_run, retries=args.ray_retries, data=args.ray_data,
        max_in_flight=args.jobs, endpoint_in_flight=args.endpoint_concurrency, endpoint_per_second=args.endpoint_rate,
        env=api_key_env(tasks, args.model, args.judge)))


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
            servers = ", ".join(f"{name} ({task.servers_used[name]})" if name in task.servers_used else name
                                for name in task.spec.servers) or "-"
            builtin = ", ".join(task.spec.builtin_servers)
            print(f"{task.id}  [{task.kind}] servers: {servers}{' + ' + builtin if builtin else ''}; "
                  f"grade: {', '.join(checks) or 'none'}", file=out)
            for warning in task.warnings:
                print(f"    warning: {warning}", file=out)
    if found.skipped:
        print(f"{len(found.skipped)} task(s) cannot run here and are skipped:", file=out)
        for skip in found.skipped:
            reason = skip.reason
            if len(skip.needs) > 1:  # one line per thing it lacks
                reason = "needs:" + "".join(f"\n      · {need}" for need in skip.needs)
            print(f"  - {skip.id} ({skip.source}): {reason}", file=out)
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
        where = (f"on Ray, {args.jobs or 'as many as the cluster allows'} at a time" if args.executor == "ray"
                 else f"{args.jobs} at a time")
        print(f"agent eval: {len(found.tasks)} task(s) × {args.repeats} run(s), {where}"
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
    if report.get("not_graded"):
        line += f" · {len(report['not_graded'])} run(s) not graded (harness errors, see the report)"
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
