"""The local sandbox: commands run on the host, each in its own process group, confined to the workspace folder.

Not an isolation boundary (commands see the whole host file system and the network); what it guarantees is
the Sandbox contract: bounded memory whatever the output, a clean environment, and nothing left running.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

from agent.runtime.sandbox import DEFAULT_OUTPUT_CAP, ExecResult, SandboxError, SandboxSpec, elide

T = TypeVar("T")

KILL_GRACE_S = 1.0
"""Seconds between SIGTERM and SIGKILL when a timeout, a cancellation or the sandbox's exit ends a command."""
PIPE_DRAIN_S = 2.0
"""How long to wait for output once the process group is gone; only a process that left the group (setsid)
and kept the pipes open makes this wait, and its later output is lost."""
SPAWN_BUFFER_CHARS = 200_000
"""Output of a spawned process kept between two reads: this many characters of head and of tail."""


class LocalSandbox:
    """Runs commands on the host, in `workspace`, with the environment the spec allows.

    - A string command runs under `/bin/sh -c`, a sequence is an argv. Every command gets its own process group
      (`start_new_session`); timeouts, cancellation and `__aexit__` signal the whole group (SIGTERM, then
      SIGKILL after `kill_grace_s`). When a command exits, whatever it left running in its group (`server &`)
      is killed too: `exec` runs commands to completion, long-lived work belongs in `spawn`.
    - Environment: the host variables named in `spec.env_passthrough`, then `spec.env`, then the call's `env`.
      Nothing else from the host (API keys, tokens) reaches a command.
    - `cwd` and the sandbox side of `copy_in`/`copy_out` are host paths, relative ones taken from the
      workspace; after resolving symlinks they must lie inside the workspace, else `SandboxError` (nothing
      runs). A missing `cwd` is a `SandboxError` too. An argv whose program cannot be executed gives exit
      code 127 (not found) or 126 (not executable), as a shell would.
    - `output_file` receives the raw bytes of stdout, then those of stderr (held in a temporary file until
      the command ends).
    """

    kind = "local"

    def __init__(
        self, workspace: Path, spec: SandboxSpec | None = None, *, kill_grace_s: float = KILL_GRACE_S
    ):
        self.workspace = Path(workspace).resolve()
        self.workdir = str(self.workspace)
        self.spec = spec or SandboxSpec()
        self.kill_grace_s = kill_grace_s
        self._processes: set[LocalProcess] = set()

    def __repr__(self) -> str:
        return f"LocalSandbox({self.workdir!r})"

    async def __aenter__(self) -> LocalSandbox:
        if not self.workspace.is_dir():
            raise SandboxError(
                f"workspace {self.workdir} is not a directory; create it before opening the sandbox"
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._processes:
            await _uncancellable(asyncio.gather(*(p.stop(self.kill_grace_s) for p in list(self._processes))))

    async def exec(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 60.0,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        stdin: str | None = None,
        output_file: Path | None = None,
    ) -> ExecResult:
        argv = _argv(command)
        run_cwd = self._host_path(cwd, "cwd", must_be_dir=True)
        run_env = self._environment(env)
        keep = max(output_cap, 1)
        with contextlib.ExitStack() as files:
            out_sink: IO[bytes] | None = None
            err_sink: IO[bytes] | None = None
            if output_file is not None:
                output_file = Path(output_file)
                try:
                    output_file.parent.mkdir(parents=True, exist_ok=True)
                    out_sink = files.enter_context(open(output_file, "wb"))  # noqa: ASYNC230 (local file, no wait)
                    err_sink = files.enter_context(tempfile.TemporaryFile())
                except OSError as exc:
                    raise SandboxError(
                        f"cannot write the full output to {output_file}: {exc.strerror}"
                    ) from exc
            protocol = _ExecProtocol({1: _Capture(keep, out_sink), 2: _Capture(keep, err_sink)})
            start = time.monotonic()
            try:
                transport, _ = await asyncio.get_running_loop().subprocess_exec(
                    lambda: protocol,
                    *argv,
                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=run_cwd,
                    env=run_env,
                    start_new_session=True,
                )
            except (OSError, ValueError) as exc:
                return _not_started(argv, exc, time.monotonic() - start)
            pgid = transport.get_pid()
            timed_out = False
            try:
                if stdin is not None:
                    pipe = transport.get_pipe_transport(0)
                    assert isinstance(pipe, asyncio.WriteTransport)  # stdin=PIPE: fd 0 is a write pipe
                    pipe.write(stdin.encode())
                    pipe.write_eof()
                try:
                    async with asyncio.timeout(timeout):
                        await protocol.exited.wait()
                except TimeoutError:
                    timed_out = True
                    await _terminate(pgid, protocol.exited, self.kill_grace_s)
                else:
                    killpg(pgid, signal.SIGKILL)  # what the command left behind in its group
                await _wait(protocol.drained, PIPE_DRAIN_S)
            except BaseException:
                await _uncancellable(_terminate(pgid, protocol.exited, self.kill_grace_s))
                raise
            finally:
                transport.close()
            duration = time.monotonic() - start
            out, err = protocol.captures[1], protocol.captures[2]
            out.finish()
            err.finish()
            if err_sink is not None and out_sink is not None and out.error is None:
                try:
                    err_sink.seek(0)
                    shutil.copyfileobj(err_sink, out_sink)
                except OSError as exc:
                    out.error = exc
            for capture in (out, err):
                if capture.error is not None:
                    raise SandboxError(
                        f"cannot write the full output to {output_file}: {capture.error}; the command ran"
                    )
        return ExecResult(
            exit_code=None if timed_out else transport.get_returncode(),
            stdout=out.render(output_cap),
            stderr=err.render(output_cap),
            duration_s=duration,
            timed_out=timed_out,
            stdout_chars=out.chars,
            stderr_chars=err.chars,
            output_path=output_file,
        )

    async def spawn(
        self, command: str | Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> LocalProcess:
        argv = _argv(command)
        run_cwd = self._host_path(cwd, "cwd", must_be_dir=True)
        protocol = _SpawnProtocol()
        try:
            transport, _ = await asyncio.get_running_loop().subprocess_exec(
                lambda: protocol,
                *argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=run_cwd,
                env=self._environment(env),
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise SandboxError(f"cannot start {argv[0]!r}: {reason}") from exc
        process = LocalProcess(transport, protocol, self._processes)
        self._processes.add(process)
        return process

    async def copy_in(self, source: Path, dest: str) -> None:
        """A folder becomes `dest` (merged into it if it exists); a file lands at `dest`, or inside it if it is
        a folder. Parent folders are created."""
        target = Path(self._host_path(dest, "copy destination"))
        await asyncio.to_thread(copy_on_host, Path(source), target)

    async def copy_out(self, source: str, dest: Path) -> None:
        """Same rules as `copy_in`, the other way; symbolic links are copied as links, never followed."""
        origin = Path(self._host_path(source, "copy source"))
        await asyncio.to_thread(copy_on_host, origin, Path(dest))

    def _host_path(self, path: str | None, what: str, *, must_be_dir: bool = False) -> str:
        if path is None:
            return self.workdir
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.workspace / candidate
        real = candidate.resolve()
        if not real.is_relative_to(self.workspace):
            raise SandboxError(
                f"{what} {path!r} is outside the workspace {self.workdir}; use a path inside it"
            )
        if must_be_dir and not real.is_dir():
            raise SandboxError(
                f"{what} {path!r} is not an existing directory in the workspace {self.workdir}"
            )
        return str(real)

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = {name: os.environ[name] for name in self.spec.env_passthrough if name in os.environ}
        merged.update(self.spec.env)
        if env:
            merged.update(env)
        return merged


class LocalProcess:
    """A command started by `LocalSandbox.spawn`: stdout and stderr go, interleaved, into a bounded buffer."""

    def __init__(
        self, transport: asyncio.SubprocessTransport, protocol: _SpawnProtocol, registry: set[LocalProcess]
    ):
        self._transport = transport
        self._protocol = protocol
        self._registry = registry  # the sandbox's set of processes to stop on exit
        self.pid: int = transport.get_pid()

    def __repr__(self) -> str:
        return f"LocalProcess(pid={self.pid}, returncode={self.returncode})"

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode()

    async def read(self, max_chars: int = DEFAULT_OUTPUT_CAP) -> str:
        """Output since the last read; when it exceeds `max_chars`, the middle is replaced by a note saying how
        many characters were elided (also those dropped from the buffer before this read)."""
        capture = self._protocol.output
        text = capture.render(max_chars)
        capture.clear()
        return text

    async def write(self, data: str) -> None:
        pipe = self._transport.get_pipe_transport(0)
        if self.returncode is not None or pipe is None or pipe.is_closing():
            raise SandboxError(
                f"process {self.pid} has exited or closed its input (exit code {self.returncode})"
            )
        assert isinstance(pipe, asyncio.WriteTransport)  # spawned with stdin=PIPE: fd 0 is a write pipe
        pipe.write(data.encode())

    async def stop(self, grace_s: float = 2.0) -> int | None:
        await _uncancellable(self._stop(grace_s))
        return self.returncode

    async def _stop(self, grace_s: float) -> None:
        await _terminate(self.pid, self._protocol.exited, grace_s)
        await _wait(self._protocol.drained, PIPE_DRAIN_S)
        self._transport.close()
        self._registry.discard(self)


class _Capture:
    """Decodes a byte stream as UTF-8 and keeps its first and last `keep` characters; counts them all.

    `sink`, when given, receives every byte, so the full output lives on disk and never in memory.
    """

    def __init__(self, keep: int, sink: IO[bytes] | None = None):
        self.keep = keep
        self.sink = sink
        self.error: OSError | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.clear()

    def clear(self) -> None:
        self.chars = 0
        self.head = ""
        self._tail: list[str] = []
        self._tail_chars = 0

    def feed(self, data: bytes) -> None:
        if self.sink is not None:
            try:
                self.sink.write(data)
            except OSError as exc:  # a full disk must not stop the command or the capture
                self.error, self.sink = exc, None
        self._add(self._decoder.decode(data))

    def finish(self) -> None:
        self._add(self._decoder.decode(b"", final=True))

    def _add(self, text: str) -> None:
        if not text:
            return
        self.chars += len(text)
        if len(self.head) < self.keep:
            self.head += text[: self.keep - len(self.head)]
        piece = text[-self.keep :]
        self._tail.append(piece)
        self._tail_chars += len(piece)
        if self._tail_chars > 2 * self.keep:  # compact now and then: amortised constant work per character
            joined = "".join(self._tail)[-self.keep :]
            self._tail, self._tail_chars = [joined], len(joined)

    def render(self, cap: int) -> str:
        """What `elide(full_text, cap)` would give, from the head and tail alone."""
        tail = "".join(self._tail)[-self.keep :]
        missing = self.chars - len(self.head) - len(tail)
        if missing <= 0:  # head and tail overlap or touch: together they are the whole text
            return elide(self.head + tail[len(tail) - (self.chars - len(self.head)) :], cap)
        half = max(cap // 2, 1)
        head, tail = self.head[:half], tail[-half:]
        return f"{head}\n[... {self.chars - len(head) - len(tail)} characters elided ...]\n{tail}"


class _ExecProtocol(asyncio.SubprocessProtocol):
    def __init__(self, captures: dict[int, _Capture]):
        self.captures = captures
        self.exited = asyncio.Event()
        self.drained = asyncio.Event()
        self._open = set(captures)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.captures[fd].feed(data)  # type: ignore[arg-type]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open:
            self.drained.set()

    def process_exited(self) -> None:
        self.exited.set()


class _SpawnProtocol(_ExecProtocol):
    def __init__(self) -> None:
        super().__init__({1: _Capture(SPAWN_BUFFER_CHARS)})
        self.output = self.captures[1]


def _argv(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    argv = [str(part) for part in command]
    if not argv:
        raise SandboxError("empty command: give a string for sh -c or a non-empty argv")
    return argv


def _not_started(argv: list[str], exc: OSError | ValueError, duration: float) -> ExecResult:
    """An argv that cannot be executed fails like it would under a shell; anything else is the sandbox's fault."""
    if isinstance(exc, FileNotFoundError | PermissionError):
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"{argv[0]}: {exc.strerror}\n"
        return ExecResult(code, "", message, duration, stderr_chars=len(message))
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    raise SandboxError(f"cannot start {argv[0]!r}: {reason}") from exc


def killpg(pgid: int, sig: int) -> None:
    """Signal a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether the group has a member that is not a zombie.

    Zombies count as members until reaped, and orphans are reaped by PID 1, which in some containers never
    happens; on Linux /proc tells the living from the dead.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:  # noqa: ASYNC230 (procfs, no wait)
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
            if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                return True
    return False


async def _terminate(pgid: int, exited: asyncio.Event, grace_s: float) -> None:
    """SIGTERM the group, give its members `grace_s` to leave, SIGKILL the rest; waits for the leader's exit."""
    killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    # Polling: nothing signals the end of a process group whose members are not our children.
    while time.monotonic() < deadline and (not exited.is_set() or _group_alive(pgid)):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    killpg(pgid, signal.SIGKILL)
    await exited.wait()


async def _wait(event: asyncio.Event, limit: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await event.wait()


async def _uncancellable(cleanup: Awaitable[T]) -> T:
    """Run cleanup to its end even if the caller is cancelled meanwhile; then let the cancellation through."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation wins
        raise asyncio.CancelledError
    return task.result()


def copy_on_host(source: Path, target: Path) -> None:
    """Copy a file, folder or symlink between host paths (both already confined by the caller)."""
    try:
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            return
        if not source.exists() and not source.is_symlink():
            raise SandboxError(f"cannot copy {source}: it does not exist")
        if target.is_dir():
            target = target / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    except (OSError, shutil.Error) as exc:
        raise SandboxError(f"cannot copy {source} to {target}: {exc}") from exc
