"""A stdio server for restart tests: it reports its pid, crashes on request, and can refuse to start again.

`--starts FILE` appends a line per start; with `--max-starts N` the server exits at startup once FILE
records N starts (a server that crashed for good).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mcp.server import MCPServer

mcp = MCPServer("flaky")


@mcp.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@mcp.tool()
def crash() -> str:
    """Kill the server process in the middle of the call."""
    print(f"flaky server {os.getpid()}: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=Path, help="append a line per start to this file")
    parser.add_argument("--max-starts", type=int, help="refuse to start once FILE records this many starts")
    args = parser.parse_args()
    if args.starts is not None:
        starts = len(args.starts.read_text().splitlines()) if args.starts.exists() else 0
        if args.max_starts is not None and starts >= args.max_starts:
            sys.exit(f"flaky server: refusing to start again after {starts} starts")
        with args.starts.open("a") as f:
            f.write(f"{os.getpid()}\n")
    mcp.run()


if __name__ == "__main__":
    main()
