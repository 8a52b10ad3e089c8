"""Toolathlon's local tools by their task-config names (`needed_local_tools`), as `LocalTool`s with Toolathlon's
tool names (without its `local-` prefix), argument schemas, limits and answers.

`Agent(local_tools=["python_execute", "history", ...])` and a task file's `local_tools:` take these names;
`toolkit(name)` gives the tools of one, `missing_local_tools(names)` says which cannot be offered here and why.
Each tool answers for the run whose step calls it (`CURRENT_RUN`): its history, context, workspace and sandbox.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeGuard

import anyio
import httpx

from agent.runtime.local import LocalSandbox
from agent.runtime.sandbox import Sandbox
from agent.tools.local import CLAIM_DONE, LocalTool
from agent.tools.results import ToolOutcome

from .context import TruncationRequest
from .overlong import ACTIONS, MAX_SEARCH_PAGE_SIZE, MAX_VIEW_PAGE_SIZE, OverlongOutputs
from .run import CURRENT_RUN, AgentRun

Handler = Callable[[dict[str, Any]], Awaitable[ToolOutcome]]

PYTHON_EXECUTE = "python-execute"
PYTHON_DEFAULT_TIMEOUT_S = 30
PYTHON_MAX_TIMEOUT_S = 120
PYTHON_DIR = ".python_tmp"
PYTHON_OUTPUT_CAP = 100_000
"""Characters of stdout and of stderr kept (head and tail) from one python-execute call."""
MAX_SLEEP_S = 300.0
"""sleep waits at most this long (Toolathlon sets no bound)."""
SERPER_KEY_VARIABLE = "SERPER_API_KEY"
SERPER_URL_VARIABLE = "SERPER_BASE_URL"
SERPER_DEFAULT_URL = "https://google.serper.dev"
SEARCH_RETRIES = 3

HISTORY_TOOLS = ("search_history", "view_history_turn", "browse_history", "history_stats", "search_in_turn")
CONTEXT_TOOLS = ("check_context_status", "manage_context", "smart_context_truncate")
OVERLONG_TOOLS = ("search_overlong_tooloutput", "search_overlong_tooloutput_navigate", "view_overlong_tooloutput",
                  "view_overlong_tooloutput_navigate")
LOCAL_TOOLKITS: dict[str, tuple[str, ...]] = {
    "claim_done": (CLAIM_DONE,),
    "python_execute": (PYTHON_EXECUTE,),
    "history": HISTORY_TOOLS,
    "manage_context": CONTEXT_TOOLS,
    "handle_overlong_tool_outputs": OVERLONG_TOOLS,
    "sleep": ("sleep",),
    "web_search": ("web_search",),
}
"""Toolathlon's `needed_local_tools` vocabulary -> the names of the tools each offers, in Toolathlon's order."""
TRUNCATION_METHODS = ("keep_recent_turns", "keep_recent_percent", "delete_first_turns", "delete_first_percent")


def missing_local_tools(names: Iterable[str]) -> dict[str, str]:
    """The local tools among `names` that cannot be offered here, each with the reason (empty: all can)."""
    missing: dict[str, str] = {}
    for name in names:
        if name not in LOCAL_TOOLKITS:
            missing[name] = f"not a local tool of this framework (it has: {', '.join(LOCAL_TOOLKITS)})"
        elif name == "web_search" and not _serper_keys():
            missing[name] = (f"no search backend: set {SERPER_KEY_VARIABLE} (a serper.dev key; {SERPER_URL_VARIABLE} "
                             f"for another endpoint than {SERPER_DEFAULT_URL})")
    return missing


def toolkit(name: str) -> list[LocalTool]:
    """The tools of one local toolkit (a key of `LOCAL_TOOLKITS`); KeyError for other names."""
    return [LocalTool(name=tool, description=description, input_schema=schema, handler=handler,
                      read_only=read_only, open_world=tool == "web_search")
            for tool, description, schema, handler, read_only in _SPECS[name]]


# -- shared ---------------------------------------------------------------------------------------------------


def _run() -> AgentRun | None:
    return CURRENT_RUN.get()


def _no_run(tool: str) -> ToolOutcome:
    return ToolOutcome(text=f"{tool}: no run in progress", is_error=True)


def _answer(data: dict[str, Any]) -> ToolOutcome:
    """A JSON answer; `status: error` marks the outcome as an error."""
    return ToolOutcome(text=json.dumps(data, ensure_ascii=False, indent=2), structured=data,
                       is_error=data.get("status") == "error")


def _text(text: str) -> ToolOutcome:
    return ToolOutcome(text=text, is_error=text.startswith("Error"))


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(arguments: dict[str, Any], key: str, default: int, low: int, high: int | None = None) -> int:
    """An integer argument clamped into [low, high]; the default when absent or not an integer."""
    value = arguments.get(key)
    if not _number(value) or value != int(value):
        return default
    value = max(low, int(value))
    return min(value, high) if high is not None else value


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _workspace(run: AgentRun) -> Path:
    """Where the run's local tools work: the Agent's workspace, else the current directory (as Toolathlon)."""
    return (run.agent.workspace or Path.cwd()).resolve()


# -- claim_done, sleep ------------------------------------------------------------------------------------------


async def _claim_done(arguments: dict[str, Any]) -> ToolOutcome:
    return ToolOutcome(text="you have claimed the task is done!")


async def _sleep(arguments: dict[str, Any]) -> ToolOutcome:
    seconds = arguments.get("seconds", 1)
    if not _number(seconds) or seconds < 0:
        return ToolOutcome(text=f"sleep: 'seconds' must be a number >= 0, got {seconds!r}", is_error=True)
    capped = min(float(seconds), MAX_SLEEP_S)
    await anyio.sleep(capped)  # cancellable: the run's wall time and Ctrl-C interrupt it
    note = f" (sleep is capped at {MAX_SLEEP_S:g} seconds)" if capped < seconds else ""
    return ToolOutcome(text=f"has slept {capped:g} seconds, wake up!{note}")


# -- python-execute ---------------------------------------------------------------------------------------------


async def _python_execute(arguments: dict[str, Any]) -> ToolOutcome:
    run = _run()
    if run is None:
        return _no_run(PYTHON_EXECUTE)
    code = arguments.get("code", "")
    if not isinstance(code, str):
        return ToolOutcome(text="Error executing Python code: 'code' must be a string", is_error=True)
    filename = arguments.get("filename") or f"{uuid.uuid4()}.py"
    if not isinstance(filename, str) or "/" in filename or "\\" in filename or filename in (".", ".."):
        return ToolOutcome(text=f"Error executing Python code: 'filename' must be a plain file name, got {filename!r}",
                           is_error=True)
    if not filename.endswith(".py"):
        filename += ".py"
    timeout = arguments.get("timeout", PYTHON_DEFAULT_TIMEOUT_S)
    if not _number(timeout) or timeout <= 0:
        return ToolOutcome(text=f"Error executing Python code: 'timeout' must be a positive number, got {timeout!r}",
                           is_error=True)
    timeout = min(timeout, PYTHON_MAX_TIMEOUT_S)
    sandbox = run.agent.sandbox
    if sandbox is not None:
        return await _execute(sandbox, code, filename, timeout)
    async with LocalSandbox(_workspace(run)) as local:
        return await _execute(local, code, filename, timeout)


async def _execute(sandbox: Sandbox, code: str, filename: str, timeout: float) -> ToolOutcome:
    """Write the code to `<workspace>/.python_tmp/<filename>` and run it there, in the workspace."""
    folder = sandbox.workspace / PYTHON_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / filename).write_text(code, encoding="utf-8")
    except OSError as exc:
        return ToolOutcome(text=f"Error executing Python code: {exc}", is_error=True)
    python = sys.executable if sandbox.kind == "local" else "python3"
    started = time.perf_counter()
    result = await sandbox.exec([python, f"./{PYTHON_DIR}/{filename}"], timeout=timeout, output_cap=PYTHON_OUTPUT_CAP,
                                env={"PYTHONIOENCODING": "utf-8"})
    elapsed = time.perf_counter() - started
    shown = f"{timeout:g}"
    if result.timed_out:
        return ToolOutcome(text=f"=== EXECUTION TIMEOUT ===\nExecution timed out after {shown} seconds\n"
                                f"Execution time: {elapsed:.3f} seconds", is_error=True)
    parts = []
    if result.stdout:
        parts += ["=== STDOUT ===", result.stdout.rstrip()]
    if result.stderr:
        parts += ["=== STDERR ===", result.stderr.rstrip()]
    parts += ["=== EXECUTION INFO ===", f"Return code: {result.exit_code}", f"Execution time: {elapsed:.3f} seconds",
              f"Timeout limit: {shown} seconds"]
    if not result.stdout and not result.stderr:
        parts.insert(0, "No console output produced.")
    return ToolOutcome(text="\n".join(parts), is_error=result.exit_code != 0)


# -- history -----------------------------------------------------------------------------------------------------


def _history_tool(tool: str, query: Callable[[AgentRun, dict[str, Any]], dict[str, Any]]) -> Handler:
    async def handler(arguments: dict[str, Any]) -> ToolOutcome:
        run = _run()
        if run is None:
            return _no_run(tool)
        if run.history is None:
            return _answer({"status": "error", "message": "this run keeps no history (the history toolkit is off)"})
        return _answer(query(run, arguments))

    return handler


def _keywords(arguments: dict[str, Any]) -> list[str]:
    value = arguments.get("keywords") or []
    if isinstance(value, str):
        value = [value]
    return [str(k) for k in value if str(k)] if isinstance(value, list) else []


def _search_history(run: AgentRun, a: dict[str, Any]) -> dict[str, Any]:
    assert run.history is not None
    regex = a.get("use_regex")
    return run.history.search(_keywords(a), use_regex=bool(regex) if regex is not None else None,
                              page=_integer(a, "page", 1, 1), per_page=_integer(a, "per_page", 10, 1, 50),
                              search_id=a.get("search_id") if isinstance(a.get("search_id"), str) else None)


def _view_history_turn(run: AgentRun, a: dict[str, Any]) -> dict[str, Any]:
    assert run.history is not None
    turn = a.get("turn")
    if not _number(turn):
        return {"status": "error", "message": "Please provide the turn number"}
    return run.history.view_turn(int(turn), context_turns=_integer(a, "context_turns", 2, 0, 10),
                                 truncate=a.get("truncate", True) is not False)


def _search_in_turn(run: AgentRun, a: dict[str, Any]) -> dict[str, Any]:
    assert run.history is not None
    turn, pattern, jump = a.get("turn"), a.get("pattern"), a.get("jump_to")
    return run.history.search_in_turn(
        int(turn) if _number(turn) else None, str(pattern) if pattern else None,
        page=_integer(a, "page", 1, 1), per_page=_integer(a, "per_page", 0, 0, 20) or None,
        search_id=a.get("search_id") if isinstance(a.get("search_id"), str) else None,
        jump_to=jump if isinstance(jump, str | int) else None)


def _browse_history(run: AgentRun, a: dict[str, Any]) -> dict[str, Any]:
    assert run.history is not None
    end = a.get("end_turn")
    return run.history.browse(start_turn=_integer(a, "start_turn", 0, 0), end_turn=int(end) if _number(end) else None,
                              limit=_integer(a, "limit", 20, 1, 100),
                              direction="backward" if a.get("direction") == "backward" else "forward",
                              truncate=a.get("truncate", True) is not False)


def _history_stats(run: AgentRun, a: dict[str, Any]) -> dict[str, Any]:
    assert run.history is not None
    stats = run.history.stats()
    stats["current_session"] = {"active_turns": _turns_in_context(run), "truncated_turns": _truncated_turns(run),
                                "started_at": run.history.started_at}
    return stats


# -- context ---------------------------------------------------------------------------------------------------


def _turns_in_context(run: AgentRun) -> int:
    if run.keeper is None or run.conversation is None:
        return 0
    return len(run.keeper.turn_spans(run.conversation))


def _truncated_turns(run: AgentRun) -> int:
    return sum(t.deleted_turns for t in run.keeper.truncations) if run.keeper is not None else 0


def _advice(percent: float) -> dict[str, str]:
    if percent >= 90:
        return {"level": "critical", "message": "Context is about to be exhausted! Strongly recommend cleaning up "
                "conversation history immediately.", "recommended_action": "manage_context"}
    if percent >= 80:
        return {"level": "warning", "message": "Context usage is high, recommend cleaning up some conversation "
                "history.", "recommended_action": "manage_context"}
    if percent >= 70:
        return {"level": "info", "message": "Context usage is moderate, consider preventive cleanup.",
                "recommended_action": "monitor"}
    return {"level": "good", "message": "Context usage is healthy.", "recommended_action": "none"}


async def _check_context_status(arguments: dict[str, Any]) -> ToolOutcome:
    run = _run()
    if run is None or run.keeper is None or run.conversation is None or run.context is None:
        return _no_run("check_context_status")
    keeper, step = run.keeper, run.context.step
    used, window = keeper.tokens_now(run.conversation), keeper.config.window_tokens
    percent = round(used / window * 100, 2)
    status: dict[str, Any] = {
        "session_info": {"session_id": run.run_id, "started_at": run.started_at,
                         "history_dir": str(run.trace_path) if run.trace_path else "in memory"},
        "turn_statistics (turns before invoking this tool)": {
            "current_turn": step, "turns_in_current_sequence": _turns_in_context(run), "total_turns_ever": step,
            "truncated_turns": _truncated_turns(run)},
        "token_usage": {"total_tokens": used, "context_limit": window, "usage_percentage": percent,
                        "remaining_tokens": max(0, window - used)},
        "truncation_history": [{"at_turn": t.at_turn, "method": t.method, "value": t.value,
                                "deleted_items": t.deleted_messages, "deleted_turns": t.deleted_turns,
                                "timestamp": t.timestamp} for t in keeper.truncations],
        "status": _advice(percent),
    }
    if keeper.compactions:
        status["compactions"] = [{"removed_messages": c.removed_messages, "tokens_before": c.tokens_before,
                                  "tokens_after": c.tokens_after} for c in keeper.compactions]
    return _answer(status)


def _kept(method: str, value: float, turns: int) -> int:
    """How many recent turns a truncation method keeps of `turns` (at least one)."""
    if method == "keep_recent_turns":
        return max(1, min(int(value), turns))
    if method == "keep_recent_percent":
        return max(1, int(turns * value / 100))
    if method == "delete_first_turns":
        return max(1, turns - int(value))
    return max(1, turns - int(turns * value / 100))


async def _manage_context(arguments: dict[str, Any]) -> ToolOutcome:
    run = _run()
    if run is None or run.keeper is None or run.conversation is None or run.context is None:
        return _no_run("manage_context")
    action = arguments.get("action", "truncate")
    if action != "truncate":
        return _answer({"status": "error", "message": f"Unsupported operation: {action}"})
    method, value = arguments.get("method"), arguments.get("value")
    preserve = arguments.get("preserve_system", True) is not False
    if method not in TRUNCATION_METHODS:
        return _answer({"status": "error", "message": f"Invalid method: {method}. Supported methods: "
                                                      f"{list(TRUNCATION_METHODS)}"})
    if not _number(value) or value <= 0:
        return _answer({"status": "error", "message": f"Invalid value: {value}. Must be a positive number."})
    if "percent" in method and value >= 100:
        return _answer({"status": "error", "message": f"Percentage must be between 0-100, current value: {value}"})
    current = _turns_in_context(run)
    keep = _kept(method, value, current)
    if keep >= current:
        return _answer({"status": "no_action", "message": f"Currently only {current} turns of conversation, no "
                        "truncation needed.", "current_turns": current, "requested_keep": keep})
    run.keeper.pending_truncation = TruncationRequest(
        method=method, value=value, keep=lambda n: range(n - _kept(method, value, n), n), preserve_system=preserve,
        at_turn=run.context.step)
    return _answer({"status": "scheduled", "message": "Truncation operation completed.", "details": {
        "method": method, "value": value, "current_turns": current, "will_keep": keep, "will_delete": current - keep,
        "preserve_system_messages": preserve}})


async def _smart_context_truncate(arguments: dict[str, Any]) -> ToolOutcome:
    run = _run()
    if run is None or run.keeper is None or run.conversation is None or run.context is None:
        return _no_run("smart_context_truncate")
    ranges, preserve = arguments.get("ranges", []), arguments.get("preserve_system", True) is not False
    current = _turns_in_context(run)
    if not isinstance(ranges, list):
        return _answer({"status": "error", "message": "ranges parameter must be a 2D list"})
    if not ranges:
        return _answer({"status": "error", "message": "ranges cannot be empty, must specify at least one retention "
                                                      "range"})
    spans: list[tuple[int, int]] = []
    for i, item in enumerate(ranges):
        if not isinstance(item, list) or len(item) != 2:
            return _answer({"status": "error", "message": f"ranges[{i}] must be a list containing two elements "
                                                          "[start, end]"})
        start, end = item
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in item):
            return _answer({"status": "error", "message": f"start and end in ranges[{i}] must be integers"})
        if start < 0 or end < 0:
            return _answer({"status": "error", "message": f"Indexes in ranges[{i}] cannot be negative"})
        if start > end:
            return _answer({"status": "error", "message": f"start({start}) in ranges[{i}] cannot be greater than "
                                                          f"end({end})"})
        if end >= current:
            return _answer({"status": "error", "message": f"end({end}) in ranges[{i}] exceeds current turn range "
                                                          f"(0-{current - 1})"})
        spans.append((start, end))
    spans.sort()
    for (a, b), (c, d) in zip(spans, spans[1:], strict=False):
        if c <= b:
            return _answer({"status": "error", "message": f"Range overlap: [{a}, {b}] with [{c}, {d}]"})
    kept = [i for start, end in spans for i in range(start, end + 1)]
    if len(kept) >= current:
        return _answer({"status": "no_action", "message": "Specified ranges already cover all turns, no truncation "
                        "needed.", "current_turns": current, "keep_turns": len(kept)})
    run.keeper.pending_truncation = TruncationRequest(method="smart_ranges", value=[list(s) for s in spans],
                                                      keep=lambda n: kept, preserve_system=preserve,
                                                      at_turn=run.context.step)
    return _answer({"status": "scheduled", "message": "Smart truncation operation completed.", "details": {
        "method": "smart_ranges", "ranges": [list(s) for s in spans], "current_turns": current,
        "will_keep": len(kept), "will_delete": current - len(kept), "preserve_system_messages": preserve}})


# -- overlong outputs ---------------------------------------------------------------------------------------------


def _overlong_tool(tool: str, read: Callable[[OverlongOutputs, dict[str, Any]], str]) -> Handler:
    async def handler(arguments: dict[str, Any]) -> ToolOutcome:
        run = _run()
        if run is None:
            return _no_run(tool)
        if run.overlong is None:
            return ToolOutcome(text="Error: overlong tool outputs are not kept in this run", is_error=True)
        return _text(await anyio.to_thread.run_sync(read, run.overlong, arguments))

    return handler


def _str(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key, "")
    return value if isinstance(value, str) else str(value)


def _target(arguments: dict[str, Any]) -> int | None:
    value = arguments.get("target_page")
    return int(value) if _number(value) else None


def _search_overlong(store: OverlongOutputs, a: dict[str, Any]) -> str:
    page_size = a.get("page_size", 10)
    return store.search(_str(a, "shortuuid"), _str(a, "pattern"),
                        page_size=int(page_size) if _number(page_size) else 0,
                        context_size=_integer(a, "context_size", 1000, 100, 5000))


def _view_overlong(store: OverlongOutputs, a: dict[str, Any]) -> str:
    page_size = a.get("page_size", 10_000)
    return store.view(_str(a, "shortuuid"), page_size=int(page_size) if _number(page_size) else 0)


# -- web_search ---------------------------------------------------------------------------------------------------


def _serper_keys() -> list[str]:
    return [k.strip() for k in os.environ.get(SERPER_KEY_VARIABLE, "").split(",") if k.strip()]


async def _web_search(arguments: dict[str, Any]) -> ToolOutcome:
    query = _str(arguments, "query").strip()
    if not query:
        return ToolOutcome(text="Error: Query parameter is required and cannot be empty", is_error=True)
    keys = _serper_keys()
    if not keys:
        return ToolOutcome(text=f"Error: no search backend: {SERPER_KEY_VARIABLE} is not set", is_error=True)
    count = _integer(arguments, "num_results", 10, 1, 50)
    url = os.environ.get(SERPER_URL_VARIABLE, SERPER_DEFAULT_URL).rstrip("/") + "/search"
    try:
        results = await _serper(url, random.choice(keys), query, count)
    except (httpx.HTTPError, ValueError) as exc:
        results = [{"error": f"google serper search failed for query={query!r}. The error is: {exc!r}"}]
    if not results:
        return ToolOutcome(text="No search results found.")
    shown = []
    for result in results:
        if "error" in result:
            shown.append(f"Error: {result['error']}")
        else:
            shown.append(f"Title: {result.get('title', 'No title')}\nLink: {result.get('link', 'No link')}\n"
                         f"Snippet: {result.get('snippet', 'No description')}\n"
                         f"Sitelinks: {result.get('sitelinks', 'No sitelinks')}\n")
    return ToolOutcome(text="\n".join(shown), is_error=all("error" in r for r in results))


async def _serper(url: str, key: str, query: str, count: int) -> list[dict[str, Any]]:
    """serper.dev's organic results; rate limits, server errors and dropped connections are retried with backoff."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
        for attempt in range(SEARCH_RETRIES + 1):
            try:
                response = await client.post(url, json={"q": query, "num": count},
                                             headers={"X-API-KEY": key, "Content-Type": "application/json"})
                if response.status_code == 429 or response.status_code >= 500:
                    response.raise_for_status()
            except (httpx.TransportError, httpx.HTTPStatusError):
                if attempt == SEARCH_RETRIES:
                    raise
                await anyio.sleep(min(2.0**attempt, 60.0) * random.uniform(1.1, 1.3))
                continue
            response.raise_for_status()
            organic = response.json().get("organic", [])
            return [r for r in organic if isinstance(r, dict)] if isinstance(organic, list) else []
    return []


# -- the specs ------------------------------------------------------------------------------------------------------

_NAVIGATION = {"type": "string", "description": "Navigation action to perform", "enum": list(ACTIONS)}
_TARGET = {"type": "integer", "description": "Target page number (required for jump_to_page action)", "minimum": 1}
_SHORTUUID = {"type": "string", "description": "The shortuuid identifier for the overlong tool output"}
_PRESERVE = {"type": "boolean", "description": "Whether to preserve system messages", "default": True}
_TRUNCATE = {"type": "boolean", "description": "Whether to truncate long content display", "default": True}

_SPECS: dict[str, list[tuple[str, str, dict[str, Any], Handler, bool]]] = {
    "claim_done": [(CLAIM_DONE, "claim the task is done", _schema({}), _claim_done, True)],
    "sleep": [("sleep", "use this tool to sleep for a while",
               _schema({"seconds": {"type": "number", "description": "the number of seconds to sleep"}}, ("seconds",)),
               _sleep, True)],
    "python_execute": [(
        PYTHON_EXECUTE,
        "Execute Python code directly under the agent workspace, and returns stdout, stderr, return code, and "
        "execution time in a structured format.",
        _schema({
            "code": {"type": "string", "description": "Python code to execute (can be directly pasted into a .py file)"},
            "filename": {"type": "string", "description": "Filename for the Python file (including .py extension). "
                         "If not provided, a random UUID will be used."},
            "timeout": {"type": "number", "maximum": PYTHON_MAX_TIMEOUT_S, "default": PYTHON_DEFAULT_TIMEOUT_S,
                        "description": "Maximum execution time in seconds. Cannot exceed 120 seconds. If a value "
                        "greater than 120 is provided, it will be automatically limited to 120 seconds. Default is 30 "
                        "seconds."},
        }, ("code",)),
        _python_execute, False)],
    "history": [
        ("search_history", "Search history conversation records. Support multiple keyword search or regular "
         "expression search, return records containing all keywords. Support paging to browse all results.",
         _schema({
             "keywords": {"type": "array", "items": {"type": "string"}, "description": "Search keyword list or "
                          "regular expression list, will find records matching all patterns"},
             "use_regex": {"type": "boolean", "description": "Whether to treat keywords as regular expressions",
                           "default": False},
             "page": {"type": "integer", "description": "Page number, starting from 1", "default": 1, "minimum": 1},
             "per_page": {"type": "integer", "description": "Number of results per page", "default": 10,
                          "minimum": 1, "maximum": 50},
             "search_id": {"type": "string", "description": "Continue previous search (for paging)"},
         }), _history_tool("search_history", _search_history), True),
        ("view_history_turn", "View the complete conversation content of a specific turn, including the context of "
         "previous and subsequent turns. Support content truncation to view long content.",
         _schema({
             "turn": {"type": "integer", "description": "Turn number to view", "minimum": 0},
             "context_turns": {"type": "integer", "description": "Display the context of previous and subsequent "
                               "turns", "default": 2, "minimum": 0, "maximum": 10},
             "truncate": {"type": "boolean", "description": "Whether to truncate long content (keep the first 500 and "
                          "last 500 characters)", "default": True},
         }, ("turn",)), _history_tool("view_history_turn", _view_history_turn), True),
        ("browse_history", "Browse history records in chronological order, support forward or backward browsing. Can "
         "choose whether to truncate long content.",
         _schema({
             "start_turn": {"type": "integer", "description": "Start turn (inclusive), default from earliest",
                            "minimum": 0},
             "end_turn": {"type": "integer", "description": "End turn (inclusive), default to latest", "minimum": 0},
             "limit": {"type": "integer", "description": "Maximum number of turns returned", "default": 20,
                       "minimum": 1, "maximum": 100},
             "direction": {"type": "string", "enum": ["forward", "backward"], "description": "Browse direction: "
                           "forward from early to late, backward from late to early", "default": "forward"},
             "truncate": _TRUNCATE,
         }), _history_tool("browse_history", _browse_history), True),
        ("history_stats", "Get statistics of history records, including total turns, time range, message type "
         "distribution, etc.", _schema({}), _history_tool("history_stats", _history_stats), True),
        ("search_in_turn", "Search content within a specific turn, support regular expressions. Used to find specific "
         "information in long content (such as tool output).",
         _schema({
             "turn": {"type": "integer", "description": "Turn number to search", "minimum": 0},
             "pattern": {"type": "string", "description": "Search pattern (support regular expressions)"},
             "page": {"type": "integer", "description": "Page number, starting from 1", "default": 1, "minimum": 1},
             "per_page": {"type": "integer", "description": "Number of results per page", "default": 10,
                          "minimum": 1, "maximum": 20},
             "search_id": {"type": "string", "description": "Search session ID (for paging)"},
             "jump_to": {"oneOf": [{"type": "string", "enum": ["first", "last", "next", "prev"]},
                                   {"type": "integer", "minimum": 1}],
                         "description": "Jump to: 'first'(first page), 'last'(last page), 'next'(next page), "
                         "'prev'(previous page), or specific page number"},
         }, ("turn",)), _history_tool("search_in_turn", _search_in_turn), True),
    ],
    "manage_context": [
        ("check_context_status", "Query current conversation context status, including turn statistics, token usage, "
         "truncation history and other information", _schema({}), _check_context_status, True),
        ("manage_context", "Manage conversation context by deleting historical messages to free up space. Supports "
         "multiple strategies:\n- keep_recent_turns: Keep the most recent N turns of conversation\n"
         "- keep_recent_percent: Keep the most recent X% of conversation  \n- delete_first_turns: Delete the earliest "
         "N turns of conversation\n- delete_first_percent: Delete the earliest X% of conversation",
         _schema({
             "action": {"type": "string", "enum": ["truncate"], "description": "Operation to execute, currently only "
                        "supports truncate", "default": "truncate"},
             "method": {"type": "string", "enum": list(TRUNCATION_METHODS), "description": "Truncation strategy"},
             "value": {"type": "number", "description": "Numeric parameter, for turns methods it's number of turns, "
                       "for percent methods it's percentage (0-100)", "minimum": 0},
             "preserve_system": _PRESERVE,
         }, ("method", "value")), _manage_context, False),
        ("smart_context_truncate", "Smart context truncation tool that precisely controls retained content by "
         "specifying ranges.\nAccepts 2D list [[start1,end1],[start2,end2],...,[startN,endN]], each sublist "
         "represents a closed range to retain (both ends included).\nIndexing starts from 0, ranges cannot overlap, "
         "must be arranged in order.",
         _schema({
             "ranges": {"type": "array", "description": "List of ranges to retain, format: "
                        "[[start1,end1],[start2,end2],...], indexing starts from 0",
                        "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                  "items": {"type": "integer", "minimum": 0}}, "minItems": 1},
             "preserve_system": _PRESERVE,
         }, ("ranges",)), _smart_context_truncate, False),
    ],
    "handle_overlong_tool_outputs": [
        ("search_overlong_tooloutput", "Search within overlong tool output content using regex patterns and return "
         "first page with session ID",
         _schema({
             "shortuuid": _SHORTUUID,
             "pattern": {"type": "string", "description": "The regex pattern to search for in the content"},
             "page_size": {"type": "integer", "description": f"Number of matches per page (default: 10, max: "
                           f"{MAX_SEARCH_PAGE_SIZE})", "minimum": 1, "maximum": MAX_SEARCH_PAGE_SIZE},
             "context_size": {"type": "integer", "description": "Characters of context around each match (default: "
                              "1000)", "minimum": 100, "maximum": 5000},
         }, ("shortuuid", "pattern")), _overlong_tool("search_overlong_tooloutput", _search_overlong), True),
        ("search_overlong_tooloutput_navigate", "Navigate through search results using search session ID",
         _schema({
             "search_session_id": {"type": "string", "description": "The search session ID returned from "
                                   "search_overlong_tool"},
             "action": _NAVIGATION, "target_page": _TARGET,
         }, ("search_session_id",)),
         _overlong_tool("search_overlong_tooloutput_navigate", lambda store, a: store.search_navigate(
             _str(a, "search_session_id"), _str(a, "action") or "next_page", _target(a))), True),
        ("view_overlong_tooloutput", "View overlong tool output content with pagination and return first page with "
         "session ID",
         _schema({
             "shortuuid": _SHORTUUID,
             "page_size": {"type": "integer", "description": f"Number of characters per page (default: 10000, max: "
                           f"{MAX_VIEW_PAGE_SIZE})", "minimum": 1, "maximum": MAX_VIEW_PAGE_SIZE},
         }, ("shortuuid",)), _overlong_tool("view_overlong_tooloutput", _view_overlong), True),
        ("view_overlong_tooloutput_navigate", "Navigate through view content using view session ID",
         _schema({
             "view_session_id": {"type": "string", "description": "The view session ID returned from "
                                 "view_overlong_tool"},
             "action": _NAVIGATION, "target_page": _TARGET,
         }, ("view_session_id",)),
         _overlong_tool("view_overlong_tooloutput_navigate", lambda store, a: store.view_navigate(
             _str(a, "view_session_id"), _str(a, "action") or "next_page", _target(a))), True),
    ],
    "web_search": [(
        "web_search", "Search the web using Google Serper API with concurrency control and retry mechanisms. Supports "
        "various Google search operators.",
        _schema({
            "query": {"type": "string", "description": "Search query with optional Google search operators."},
            "num_results": {"type": "integer", "description": "Number of results to return, default 10, max 50",
                            "default": 10, "minimum": 1, "maximum": 50},
        }, ("query",)), _web_search, True)],
}


def overlong_outputs(folder: Path) -> OverlongOutputs:
    """A run's overlong-output store: its readers' own pages are never cut again."""
    return OverlongOutputs(folder, exempt=OVERLONG_TOOLS)

