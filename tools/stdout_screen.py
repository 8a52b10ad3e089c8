"""A stdio transport screened for stdout text that is not JSON-RPC: such lines go to a handler, which may
salvage a message glued to the text, instead of reaching the MCP session as exceptions nothing answers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp.types as types
from mcp.shared.message import SessionMessage


@asynccontextmanager
async def screened(
    transport: Any, on_garbage: Callable[[Exception], SessionMessage | None]
) -> AsyncIterator[Any]:
    """`transport` whose read stream passes each stdout line that failed to parse to `on_garbage`; what it
    gives back (a salvaged message, or None to drop the line) goes on to the session."""
    _quiet_sdk_parse_errors()
    async with transport as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def forward() -> None:
            async with send, read:
                async for item in read:
                    if isinstance(item, Exception):
                        item = on_garbage(item)
                        if item is None:
                            continue
                    await send.send(item)

        async with anyio.create_task_group() as group, receive:
            group.start_soon(forward)
            try:
                yield receive, write
            finally:
                group.cancel_scope.cancel()


def raw_line(exc: Exception) -> str:
    """The offending line, from the SDK's parse error."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            value = errors()[0].get("input")
        except (IndexError, TypeError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
        if value is not None:
            return json.dumps(value, default=str)
    return str(exc)


def salvage(line: str) -> SessionMessage | None:
    """A JSON-RPC message that follows other text on the same line (`print(..., end="")` before the answer)."""
    start = line.find("{")
    while start > 0:
        try:
            return SessionMessage(types.jsonrpc_message_adapter.validate_json(line[start:], by_name=False))
        except ValueError:
            start = line.find("{", start + 1)
    return None


class _DropParseTracebacks(logging.Filter):
    """The SDK logs each unparsable stdout line with a full traceback; the hub reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to parse JSONRPC message")


_PARSE_FILTER = _DropParseTracebacks()


def _quiet_sdk_parse_errors() -> None:
    sdk_logger = logging.getLogger("mcp.client.stdio")
    if _PARSE_FILTER not in sdk_logger.filters:
        sdk_logger.addFilter(_PARSE_FILTER)
