"""The installed distribution's version, announced by the CLI, our MCP servers and the hub's clientInfo."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "deepseek-mcp-agent"


@cache
def package_version() -> str:
    """The version pip installed (e.g. '0.1.0'); '0+unknown' when running from a tree that was never installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
