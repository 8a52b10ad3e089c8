"""Backend-neutral checks of the Sandbox contract: each takes an entered `Sandbox` and asserts.

Every backend's tests run `ALL_CHECKS`. Commands use only what a minimal Debian image has (sh, sleep, cat,
head, yes, printf, env, mkdir); paths seen by commands come from `sandbox.workdir`, host paths from
`sandbox.workspace`. Liveness is judged by heartbeat files in the workspace, not by PIDs, because a PID
means different things inside a container or a PID namespace and on the host.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

from agent.runtime.sandbox import ExecResult, Sandbox, SandboxError

SECRET_NAME = "AGENT_TEST_SECRET"


def heartbeat(name: str, *, ignore_term: bool = False) -> str:
    """A shell loop that appends a counter to `name` (in the current folder) every 50 ms, forever.

    Appending, not rewriting: a loop killed between truncating and writing would leave an empty file that
    looks like one that never started.
    """
    trap = "trap '' TERM; " if ignore_term else ""
    return f"{trap}i=0; while :; do i=$((i+1)); echo $i >> {name}; sleep 0.05; done"


async def beating(path: Path, *, window: float = 0.6) -> bool:
    """Whether the heartbeat file at host path `path` still grows within `window` seconds."""
    first = _read(path)
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        if _read(path) != first:
            return True
    return False


async def stopped(path: Path, *, within: float = 30.0) -> bool:
    """Whether the heartbeat at `path` stops growing within `within` seconds (a kill may land a moment after the
    call that ordered it returned, later still on a loaded machine); a survivor beats on and fails this."""

    async def quiet() -> bool:
        return not await beating(path)

    return await until(quiet, timeout=within)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0) -> bool:
    """Poll `predicate` (plain or async) until it holds; False if it never did within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return True
        await asyncio.sleep(0.05)
    return False


async def check_exit_codes(sandbox: Sandbox) -> None:
    ok = await sandbox.exec("true")
    assert ok.exit_code == 0 and ok.ok and not ok.timed_out
    failed = await sandbox.exec("exit 3")
    assert failed.exit_code == 3 and not failed.ok
    argv = await sandbox.exec(["sh", "-c", "exit 5"])
    assert argv.exit_code == 5
    missing = await sandbox.exec("no-such-command-anywhere")
    assert missing.exit_code == 127, missing


async def check_stdout_stderr(sandbox: Sandbox) -> None:
    result = await sandbox.exec("printf 'out\\n'; printf 'err\\n' >&2")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert (result.stdout_chars, result.stderr_chars) == (4, 4)
    assert not result.truncated
    argv = await sandbox.exec(["printf", "%s|%s", "a b", "$HOME"])  # no shell: no splitting, no expansion
    assert argv.stdout == "a b|$HOME"
    mixed = await sandbox.exec("printf 'caf\\303\\251 \\377 ok'")  # valid UTF-8, then an invalid byte
    assert mixed.stdout == "café \ufffd ok"


async def check_output_cap(sandbox: Sandbox) -> None:
    result = await sandbox.exec(
        "i=0; while [ $i -lt 1000 ]; do echo line$i; i=$((i+1)); done", output_cap=100
    )
    full = "".join(f"line{i}\n" for i in range(1000))
    assert result.stdout_chars == len(full) and result.truncated
    assert result.stdout == f"{full[:50]}\n[... {len(full) - 100} characters elided ...]\n{full[-50:]}"
    small = await sandbox.exec("echo short", output_cap=100)
    assert small.stdout == "short\n" and not small.truncated


async def check_output_cap_on_100mb(sandbox: Sandbox) -> None:
    """100 MB of output: the result keeps head and tail, memory stays small, the file gets every byte."""
    size = 100_000_000
    log = sandbox.workspace / "full-output.log"
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result = await sandbox.exec(f"yes | head -c {size}", output_cap=1000, output_file=log, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
    try:
        assert result.exit_code == 0 and result.stdout_chars == size and result.truncated
        assert result.stdout.startswith("y\ny\n") and result.stdout.endswith("y\ny\n")
        assert f"[... {size - 1000} characters elided ...]" in result.stdout
        assert len(result.stdout) < 1100
        assert result.output_path == log
        assert log.stat().st_size == size
        with log.open("rb") as f:
            assert f.read(6) == b"y\ny\ny\n"
        assert peak < 20_000_000, f"reading 100 MB peaked at {peak} bytes of Python memory"
    finally:
        log.unlink(missing_ok=True)


async def check_output_file_holds_stdout_then_stderr(sandbox: Sandbox) -> None:
    log = sandbox.workspace / "both.log"
    try:
        result = await sandbox.exec("printf 'E1\\n' >&2; printf 'O1\\n'; printf 'E2\\n' >&2", output_file=log)
        assert result.output_path == log
        assert log.read_bytes() == b"O1\nE1\nE2\n"
    finally:
        log.unlink(missing_ok=True)


async def check_cwd_and_env(sandbox: Sandbox) -> None:
    here = await sandbox.exec("pwd")
    assert here.stdout.strip() == sandbox.workdir
    await sandbox.exec("mkdir -p sub/dir")
    there = await sandbox.exec("pwd", cwd=f"{sandbox.workdir}/sub/dir")
    assert there.stdout.strip() == f"{sandbox.workdir}/sub/dir"
    env = await sandbox.exec('printf "%s" "$GREETING"', env={"GREETING": "hello world"})
    assert env.stdout == "hello world"
    path = await sandbox.exec('printf "%s" "$PATH"')
    assert path.stdout, "PATH must reach commands"


async def check_no_host_secret(sandbox: Sandbox) -> None:
    previous = os.environ.get(SECRET_NAME)
    os.environ[SECRET_NAME] = "hunter2-host-only"
    try:
        listing = await sandbox.exec("env")
        assert listing.exit_code == 0 and "PATH=" in listing.stdout
        assert SECRET_NAME not in listing.stdout and "hunter2" not in listing.stdout
        probe = await sandbox.exec(f'printf "%s" "${{{SECRET_NAME}-unset}}"')
        assert probe.stdout == "unset"
    finally:
        if previous is None:
            os.environ.pop(SECRET_NAME, None)
        else:
            os.environ[SECRET_NAME] = previous


async def check_stdin(sandbox: Sandbox) -> None:
    echoed = await sandbox.exec("cat", stdin="line one\nline two\n")
    assert echoed.stdout == "line one\nline two\n"
    counted = await sandbox.exec("head -c 3", stdin="abcdef")
    assert counted.stdout == "abc"
    empty = await sandbox.exec("cat", timeout=10)  # no stdin given: the command reads EOF, it does not hang
    assert empty.exit_code == 0 and empty.stdout == "" and not empty.timed_out


async def check_timeout_kills_process_group(sandbox: Sandbox) -> None:
    """A timed-out command and the background child it started both stop."""
    command = f"({heartbeat('child.beat')}) & {heartbeat('parent.beat')}"
    started = time.monotonic()
    result = await sandbox.exec(command, timeout=3.0)  # long enough to start on a loaded machine
    assert result.timed_out and result.exit_code is None, result
    assert time.monotonic() - started < 10
    for name in ("child.beat", "parent.beat"):
        assert _read(sandbox.workspace / name), f"{name} never started"
        assert await stopped(sandbox.workspace / name), f"{name} still beats after the timeout"


async def check_timeout_kills_children_that_ignore_sigterm(sandbox: Sandbox) -> None:
    result = await sandbox.exec(f"({heartbeat('stubborn.beat', ignore_term=True)}) & sleep 60", timeout=3.0)
    assert result.timed_out
    assert _read(sandbox.workspace / "stubborn.beat"), "the heartbeat never started"
    assert await stopped(sandbox.workspace / "stubborn.beat"), "SIGKILL did not follow SIGTERM"


async def check_cancellation_kills_process_group(sandbox: Sandbox) -> None:
    task = asyncio.create_task(sandbox.exec(f"({heartbeat('cancel-child.beat')}) & sleep 60", timeout=None))
    beat = sandbox.workspace / "cancel-child.beat"
    assert await until(lambda: bool(_read(beat))), "the heartbeat never started"
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("a cancelled exec must re-raise CancelledError")
    assert await stopped(beat), "the command's child survived the cancellation"


async def check_concurrent_exec(sandbox: Sandbox) -> None:
    results: list[ExecResult] = await asyncio.gather(
        *(sandbox.exec(f"sleep 0.2; printf {i}") for i in range(8))
    )
    assert [r.stdout for r in results] == [str(i) for i in range(8)]


async def check_spawn_read_write_stop(sandbox: Sandbox) -> None:
    process = await sandbox.spawn("cat")
    try:
        await process.write("ping\n")
        seen = ""

        async def echoed() -> bool:
            nonlocal seen
            seen += await process.read()
            return "ping" in seen

        assert await until(echoed), f"cat did not echo; got {seen!r}"
        assert process.returncode is None
        assert await process.read() == ""  # read returns only what is new
    finally:
        code = await process.stop()
    assert code is not None and process.returncode == code


async def check_spawn_exit_and_interleaved_output(sandbox: Sandbox) -> None:
    process = await sandbox.spawn("printf 'to-out\\n'; printf 'to-err\\n' >&2; exit 3")
    output = ""

    async def ended() -> bool:
        nonlocal output
        output += await process.read()
        return process.returncode is not None and "to-out" in output and "to-err" in output

    assert await until(ended), f"returncode={process.returncode}, output={output!r}"
    assert process.returncode == 3
    assert await process.stop() == 3


async def check_spawn_read_is_bounded(sandbox: Sandbox) -> None:
    process = await sandbox.spawn("yes | head -c 1000000; sleep 60")
    try:
        await asyncio.sleep(1.0)  # let the megabyte arrive
        chunk = await process.read(max_chars=100)
        assert chunk.startswith("y\n") and chunk.endswith("y\n")
        assert 100 <= len(chunk) < 300, f"read(max_chars=100) returned {len(chunk)} characters"
    finally:
        await process.stop()


async def check_spawn_stop_kills_process_group(sandbox: Sandbox) -> None:
    process = await sandbox.spawn(f"({heartbeat('job-child.beat')}) & {heartbeat('job.beat')}")
    beat = sandbox.workspace / "job-child.beat"
    assert await until(lambda: bool(_read(beat))), "the heartbeat never started"
    await process.stop(grace_s=1.0)
    assert process.returncode is not None
    assert await stopped(beat) and await stopped(sandbox.workspace / "job.beat")


async def check_write_after_exit_fails(sandbox: Sandbox) -> None:
    process = await sandbox.spawn("exit 0")
    await process.stop()
    try:
        await process.write("late\n")
    except (SandboxError, OSError):
        pass
    else:
        raise AssertionError("writing to an exited process must raise")


async def check_copy_in_out(sandbox: Sandbox) -> None:
    host = Path(tempfile.mkdtemp(prefix="shell-suite-"))
    try:
        (host / "a.txt").write_text("alpha\n")
        (host / "tree" / "sub").mkdir(parents=True)
        (host / "tree" / "sub" / "b.txt").write_text("beta\n")
        await sandbox.copy_in(host / "a.txt", f"{sandbox.workdir}/a.txt")
        await sandbox.copy_in(host / "tree", f"{sandbox.workdir}/tree")
        seen = await sandbox.exec("cat a.txt tree/sub/b.txt")
        assert seen.stdout == "alpha\nbeta\n", seen
        await sandbox.exec("mkdir -p made/inner && printf gamma > made/inner/c.txt && printf delta > d.txt")
        await sandbox.copy_out(f"{sandbox.workdir}/d.txt", host / "d.txt")
        await sandbox.copy_out(f"{sandbox.workdir}/made", host / "made")
        assert (host / "d.txt").read_text() == "delta"
        assert (host / "made" / "inner" / "c.txt").read_text() == "gamma"
    finally:
        shutil.rmtree(host, ignore_errors=True)


ALL_CHECKS: list[Callable[[Sandbox], Awaitable[None]]] = [
    check_exit_codes,
    check_stdout_stderr,
    check_output_cap,
    check_output_cap_on_100mb,
    check_output_file_holds_stdout_then_stderr,
    check_cwd_and_env,
    check_no_host_secret,
    check_stdin,
    check_timeout_kills_process_group,
    check_timeout_kills_children_that_ignore_sigterm,
    check_cancellation_kills_process_group,
    check_concurrent_exec,
    check_spawn_read_write_stop,
    check_spawn_exit_and_interleaved_output,
    check_spawn_read_is_bounded,
    check_spawn_stop_kills_process_group,
    check_write_after_exit_fails,
    check_copy_in_out,
]
