"""What MCP servers ask of us while our tool calls run: elicitation, sampling, progress and log messages.

`ServerRequests` is the seam: the hub gives one to every supervisor, which declares the client capabilities it
answers and hands it each request with the `CallOrigin` (the tool call, and whose run) it belongs to. The agent
layer implements it (agent.run_requests); this module imports nothing of the agent's.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import mcp.types as types


@dataclass(eq=False)
class CallOrigin:
    """One tool call in flight, to which a server's requests are attributed."""

    server: str
    tool: str
    """The tool's model-facing (qualified) name."""
    caller: Any = None
    """Who made the call: `ServerRequests.caller()` at the time of the call (the agent's run)."""
    notes: list[str] = field(default_factory=list)
    """Lines added to the call's result, so the model learns what happened to the server's requests."""


CURRENT_CALL: ContextVar[CallOrigin | None] = ContextVar("mcp_current_call", default=None)
"""The call whose task runs now. On 2026-07-28 connections the SDK answers a server's input requests inside
`call_tool`, so they see it; handshake-era requests arrive on the connection's own task and do not."""


@runtime_checkable
class ServerRequests(Protocol):
    """Answers servers' requests; a capability is declared to a server only where it is answered."""

    log_level: types.LoggingLevel | None
    """The least severe log level asked of servers (`logging/setLevel` on handshake-era connections, the
    per-request opt-in on 2026-07-28); None: ask for none."""

    def answers_elicitation(self, server: str) -> bool:
        """Declare the elicitation capability to `server`."""
        ...

    def answers_sampling(self, server: str) -> bool:
        """Declare the sampling capability to `server`."""
        ...

    def caller(self) -> Any:
        """Who is making a tool call right now (called in the calling task); kept in `CallOrigin.caller`."""
        ...

    async def elicit(self, server: str, origin: CallOrigin | None,
                     params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        """`elicitation/create` from `server`; `origin` is the call it came during (None: not known)."""
        ...

    async def sample(self, server: str, origin: CallOrigin | None, params: types.CreateMessageRequestParams
                     ) -> types.CreateMessageResult | types.ErrorData:
        """`sampling/createMessage` from `server`; an ErrorData refuses it."""
        ...

    def progress(self, origin: CallOrigin, progress: float, total: float | None, message: str | None) -> None:
        """`notifications/progress` for one of our calls."""
        ...

    def log(self, server: str, origin: CallOrigin | None, params: types.LoggingMessageNotificationParams) -> None:
        """`notifications/message` from `server`; `origin` is the call in flight it is attributed to, if any."""
        ...
