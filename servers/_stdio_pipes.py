"""A stdio transport for MCPServer that reads and writes pipes on the event loop instead of worker threads.

The SDK's stdio transport hands every line read, write and flush to a worker thread; on pipes (how MCP
clients start servers) non-blocking I/O on the loop saves several thread hops per call. Terminals and
files keep the SDK transport: making a shared terminal non-blocking would break the shell that owns it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
from typing import Any

MAX_LINE_BYTES = 64 * 1024 * 1024  # one JSON-RPC message per line; write_file content travels inside one


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Lines:
    """`async for line in ...` over a StreamReader, as the SDK's stdin reader expects."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        line = await self.reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", "replace")


class _Writer:
    """`await write(text)` / `await flush()` over a pipe transport, as the SDK's stdout writer expects."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer

    async def write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self.writer.drain()


async def serve_stdio(server: Any) -> None:
    """Serve `server` (an MCPServer) over stdin/stdout; pipes on the loop, anything else the SDK's way."""
    lowlevel = getattr(server, "_lowlevel_server", None)
    if lowlevel is None or not (_is_pipe(0) and _is_pipe(1)):
        await server.run_stdio_async()
        return
    from mcp.server.stdio import stdio_server

    # Like the SDK: serve the wire from private duplicates, and point fd 0 at /dev/null and fd 1 at stderr
    # so that stray reads and prints (ours or a library's) cannot corrupt the JSON-RPC stream.
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", 0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(wire_out, "wb", 0)
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    try:
        async with stdio_server(stdin=_Lines(reader), stdout=_Writer(writer)) as (read_stream, write_stream):  # type: ignore[arg-type]
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
    finally:
        transport.close()
