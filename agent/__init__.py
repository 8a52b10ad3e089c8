"""An async agent framework that drives DeepSeek V4 through MCP servers.

```python
from agent import Agent
async with Agent("deepseek:deepseek-v4-pro", servers={...}) as agent:
    result = await agent.run("...")
```
"""

import importlib
from typing import TYPE_CHECKING, Any

# Exports load on first use: `import agent.errors` (done by tools/) must not pull in the whole SDK,
# and `agent --help` should not pay for importing openai and mcp.
_EXPORTS = {
    "AgentError": ".errors", "BadRequestError": ".errors", "ConfigError": ".errors", "ContextOverflowError": ".errors",
    "InsufficientBalanceError": ".errors", "ModelAPIError": ".errors", "ModelAuthError": ".errors",
    "ModelError": ".errors", "ModelUnavailableError": ".errors", "ToolServerError": ".errors",
    "Limits": ".limits", "ChatModel": ".models", "ModelConfig": ".models", "Price": ".models",
    "parse_model": ".models", "RunResult": ".result", "DEFAULT_SYSTEM_PROMPT": ".runner", "Agent": ".runner", "EventStream": ".runner",
    "TaskSpec": ".task", "load_task": ".task", "FixedThink": ".think", "RunState": ".think",
    "ThinkChoice": ".think", "ThinkMode": ".think", "ThinkPolicy": ".think", "read_trace": ".trace",
    "result_from_trace": ".trace", "Usage": ".usage",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .errors import (
        AgentError,
        BadRequestError,
        ConfigError,
        ContextOverflowError,
        InsufficientBalanceError,
        ModelAPIError,
        ModelAuthError,
        ModelError,
        ModelUnavailableError,
        ToolServerError,
    )
    from .limits import Limits
    from .models import ChatModel, ModelConfig, Price, parse_model
    from .result import RunResult
    from .runner import DEFAULT_SYSTEM_PROMPT, Agent, EventStream
    from .task import TaskSpec, load_task
    from .think import FixedThink, RunState, ThinkChoice, ThinkMode, ThinkPolicy
    from .trace import read_trace, result_from_trace
    from .usage import Usage

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "Agent",
    "AgentError",
    "BadRequestError",
    "ChatModel",
    "ConfigError",
    "ContextOverflowError",
    "EventStream",
    "FixedThink",
    "InsufficientBalanceError",
    "Limits",
    "ModelAPIError",
    "ModelAuthError",
    "ModelConfig",
    "ModelError",
    "ModelUnavailableError",
    "Price",
    "RunResult",
    "RunState",
    "TaskSpec",
    "ThinkChoice",
    "ThinkMode",
    "ThinkPolicy",
    "ToolServerError",
    "Usage",
    "load_task",
    "parse_model",
    "read_trace",
    "result_from_trace",
]
