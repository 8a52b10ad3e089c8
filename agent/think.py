"""Think modes (none / high / max) and the policies that choose one for every step."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import ConfigError


class ThinkMode(enum.StrEnum):
    """How much the model reasons before it answers a step."""

    none = "none"
    high = "high"
    max = "max"

    @classmethod
    def parse(cls, value: str | ThinkMode, *, where: str = "think") -> ThinkMode:
        if isinstance(value, ThinkMode):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"{where}: expected one of none, high, max; got {value!r}") from None


@dataclass(frozen=True)
class ThinkChoice:
    """A policy's decision for one step, with the reason recorded in the trace."""

    mode: ThinkMode
    reason: str


@dataclass(frozen=True)
class ToolOutcomeSummary:
    """What a policy may know about one tool call of the previous step."""

    tool: str
    arguments: str
    is_error: bool
    read_only: bool


@dataclass
class RunState:
    """The run as a think policy sees it before each step."""

    step: int
    max_steps: int
    last_tools: list[ToolOutcomeSummary] = field(default_factory=list)
    consecutive_errors: int = 0
    new_user_message: bool = False
    reasoning_tokens_used: int = 0
    previous_mode: ThinkMode | None = None


@runtime_checkable
class ThinkPolicy(Protocol):
    """Chooses the think mode of the next step."""

    def choose(self, state: RunState) -> ThinkChoice: ...


@dataclass(frozen=True)
class FixedThink:
    """Always the same mode."""

    mode: ThinkMode

    def choose(self, state: RunState) -> ThinkChoice:
        return ThinkChoice(self.mode, f"fixed: {self.mode.value}")


def as_policy(think: ThinkPolicy | ThinkMode | str | None) -> ThinkPolicy:
    """Accept a policy, a mode, or a mode name (None means the default, think high)."""
    if think is None:
        return FixedThink(ThinkMode.high)
    if isinstance(think, (ThinkMode, str)):
        return FixedThink(ThinkMode.parse(think))
    if isinstance(think, ThinkPolicy):
        return think
    raise ConfigError(f"think: expected none, high, max or a ThinkPolicy; got {think!r}")
