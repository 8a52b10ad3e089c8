"""A stdio server with resources, a resource template, a binary resource, prompts, and a resource that changes.

`set_status` changes `memo://status` and reports it: on 2026-07-28 to `subscriptions/listen` streams, on handshake-era
connections (clients started with `protocol: legacy`) as `notifications/resources/updated` to a client that sent
`resources/subscribe` (this server serves it). `--own-read-tool` adds a tool of its own named `read_resource`.
"""

from __future__ import annotations

import argparse

import mcp.types as types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS

mcp = MCPServer("docs")
status = {"text": "all quiet"}
subscribed: set[str] = set()


@mcp.resource("memo://readme", name="readme", description="What this server is for.", mime_type="text/markdown")
def readme() -> str:
    return "# Docs\nThe answer is 42."


@mcp.resource("memo://status", name="status", description="Changes when set_status is called.")
def current_status() -> str:
    return f"status: {status['text']}"


@mcp.resource("blob://logo", name="logo", mime_type="image/png")
def logo() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(100)


@mcp.resource("greeting://{name}", name="greeting", description="A greeting for anyone.")
def greeting(name: str) -> str:
    return f"Hello, {name}!"


@mcp.prompt(title="Review code")
def review(code: str, focus: str = "bugs") -> str:
    """Ask for a code review."""
    return f"Review this code for {focus}:\n{code}"


@mcp.tool()
async def set_status(text: str, ctx: Context) -> str:
    """Change memo://status and report the update to subscribers."""
    status["text"] = text
    await ctx.notify_resource_updated("memo://status")  # 2026-07-28: to subscriptions/listen streams
    if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS and "memo://status" in subscribed:
        await ctx.session.send_resource_updated("memo://status")
    return f"status set to {text}"


async def _subscribe(ctx: object, params: types.SubscribeRequestParams) -> types.EmptyResult:
    subscribed.add(str(params.uri))
    return types.EmptyResult()


mcp._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--own-read-tool", action="store_true", help="add a tool of its own named read_resource")
    args = parser.parse_args()
    if args.own_read_tool:
        @mcp.tool(name="read_resource")
        def own_read(uri: str) -> str:
            """The server's own read_resource tool."""
            return f"own tool read {uri}"
    mcp.run()


if __name__ == "__main__":
    main()
