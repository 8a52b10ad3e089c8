"""The outcome of a run, as returned by the SDK and rebuilt from a trace."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .usage import ModeStats, Usage


class StopReason(enum.StrEnum):
    """Why a run ended. `ok` runs end on `answer` or `claim_done`."""

    answer = "answer"
    """The model replied without tool calls."""
    claim_done = "claim_done"
    """The model called claim_done."""
    max_steps = "max_steps"
    max_tool_calls = "max_tool_calls"
    wall_time = "wall_time"
    token_budget = "token_budget"
    stopped = "stopped"
    """A hook raised StopRun (its reason is in `error`)."""
    error = "error"
    """A model, tool-server or context failure (see `error` and `error_info`)."""
    cancelled = "cancelled"
    """Ctrl-C, SIGTERM, a cancelled task, or leaving `agent.iter()`/`agent.stream()` early."""
    incomplete = "incomplete"
    """Only for traces of runs that died before finishing."""


class RunError(BaseModel):
    """What ended a run with an error, typed: the exception's class and message, and where."""

    kind: str = Field(description="The exception class, e.g. ModelUnavailableError, ContextOverflowError")
    message: str
    step: int | None = Field(None, description="The step it happened in (None: before the first step)")


class RunResult(BaseModel):
    """What a run produced."""

    run_id: str
    answer: str | None = None
    stop_reason: StopReason
    steps: int = 0
    tool_calls: int = 0
    usage: Usage = Usage()
    cost: float = 0.0
    duration_s: float = 0.0
    error: str | None = None
    """The error's message (or a hook's StopRun reason); `error_info` has it typed."""
    error_info: RunError | None = None
    output: Any = None
    """The validated structured output (an instance of the output type; JSON data when read from a trace or
    with a JSON-schema output), when the run had one and finished with it."""
    think: dict[str, ModeStats] = Field(default_factory=dict, description="Steps, reasoning tokens and time per think mode")
    trace_path: Path | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The conversation, canonical form")

    @property
    def ok(self) -> bool:
        """True when the run finished on its own: an answer or claim_done."""
        return self.stop_reason in (StopReason.answer, StopReason.claim_done)
