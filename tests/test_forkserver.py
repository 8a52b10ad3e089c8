"""The fork server: stdio servers of ours start as forks of a preloaded process, indistinguishable to the
supervisor and to the server from the ordinary start; anything it cannot do exactly goes the ordinary way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import alive
from mcp.client.stdio import get_default_environment

from agent.tools import forkserver
from agent.tools.config import ServerSpec
from agent.tools.hub import ToolHub

PY = sys.executable
PROBE = '''
    """Reports what a server process is: environment, cwd, argv, signals, stdio; and ends in chosen ways."""
    import atexit, json, logging, os, random, signal, sys, time
    from mcp.server import MCPServer

    server = MCPServer("probe")

    def disposition(handler):
        return handler.name if isinstance(handler, signal.Handlers) else "handler" if handler else None

    @server.tool()
    def describe() -> str:
        streams = (sys.stdin, sys.stdout, sys.stderr)
        return json.dumps({
            "environ": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv, "orig_argv": sys.orig_argv,
            "executable": sys.executable, "path0": sys.path[0], "main": [__name__, __file__],
            "session_leader": os.getsid(0) == os.getpid(), "group_leader": os.getpgid(0) == os.getpid(),
            "signals": {s.name: disposition(signal.getsignal(s)) for s in signal.Signals},
            "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
            "stdio": [[s.name, s.mode, s.encoding, s.errors, s.line_buffering, s.write_through] for s in streams],
            "descriptors": sorted(os.readlink(f"/proc/self/fd/{fd}").split(":")[0] for fd in ("0", "1", "2")),
            "open": len(os.listdir("/proc/self/fd")),
            "logging": [type(h).__name__ for h in logging.getLogger().handlers],
            "random": random.random(), "pid": os.getpid(),
        })

    @server.tool()
    def crash(code: int) -> str:
        print(f"probe crashing with {code}", file=sys.stderr, flush=True)
        os._exit(code)

    @server.tool()
    async def stubborn() -> str:
        """Ignore SIGTERM and hang at exit: only SIGKILL ends it."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        atexit.register(time.sleep, 60)
        return "stubborn"

    if __name__ == "__main__":
        server.run()
'''


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace holding `probe_server.py`, a module the fork server may start (`python -m probe_server`)."""
    (tmp_path / "probe_server.py").write_text(textwrap.dedent(PROBE))
    monkeypatch.setattr(forkserver, "ALLOWED_MODULES", {"probe_server"})
    return tmp_path


def probe_spec(folder: Path, **extra: Any) -> ServerSpec:
    return ServerSpec(command=PY, args=["-m", "probe_server"], cwd=str(folder), **extra)


@asynccontextmanager
async def hub_of(servers: dict[str, ServerSpec], **kwargs: Any) -> AsyncIterator[ToolHub]:
    kwargs.setdefault("restart_backoff", 0.1)
    async with ToolHub(servers, **kwargs) as hub:
        yield hub


def forked(hub: ToolHub, name: str) -> forkserver.ForkedProcess | None:
    """The server's process when the fork server started it; None for the ordinary start."""
    return hub._supervisors[name].process


async def describe(hub: ToolHub, name: str = "probe") -> dict[str, Any]:
    outcome = await hub.call(f"{name}__describe", {})
    assert not outcome.is_error, outcome.text
    return json.loads(outcome.text)


async def until(predicate: Any, within: float = 30.0) -> None:
    with anyio.fail_after(within):
        while True:
            if predicate():
                return
            await anyio.sleep(0.02)


def wait_dead(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


# -- a forked server is the server ------------------------------------------------------------------------


async def test_a_builtin_server_started_through_the_fork_server_lists_and_calls_its_tools(tmp_path):
    (tmp_path / "input.txt").write_text("alpha beta\n")
    files = ServerSpec(command=PY, args=["-m", "agent.servers.files", str(tmp_path)], cwd=str(tmp_path))
    shell = ServerSpec(command=PY, args=["-m", "agent.servers.shell", str(tmp_path), "--sandbox", "local"],
                       cwd=str(tmp_path))
    async with hub_of({"files": files, "shell": shell}) as hub:
        assert forked(hub, "files") is not None and forked(hub, "shell") is not None
        assert {"files__read_file", "shell__run_command"} <= {tool.name for tool in hub.tools}
        assert "alpha beta" in (await hub.call("files__read_file", {"path": "input.txt"})).text
        ran = await hub.call("shell__run_command", {"command": "echo $((6 * 7)) > out.txt && pwd"})
        assert not ran.is_error and str(tmp_path) in ran.text
    assert (tmp_path / "out.txt").read_text() == "42\n"


async def test_the_forked_server_sees_what_the_ordinary_start_gives_it(probe):
    """Environment (the entry's `env` over the safe default, and what the interpreter's start adds), cwd,
    argv, sys.path[0], __main__, its own session, default signals, fresh stdio over the pipes."""
    spec, logs = probe_spec(probe, env={"PROBE_SETTING": "on"}), probe / "logs"
    async with hub_of({"probe": spec}, fork_server=False, stderr_dir=logs) as hub:
        assert forked(hub, "probe") is None
        ordinary = await describe(hub)
    async with hub_of({"probe": spec}, stderr_dir=logs) as hub:
        assert forked(hub, "probe") is not None
        fork = await describe(hub)
    for facts in (ordinary, fork):
        assert facts.pop("pid") and facts.pop("random") is not None
    assert fork == ordinary
    assert fork["environ"]["PROBE_SETTING"] == "on" and fork["cwd"] == str(probe)
    assert fork["argv"] == [str(probe / "probe_server.py")]


async def test_each_forked_server_is_a_fresh_process_with_its_own_random_state(probe):
    async with hub_of({"a": probe_spec(probe), "b": probe_spec(probe)}) as hub:
        a, b = await describe(hub, "a"), await describe(hub, "b")
    assert a["pid"] != b["pid"] and a["random"] != b["random"]


def test_the_fork_server_itself_holds_no_credentials(probe, monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-planted-forkserver")
    server = forkserver.ForkServer()  # a fresh one: the shared one may have started before the secret was set
    try:
        plan = forkserver.fork_plan(PY, ["-m", "probe_server"], str(probe), get_default_environment())
        assert plan is not None
        with open(probe / "stderr.log", "w") as stderr:
            child = server.spawn(plan, stderr.fileno(), timeout=60)
        assert child is not None
        child.close()
        assert server.pid is not None
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().decode().split("\0")
        assert "sk-planted-forkserver" not in "".join(environ)
        assert dict(item.partition("=")[::2] for item in environ if item) == get_default_environment()
    finally:
        server.close()


# -- the supervisor sees the process --------------------------------------------------------------------


async def test_a_crash_of_a_forked_server_reports_its_exit_code_and_stderr(probe):
    async with hub_of({"probe": probe_spec(probe, max_restarts=0)}) as hub:
        outcome = await hub.call("probe__crash", {"code": 3})
        assert outcome.is_error
        assert "exited (exit code 3)" in outcome.text and "probe crashing with 3" in outcome.text


async def test_a_forked_server_killed_from_outside_is_seen_as_killed_and_restarted(probe):
    async with hub_of({"probe": probe_spec(probe)}) as hub:
        first = forked(hub, "probe")
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        await until(lambda: first.exited)
        assert first.returncode == -signal.SIGKILL
        with anyio.fail_after(20):
            while True:
                outcome = await hub.call("probe__describe", {})
                if not outcome.is_error:
                    break
                await anyio.sleep(0.05)
        assert json.loads(outcome.text)["pid"] != first.pid and hub.restarts == {"probe": 1}
        assert "exited (killed by SIGKILL)" in (hub._supervisors["probe"].last_trouble or "")


async def test_closing_the_hub_stops_a_forked_server_through_its_stdin(probe):
    async with hub_of({"probe": probe_spec(probe)}) as hub:
        process = forked(hub, "probe")
        assert process is not None
    assert process.exited and process.returncode == 0
    assert wait_dead([process.pid])


async def test_a_forked_server_that_ignores_stdin_and_sigterm_is_killed(probe):
    async with hub_of({"probe": probe_spec(probe)}) as hub:
        process = forked(hub, "probe")
        assert process is not None
        assert (await hub.call("probe__stubborn", {})).text == "stubborn"
    assert process.returncode == -signal.SIGKILL
    assert wait_dead([process.pid])


async def test_cancelling_the_owner_of_the_hub_leaves_no_forked_server(probe):
    pids: list[int] = []

    async def run() -> None:
        async with hub_of({"a": probe_spec(probe), "b": probe_spec(probe)}) as hub:
            pids.extend(p.pid for p in (forked(hub, "a"), forked(hub, "b")) if p is not None)
            await anyio.sleep(60)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await until(lambda: len(pids) == 2)
            tg.cancel_scope.cancel()
    assert wait_dead(pids)


# -- falling back ---------------------------------------------------------------------------------------


async def test_a_fork_server_that_died_falls_back_to_the_ordinary_start_then_is_replaced(probe):
    async with hub_of({"probe": probe_spec(probe)}) as hub:
        child = forked(hub, "probe")
        zygote = forkserver.shared().pid
        assert child is not None and zygote is not None
        os.kill(zygote, signal.SIGKILL)
        assert wait_dead([zygote])
        assert (await describe(hub))["pid"] == child.pid  # its children run on
    assert child.exited and wait_dead([child.pid])
    async with hub_of({"probe": probe_spec(probe)}) as hub:
        assert forked(hub, "probe") is None  # the dead one could not answer: no error, the ordinary start
        await describe(hub)
    async with hub_of({"probe": probe_spec(probe)}) as hub:
        assert forked(hub, "probe") is not None  # a new fork server
        assert forkserver.shared().pid not in (None, zygote)


async def test_the_switch_off_uses_the_ordinary_start(probe, monkeypatch):
    async with hub_of({"probe": probe_spec(probe)}, fork_server=False) as hub:
        assert forked(hub, "probe") is None
        await describe(hub)
    monkeypatch.setenv("AGENT_FORKSERVER", "0")
    async with hub_of({"probe": probe_spec(probe)}) as hub:
        assert forked(hub, "probe") is None
        await describe(hub)


async def test_an_environment_the_interpreter_reads_at_start_up_takes_the_ordinary_start(probe):
    async with hub_of({"probe": probe_spec(probe, env={"PYTHONPATH": str(probe)})}) as hub:
        assert forked(hub, "probe") is None
        assert (await describe(hub))["environ"]["PYTHONPATH"] == str(probe)


async def test_a_workspace_that_shadows_a_preloaded_module_takes_the_ordinary_start(probe):
    (probe / "anyio.py").write_text("raise SystemExit('the workspace anyio was imported')\n")
    async with hub_of({"probe": probe_spec(probe, required=False)}) as hub:
        assert forked(hub, "probe") is None
        assert "the workspace anyio was imported" in hub.failures["probe"]  # as `python -m` there does


@pytest.mark.parametrize(("command", "args", "forkable"), [
    (PY, ["-m", "agent.servers.files", "."], True),
    (PY, ["-m", "agent.servers.shell", ".", "--sandbox", "local"], True),
    (PY, ["-m", "agent.servers.shell", ".", "--sandbox=docker"], False),
    (PY, ["-m", "agent.servers.shell", ".", "--sandbox", "bubblewrap"], False),
    (PY, ["-m", "agent.servers.shell", ".", "--sand", "local"], False),
    (PY, ["-u", "-m", "agent.servers.files", "."], False),
    (PY, ["-m", "agent.servers._http"], False),
    (PY, ["-m", "mcp_server_git"], False),
    (PY, ["server.py"], False),
    ("/bin/sh", ["-m", "agent.servers.files", "."], False),
])
def test_only_starts_of_our_servers_by_this_interpreter_may_fork(tmp_path, command, args, forkable):
    plan = forkserver.fork_plan(command, args, str(tmp_path), get_default_environment())
    assert (plan is not None) == forkable


def test_python_on_path_forks_only_when_it_is_this_interpreter(tmp_path):
    here = {"PATH": os.path.dirname(PY)}
    elsewhere = {"PATH": str(tmp_path)}
    (tmp_path / "python3").symlink_to(PY)  # the same file in another folder: another venv (or none)
    assert forkserver.fork_plan("python", ["-m", "agent.servers.files", "."], None, here) is not None
    assert forkserver.fork_plan("python3", ["-m", "agent.servers.files", "."], None, elsewhere) is None


# -- nothing left behind ---------------------------------------------------------------------------------

AGENT_SCRIPT = """
import sys, anyio
from agent.tools import forkserver
from agent.tools.config import ServerSpec
from agent.tools.hub import ToolHub

async def main():
    spec = ServerSpec(command=sys.executable, args=["-m", "agent.servers.files", sys.argv[1]], cwd=sys.argv[1])
    async with ToolHub({"files": spec}) as hub:
        print(forkserver.shared().pid, hub._supervisors["files"].process.pid, flush=True)
        await anyio.sleep(600)

anyio.run(main)
"""


def test_the_fork_server_and_its_children_end_when_the_agent_process_is_killed(tmp_path):
    proc = subprocess.Popen([PY, "-c", AGENT_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "AGENT_FORKSERVER": "1"})
    try:
        assert proc.stdout is not None
        zygote, child = (int(pid) for pid in proc.stdout.readline().split())
        assert alive(zygote) and alive(child)
    finally:
        proc.kill()
        proc.wait()
    assert wait_dead([zygote, child])


async def test_the_sdk_switch_reaches_the_hub(tmp_path):
    """`Agent(fork_server=False)` starts our servers the ordinary way; the default forks them."""
    from agent import Agent
    from agent.testing import FakeModel

    files = {"files": {"command": PY, "args": ["-m", "agent.servers.files", str(tmp_path)], "cwd": str(tmp_path)}}
    for switch, expect_forked in ((False, False), (None, True)):
        async with Agent(FakeModel([]), servers=files, fork_server=switch, trace_dir=None) as agent:
            assert agent._hub is not None
            assert (forked(agent._hub, "files") is not None) is expect_forked
