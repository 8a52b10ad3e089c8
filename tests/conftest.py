"""Shared test fixtures: free ports, the demo MCP server over HTTP/SSE as a subprocess, child-process checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
SERVERS_DIR = TESTS_DIR / "servers"
DEMO_SERVER = SERVERS_DIR / "demo_server.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_pids(parent: int | None = None) -> set[int]:
    """PIDs whose parent is `parent` (default: this test process), zombies included, read from /proc."""
    parent = os.getpid() if parent is None else parent
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name in parentheses may contain spaces; fields after it are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            pids.add(int(entry.name))
    return pids


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {timeout} s")


@contextmanager
def running_server(args: list[str], port: int, *, timeout: float = 20.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python <args>` until the block ends; waits until it listens on `port`."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc, timeout)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def demo_http_url() -> Iterator[str]:
    """URL of the demo MCP server speaking streamable HTTP in a subprocess."""
    port = free_port()
    with running_server([str(DEMO_SERVER), "--http", str(port)], port):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def demo_sse_url() -> Iterator[str]:
    """URL of the demo MCP server speaking the legacy HTTP+SSE transport in a subprocess."""
    port = free_port()
    with running_server([str(DEMO_SERVER), "--sse", str(port)], port):
        yield f"http://127.0.0.1:{port}/sse"
