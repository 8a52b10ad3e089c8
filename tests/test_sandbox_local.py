"""LocalSandbox: the backend-neutral suite, then what only the local backend promises (host paths, /proc)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest
from conftest import alive, child_pids
from shell_suite import ALL_CHECKS, heartbeat, stopped, until

from agent.runtime import local
from agent.runtime.local import LocalSandbox, _Capture
from agent.runtime.sandbox import Sandbox, SandboxError, SandboxSpec, elide

# Sandboxes and signals look at machine-wide state (bwrap and docker processes, labelled containers,
# `agent sandbox prune --all`): with pytest-xdist these modules share one worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sandboxes")


async def wait_dead(*pids: int, timeout: float = 5.0) -> list[int]:
    """The pids still alive after `timeout` seconds."""
    await until(lambda: not any(alive(p) for p in pids), timeout)
    return [p for p in pids if alive(p)]


def words(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def read_pids(path: Path, count: int) -> list[int]:
    assert await until(lambda: len(words(path)) >= count), f"{path} never held {count} pids"
    return [int(w) for w in words(path)[:count]]


@pytest.fixture
async def sandbox(workspace: Path):
    async with LocalSandbox(workspace) as box:
        yield box


def test_local_sandbox_satisfies_the_protocol(workspace: Path) -> None:
    box = LocalSandbox(workspace)
    assert isinstance(box, Sandbox)
    assert (box.kind, box.workspace, box.workdir) == ("local", workspace.resolve(), str(workspace.resolve()))


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
async def test_shell_suite(check, sandbox: LocalSandbox) -> None:
    await check(sandbox)


# --- process lifetime ---------------------------------------------------------------------------------


async def test_cancellation_leaves_no_process_behind(sandbox: LocalSandbox) -> None:
    before = child_pids()
    task = asyncio.create_task(sandbox.exec("echo $$ > pids; sleep 60 & echo $! >> pids; wait", timeout=None))
    shell, child = await read_pids(sandbox.workspace / "pids", 2)
    assert alive(shell) and alive(child)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_dead(shell, child) == []
    assert child_pids() - before == set(), "the shell was not reaped"


async def test_timeout_kills_the_group_and_reaps_the_shell(sandbox: LocalSandbox) -> None:
    before = child_pids()
    result = await sandbox.exec("echo $$ > pids; sleep 60 & echo $! >> pids; wait", timeout=3)
    assert result.timed_out and result.exit_code is None
    shell, child = await read_pids(sandbox.workspace / "pids", 2)
    assert await wait_dead(shell, child) == []
    assert child_pids() - before == set()


async def test_background_leftovers_are_killed_when_the_command_exits(sandbox: LocalSandbox) -> None:
    started = time.monotonic()
    result = await sandbox.exec("sleep 60 & echo $!", timeout=30)
    assert result.exit_code == 0 and not result.timed_out
    assert time.monotonic() - started < 5, "exec waited for a background process holding its output pipe"
    assert await wait_dead(int(result.stdout)) == []


async def test_spawned_processes_stop_when_the_sandbox_exits(workspace: Path) -> None:
    async with LocalSandbox(workspace) as box:
        first = await box.spawn(heartbeat("one.beat"))
        second = await box.spawn(f"({heartbeat('two.beat')}) & sleep 60")
        assert await until((workspace / "two.beat").exists)
    assert first.returncode is not None and second.returncode is not None
    assert await stopped(workspace / "one.beat") and await stopped(workspace / "two.beat")


async def test_sandbox_exit_stops_processes_even_when_cancelled(workspace: Path) -> None:
    box = LocalSandbox(workspace)
    entered = asyncio.Event()

    async def hold() -> None:
        async with box:
            await box.spawn(heartbeat("held.beat"))
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(hold())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await stopped(workspace / "held.beat")


async def test_stop_sends_sigkill_after_the_grace(sandbox: LocalSandbox) -> None:
    process = await sandbox.spawn("trap '' TERM; echo ready; while :; do sleep 0.05; done")
    assert await until(lambda: process.read(), 30)
    started = time.monotonic()
    code = await process.stop(grace_s=0.3)
    assert code is not None and time.monotonic() - started < 20  # it never ends without the SIGKILL


# --- confinement and environment ------------------------------------------------------------------------


@pytest.mark.parametrize("cwd", ["/", "..", "../..", "sub/../.."])
async def test_cwd_outside_the_workspace_is_refused(sandbox: LocalSandbox, cwd: str) -> None:
    with pytest.raises(SandboxError, match="outside the workspace"):
        await sandbox.exec("touch ran", cwd=cwd)
    with pytest.raises(SandboxError, match="outside the workspace"):
        await sandbox.spawn("touch ran", cwd=cwd)


async def test_cwd_through_a_symlink_leading_out_is_refused(sandbox: LocalSandbox, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (sandbox.workspace / "escape").symlink_to(outside)
    with pytest.raises(SandboxError, match="outside the workspace"):
        await sandbox.exec("touch ran", cwd="escape")
    assert not (outside / "ran").exists()


async def test_relative_cwd_starts_at_the_workspace(sandbox: LocalSandbox) -> None:
    (sandbox.workspace / "src").mkdir()
    result = await sandbox.exec("pwd", cwd="src")
    assert result.stdout.strip() == f"{sandbox.workdir}/src"


async def test_missing_cwd_is_refused(sandbox: LocalSandbox) -> None:
    with pytest.raises(SandboxError, match="not an existing directory"):
        await sandbox.exec("true", cwd="nope")


async def test_workspace_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not a directory"):
        async with LocalSandbox(tmp_path / "missing"):
            pass


async def test_argv_that_cannot_run_fails_like_a_shell(sandbox: LocalSandbox) -> None:
    (sandbox.workspace / "plain.txt").write_text("not a program")
    missing = await sandbox.exec(["no-such-program-anywhere"])
    assert missing.exit_code == 127 and "No such file" in missing.stderr
    denied = await sandbox.exec([str(sandbox.workspace / "plain.txt")])
    assert denied.exit_code == 126 and "Permission denied" in denied.stderr


async def test_environment_is_passthrough_then_spec_then_call(workspace: Path, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_TEST_PASSED", "from-host")
    monkeypatch.setenv("AGENT_TEST_SECRET", "never")
    spec = SandboxSpec(env_passthrough=["PATH", "AGENT_TEST_PASSED"], env={"ONE": "spec", "TWO": "spec"})
    async with LocalSandbox(workspace, spec) as box:
        result = await box.exec("env", env={"TWO": "call"})
    variables = dict(line.split("=", 1) for line in result.stdout.splitlines())
    variables.pop("PWD", None)  # sh sets these itself
    variables.pop("SHLVL", None)
    variables.pop("_", None)
    assert variables == {
        "PATH": os.environ["PATH"],
        "AGENT_TEST_PASSED": "from-host",
        "ONE": "spec",
        "TWO": "call",
    }


async def test_copies_stay_inside_the_workspace(sandbox: LocalSandbox, tmp_path: Path) -> None:
    source = tmp_path / "file.txt"
    source.write_text("x")
    with pytest.raises(SandboxError, match="outside the workspace"):
        await sandbox.copy_in(source, "../planted.txt")
    assert not (tmp_path / "planted.txt").exists()
    (sandbox.workspace / "link").symlink_to(source)
    with pytest.raises(SandboxError, match="outside the workspace"):
        await sandbox.copy_out("link", tmp_path / "leaked.txt")


async def test_copy_of_a_missing_source_is_a_sandbox_error(sandbox: LocalSandbox, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        await sandbox.copy_in(tmp_path / "nothing", "x")


# --- bounded output -------------------------------------------------------------------------------------


async def test_spawn_read_notes_output_dropped_from_a_full_buffer(sandbox: LocalSandbox, monkeypatch) -> None:
    monkeypatch.setattr(local, "SPAWN_BUFFER_CHARS", 1000)
    process = await sandbox.spawn("yes | head -c 100000; sleep 60")
    try:
        await asyncio.sleep(0.5)
        text = await process.read(max_chars=100_000)
    finally:
        await process.stop()
    assert text == "y\n" * 500 + "\n[... 98000 characters elided ...]\n" + "y\n" * 500


@pytest.mark.parametrize("keep", [1, 2, 7, 100])
def test_capture_renders_exactly_what_elide_would(keep: int) -> None:
    rng = random.Random(keep)
    for _ in range(200):
        text = "".join(rng.choice("ab\né") for _ in range(rng.randrange(0, 400)))
        data = text.encode()
        capture = _Capture(keep)
        position = 0
        while position < len(data):  # random chunks, splitting multi-byte characters too
            step = rng.randrange(1, 40)
            capture.feed(data[position : position + step])
            position += step
        capture.finish()
        assert capture.chars == len(text)
        assert capture.render(keep) == elide(text, keep)
        rendered = capture.render(3 * keep)  # asking for more than was kept still counts what is missing
        if len(text) <= 2 * keep:
            assert rendered == elide(text, 3 * keep)
        else:
            assert rendered.startswith(text[:keep]) and rendered.endswith(text[-keep:])
            assert f"[... {len(text) - 2 * keep} characters elided ...]" in rendered
