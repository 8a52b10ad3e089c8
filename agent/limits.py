"""Run limits: when a run must stop even though the model has not answered."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Bounds on one run. A run that hits one stops with that limit as its stop reason."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(50, ge=1, description="Model turns per run")
    max_tool_calls: int = Field(500, ge=0, description="Tool calls per run")
    wall_time_s: float | None = Field(None, gt=0, description="Seconds for the whole run")
    max_total_tokens: int | None = Field(None, ge=1, description="Prompt + completion tokens over all steps")
    tool_timeout_s: float = Field(120.0, gt=0, description="Default seconds for one tool call")
