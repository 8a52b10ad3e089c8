"""MCP logging for our servers: the `logging/setLevel` handler and log notifications that respect the level.

Handshake-era clients (protocol up to 2025-11-25, e.g. Claude Desktop and the MCP Inspector) set one level
per connection with `logging/setLevel`; on 2026-07-28 each request opts in with its own level in `_meta`,
which the SDK's `allowed_log_levels` reads. Logging is deprecated in 2026-07-28 but still part of it.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Generic, TypeVar, get_args

from mcp.server.connection import allowed_log_levels
from mcp.types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from agent.servers._byte_names import show

LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)
"""Severity-ascending (RFC 5424 order, as the spec's LoggingLevel lists them)."""
DEFAULT_LEVEL: LoggingLevel = "info"
"""What a handshake-era client gets before it sends logging/setLevel (the spec leaves it to the server)."""

_log = logging.getLogger(__name__)
V = TypeVar("V")


class PerConnection(Generic[V]):
    """Values kept per client connection (handshake era), forgotten when the connection goes away.

    The SDK makes a new ServerSession for every request; the client's initialize params belong to the
    connection (one object per handshake), so they stand for it. On 2026-07-28 there is no handshake and
    nothing is kept. The params are pydantic models, not hashable: entries are keyed by identity.
    """

    def __init__(self) -> None:
        self._values: dict[int, tuple[weakref.ref[Any], V]] = {}

    @staticmethod
    def _key(session: Any) -> Any | None:
        return getattr(session, "client_params", None)

    def get(self, session: Any) -> V | None:
        key = self._key(session)
        entry = self._values.get(id(key)) if key is not None else None
        return entry[1] if entry is not None and entry[0]() is key else None

    def set(self, session: Any, value: V) -> None:
        key = self._key(session)
        if key is None:
            return
        ident = id(key)
        values = self._values

        def forget(_ref: Any) -> None:
            values.pop(ident, None)

        values[ident] = (weakref.ref(key, forget), value)

    def forget(self, session: Any) -> None:
        key = self._key(session)
        if key is not None:
            self._values.pop(id(key), None)


class ClientLog:
    """Log notifications (`notifications/message`) from one server, at or above the level its client chose."""

    def __init__(self, logger: str, *, default: LoggingLevel = DEFAULT_LEVEL):
        self.logger = logger
        self.default = default
        self._levels: PerConnection[LoggingLevel] = PerConnection()

    def install(self, server: Any) -> None:
        """Handle `logging/setLevel` on `server` (an MCPServer); the server then declares the capability."""
        # MCPServer has no public hook for extra request handlers; its low-level Server has.
        lowlevel = server._lowlevel_server
        lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, self._set_level)

    async def _set_level(self, ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        self._levels.set(ctx.session, params.level)
        return EmptyResult()

    def wanted(self, ctx: Any, level: LoggingLevel) -> bool:
        """Whether the client behind this request (an MCPServer Context) wants messages at `level`."""
        request = ctx.request_context
        if request.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return level in allowed_log_levels(request.protocol_version, request.meta)
        chosen = self._levels.get(request.session) or self.default
        return LEVELS.index(level) >= LEVELS.index(chosen)

    async def send(self, ctx: Any, level: LoggingLevel, message: str) -> None:
        """Send `message` at `level` if the client wants it; a failure to send never fails the tool call."""
        try:
            if not self.wanted(ctx, level):
                return
            request = ctx.request_context
            notification = LoggingMessageNotification(
                params=LoggingMessageNotificationParams(level=level, data=show(message), logger=self.logger)
            )
            # Tied to the request: over HTTP it rides the request's own stream, as 2026-07-28 requires.
            await request.session.send_notification(notification, related_request_id=request.request_id)
        except Exception as exc:  # a closed stream or a context outside a request: the log is best-effort
            _log.debug("log notification not sent: %s", exc)

    async def info(self, ctx: Any, message: str) -> None:
        await self.send(ctx, "info", message)

    async def warning(self, ctx: Any, message: str) -> None:
        await self.send(ctx, "warning", message)

    async def error(self, ctx: Any, message: str) -> None:
        await self.send(ctx, "error", message)
