"""BubblewrapSandbox: the backend-neutral suite, isolation (files, network), clear errors, nothing left running.

Needs `bwrap` and user namespaces (.ci/docker-setup.sh installs bubblewrap). Without them the tests skip on a
developer machine and fail when CI is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import child_pids, connect_script, host_addresses, host_has, listener
from shell_suite import ALL_CHECKS, beating, heartbeat, stopped, until

from agent.runtime import bubblewrap
from agent.runtime.bubblewrap import BubblewrapSandbox
from agent.runtime.sandbox import Sandbox, SandboxError, SandboxSpec

# Sandboxes and signals look at machine-wide state (bwrap and docker processes, labelled containers,
# `agent sandbox prune --all`): with pytest-xdist these modules share one worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sandboxes")

ROOT = Path(__file__).resolve().parent.parent


def _bwrap_problem() -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap is not installed"
    done = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-all", "true"], capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"bwrap cannot make namespaces here: {done.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def bwrap_available() -> None:
    problem = _bwrap_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run .ci/docker-setup.sh before the tests", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
async def sandbox(workspace: Path):
    async with BubblewrapSandbox(workspace) as box:
        yield box


def bwrap_processes() -> set[int]:
    """bwrap processes anywhere on the host that this test process started (directly)."""
    found = set()
    for pid in child_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap":
                found.add(pid)
    return found


def entries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()]


# --- the contract -------------------------------------------------------------------------------------


def test_bubblewrap_sandbox_satisfies_the_protocol(workspace: Path) -> None:
    box = BubblewrapSandbox(workspace)
    assert isinstance(box, Sandbox)
    assert (box.kind, box.workspace, box.workdir) == ("bubblewrap", workspace.resolve(), "/workspace")


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
async def test_shell_suite(check, sandbox: BubblewrapSandbox) -> None:
    await check(sandbox)


# --- isolation ----------------------------------------------------------------------------------------


async def test_writes_outside_the_workspace_fail(sandbox: BubblewrapSandbox) -> None:
    marker = f"agent-escape-{os.getpid()}"
    for folder in ("/etc", "/usr", "/root", "/home", "/"):
        result = await sandbox.exec(f"echo pwned > {folder.rstrip('/')}/{marker}")
        assert result.exit_code != 0, f"writing to {folder} succeeded"
        assert not host_has(f"{folder.rstrip('/')}/{marker}"), f"the host's {folder} was written"
    inside = await sandbox.exec(f"echo fine > {marker} && echo tmp > /tmp/{marker} && cat /tmp/{marker}")
    assert inside.ok and inside.stdout == "tmp\n"
    assert (sandbox.workspace / marker).read_text() == "fine\n"
    gone = await sandbox.exec(f"cat /tmp/{marker}")  # /tmp is per command
    assert gone.exit_code != 0


async def test_host_files_outside_the_workspace_are_not_visible(
    sandbox: BubblewrapSandbox, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host only")
    result = await sandbox.exec(["cat", str(secret)])
    assert result.exit_code != 0 and "host only" not in result.stdout


async def test_network_is_off_by_default(sandbox: BubblewrapSandbox) -> None:
    addresses = host_addresses()
    with listener() as (port, peers):
        result = await sandbox.exec(connect_script(addresses, port, python="/usr/bin/python3"), timeout=30)
    assert result.ok, result
    assert "connected" not in result.stdout, result.stdout
    assert peers == []


async def test_network_on_when_the_spec_asks(workspace: Path) -> None:
    async with BubblewrapSandbox(workspace, SandboxSpec(kind="bubblewrap", network=True)) as box:
        with listener() as (port, peers):
            result = await box.exec(connect_script(["127.0.0.1"], port, python="/usr/bin/python3"), timeout=30)
    assert "127.0.0.1 connected" in result.stdout, result
    assert peers


async def test_environment_is_rebuilt_from_passthrough_and_spec(workspace: Path) -> None:
    spec = SandboxSpec(kind="bubblewrap", env={"FROM_SPEC": "yes"}, env_passthrough=["PATH"])
    async with BubblewrapSandbox(workspace, spec) as box:
        result = await box.exec("env")
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert {"PATH", "FROM_SPEC", "HOME"} <= names
    assert "LANG" not in names and "TERM" not in names


async def test_cwd_outside_the_sandbox_is_a_sandbox_error(sandbox: BubblewrapSandbox) -> None:
    with pytest.raises(SandboxError, match="cwd"):
        await sandbox.exec("pwd", cwd="no/such/dir")
    assert (await sandbox.exec("pwd", cwd="/usr")).stdout == "/usr\n"


async def test_copies_stay_inside_the_workspace(sandbox: BubblewrapSandbox, tmp_path: Path) -> None:
    source = tmp_path / "file.txt"
    source.write_text("x")
    with pytest.raises(SandboxError, match="outside the workspace"):
        await sandbox.copy_in(source, "/etc/file.txt")
    with pytest.raises(SandboxError, match="outside the workspace"):
        await sandbox.copy_in(source, "../escape.txt")


# --- errors a user can act on -------------------------------------------------------------------------


async def test_missing_bwrap_says_how_to_install_it(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(workspace))
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        async with BubblewrapSandbox(workspace):
            pass


async def test_no_user_namespaces_is_explained(tmp_path: Path, workspace: Path, monkeypatch) -> None:
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because the kernel does not "
        "allow non-privileged user namespaces.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(bubblewrap, "_probed", {})
    with pytest.raises(SandboxError, match="user namespaces"):
        async with BubblewrapSandbox(workspace):
            pass


# --- nothing left behind ------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Host temporary files of this test go here, so that leftovers can be seen."""
    folder = tmp_path / "host-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def assert_clean(before: set[int], private_tmp: Path, *beats: Path) -> None:
    assert await until(lambda: not (bwrap_processes() - before)), f"bwrap left running: {bwrap_processes()}"
    assert child_pids() - before == set(), "a child was not reaped"
    for beat in beats:
        assert await stopped(beat), f"{beat.name} still beats"
    assert entries(private_tmp) == []


async def test_nothing_left_after_a_normal_end(workspace, private_tmp) -> None:
    before = child_pids()
    async with BubblewrapSandbox(workspace) as box:
        await box.exec(f"({heartbeat('bg.beat')}) & sleep 0.3", output_file=workspace / "out.log")
        await box.spawn(heartbeat("spawned.beat"))
        assert await until(lambda: (workspace / "spawned.beat").exists())
    await assert_clean(before, private_tmp, workspace / "bg.beat", workspace / "spawned.beat")


async def test_nothing_left_after_a_timeout(workspace, private_tmp) -> None:
    before = child_pids()
    async with BubblewrapSandbox(workspace) as box:
        assert (await box.exec(heartbeat("t.beat"), timeout=0.5)).timed_out
    await assert_clean(before, private_tmp, workspace / "t.beat")


async def test_nothing_left_after_an_exception(workspace, private_tmp) -> None:
    before = child_pids()
    with pytest.raises(RuntimeError):
        async with BubblewrapSandbox(workspace) as box:
            await box.spawn(heartbeat("e.beat"))
            raise RuntimeError("the agent failed")
    await assert_clean(before, private_tmp, workspace / "e.beat")


async def test_nothing_left_after_cancellation(workspace, private_tmp) -> None:
    before = child_pids()

    async def run() -> None:
        async with BubblewrapSandbox(workspace) as box:
            await box.spawn(heartbeat("c-spawned.beat"))
            await box.exec(heartbeat("c.beat"), timeout=None)

    task = asyncio.create_task(run())
    assert await until(lambda: (workspace / "c.beat").exists())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_clean(before, private_tmp, workspace / "c.beat", workspace / "c-spawned.beat")


async def test_sandbox_dies_with_a_killed_agent(workspace: Path) -> None:
    """--die-with-parent: a crashed agent leaves no sandboxed process running."""
    script = (
        "import anyio\n"
        "from pathlib import Path\n"
        "from agent.runtime.bubblewrap import BubblewrapSandbox\n"
        "async def main():\n"
        f"    async with BubblewrapSandbox(Path({str(workspace)!r})) as box:\n"
        f"        await box.spawn({heartbeat('orphan.beat')!r})\n"
        f"        await box.exec({heartbeat('orphan-exec.beat')!r}, timeout=None)\n"
        "anyio.run(main)\n"
    )
    agent = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
    try:
        assert await until(lambda: (workspace / "orphan-exec.beat").exists(), timeout=20)
        assert await beating(workspace / "orphan.beat", window=10)  # returns at the first new beat
    finally:
        agent.send_signal(signal.SIGKILL)
        await agent.wait()
    assert await stopped(workspace / "orphan.beat")
    assert await stopped(workspace / "orphan-exec.beat")
