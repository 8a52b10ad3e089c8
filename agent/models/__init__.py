"""Model clients over the OpenAI wire protocol, with provider profiles (deepseek, vllm, openai-compatible)."""

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use so that parsing a model string does not import the openai package.
_EXPORTS = {
    "AssistantTurn": ".base", "ModelClient": ".base", "ToolCall": ".base", "ChatModel": ".client",
    "MODEL_SYNTAX": ".config", "ModelConfig": ".config", "parse_model": ".config",
    "PROFILES": ".profiles", "Price": ".profiles", "Profile": ".profiles",
    "RequestGate": ".gate", "request_gate": ".gate",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .base import AssistantTurn, ModelClient, ToolCall
    from .client import ChatModel
    from .config import MODEL_SYNTAX, ModelConfig, parse_model
    from .gate import RequestGate, request_gate
    from .profiles import PROFILES, Price, Profile

__all__ = [
    "MODEL_SYNTAX",
    "PROFILES",
    "AssistantTurn",
    "ChatModel",
    "ModelClient",
    "ModelConfig",
    "Price",
    "Profile",
    "RequestGate",
    "ToolCall",
    "parse_model",
    "request_gate",
]
