"""Think modes (none / high / max) and the policies that choose one for every step.

`AutoThink` (the default) plans with high, drops to none for routine steps, escalates after errors and
loops, and treats max as costly where entering it throws away the prefix cache (self-hosted V4).
"""

from __future__ import annotations

import enum
import fnmatch
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def call_key(tool: str, arguments: str) -> str:
    """The identity of a call for loop detection: tool plus canonical JSON arguments."""
    try:
        canonical = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments
    return f"{tool} {canonical}"


@dataclass
class RunState:
    """The run as a think policy sees it before each step."""

    step: int
    max_steps: int
    last_tools: list[ToolOutcomeSummary] = field(default_factory=list)
    consecutive_errors: int = 0
    """Steps in a row whose tool calls included an error."""
    new_user_message: bool = False
    reasoning_tokens_used: int = 0
    previous_mode: ThinkMode | None = None
    call_counts: dict[str, int] = field(default_factory=dict)
    """How often each (tool, arguments) pair was called so far (see `call_key`)."""
    max_invalidates_cache: bool = False
    """True on profiles where entering max changes the prompt's first tokens (self-hosted V4)."""

    @property
    def steps_left(self) -> int:
        return self.max_steps - self.step + 1

    def repeats(self) -> int:
        """The highest call count among the previous step's calls (2 = called twice with the same args)."""
        return max((self.call_counts.get(call_key(t.tool, t.arguments), 0) for t in self.last_tools), default=0)


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


@dataclass(frozen=True)
class CallableThink:
    """A user function `(RunState) -> ThinkChoice | ThinkMode | str` as a policy."""

    function: Callable[[RunState], ThinkChoice | ThinkMode | str]

    def choose(self, state: RunState) -> ThinkChoice:
        choice = self.function(state)
        if isinstance(choice, ThinkChoice):
            return choice
        mode = ThinkMode.parse(choice, where=f"think policy {getattr(self.function, '__name__', 'callable')}")
        return ThinkChoice(mode, f"user policy: {mode.value}")


PAGING_KEYS = frozenset({"offset", "start", "start_index", "start_line", "page", "cursor", "line", "skip", "from"})


class AutoThink(BaseModel):
    """Spend reasoning where it pays. Rules, first match wins:

    1. first step or a new user message: `plan_mode` (high);
    2. reasoning budget spent: `routine_mode` (none) from then on;
    3. already in max where max is costly: stay in max (leaving and re-entering would miss the cache twice);
    4. the same call with the same arguments again (`loop_repeats` times): max (high where max is costly
       and the evidence is not yet `costly_margin` stronger);
    5. `errors_to_max` failing steps in a row: max;
    6. at most `short_budget_steps` steps left: max;
    7. a tool hint matching one of the previous step's tools: the hinted mode;
    8. an error in the previous step: `error_mode` (high);
    9. the previous calls all succeeded and were read-only, or were paging through output: `routine_mode`;
    10. otherwise (something changed): `progress_mode` (high).
    Where max is costly, rules 4-6 need `costly_margin` more evidence, and rule 6 gives high instead.
    """

    model_config = ConfigDict(extra="forbid")

    policy: Literal["auto"] = "auto"
    plan_mode: ThinkMode = ThinkMode.high
    routine_mode: ThinkMode = ThinkMode.none
    error_mode: ThinkMode = ThinkMode.high
    progress_mode: ThinkMode = ThinkMode.high
    errors_to_max: int = Field(2, ge=1, description="Failing steps in a row that call for max")
    loop_repeats: int = Field(2, ge=2, description="Calls with identical arguments that count as a loop")
    short_budget_steps: int = Field(2, ge=0, description="Steps left at which max is used to finish well")
    costly_margin: int = Field(1, ge=0, description="Extra evidence needed where entering max loses the cache")
    reasoning_budget: int | None = Field(None, ge=0, description="Reasoning tokens per run; then no escalation")
    max_is_costly: bool | None = Field(None, description="Override the profile's judgement of max's cache cost")
    tool_hints: dict[str, ThinkMode] = Field(
        default_factory=dict, description="Tool-name globs whose results call for a mode, e.g. {'*__run_tests': max}"
    )

    def choose(self, state: RunState) -> ThinkChoice:
        costly = state.max_invalidates_cache if self.max_is_costly is None else self.max_is_costly
        margin = self.costly_margin if costly else 0
        if state.step <= 1:
            return ThinkChoice(self.plan_mode, "plan: first step")
        if state.new_user_message:
            return ThinkChoice(self.plan_mode, "plan: new user message")
        if self.reasoning_budget is not None and state.reasoning_tokens_used >= self.reasoning_budget:
            return ThinkChoice(self.routine_mode, f"reasoning budget spent ({state.reasoning_tokens_used:,} of "
                                                  f"{self.reasoning_budget:,} tokens)")
        if costly and state.previous_mode is ThinkMode.max:
            return ThinkChoice(ThinkMode.max, "staying in max: leaving it would invalidate the prefix cache again")
        repeats = state.repeats()
        if repeats >= self.loop_repeats + margin:
            looping = max(state.last_tools, key=lambda t: state.call_counts.get(call_key(t.tool, t.arguments), 0)).tool
            return ThinkChoice(ThinkMode.max, f"loop: {looping} called {repeats} times with the same arguments")
        if repeats >= self.loop_repeats:
            return ThinkChoice(ThinkMode.high, f"possible loop: a call repeated {repeats} times (max would "
                                               "invalidate the prefix cache)")
        if state.consecutive_errors >= self.errors_to_max + margin:
            return ThinkChoice(ThinkMode.max, f"{state.consecutive_errors} failing steps in a row")
        if state.steps_left <= self.short_budget_steps:
            mode = ThinkMode.high if costly else ThinkMode.max
            return ThinkChoice(mode, f"step budget short: {state.steps_left} left")
        for tool in state.last_tools:
            for pattern, mode in self.tool_hints.items():
                if fnmatch.fnmatchcase(tool.tool, pattern):
                    return ThinkChoice(mode, f"hint: results of {tool.tool} call for {mode.value}")
        failed = [t.tool for t in state.last_tools if t.is_error]
        if failed:
            return ThinkChoice(self.error_mode, f"tool error in {', '.join(dict.fromkeys(failed))}")
        if repeats < self.loop_repeats and _paging(state):
            return ThinkChoice(self.routine_mode, "routine: paging through output")
        if state.last_tools and all(t.read_only for t in state.last_tools):
            return ThinkChoice(self.routine_mode, "routine: read-only calls succeeded")
        changed = ", ".join(dict.fromkeys(t.tool for t in state.last_tools if not t.read_only)) or "tools"
        return ThinkChoice(self.progress_mode, f"progress: {changed} changed something")


def _paging(state: RunState) -> bool:
    """All previous calls re-read the same tool with only a paging argument moved on."""
    if not state.last_tools:
        return False
    for tool in state.last_tools:
        try:
            args = json.loads(tool.arguments or "{}")
        except ValueError:
            return False
        if not isinstance(args, dict) or not (PAGING_KEYS & set(args)):
            return False
    return True


def think_policy(value: ThinkPolicy | ThinkMode | str | Mapping[str, Any] | Callable | None, *,
                 where: str = "think") -> ThinkPolicy:
    """A policy from `auto`, a mode name, `{policy: auto, ...options}`, a ThinkPolicy or a callable.

    None means the default, `auto`.
    """
    if value is None:
        return AutoThink()
    if isinstance(value, ThinkMode):
        return FixedThink(value)
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return AutoThink()
        if value.strip().lower() not in ThinkMode.__members__:
            raise ConfigError(f"{where}: expected auto, none, high or max; got {value!r}")
        return FixedThink(ThinkMode.parse(value, where=where))
    if isinstance(value, Mapping):
        options = dict(value)
        policy = options.pop("policy", "auto")
        if policy == "fixed":
            return FixedThink(ThinkMode.parse(options.pop("mode", "high"), where=f"{where}.mode"))
        if policy != "auto":
            raise ConfigError(f"{where}.policy: expected auto or fixed; got {policy!r}")
        try:
            return AutoThink.model_validate(options)
        except ValidationError as exc:
            problems = "; ".join(f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(problems) from None
    if isinstance(value, ThinkPolicy):
        return value
    if callable(value):
        return CallableThink(value)
    raise ConfigError(f"{where}: expected auto, none, high, max, a mapping, a ThinkPolicy or a callable; got {value!r}")


def policy_label(policy: ThinkPolicy) -> str:
    if isinstance(policy, FixedThink):
        return policy.mode.value
    if isinstance(policy, AutoThink):
        return "auto"
    return type(policy).__name__
