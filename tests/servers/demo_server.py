"""A small MCP server for tests: stdio by default, `--http PORT` or `--sse PORT` for the HTTP transports."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time

from mcp.server import MCPServer
from mcp.server.mcpserver import Image
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

# A 1x1 transparent PNG.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

mcp = MCPServer("demo")
notes: dict[str, str] = {}


class Weather(BaseModel):
    city: str
    celsius: float


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
async def slow(seconds: float) -> str:
    """Sleep for the given number of seconds, then answer."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        # Tests read this line to see that the client's cancellation reached the server.
        print("demo server: slow was cancelled", file=sys.stderr, flush=True)
        raise
    return f"slept {seconds}"


@mcp.tool()
def fail(message: str) -> str:
    """Fail with the given message."""
    raise ToolError(message)


@mcp.tool()
def crash() -> str:
    """Kill the server process in the middle of the call."""
    print("demo server: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@mcp.tool()
def image() -> Image:
    """Return a tiny PNG."""
    return Image(data=TINY_PNG, format="png")


@mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def note(key: str, value: str) -> str:
    """Remember a value under a key."""
    notes[key] = value
    return f"noted {key}"


@mcp.tool()
def structured() -> Weather:
    """Return a structured weather report."""
    return Weather(city="Oslo", celsius=4.5)


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def generate(lines: int) -> str:
    """Return `lines` numbered lines (for long-output tests)."""
    return "\n".join(f"line {i:07d} of the generated output" for i in range(lines))


@mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
def write_file(path: str, text: str) -> str:
    """Write text to a file (tests only: no confinement)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return f"wrote {len(text)} characters to {path}"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def page(offset: int = 0, limit: int = 10) -> str:
    """Return lines offset..offset+limit of a long generated document."""
    return "\n".join(f"line {i}" for i in range(offset, offset + limit))


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def getenv(name: str) -> str:
    """Return an environment variable of the server process, or '<unset>'."""
    return os.environ.get(name, "<unset>")


def _rendezvous(announce: str, wait_for: list[str], timeout: float = 30.0) -> None:
    """Create `announce`, then block until every `wait_for` file exists: only servers started together pass."""
    with open(announce, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in wait_for):
        if time.monotonic() > deadline:
            sys.exit(f"demo server: gave up waiting for {wait_for}")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--announce", metavar="FILE", help="create FILE at startup")
    parser.add_argument("--wait-for", metavar="FILE", action="append", default=[], help="wait for FILE first")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    group.add_argument("--sse", type=int, metavar="PORT", help="serve SSE on 127.0.0.1:PORT/sse")
    args = parser.parse_args()
    if args.announce or args.wait_for:
        _rendezvous(args.announce or os.devnull, args.wait_for)
    if args.http is not None:
        mcp.run(transport="streamable-http", host="127.0.0.1", port=args.http)
    elif args.sse is not None:
        mcp.run(transport="sse", host="127.0.0.1", port=args.sse)
    else:
        mcp.run()


if __name__ == "__main__":
    main()
