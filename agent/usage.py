"""Token usage of model calls, added up over a run."""

from __future__ import annotations

from pydantic import BaseModel, computed_field

CHARS_PER_TOKEN = 3.6  # DeepSeek V4 averages ~3.5-4 characters per token on code and English
ESTIMATED = "estimated (server sent no usage)"


class Usage(BaseModel):
    """Tokens of one model call or of a whole run.

    `cache_hit_tokens` + `cache_miss_tokens` == `prompt_tokens` when the server reports both
    (DeepSeek); vLLM reports hits only, so misses are derived. `requests` counts every attempt, the
    `failed_requests` that got no answer (HTTP errors, dropped streams) included. For the
    `estimated_requests` whose response carried no usage (llama.cpp streams, some proxies) the tokens
    are estimated from the sizes of the request and the answer, all prompt tokens as cache misses;
    `note` says so.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    requests: int = 0
    failed_requests: int = 0
    estimated_requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def note(self) -> str | None:
        """Whether the figures are the server's: None when they are, else how they were estimated."""
        answered = self.requests - self.failed_requests
        if not self.estimated_requests:
            return None
        if self.estimated_requests >= answered:
            return ESTIMATED
        return f"partly estimated ({self.estimated_requests} of {answered} responses came without usage)"

    @classmethod
    def estimate(cls, *, prompt_chars: int, completion_chars: int, reasoning_chars: int) -> Usage:
        """One response's usage from sizes, for a server that sent none."""
        prompt = round(prompt_chars / CHARS_PER_TOKEN)
        return cls(prompt_tokens=prompt, completion_tokens=round(completion_chars / CHARS_PER_TOKEN),
                   reasoning_tokens=round(reasoning_chars / CHARS_PER_TOKEN), cache_miss_tokens=prompt,
                   requests=1, estimated_requests=1)

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in Usage.model_fields})


class ModeStats(BaseModel):
    """What the steps run in one think mode cost."""

    steps: int = 0
    reasoning_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
