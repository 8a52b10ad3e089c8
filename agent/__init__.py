"""An async agent framework that drives DeepSeek V4 through MCP servers.

```python
from agent import Agent
async with Agent("deepseek:deepseek-v4-pro", servers={...}) as agent:
    result = await agent.run("...")
```
"""

from .errors import (
    AgentError,
    BadRequestError,
    ConfigError,
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
from .runner import DEFAULT_SYSTEM_PROMPT, Agent
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
