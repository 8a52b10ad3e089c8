"""A low-level MCP server that lists its tools over several `tools/list` pages (stdio)."""

import anyio
import mcp.types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

PAGES = [["alpha", "beta"], ["gamma"], ["delta"]]
ANY_OBJECT = {"type": "object", "properties": {}}


async def list_tools(ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    page = int(params.cursor) if params and params.cursor else 0
    tools = [
        types.Tool(name=name, description=f"tool {name}", input_schema=ANY_OBJECT) for name in PAGES[page]
    ]
    next_cursor = str(page + 1) if page + 1 < len(PAGES) else None
    return types.ListToolsResult(tools=tools, next_cursor=next_cursor)


async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"called {params.name}")])


server = Server("paged", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
