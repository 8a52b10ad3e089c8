"""A server whose tool list changes at runtime and that asks for roots; stdio by default, `--http PORT` for HTTP.

`--legacy` (stdio) refuses `server/discover`, so clients fall back to the handshake era (2025-11-25), as they do with
older third-party servers; tool-list changes then go out as `notifications/tools/list_changed`.
"""

from __future__ import annotations

import argparse
from typing import Annotated

import anyio
import mcp.types as types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, ListRoots, Resolve
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS

mcp = MCPServer("changing")


async def _announce(ctx: Context) -> None:
    await ctx.notify_tools_changed()  # 2026-07-28: to `subscriptions/listen` streams
    if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        await ctx.session.send_tool_list_changed()


@mcp.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Add a tool called `name` that answers with its name and text, and announce the change."""

    def added(text: str = "") -> str:
        return f"{name}: {text}"

    mcp.add_tool(added, name=name, description=f"Added at runtime: {name}")
    await _announce(ctx)
    return f"added {name}"


@mcp.tool()
async def remove_tool(name: str, ctx: Context) -> str:
    """Remove a tool and announce the change."""
    mcp.remove_tool(name)
    await _announce(ctx)
    return f"removed {name}"


@mcp.tool()
async def quiet_add_tool(name: str) -> str:
    """Add a tool without announcing it."""
    mcp.add_tool(lambda: name, name=name, description="added quietly")
    return f"added {name} quietly"


async def _ask_roots() -> ListRoots:
    return ListRoots()


@mcp.tool()
async def roots(found: Annotated[types.ListRootsResult, Resolve(_ask_roots)]) -> list[str]:
    """The root URIs the client offers."""
    return [str(root.uri) for root in found.roots]  # Root.uri is a pydantic FileUrl, not a str


async def _run_legacy_stdio() -> None:
    """Answer `server/discover` with "method not found" before the SDK sees it, as a 2025-era server does.

    (The SDK's server serves whichever era the client opens with, so the probe must never reach it.)
    """
    server = mcp._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](16)

        async def without_discover() -> None:
            async with send:
                async for item in read_stream:
                    message = item.message if isinstance(item, SessionMessage) else None
                    if isinstance(message, types.JSONRPCRequest) and message.method == "server/discover":
                        error = types.ErrorData(code=types.METHOD_NOT_FOUND, message="Method not found")
                        await write_stream.send(SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=message.id,
                                                                                  error=error)))
                        continue
                    await send.send(item)

        async with anyio.create_task_group() as group:
            group.start_soon(without_discover)
            await server.run(receive, write_stream, server.create_initialization_options())
            group.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legacy", action="store_true", help="speak only the handshake era")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.legacy:
        anyio.run(_run_legacy_stdio)
    elif args.http is not None:
        mcp.run(transport="streamable-http", host="127.0.0.1", port=args.http)
    else:
        mcp.run()


if __name__ == "__main__":
    main()
