"""Token usage of model calls, added up over a run."""

from __future__ import annotations

from pydantic import BaseModel


class Usage(BaseModel):
    """Tokens of one model call or of a whole run.

    `cache_hit_tokens` + `cache_miss_tokens` == `prompt_tokens` when the server reports both
    (DeepSeek); vLLM reports hits only, so misses are derived.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in Usage.model_fields})


class ModeStats(BaseModel):
    """What the steps run in one think mode cost."""

    steps: int = 0
    reasoning_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
