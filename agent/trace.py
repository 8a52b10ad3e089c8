"""JSONL run traces: one event per line, flushed as the run goes; read back into events or a RunResult."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from .errors import ConfigError
from .events import EVENT_ADAPTER, Event, ModelDelta, ModelResponse, RunFinished, RunStarted, ToolResult
from .result import RunResult, StopReason
from .usage import Usage


class TraceWriter:
    """Appends events to a JSONL file; each line is flushed (and the file synced at the end)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, event: Event) -> None:
        if self._file is None or isinstance(event, ModelDelta):
            return  # deltas are for live display; the full text is in model_response
        self._file.write(event.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def read_trace(path: str | Path) -> list[Event]:
    """Parse a trace; a truncated last line (a crash mid-write) is ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"trace {path}: cannot read it ({exc.strerror})") from None
    events: list[Event] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(EVENT_ADAPTER.validate_json(line))
        except ValueError as exc:
            if number == len(lines):
                break
            raise ConfigError(f"trace {path}, line {number}: not a trace event ({exc})") from None
    return events


def result_from_trace(path: str | Path) -> RunResult:
    """Rebuild the RunResult of a run; runs that died mid-way come back as stop_reason 'incomplete'."""
    events = read_trace(path)
    started = next((e for e in events if isinstance(e, RunStarted)), None)
    if started is None:
        raise ConfigError(f"trace {path}: no run_started event; is this a trace file?")
    finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
    if finished is not None:
        return RunResult(
            run_id=finished.run_id, answer=finished.answer, stop_reason=finished.stop_reason,
            steps=finished.steps, tool_calls=finished.tool_calls, usage=finished.usage, cost=finished.cost,
            duration_s=finished.duration_s, error=finished.error, error_info=finished.error_info, output=finished.output,
            think=finished.think, trace_path=Path(path),
        )
    responses = [e for e in events if isinstance(e, ModelResponse)]
    usage = sum((r.usage for r in responses), Usage())
    return RunResult(
        run_id=started.run_id, stop_reason=StopReason.incomplete, steps=len(responses),
        tool_calls=sum(isinstance(e, ToolResult) for e in events), usage=usage,
        cost=sum(r.cost for r in responses), duration_s=(events[-1].t - started.t) if events else 0.0,
        trace_path=Path(path),
    )

