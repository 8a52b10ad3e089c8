"""Model selection: the `PROFILE:[BASE_URL#]MODEL` string syntax and the model section of a task file."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..errors import ConfigError
from .profiles import PROFILES, Price

MODEL_SYNTAX = (
    "PROFILE:MODEL or PROFILE:BASE_URL#MODEL, e.g. deepseek:deepseek-v4-pro, "
    "vllm:http://host:8000/v1#deepseek-ai/DeepSeek-V4-Flash, openai-compatible:http://localhost:8080/v1#qwen3 "
    f"(profiles: {', '.join(sorted(PROFILES))})"
)


class ModelConfig(BaseModel):
    """Which endpoint and model a run talks to, and how."""

    model_config = ConfigDict(extra="forbid")

    profile: Literal["deepseek", "vllm", "openai-compatible", "openai"] = Field(
        "deepseek", description="Endpoint family: deepseek (official API), vllm, openai-compatible"
    )
    model: str = Field("", description="Model name sent in requests; for vllm, empty means the server's first model")
    base_url: str | None = Field(None, description="Endpoint base URL (…/v1); default: the profile's")
    api_key: SecretStr | None = Field(None, description="API key; prefer api_key_env")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key; default: the profile's")
    stream: bool = Field(True, description="Stream turns over SSE")
    timeout_s: float = Field(600.0, gt=0, description="Read timeout of one request, seconds")
    connect_timeout_s: float = Field(15.0, gt=0)
    max_retries: int = Field(6, ge=0, description="Retries on 429/5xx/timeouts/dropped connections")
    retry_base_s: float = Field(1.0, gt=0, description="First backoff delay; doubles per retry, with jitter")
    retry_max_s: float = Field(60.0, gt=0, description="Longest wait between retries (Retry-After included)")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(None, gt=0)
    user_id: str | None = Field(None, description="DeepSeek `user_id`: isolates the prefix cache per end user")
    prices: Price | None = Field(None, description="Override the price table for this model (USD per 1M tokens)")
    think_params: dict[Literal["none", "high", "max"], dict[str, Any]] = Field(
        default_factory=dict, description="Override the request fields that select each think mode"
    )
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra top-level request fields")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers")

    @property
    def profile_name(self) -> str:
        return "openai-compatible" if self.profile == "openai" else self.profile

    def resolved_base_url(self) -> str:
        base = self.base_url or PROFILES[self.profile].default_base_url
        if not base:
            raise ConfigError(f"model: the {self.profile_name} profile needs a base URL ({MODEL_SYNTAX})")
        return base.rstrip("/")

    def key_env(self) -> str | None:
        return self.api_key_env or PROFILES[self.profile].api_key_env

    def resolved_api_key(self) -> str | None:
        """The key to send; an empty variable counts as unset (a host's `${VAR}` of an unset VAR expands to "")."""
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        env = self.key_env()
        return (os.environ.get(env) or None) if env else None

    def needs_key(self) -> bool:
        """The official DeepSeek endpoint always needs a key; self-hosted ones usually do not."""
        return self.profile == "deepseek" and self.base_url is None

    def label(self) -> str:
        where = "" if self.base_url is None else f"{self.base_url}#"
        return f"{self.profile_name}:{where}{self.model}"


def parse_model(value: str | dict[str, Any] | ModelConfig, *, where: str = "model") -> ModelConfig:
    """Parse a model string (see MODEL_SYNTAX) or a model mapping."""
    if isinstance(value, ModelConfig):
        return value
    if isinstance(value, dict):
        try:
            return ModelConfig.model_validate(value)
        except Exception as exc:  # pydantic ValidationError: re-raise with the place named
            raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a model string ({MODEL_SYNTAX}); got {value!r}")
    text = value.strip()
    profile, sep, rest = text.partition(":")
    if not sep or profile not in PROFILES:
        raise ConfigError(f"{where}: unknown model syntax {text!r}; expected {MODEL_SYNTAX}")
    base_url = None
    model = rest
    if rest.startswith(("http://", "https://")):
        base_url, _, model = rest.partition("#")
        if not base_url.removeprefix("http://").removeprefix("https://"):
            raise ConfigError(f"{where}: {text!r} has an empty base URL; expected {MODEL_SYNTAX}")
    if not model and profile != "vllm":
        raise ConfigError(f"{where}: {text!r} names no model; expected {MODEL_SYNTAX}")
    return ModelConfig(profile=profile, base_url=base_url, model=model)
