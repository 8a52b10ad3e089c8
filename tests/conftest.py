"""Shared test fixtures: free ports, the demo MCP server over HTTP/SSE as a subprocess, child-process checks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import pytest
import yaml

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


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (this machine's PID 1 may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace folder for a sandbox."""
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


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


# --- network checks from inside sandboxes -------------------------------------------------------------


def host_addresses() -> list[str]:
    """This host's IPv4 addresses on loopback and on the bridges our own dockerd made (docker0, br-*).

    Never the machine's own network interfaces: tests send traffic only to loopback and to the network
    namespaces the project created.
    """
    found = {"127.0.0.1"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            if not name.startswith(("docker", "br-")):
                continue
            with contextlib.suppress(OSError):
                packed = fcntl.ioctl(
                    probe.fileno(), 0x8915, struct.pack("256s", name.encode()[:15])
                )  # SIOCGIFADDR
                found.add(socket.inet_ntoa(packed[20:24]))
    return sorted(found)


@contextmanager
def listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on 0.0.0.0 (all host addresses) that records who connected."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen()
    server.settimeout(0.2)
    peers: list[str] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                conn, peer = server.accept()
                peers.append(peer[0])
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], peers
    finally:
        done.set()
        thread.join()
        server.close()


def host_has(path: str) -> bool:
    """Whether a path exists on the host (a dangling symlink counts)."""
    return os.path.lexists(path)


def connect_script(addresses: list[str], port: int, *, python: str = "python3") -> list[str]:
    """An argv that tries a TCP connection to each address and prints `<host> connected` or `<host> failed`."""
    code = (
        "import socket\n"
        f"for host in {addresses!r}:\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=2).close(); print(host, 'connected')\n"
        "    except OSError as e:\n"
        "        print(host, 'failed', e)\n"
    )
    return [python, "-c", code]


# --- programs started as a user or an MCP host starts them ------------------------------------------------


@contextmanager
def running_command(
    argv: list[str], port: int, *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run any program (`argv`, not only Python) until the block ends; waits until it listens on `port`.

    It runs in a session of its own, so stopping it (SIGTERM, then SIGKILL) reaches whatever it started; its
    stderr is quoted when it exits before listening.
    """
    import signal
    import tempfile

    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=cwd,
                                start_new_session=True)
        try:
            try:
                _wait_for_port(port, proc, timeout)
            except RuntimeError as exc:
                errors.seek(0)
                raise RuntimeError(f"{' '.join(argv)}: {exc}; its stderr:\n{errors.read().decode(errors='replace')}") from None
            yield proc
        finally:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue


def require_installed(what: str, present: bool, remedy: str) -> None:
    """Fail when CI lacks something a test needs (CI must install it); elsewhere skip, saying how to get it."""
    if present:
        return
    message = f"{what} is not available: {remedy}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def assert_grouped(request: Any, group: str) -> None:
    """Under `--dist loadgroup`, this test carries its xdist_group (so its group shares one worker): a pytest or
    pytest-xdist upgrade that silently stops grouping fails here instead of as rare collisions elsewhere."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith(f"@{group}"), (
            f"{request.node.nodeid}: xdist_group({group!r}) is not applied; tests sharing machine-wide state "
            "would run at the same time on different workers (check the pytest / pytest-xdist versions)")


@contextmanager
def terminal() -> Iterator[tuple[TextIO, int]]:
    """A real pseudo-terminal: its slave end as stdin, and the master end to type into."""
    master, slave = pty.openpty()
    stdin = os.fdopen(slave, "r")
    try:
        yield stdin, master
    finally:
        stdin.close()
        os.close(master)


def write_suite(root: Path, tasks: dict[str, tuple[dict, list]], **suite: object) -> Path:
    """A suite folder: suite.yaml plus tasks/<name>/task.yaml and solutions/reference.yaml."""
    root.mkdir(parents=True)
    (root / "suite.yaml").write_text(yaml.safe_dump({"name": root.name, **suite}))
    for name, (task, script) in tasks.items():
        folder = root / "tasks" / name
        (folder / "solutions").mkdir(parents=True)
        (folder / "task.yaml").write_text(yaml.safe_dump({"name": name, **task}))
        (folder / "solutions" / "reference.yaml").write_text(yaml.safe_dump(script))
    return root
