"""A stdio server whose `meet` tool returns only once another caller has arrived (proves runs overlap)."""

from __future__ import annotations

import time
from pathlib import Path

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

mcp = MCPServer("rendezvous")


@mcp.tool()
def meet(me: str, other: str, folder: str, timeout: float = 20.0) -> str:
    """Create `folder/me`, then wait until `folder/other` exists (sync tools run in a worker thread)."""
    Path(folder, me).touch()
    deadline = time.monotonic() + timeout
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise ToolError(f"{me} waited {timeout} s for {other} in vain")
        time.sleep(0.02)
    return f"{me} met {other}"


if __name__ == "__main__":
    mcp.run()
