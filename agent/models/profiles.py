"""Provider profiles: how each endpoint family wants think modes, reasoning, usage and prices.

Provider differences live here as data and small methods, never as model-name checks in the loop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import ConfigError
from ..think import ThinkMode
from ..usage import Usage


class Price(BaseModel):
    """USD per million tokens. `peak_*` apply during the provider's peak hours when given."""

    cache_hit: float = Field(0.0, description="USD per 1M prompt tokens served from the prefix cache")
    cache_miss: float = Field(0.0, description="USD per 1M prompt tokens not served from the cache")
    output: float = Field(0.0, description="USD per 1M completion tokens (reasoning included)")
    peak_cache_hit: float | None = None
    peak_cache_miss: float | None = None
    peak_output: float | None = None

    def cost(self, usage: Usage, *, peak: bool = False) -> float:
        hit = self.peak_cache_hit if peak and self.peak_cache_hit is not None else self.cache_hit
        miss = self.peak_cache_miss if peak and self.peak_cache_miss is not None else self.cache_miss
        out = self.peak_output if peak and self.peak_output is not None else self.output
        return (usage.cache_hit_tokens * hit + usage.cache_miss_tokens * miss + usage.completion_tokens * out) / 1e6


# DeepSeek's pricing page of 2026-11-15 (see shared/reference): off-peak prices, peak = double.
_FLASH = Price(cache_hit=0.003, cache_miss=0.15, output=0.60, peak_cache_hit=0.006, peak_cache_miss=0.30, peak_output=1.20)
_PRO = Price(cache_hit=0.022, cache_miss=0.66, output=1.98, peak_cache_hit=0.044, peak_cache_miss=1.32, peak_output=3.96)
DEEPSEEK_PRICES: dict[str, Price] = {
    "deepseek-flash": _FLASH,
    "deepseek-v4-flash": _FLASH,  # legacy name, served by V4.1-Flash since Sep 2026
    "deepseek-v4-pro": _PRO,
}


def deepseek_peak(when: dt.datetime) -> bool:
    """DeepSeek's peak hours: weekdays 01:00-04:00 and 06:00-10:00 UTC."""
    when = when.astimezone(dt.UTC)
    return when.weekday() < 5 and (1 <= when.hour < 4 or 6 <= when.hour < 10)


@dataclass(frozen=True)
class Profile:
    """What one family of OpenAI-compatible endpoints expects.

    `reasoning_echo_key`: the assistant-message key that carries earlier reasoning back, or None.
    `echo_reasoning`: when to send it ("with_tools": whenever the request has tools, as DeepSeek requires).
    `thinking_tool_choices`: the tool_choice values accepted while thinking (None: anything).
    """

    name: str
    default_base_url: str | None
    api_key_env: str | None
    reasoning_read_keys: tuple[str, ...] = ("reasoning_content", "reasoning")
    reasoning_echo_key: str | None = None
    echo_reasoning: Literal["with_tools", "always", "never"] = "never"
    thinking_tool_choices: frozenset[str] | None = None
    vision: bool = False
    prices: dict[str, Price] = field(default_factory=dict)
    peak_hours: bool = False
    think_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_invalidates_cache: bool = False
    """Entering max changes the prompt's first tokens (self-hosted V4 puts the effort text at token 0)."""

    def think_params(self, mode: ThinkMode) -> dict[str, Any]:
        """Top-level request fields that select `mode`; user overrides win over the family's default."""
        if mode.value in self.think_overrides:
            return dict(self.think_overrides[mode.value])
        return self._think_defaults(mode)

    def _think_defaults(self, mode: ThinkMode) -> dict[str, Any]:
        return {}  # generic endpoints: no standard way to ask for a think mode

    def usage(self, raw: dict[str, Any]) -> Usage:
        """One response's usage as the server reported it."""
        prompt = int(raw.get("prompt_tokens") or 0)
        details = raw.get("prompt_tokens_details") or {}
        out_details = raw.get("completion_tokens_details") or {}
        hit = raw.get("prompt_cache_hit_tokens")
        if hit is None:
            hit = details.get("cached_tokens") or 0
        miss = raw.get("prompt_cache_miss_tokens")
        if miss is None:
            miss = max(prompt - int(hit), 0)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=int(raw.get("completion_tokens") or 0),
            reasoning_tokens=int(out_details.get("reasoning_tokens") or 0),
            cache_hit_tokens=int(hit),
            cache_miss_tokens=int(miss),
            requests=1,
        )

    def check_tool_choice(self, mode: ThinkMode, tool_choice: Any) -> None:
        """Refuse, before any request, a tool_choice the endpoint rejects in thinking mode."""
        if tool_choice is None or self.thinking_tool_choices is None or mode is ThinkMode.none:
            return
        label = tool_choice if isinstance(tool_choice, str) else "a named function"
        if not isinstance(tool_choice, str) or tool_choice not in self.thinking_tool_choices:
            allowed = ", ".join(sorted(self.thinking_tool_choices))
            raise ConfigError(
                f"tool_choice: {self.name} accepts only {allowed} in thinking mode (think {mode.value}); "
                f"got {label}. Use think none to force a tool, or tool_choice auto."
            )


class DeepSeekProfile(Profile):
    def _think_defaults(self, mode: ThinkMode) -> dict[str, Any]:
        if mode is ThinkMode.none:
            return {"thinking": {"type": "disabled"}}
        return {"thinking": {"type": "enabled"}, "reasoning_effort": mode.value}


class VLLMProfile(Profile):
    def _think_defaults(self, mode: ThinkMode) -> dict[str, Any]:
        # Always set `thinking` explicitly: vLLM's default changed between versions.
        if mode is ThinkMode.none:
            return {"chat_template_kwargs": {"thinking": False}}
        return {"chat_template_kwargs": {"thinking": True, "reasoning_effort": mode.value}}


DEEPSEEK = DeepSeekProfile(
    name="deepseek",
    default_base_url="https://api.deepseek.com",
    api_key_env="DEEPSEEK_API_KEY",
    reasoning_read_keys=("reasoning_content", "reasoning"),
    reasoning_echo_key="reasoning_content",
    echo_reasoning="with_tools",
    thinking_tool_choices=frozenset({"auto", "none"}),
    prices=DEEPSEEK_PRICES,
    peak_hours=True,
)
VLLM = VLLMProfile(
    name="vllm",
    default_base_url=None,
    api_key_env="VLLM_API_KEY",
    reasoning_read_keys=("reasoning", "reasoning_content"),
    reasoning_echo_key="reasoning",  # the V4 encoder reads prior CoT from `reasoning`
    echo_reasoning="with_tools",
    max_invalidates_cache=True,
)
OPENAI_COMPATIBLE = Profile(
    name="openai-compatible",
    default_base_url=None,
    api_key_env="OPENAI_API_KEY",
    vision=True,
)

PROFILES: dict[str, Profile] = {
    "deepseek": DEEPSEEK,
    "vllm": VLLM,
    "openai-compatible": OPENAI_COMPATIBLE,
    "openai": OPENAI_COMPATIBLE,
}
