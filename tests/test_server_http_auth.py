"""Our servers over streamable HTTP, started as users start them: loopback by default, a bearer token otherwise.

A server that runs commands or touches files must never answer the network unauthenticated.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from conftest import free_port, running_command
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

AGENT = Path(sys.executable).parent / "agent"
SERVERS = ["files", "shell", "web"]


def args_for(name: str, root: Path) -> list[str]:
    return [str(AGENT), "server", name] + ([] if name == "web" else [str(root)])


@pytest.mark.parametrize("name", SERVERS)
def test_serving_an_address_that_is_not_loopback_without_a_token_is_refused(name, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no AGENT_SERVE_TOKEN
    done = subprocess.run([*args_for(name, tmp_path), "--http", f"0.0.0.0:{free_port()}"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    assert "not a loopback address, without a bearer token" in done.stderr
    assert "AGENT_SERVE_TOKEN" in done.stderr and "--token" in done.stderr


async def tools_over_http(url: str, token: str | None) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


@pytest.mark.parametrize("name", SERVERS)
def test_with_a_token_every_request_must_carry_it(name, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with running_command([*args_for(name, tmp_path), "--http", f"127.0.0.1:{port}", "--token", "s3cret"], port):
        assert anyio.run(tools_over_http, url, "s3cret")
        for token in (None, "wrong"):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            refused = httpx2.post(url, headers={**headers, "Accept": "application/json, text/event-stream"},
                                  json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
            assert refused.status_code == 401, (token, refused.status_code)
