"""Why a run failed, in MCP-Atlas's failure taxonomy (`services/diagnostics/mcp_failure_taxonomy.py`): four
tool-call modes and seven cognitive ones, decided here deterministically from the run's record and trace
(MCP-Atlas asks an LLM; these rules need none and give the same answer every time).

Only the modes a trace can show are assigned: no_tool_use, wrong_tool, malformed_call, err_recovery,
early_termination, response_misparsing and faulty_synthesis; runs that never produced an answer to grade
(the harness, a server or the model failed) get MCP-Atlas's programmatic label `analysis_error`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .claims import written_numbers

if TYPE_CHECKING:
    from .jobs import RunRecord

TOOL_CALL_MODES = ("malformed_call", "wrong_tool", "no_tool_use", "err_recovery")
COGNITIVE_MODES = ("task_misunderstanding", "faulty_synthesis", "response_misparsing", "early_termination",
                   "hallucinated_fact", "logical_error", "constraint_violation")
ANALYSIS_ERROR = "analysis_error"
FAMILY = {**{m: "tool_call" for m in TOOL_CALL_MODES}, **{m: "cognitive" for m in COGNITIVE_MODES},
          ANALYSIS_ERROR: "programmatic"}

_LIMITS = {"max_steps", "max_tool_calls", "token_budget", "wall_time", "timeout"}
_UNKNOWN_TOOL = re.compile(r"\bunknown tool\b|\bno such tool\b|tool .{0,40} not found|is not (?:an )?(?:allowed|offered)",
                           re.IGNORECASE)
_BAD_ARGUMENTS = re.compile(
    r"validation error|invalid (?:argument|param|input)|missing required|required (?:property|field|argument)|"
    r"field required|not valid json|must be a json object|unexpected keyword|invalid type|expected (?:a |an )?"
    r"(?:string|number|integer|object|array|boolean)", re.IGNORECASE)
_GAVE_UP = re.compile(
    r"\b(?:i (?:was|am) (?:unable|not able)|i (?:could|can)(?:n't| ?not)|unable to (?:access|find|retrieve|"
    r"complete|determine|read)|could not (?:access|find|retrieve|complete|determine|read)|no access to)\b",
    re.IGNORECASE)


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    """The events of a JSONL trace as dicts; a line cut by a crash is skipped, a missing file is empty."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else {}


def classify_failure(record: RunRecord | Mapping[str, Any], trace_events: Iterable[Any]) -> str | None:
    """The failure mode of a run that did not pass (None when it passed), from its record and trace events
    (dicts as in the JSONL trace, or the event models). Rules, first match wins:

    1. no answer to grade (workspace, server, model or harness failure) -> analysis_error;
    2. no tool call at all -> no_tool_use;
    3. a call of a tool that is not offered, never followed by a successful call -> wrong_tool;
    4. a call refused for its arguments, with no later success of that tool -> malformed_call;
    5. failing tool calls the model did not get past (the last result an error, the same failing call
       repeated, a step limit hit after errors, or giving up after an error) -> err_recovery;
    6. a step or tool-call limit hit, an empty answer, giving up, or only some claims met -> early_termination;
    7. no claim met although the tool outputs held the claims' numbers -> response_misparsing;
    8. otherwise (the tools answered, the answer is wrong) -> faulty_synthesis.
    """
    data = _as_dict(record)
    if data.get("passed"):
        return None
    stop = str(data.get("stop_reason") or "")
    events = [_as_dict(e) for e in trace_events]
    calls = [e for e in events if e.get("type") == "tool_call"]
    results = [e for e in events if e.get("type") == "tool_result"]
    finished: dict[str, Any] = next((e for e in reversed(events) if e.get("type") == "run_finished"), {})
    answer = str(finished.get("answer") or "")
    if stop not in _LIMITS and stop not in ("answer", "claim_done"):
        return ANALYSIS_ERROR
    if not calls and not results:
        return "no_tool_use" if stop in ("answer", "claim_done") else "early_termination"

    succeeded_after: dict[int, set[str]] = {}
    ok_tools: set[str] = set()
    for index in range(len(results) - 1, -1, -1):  # tools that succeed at or after each result
        succeeded_after[index] = set(ok_tools)
        if not results[index].get("is_error"):
            ok_tools.add(str(results[index].get("tool")))
            succeeded_after[index].add(str(results[index].get("tool")))
    any_success = any(not r.get("is_error") for r in results)
    unrecovered = [(i, r) for i, r in enumerate(results)
                   if r.get("is_error") and str(r.get("tool")) not in succeeded_after[i]]
    unknown = [i for i, r in enumerate(results) if r.get("is_error") and _UNKNOWN_TOOL.search(str(r.get("content")))]
    if unknown and not any(not r.get("is_error") for r in results[unknown[-1] + 1:]):
        return "wrong_tool"
    if any(_BAD_ARGUMENTS.search(str(r.get("content", ""))) for _, r in unrecovered):
        return "malformed_call"
    errors = [r for r in results if r.get("is_error")]
    if errors:
        signatures = [(c.get("tool"), c.get("arguments")) for c in calls]
        failing = {r.get("call_id") for r in errors}
        failed_signatures = [(c.get("tool"), c.get("arguments")) for c in calls if c.get("call_id") in failing]
        repeated = len(failed_signatures) != len(set(failed_signatures)) and len(signatures) > 1
        if results[-1].get("is_error") or repeated or stop in _LIMITS or (_GAVE_UP.search(answer) and unrecovered):
            return "err_recovery"
    if stop in _LIMITS or not answer.strip() or _GAVE_UP.search(answer):
        return "early_termination"
    claims = _claim_checks(data.get("grade"))
    scores = [float(c.get("score") or 0.0) for c in claims]
    if scores and any(s > 0 for s in scores):
        return "early_termination"
    if claims and any_success:
        outputs = " ".join(str(r.get("content", "")) for r in results if not r.get("is_error"))
        have = [n.value for n in written_numbers(outputs)]
        wanted = [n for c in claims for n in written_numbers(str(c.get("name", "")))]
        if wanted and all(any(abs(h - w.value) <= w.tolerance + 1e-9 for h in have) for w in wanted):
            return "response_misparsing"
    return "faulty_synthesis"


def _claim_checks(grade: Any) -> list[dict[str, Any]]:
    checks = _as_dict(grade).get("checks") or []
    return [c for c in (_as_dict(x) for x in checks) if c.get("kind") == "claim"]


def summarise_failures(categories: Iterable[str | None]) -> dict[str, Any]:
    """Counts per failure mode and per family (tool_call, cognitive, programmatic), most frequent first."""
    modes: dict[str, int] = {}
    for category in categories:
        if category:
            modes[category] = modes.get(category, 0) + 1
    families: dict[str, int] = {}
    for mode, count in modes.items():
        family = FAMILY.get(mode, "other")
        families[family] = families.get(family, 0) + count
    return {"modes": dict(sorted(modes.items(), key=lambda kv: (-kv[1], kv[0]))),
            "families": dict(sorted(families.items(), key=lambda kv: (-kv[1], kv[0])))}
