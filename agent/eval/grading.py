"""Graders: commands and scripts on the final workspace, file checks, and claims judged on the final answer.

A task's `grade:` section (`GradeSpec`) names them; `grade_run` runs them after a run that ended normally
and returns a `GradeResult` (one `CheckResult` per check; pass = every check passes and, when there are
claims, claim coverage >= `pass_coverage`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
from pydantic import BaseModel, Field

from ..events import Graded
from ..grade_spec import Claim, FileCheck, GradeSpec
from ..models.client import ChatModel, dumps
from ..models.config import parse_model
from ..result import RunResult
from ..think import ThinkMode
from .claims import JUDGE_SYSTEM, VERDICT_SCORES, Verdict, judge_prompt, match_claim, parse_verdict

GRADE_DIR = ".agent/grade"
"""Where grading puts its own files inside the workspace (the run log; ground truth for non-local sandboxes)."""


# --- results ----------------------------------------------------------------------------------------


class CheckResult(BaseModel):
    """The outcome of one check. `score` is 1/0 for commands and files, 1/0.5/0 for claims."""

    kind: Literal["script", "command", "file", "claim"]
    name: str
    passed: bool
    score: float
    detail: str = ""
    judge: dict[str, Any] | None = Field(None, description="Claims: the judge's prompt, raw reply and verdict")
    harness_error: str | None = Field(
        None, description="Set when the check itself could not run (its program missing, its imports failing): "
        "the run is not graded rather than failed")


class GradeResult(BaseModel):
    """Every check of one run; `reason` names the first failure."""

    passed: bool
    coverage: float | None = Field(None, description="Mean claim score, when there are claims")
    checks: list[CheckResult] = Field(default_factory=list)
    reason: str | None = None
    judge_model: str | None = None
    judge_cost: float = 0.0
    duration_s: float = 0.0
    harness_error: str | None = Field(None, description="Why the run could not be graded (see CheckResult)")

    def trace_line(self) -> str:
        """One JSONL line (`type: graded`) appended to the run's trace after its run_finished event."""
        return Graded(**self.model_dump(mode="json")).model_dump_json()


# --- what graders see ----------------------------------------------------------------------------------


@dataclass
class GradeContext:
    """The final state of one run, as graders see it."""

    workspace: Path
    result: RunResult
    sandbox: Any | None = None  # agent.runtime.sandbox.Sandbox; None: commands run on the host in the workspace
    launch_time: str = ""
    judge: ClaimJudge | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        """The final answer: the run's answer, else the last assistant message with content (as MCP-Atlas)."""
        if self.result.answer:
            return self.result.answer
        for message in reversed(self.result.messages):
            if message.get("role") == "assistant" and isinstance(message.get("content"), str) and message["content"]:
                return message["content"]
        return ""


class Grader(Protocol):
    """One kind of check over a run's final state."""

    async def check(self, context: GradeContext) -> list[CheckResult]: ...


# --- commands and scripts ----------------------------------------------------------------------------


class CommandGrader:
    """The task's `script` (Toolathlon contract) and `commands`, run in the sandbox after the agent."""

    def __init__(self, spec: GradeSpec):
        self.spec = spec

    async def check(self, context: GradeContext) -> list[CheckResult]:
        if not (self.spec.script or self.spec.commands):
            return []
        with tempfile.TemporaryDirectory(prefix="agent-grade-") as scratch:
            return await self._check(context, Path(scratch))

    async def _check(self, context: GradeContext, scratch: Path) -> list[CheckResult]:
        paths = _grade_paths(self.spec, context, scratch)
        env = {"AGENT_WORKSPACE": paths.workspace, "GROUNDTRUTH_WORKSPACE": paths.groundtruth,
               "RES_LOG_FILE": paths.res_log, "LAUNCH_TIME": context.launch_time, "PYTHON": paths.python,
               **context.extra_env}
        results = []
        if self.spec.script is not None:
            argv = [paths.python, paths.script, "--agent_workspace", paths.workspace, "--groundtruth_workspace",
                    paths.groundtruth, "--res_log_file", paths.res_log, "--launch_time", context.launch_time]
            results.append(await _run(context, argv, env, self.spec.timeout_s, "script", self.spec.script.name))
        for command in self.spec.commands:
            results.append(await _run(context, command.run, env, command.timeout_s or self.spec.timeout_s,
                                      "command", command.name or command.run))
        return results


@dataclass
class _Paths:
    workspace: str
    groundtruth: str
    res_log: str
    script: str
    python: str


def _grade_paths(spec: GradeSpec, context: GradeContext, scratch: Path) -> _Paths:
    """Paths as commands see them. Local sandboxes see the host: the run log goes to `scratch`, outside the
    workspace, whose exact contents checkers may compare (Toolathlon's do). Others see the workspace only, so
    the run log, ground truth and script folder are copied under .agent/grade first."""
    local = context.sandbox is None or getattr(context.sandbox, "kind", "local") == "local"
    grade_dir = scratch if local else context.workspace / GRADE_DIR
    grade_dir.mkdir(parents=True, exist_ok=True)
    res_log = grade_dir / "res_log.json"
    # Shaped like Toolathlon's res_log_file (its checkers read `messages`, some `status` and `config`).
    res_log.write_text(json.dumps({
        "config": {"agent_workspace": str(context.workspace), "launch_time": context.launch_time},
        "status": "success", "answer": context.answer, "stop_reason": context.result.stop_reason,
        "steps": context.result.steps, "tool_calls": context.result.tool_calls, "messages": context.result.messages,
    }, ensure_ascii=False, default=str), encoding="utf-8")
    sandbox = context.sandbox
    groundtruth, script = spec.groundtruth, spec.script
    if local or sandbox is None:
        return _Paths(str(context.workspace), str(groundtruth or ""), str(res_log), str(script or ""), sys.executable)
    inside = f"{sandbox.workdir.rstrip('/')}/{GRADE_DIR}"
    if groundtruth is not None and groundtruth.is_dir():
        shutil.copytree(groundtruth, grade_dir / "groundtruth", dirs_exist_ok=True)
    if script is not None:
        shutil.copytree(script.parent, grade_dir / "checker", dirs_exist_ok=True)
    return _Paths(sandbox.workdir, f"{inside}/groundtruth" if groundtruth else "", f"{inside}/res_log.json",
                  f"{inside}/checker/{script.name}" if script else "", "python3")


async def _run(context: GradeContext, command: str | list[str], env: dict[str, str], timeout: float,
               kind: Literal["script", "command"], name: str) -> CheckResult:
    started = time.perf_counter()
    if context.sandbox is not None:
        outcome = await context.sandbox.exec(command, env=env, timeout=timeout, output_cap=4000)
        code, out, err, timed_out = outcome.exit_code, outcome.stdout, outcome.stderr, outcome.timed_out
    else:
        code, out, err, timed_out = await _host_exec(command, context.workspace, env, timeout)
    took = time.perf_counter() - started
    if timed_out:
        detail = f"timed out after {timeout:g} s"
    else:
        detail = f"exit code {code} ({took:.2f} s)"
    tail = (out + ("\n" if out and err else "") + err).strip()
    if tail:
        detail += ":\n" + tail[-1500:]
    harness = None if timed_out or code == 0 else harness_problem(code, err or out, context.workspace)
    return CheckResult(kind=kind, name=name, passed=code == 0 and not timed_out, score=float(code == 0), detail=detail,
                       harness_error=harness)


_LOAD_ERRORS = ("ModuleNotFoundError", "ImportError", "SyntaxError", "IndentationError", "TabError")
_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+')


def harness_problem(code: int | None, output: str, workspace: Path | None = None) -> str | None:
    """Why a failed checker (or preprocess) run says nothing about the agent, or None when it may.

    A program that could not start (exit 126/127) or a Python traceback ending in an import or syntax error
    raised outside the agent's workspace (the checker's own code or environment: a package missing from the
    interpreter, a module of the benchmark not on the path) is the harness's problem. The same error raised by
    a file the agent wrote is the agent's.
    """
    if code in (126, 127):
        lines = [line for line in output.strip().splitlines() if line.strip()]
        return f"the checker's program could not start (exit {code}): {lines[-1] if lines else 'no output'}"
    lines = output.rstrip().splitlines()
    if not any(line.startswith("Traceback (most recent call last)") for line in lines):
        return None
    last = lines[-1].strip()
    if not last.startswith(tuple(f"{name}:" for name in _LOAD_ERRORS)) and last not in _LOAD_ERRORS:
        return None
    frames = [m.group(1) for m in map(_FRAME.match, lines) if m]
    if workspace is not None and frames:
        where = Path(frames[-1])
        try:
            where.resolve().relative_to(workspace.resolve())
            return None  # the agent's own file
        except (ValueError, OSError):
            pass
    return last


async def _host_exec(command: str | list[str], cwd: Path, env: dict[str, str],
                     timeout: float) -> tuple[int | None, str, str, bool]:
    full_env = {**os.environ, **env}
    argv = command if isinstance(command, list) else ["sh", "-c", command]
    with anyio.move_on_after(timeout) as scope:
        proc = await anyio.run_process(argv, cwd=cwd, env=full_env, check=False)
    if scope.cancelled_caught:
        return None, "", "", True
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), False


# --- file checks -------------------------------------------------------------------------------------


class FileGrader:
    """The task's `files` checks, read on the host from the final workspace."""

    def __init__(self, spec: GradeSpec):
        self.spec = spec

    async def check(self, context: GradeContext) -> list[CheckResult]:
        results = []
        for check in self.spec.files:
            problem = check_file(check, context.workspace)
            results.append(CheckResult(kind="file", name=check.label, passed=problem is None,
                                       score=float(problem is None), detail=problem or "ok"))
        return results


def check_file(check: FileCheck, workspace: Path) -> str | None:
    """None when the check holds, else what is wrong."""
    target = (workspace / check.path).resolve()
    if not target.is_relative_to(workspace.resolve()):
        return f"{check.path} leaves the workspace"
    if not check.exists:
        return f"{check.path} exists but should not" if target.exists() else None
    if not target.exists():
        return f"{check.path} does not exist"
    if check.tree is not None:
        return _compare_tree(check, target, Path(check.tree))
    needs_text = any(getattr(check, k) not in (None, []) for k in
                     ("equals", "text", "contains", "not_contains", "matches", "json_file", "csv_file")) \
        or "json_value" in check.model_fields_set
    if not needs_text:
        return None
    if target.is_dir():
        return f"{check.path} is a folder, expected a file"
    actual = _read(target)
    if actual is None:
        return f"{check.path} is not UTF-8 text"
    if check.equals is not None or check.text is not None:
        expected = _read(Path(check.equals)) if check.equals is not None else check.text
        if expected is None:
            return f"expected file {check.equals} is missing or not text"
        if _normal(actual, check) != _normal(expected, check):
            return f"{check.path} differs from the expected text ({_first_difference(actual, expected, check)})"
    folded = actual.lower() if check.ignore_case else actual
    for needle in check.contains:
        if (needle.lower() if check.ignore_case else needle) not in folded:
            return f"{check.path} does not contain {needle!r}"
    for needle in check.not_contains:
        if (needle.lower() if check.ignore_case else needle) in folded:
            return f"{check.path} contains {needle!r}"
    if check.matches is not None:
        flags = re.MULTILINE | (re.IGNORECASE if check.ignore_case else 0)
        if not re.search(check.matches, actual, flags):
            return f"{check.path} does not match /{check.matches}/"
    if check.json_file is not None or "json_value" in check.model_fields_set:
        try:
            got = json.loads(actual)
        except ValueError as exc:
            return f"{check.path} is not valid JSON: {exc}"
        if check.json_file is not None:
            try:
                want = json.loads(Path(check.json_file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                return f"expected JSON {check.json_file} cannot be read: {exc}"
        else:
            want = check.json_value
        problem = json_difference(got, want, check.tolerance, check.rel_tolerance)
        if problem:
            return f"{check.path}: {problem}"
    if check.csv_file is not None:
        expected = _read(Path(check.csv_file))
        if expected is None:
            return f"expected CSV {check.csv_file} is missing or not text"
        problem = csv_difference(actual, expected, check.tolerance, check.rel_tolerance, check.ignore_row_order)
        if problem:
            return f"{check.path}: {problem}"
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _normal(text: str, check: FileCheck) -> str:
    text = text.replace("\r\n", "\n")
    if check.ignore_case:
        text = text.lower()
    if check.normalize == "strip":
        return text.strip()
    if check.normalize == "whitespace":
        return re.sub(r"\s+", "", text)
    if check.normalize == "lines":
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return text


def _first_difference(actual: str, expected: str, check: FileCheck) -> str:
    a, b = _normal(actual, check), _normal(expected, check)
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"first difference at character {at}: got {a[at:at + 40]!r}, expected {b[at:at + 40]!r}"


_IGNORED_IN_TREES = {".agent", ".git"}


def _tree(root: Path) -> set[str]:
    found = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0] in _IGNORED_IN_TREES or not path.is_file():
            continue
        found.add(rel.as_posix())
    return found


def _compare_tree(check: FileCheck, target: Path, expected: Path) -> str | None:
    if not expected.is_dir():
        return f"expected folder {expected} is missing"
    if not target.is_dir():
        return f"{check.path} is not a folder"
    got, want = _tree(target), _tree(expected)
    if got != want:
        missing, extra = sorted(want - got), sorted(got - want)
        parts = ([f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")] if missing else []) + \
                ([f"unexpected {', '.join(extra[:5])}" + (" ..." if len(extra) > 5 else "")] if extra else [])
        return f"{check.path}: file tree differs: {'; '.join(parts)}"
    if check.tree_contents:
        for rel in sorted(want):
            a, b = _read(target / rel), _read(expected / rel)
            if a is None or b is None:
                if (target / rel).read_bytes() != (expected / rel).read_bytes():
                    return f"{check.path}/{rel} differs (binary)"
            elif _normal(a, check) != _normal(b, check):
                return f"{check.path}/{rel} differs ({_first_difference(a, b, check)})"
    return None


def _close(a: float, b: float, tolerance: float, rel_tolerance: float) -> bool:
    return abs(a - b) <= max(tolerance, rel_tolerance * abs(b))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_difference(got: Any, want: Any, tolerance: float = 1e-6, rel_tolerance: float = 0.0, at: str = "$") -> str | None:
    """None when equal (numbers within tolerance, key order ignored), else where they first differ."""
    if _is_number(got) and _is_number(want):
        return None if _close(float(got), float(want), tolerance, rel_tolerance) else f"{at}: {got!r} != {want!r}"
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{at}: expected an object, got {type(got).__name__}"
        if set(got) != set(want):
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            return f"{at}: keys differ (missing {missing}, unexpected {extra})"
        for key in want:
            problem = json_difference(got[key], want[key], tolerance, rel_tolerance, f"{at}.{key}")
            if problem:
                return problem
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{at}: expected an array, got {type(got).__name__}"
        if len(got) != len(want):
            return f"{at}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            problem = json_difference(g, w, tolerance, rel_tolerance, f"{at}[{i}]")
            if problem:
                return problem
        return None
    return None if got == want and type(got) is type(want) else f"{at}: {got!r} != {want!r}"


def _cell_number(text: str) -> float | None:
    cleaned = text.strip().replace(",", "").removeprefix("$")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _cells_equal(a: str, b: str, tolerance: float, rel_tolerance: float) -> bool:
    x, y = _cell_number(a), _cell_number(b)
    if x is not None and y is not None:
        return _close(x, y, tolerance, rel_tolerance)
    return a.strip() == b.strip()


def csv_difference(actual: str, expected: str, tolerance: float = 1e-6, rel_tolerance: float = 0.0,
                   ignore_row_order: bool = False) -> str | None:
    """None when the two CSV texts hold the same header and cells (numbers within tolerance, blank lines
    ignored), else the first difference."""
    got = [row for row in csv.reader(io.StringIO(actual)) if any(c.strip() for c in row)]
    want = [row for row in csv.reader(io.StringIO(expected)) if any(c.strip() for c in row)]
    if not want:
        return None if not got else "expected an empty CSV"
    if not got:
        return "the CSV is empty"
    if [c.strip() for c in got[0]] != [c.strip() for c in want[0]]:
        return f"header {got[0]} != expected {want[0]}"
    if len(got) != len(want):
        return f"{len(got) - 1} data rows, expected {len(want) - 1}"
    body_got, body_want = got[1:], want[1:]

    def row_equal(a: list[str], b: list[str]) -> bool:
        return len(a) == len(b) and all(_cells_equal(x, y, tolerance, rel_tolerance) for x, y in zip(a, b, strict=True))

    if ignore_row_order:
        remaining = list(body_got)
        for row in body_want:
            match = next((i for i, candidate in enumerate(remaining) if row_equal(candidate, row)), None)
            if match is None:
                return f"no row matches expected {row}"
            remaining.pop(match)
        return None
    for number, (a, b) in enumerate(zip(body_got, body_want, strict=True), start=2):
        if not row_equal(a, b):
            return f"row {number}: {a} != expected {b}"
    return None


# --- claims ------------------------------------------------------------------------------------------

class ClaimJudge(Protocol):
    """Scores one claim against the final answer: 1 (fulfilled), 0.5 (partially), 0 (not)."""

    label: str

    async def judge(self, answer: str, claim: Claim) -> Verdict: ...


class MatchJudge:
    """The offline matcher (`agent.eval.claims.match_claim`): entity words and quoted text must appear in the
    answer, and the claim's numbers to its precision (or, without numbers, most of its key terms)."""

    label = "match"

    async def judge(self, answer: str, claim: Claim) -> Verdict:
        return match_claim(answer, claim)


class ModelJudge:
    """An LLM judge: one non-think call per claim at temperature 0, through our ChatModel (any profile), with
    MCP-Atlas's scoring rules (`agent.eval.claims.JUDGE_SYSTEM`)."""

    def __init__(self, model: Any):
        config = parse_model(model, where="judge model")
        updates: dict[str, Any] = {}
        if config.temperature is None:
            updates["temperature"] = 0.0
        self.config = config.model_copy(update=updates)
        self.label = self.config.label()
        self._model: Any = None

    async def __aenter__(self) -> ModelJudge:
        self._model = ChatModel(self.config)
        await self._model.resolve_model()
        return self

    async def __aexit__(self, *exc: object) -> None:
        model, self._model = self._model, None
        if model is not None:
            await model.aclose()

    async def judge(self, answer: str, claim: Claim) -> Verdict:
        if self._model is None:
            raise RuntimeError("ModelJudge is used outside `async with`")
        if not answer.strip():  # as MCP-Atlas's scorer: an empty answer fulfils nothing, no call made
            return Verdict(0.0, "not_fulfilled", "empty final answer")
        prompt = judge_prompt(answer, claim.claim)
        messages = [dumps({"role": "system", "content": JUDGE_SYSTEM}), dumps({"role": "user", "content": prompt})]
        turn = await self._model.complete(self._model.request_body(messages, tools_json=None, mode=ThinkMode.none))
        verdict, reason = parse_verdict(turn.content)
        return Verdict(VERDICT_SCORES[verdict], verdict, reason, raw=turn.content, prompt=prompt,
                       cost=self._model.cost(turn.usage))


class ClaimsGrader:
    """The task's `claims`, each judged against the final answer."""

    def __init__(self, spec: GradeSpec):
        self.spec = spec

    async def check(self, context: GradeContext) -> list[CheckResult]:
        if not self.spec.claims:
            return []
        judge = context.judge if (context.judge is not None and self.spec.judge != "match") else MatchJudge()
        answer = context.answer
        results = []
        for claim in self.spec.claims:
            verdict = await judge.judge(answer, claim)
            record: dict[str, Any] = {"judge": judge.label, "verdict": verdict.verdict, "reason": verdict.reason}
            if verdict.prompt:
                record.update(prompt=verdict.prompt, reply=verdict.raw, cost=verdict.cost)
            results.append(CheckResult(kind="claim", name=claim.claim, passed=verdict.score >= 1.0,
                                       score=verdict.score, detail=f"{verdict.verdict}: {verdict.reason}",
                                       judge=record))
        return results


def graders_for(spec: GradeSpec) -> list[Grader]:
    return [FileGrader(spec), CommandGrader(spec), ClaimsGrader(spec)]


async def grade_run(spec: GradeSpec, context: GradeContext) -> GradeResult:
    """Run every check of `spec` on a run that ended normally."""
    started = time.perf_counter()
    checks: list[CheckResult] = []
    for grader in graders_for(spec):
        checks.extend(await grader.check(context))
    return summarise(spec, checks, context.judge, time.perf_counter() - started)


def summarise(spec: GradeSpec, checks: Sequence[CheckResult], judge: ClaimJudge | None,
              duration_s: float = 0.0) -> GradeResult:
    claims = [c for c in checks if c.kind == "claim"]
    others = [c for c in checks if c.kind != "claim"]
    coverage = sum(c.score for c in claims) / len(claims) if claims else None
    harness = next((f"{c.kind} {c.name}: {c.harness_error}" for c in others if c.harness_error), None)
    reason = next((f"{c.kind} {c.name}: {' '.join(c.detail.split())[:400]}" for c in others if not c.passed), None)
    if harness is not None:
        reason = f"not graded: {harness}"
    if reason is None and coverage is not None and coverage < spec.pass_coverage - 1e-9:
        reason = f"claims coverage {coverage:.2f} < {spec.pass_coverage:.2f}"
    judge_cost = sum(float((c.judge or {}).get("cost", 0.0)) for c in claims)
    if judge is not None and spec.judge != "match" and claims:
        judge_model: str | None = judge.label
    else:
        judge_model = "match" if claims else None
    return GradeResult(passed=reason is None, coverage=coverage, checks=list(checks), reason=reason,
                       judge_model=judge_model, harness_error=harness,
                       judge_cost=judge_cost, duration_s=round(duration_s, 4))


def not_graded(stop_reason: str, error: str | None) -> str:
    """The failure reason of a run that did not end normally (it is never graded)."""
    reason = f"not graded: the run stopped on {stop_reason}"
    return f"{reason} ({error})" if error else reason
