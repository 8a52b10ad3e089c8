"""What the agent loop needs from a model: the `ModelClient` protocol and the wire-neutral turn types.

`ChatModel` (agent.models.client) is the real client over the OpenAI wire protocol; `agent.testing.FakeModel`
answers in-process. Anything with these methods can be given to `Agent(model=...)`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

from ..think import ThinkMode
from ..usage import Usage
from .profiles import Profile

DeltaFn = Callable[[str, str], None]
RetryFn = Callable[[int, str, float], Awaitable[None]]



def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class AssistantTurn:
    """One assistant turn as the endpoint returned it."""

    content: str
    reasoning: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    duration_s: float = 0.0

    def message(self) -> dict[str, Any]:
        """The canonical history entry (profile-neutral; `reasoning` is rendered per profile)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content or (None if self.tool_calls else "")}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        msg["reasoning"] = self.reasoning
        return msg


def render_message(profile: Profile, message: dict[str, Any], *, with_tools: bool) -> bytes:
    """Serialise one canonical history message for `profile`: an assistant turn's reasoning goes back under
    the profile's key when the profile says it must (DeepSeek answers 400 when the key is missing, even for
    empty reasoning), and is dropped otherwise."""
    if message.get("role") != "assistant" or "reasoning" not in message:
        return dumps(message)
    wire = {k: v for k, v in message.items() if k != "reasoning"}
    echo = profile.echo_reasoning
    if profile.reasoning_echo_key and (echo == "always" or (echo == "with_tools" and with_tools)):
        wire[profile.reasoning_echo_key] = message["reasoning"] or ""
    return dumps(wire)


@runtime_checkable
class ModelClient(Protocol):
    """A model endpoint as the loop uses it. Requests are JSON bodies in the OpenAI chat-completions shape,
    assembled from messages serialised once each (`render`), so a long history costs no re-serialisation."""

    profile: Profile
    """How the endpoint takes think modes, where reasoning goes, prices (agent.models.profiles)."""
    model: str
    """The model name sent in requests."""

    @property
    def label(self) -> str:
        """The model string for traces and output, e.g. `deepseek:deepseek-v4-pro`."""
        ...

    @property
    def base_url(self) -> str | None:
        """The endpoint's base URL, for a server-side tokenizer (`/tokenize`); None when there is none."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def resolve_model(self) -> str:
        """Fill in `model` when the model string left it out (ask the server); returns it."""
        ...

    def render(self, message: dict[str, Any], *, with_tools: bool) -> bytes:
        """One canonical history message, serialised for this endpoint (done once per message)."""
        ...

    def request_body(self, messages: Sequence[bytes], *, tools_json: bytes | None, mode: ThinkMode,
                     tool_choice: Any = None) -> bytes:
        """The request body for one turn."""
        ...

    async def complete(self, body: bytes, *, on_delta: DeltaFn | None = None,
                       on_retry: RetryFn | None = None) -> AssistantTurn:
        """Send one request (retrying what retrying can fix) and return the assistant turn."""
        ...

    def cost(self, usage: Usage) -> float:
        """USD for a turn's usage."""
        ...
