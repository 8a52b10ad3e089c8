"""An async agent framework that drives DeepSeek V4 through MCP servers.

```python
from agent import Agent
async with Agent("deepseek:deepseek-v4-pro", servers={...}) as agent:
    result = await agent.run("...")
```
Every public name is importable from here (see `__all__`); `agent.eval` is the benchmark harness.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Exports load on first use: `import agent.errors` (done by agent.tools) must not pull in the whole SDK,
# and `agent --help` should not pay for importing openai and mcp.
_EXPORTS = {
    "AgentError": ".errors",
    "BadRequestError": ".errors",
    "ConfigError": ".errors",
    "ContextOverflowError": ".errors",
    "InsufficientBalanceError": ".errors",
    "ModelAPIError": ".errors",
    "ModelAuthError": ".errors",
    "ModelError": ".errors",
    "ModelUnavailableError": ".errors",
    "ToolServerError": ".errors",
    "Event": ".events",
    "RunStarted": ".events",
    "ThinkChosen": ".events",
    "ModelRequest": ".events",
    "ModelDelta": ".events",
    "ModelRetry": ".events",
    "ToolCallInfo": ".events",
    "ModelResponse": ".events",
    "ToolCallStarted": ".events",
    "ToolResult": ".events",
    "ToolsChanged": ".events",
    "ContextCompacted": ".events",
    "ErrorEvent": ".events",
    "RunFinished": ".events",
    "ServerNotice": ".events",
    "Graded": ".events",
    "ElicitationAsked": ".events",
    "ElicitationAnswered": ".events",
    "SamplingAsked": ".events",
    "SamplingAnswered": ".events",
    "ServerProgress": ".events",
    "ServerLog": ".events",
    "Elicit": ".elicitation",
    "ElicitationAnswer": ".elicitation",
    "ElicitationRequest": ".elicitation",
    "terminal_form": ".elicitation",
    "SamplingPolicy": ".sampling",
    "Hooks": ".hooks",
    "ModelRequestInfo": ".hooks",
    "RequestChange": ".hooks",
    "StepRecord": ".hooks",
    "StopRun": ".hooks",
    "ToolCallRequest": ".hooks",
    "ToolDecision": ".hooks",
    "Approval": ".approvals",
    "ApprovalPolicy": ".approvals",
    "terminal_prompt": ".approvals",
    "AgentTool": ".subagents",
    "Session": ".session",
    "SessionTurn": ".session",
    "SubagentRun": ".events",
    "FunctionTool": ".function_tools",
    "FunctionTools": ".function_tools",
    "tool": ".function_tools",
    "Limits": ".limits",
    "ChatModel": ".models",
    "ModelClient": ".models",
    "ModelConfig": ".models",
    "Price": ".models",
    "parse_model": ".models",
    "RunError": ".result",
    "RunResult": ".result",
    "StopReason": ".result",
    "AgentRun": ".run",
    "RunContext": ".run",
    "DEFAULT_SYSTEM_PROMPT": ".runner",
    "Agent": ".runner",
    "EventStream": ".stream",
    "TaskSpec": ".task",
    "load_task": ".task",
    "FixedThink": ".think",
    "RunState": ".think",
    "ThinkChoice": ".think",
    "ThinkMode": ".think",
    "ThinkPolicy": ".think",
    "LocalTool": ".tools.local",
    "SourceTool": ".tools.source",
    "ToolSource": ".tools.source",
    "ToolOutcome": ".tools.results",
    "read_trace": ".trace",
    "result_from_trace": ".trace",
    "Usage": ".usage",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .approvals import Approval, ApprovalPolicy, terminal_prompt
    from .elicitation import Elicit, ElicitationAnswer, ElicitationRequest, terminal_form
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
    from .events import (
        ContextCompacted,
        ElicitationAnswered,
        ElicitationAsked,
        ErrorEvent,
        Event,
        Graded,
        ModelDelta,
        ModelRequest,
        ModelResponse,
        ModelRetry,
        RunFinished,
        RunStarted,
        SamplingAnswered,
        SamplingAsked,
        ServerLog,
        ServerNotice,
        ServerProgress,
        SubagentRun,
        ThinkChosen,
        ToolCallInfo,
        ToolCallStarted,
        ToolResult,
        ToolsChanged,
    )
    from .function_tools import FunctionTool, FunctionTools, tool
    from .hooks import (
        Hooks,
        ModelRequestInfo,
        RequestChange,
        StepRecord,
        StopRun,
        ToolCallRequest,
        ToolDecision,
    )
    from .limits import Limits
    from .models import ChatModel, ModelClient, ModelConfig, Price, parse_model
    from .result import RunError, RunResult, StopReason
    from .run import AgentRun, RunContext
    from .runner import DEFAULT_SYSTEM_PROMPT, Agent
    from .sampling import SamplingPolicy
    from .session import Session, SessionTurn
    from .stream import EventStream
    from .subagents import AgentTool
    from .task import TaskSpec, load_task
    from .think import FixedThink, RunState, ThinkChoice, ThinkMode, ThinkPolicy
    from .tools.local import LocalTool
    from .tools.results import ToolOutcome
    from .tools.source import SourceTool, ToolSource
    from .trace import read_trace, result_from_trace
    from .usage import Usage

__all__ = [
    "Approval",
    "ApprovalPolicy",
    "terminal_prompt",
    "Elicit",
    "ElicitationAnswer",
    "ElicitationAnswered",
    "ElicitationAsked",
    "ElicitationRequest",
    "SamplingAnswered",
    "SamplingAsked",
    "SamplingPolicy",
    "ServerLog",
    "ServerProgress",
    "terminal_form",
    "AgentTool",
    "Session",
    "SessionTurn",
    "SubagentRun",
    "FunctionTool",
    "FunctionTools",
    "tool",
    "Agent",
    "AgentError",
    "AgentRun",
    "BadRequestError",
    "ChatModel",
    "ConfigError",
    "ContextCompacted",
    "ContextOverflowError",
    "DEFAULT_SYSTEM_PROMPT",
    "ErrorEvent",
    "Event",
    "EventStream",
    "FixedThink",
    "Graded",
    "Hooks",
    "InsufficientBalanceError",
    "Limits",
    "LocalTool",
    "ModelAPIError",
    "ModelAuthError",
    "ModelClient",
    "ModelConfig",
    "ModelDelta",
    "ModelError",
    "ModelRequest",
    "ModelRequestInfo",
    "ModelResponse",
    "ModelRetry",
    "ModelUnavailableError",
    "Price",
    "RequestChange",
    "RunContext",
    "RunError",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunState",
    "ServerNotice",
    "SourceTool",
    "StepRecord",
    "StopReason",
    "StopRun",
    "TaskSpec",
    "ThinkChoice",
    "ThinkChosen",
    "ThinkMode",
    "ThinkPolicy",
    "ToolCallInfo",
    "ToolCallRequest",
    "ToolCallStarted",
    "ToolDecision",
    "ToolOutcome",
    "ToolResult",
    "ToolServerError",
    "ToolSource",
    "ToolsChanged",
    "Usage",
    "load_task",
    "parse_model",
    "read_trace",
    "result_from_trace",
]
