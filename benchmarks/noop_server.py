"""A stdio MCP server with one no-op tool, for measuring the framework's own per-step overhead."""

from mcp.server import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("bench")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def noop(value: int = 0) -> str:
    """Return at once."""
    return "ok"


if __name__ == "__main__":
    server.run()
