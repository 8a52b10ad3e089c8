"""An MCP server that breaks the stdio rule: it writes text that is not JSON-RPC to stdout.

A banner at start-up; `chatty` prints a line and then answers; `glued` writes text with no newline just
before its answer (so both share one line); `lost` prints a line and never answers; `binary` answers after
writing bytes that are not UTF-8.
"""

from __future__ import annotations

import os

import anyio
from mcp.server import MCPServer

mcp = MCPServer("noisy")
# The SDK diverts fd 1 to stderr while it serves (so print() is safe); a server with its own stdio loop, in
# any language, has no such guard. Write to the wire itself through a copy taken before serving.
WIRE = os.dup(1)


def _out(data: bytes) -> None:
    os.write(WIRE, data)


@mcp.tool()
def chatty() -> str:
    """Print a progress line on stdout, then answer."""
    _out(b"progress: 50%\n")
    return "chatty answer"


@mcp.tool()
def glued() -> str:
    """Write a note with no newline right before the answer."""
    _out(b"note: ")
    return "glued answer"


@mcp.tool()
async def lost() -> str:
    """Print a line instead of an answer, then hang."""
    _out(b"Traceback (most recent call last): something went wrong\n")
    await anyio.sleep(3600)
    return "never"


@mcp.tool()
def binary() -> str:
    """Write a line of Latin-1 bytes, then answer."""
    _out(b"caf\xe9 \xff\xfe\n")
    return "binary answer"


if __name__ == "__main__":
    _out(b"noisy server 1.0 starting\n")
    mcp.run()
