"""How our MCP servers introduce themselves: the command users type, and the version a host is told.

The servers run as users start them, `agent server NAME ...` through the installed console script, with a
real mcp.Client over stdio.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from agent import version as version_module

AGENT = Path(sys.executable).parent / "agent"
SERVERS = ["files", "shell", "web"]


def server_args(name: str, root: Path) -> list[str]:
    return ["server", name] if name == "web" else ["server", name, str(root)]


@pytest.fixture
def fresh_version_lookup() -> object:
    version_module.package_version.cache_clear()
    yield
    version_module.package_version.cache_clear()


@pytest.mark.parametrize("name", SERVERS)
def test_help_names_the_command_users_type(name: str) -> None:
    done = subprocess.run([AGENT, "server", name, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: agent server {name} "), done.stdout.splitlines()[0]


@pytest.mark.parametrize("name", SERVERS)
def test_usage_errors_name_the_command_users_type(name: str) -> None:
    done = subprocess.run(
        [AGENT, "server", name, "--no-such-option"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"agent server {name}: error:" in done.stderr, done.stderr


@pytest.mark.parametrize("name", SERVERS)
def test_server_info_carries_the_installed_distribution_version(name: str, tmp_path: Path) -> None:
    async def handshake() -> tuple[str, str]:
        params = StdioServerParameters(command=str(AGENT), args=server_args(name, tmp_path))
        async with Client(params, mode="legacy") as client:
            assert client.server_info is not None
            return client.server_info.name, client.server_info.version

    announced_name, version = anyio.run(handshake)
    assert announced_name == name
    assert version == importlib.metadata.version("deepseek-mcp-agent")


def test_version_is_unknown_but_valid_when_the_distribution_is_not_installed(
    fresh_version_lookup: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(dist: str) -> str:
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(version_module, "version", not_installed)
    assert version_module.package_version() == "0+unknown"
