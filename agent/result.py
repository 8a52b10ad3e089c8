"""The outcome of a run, as returned by the SDK and rebuilt from a trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .usage import ModeStats, Usage


class RunResult(BaseModel):
    """What a run produced.

    `stop_reason` is one of: answer (the model replied without tool calls), claim_done (it called
    claim_done), max_steps, max_tool_calls, wall_time, token_budget, error, cancelled, and incomplete
    (only for traces of runs that died before finishing).
    """

    run_id: str
    answer: str | None = None
    stop_reason: str
    steps: int = 0
    tool_calls: int = 0
    usage: Usage = Usage()
    cost: float = 0.0
    duration_s: float = 0.0
    error: str | None = None
    think: dict[str, ModeStats] = Field(default_factory=dict, description="Steps, reasoning tokens and time per think mode")
    trace_path: Path | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The conversation, canonical form")

    @property
    def ok(self) -> bool:
        """True when the run finished on its own: an answer or claim_done."""
        return self.stop_reason in ("answer", "claim_done")
