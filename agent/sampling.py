"""Sampling: MCP servers asking our model for a completion (`sampling/createMessage`), under a `SamplingPolicy`.

Off by default. Allowed requests go to the agent's own model (or the policy's), non-think unless configured, with
the policy's token cap; their usage and cost count in the run's (agent.run_requests does the accounting).
"""

from __future__ import annotations

import json
from typing import Any

import mcp.types as types
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .models.base import AssistantTurn, ModelClient, dumps
from .models.config import MODEL_SYNTAX, parse_model
from .think import ThinkMode

_STOP_REASONS = {"stop": "endTurn", "length": "maxTokens"}


class SamplingPolicy(BaseModel):
    """Whether MCP servers may ask this agent's model for completions, and within which limits.

    `allow: true` lets every server sample; `servers: [names]` only those (and allows them). A server not
    allowed gets no sampling capability declared, so it cannot ask; requests beyond the caps are refused with
    an error the server sees.
    """

    model_config = ConfigDict(extra="forbid")

    allow: bool = Field(False, description="Let every server (or only `servers`) ask for completions")
    servers: list[str] | None = Field(None, description="Only these servers may ask (listing them allows them)")
    model: str | None = Field(None, description=f"The model that answers: None = the agent's own; else {MODEL_SYNTAX}")
    think: ThinkMode = Field(ThinkMode.none, description="Think mode of sampling calls (none, high, max)")
    max_tokens: int = Field(1024, gt=0, description="Most completion tokens per request (a request asking "
                            "fewer gets fewer)")
    max_requests_per_run: int = Field(10, ge=0, description="Most sampling requests answered per run")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `sampling: true` in a task file.
        return {"allow": value} if isinstance(value, bool) else value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is not None:
            parse_model(value, where="sampling.model")  # a bad model string fails where it is written
        return value

    @property
    def enabled(self) -> bool:
        return self.allow or bool(self.servers)

    def allows(self, server: str) -> bool:
        """Whether `server` may ask at all (and so is told that the client samples)."""
        if self.servers is not None:
            return server in self.servers
        return self.allow


def sampling_policy(value: SamplingPolicy | bool | dict[str, Any] | None) -> SamplingPolicy:
    """`Agent(sampling=...)`: a policy, True (every server, the defaults), or its fields as a mapping."""
    if isinstance(value, SamplingPolicy):
        return value
    return SamplingPolicy.model_validate(value if value is not None else {})


def prompt_text(params: types.CreateMessageRequestParams) -> str:
    """The request's messages as text (what the trace shows of it)."""
    return "\n".join(f"{m.role}: {_text(m.content)}" for m in params.messages)


def _text(content: Any) -> str:
    blocks = content if isinstance(content, list) else [content]
    parts = []
    for block in blocks:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} omitted]")
    return "\n".join(parts)


def request_body(model: ModelClient, policy: SamplingPolicy, params: types.CreateMessageRequestParams) -> bytes:
    """The chat-completions body for one sampling request: its system prompt and messages as text, the policy's
    think mode, max_tokens capped by the policy, the server's temperature and stop sequences."""
    messages = [*([{"role": "system", "content": params.system_prompt}] if params.system_prompt else []),
                *({"role": m.role, "content": _text(m.content)} for m in params.messages)]
    body = json.loads(model.request_body([dumps(m) for m in messages], tools_json=None, mode=policy.think))
    body["max_tokens"] = min(params.max_tokens, policy.max_tokens)
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.stop_sequences:
        body["stop"] = params.stop_sequences
    return dumps(body)


def result_of(turn: AssistantTurn, model: ModelClient) -> types.CreateMessageResult:
    """The MCP answer to the server: the completion's text, the model, why it stopped."""
    reason = _STOP_REASONS.get(turn.finish_reason or "", turn.finish_reason)
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=turn.content),
                                     model=turn.model or model.label, stop_reason=reason)
