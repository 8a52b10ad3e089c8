"""Model clients over the OpenAI wire protocol, with provider profiles (deepseek, vllm, openai-compatible)."""

from .client import AssistantTurn, ChatModel, ToolCall
from .config import MODEL_SYNTAX, ModelConfig, parse_model
from .profiles import PROFILES, Price, Profile

__all__ = [
    "MODEL_SYNTAX",
    "PROFILES",
    "AssistantTurn",
    "ChatModel",
    "ModelConfig",
    "Price",
    "Profile",
    "ToolCall",
    "parse_model",
]
