"""The framework's exception hierarchy: every error a user can act on derives from `AgentError`."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the framework raises on purpose."""


class ConfigError(AgentError):
    """Bad input: a task file, a model string, a server entry or an argument.

    The message names the file (when there is one), the field and what was expected.
    """


class ModelError(AgentError):
    """The model endpoint could not produce a turn."""


class ModelAPIError(ModelError):
    """The endpoint answered with an HTTP error that retrying will not fix (or retries ran out)."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = body


class ModelAuthError(ModelAPIError):
    """401: the API key is missing or wrong."""


class InsufficientBalanceError(ModelAPIError):
    """402: the account has no balance left."""


class BadRequestError(ModelAPIError):
    """400 or 422: the request was refused as invalid."""


class ModelUnavailableError(ModelAPIError):
    """Retries on 429/5xx/timeouts/dropped connections ran out."""


class ContextOverflowError(AgentError):
    """The next prompt cannot fit the model's context window, even after compaction: it is not sent."""


class OutputRejectedError(AgentError):
    """The model gave no structured output that validates, within the allowed retries."""


class ToolServerError(AgentError):
    """An MCP server could not be started or connected."""


class RunCancelled(AgentError):
    """The run was cancelled (Ctrl-C or a cancelled task)."""
