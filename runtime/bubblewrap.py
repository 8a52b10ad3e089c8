"""The bubblewrap sandbox: every command runs in fresh Linux namespaces made by `bwrap`.

The host's system folders are mounted read-only, the workspace read-write at `spec.workdir`, and nothing else
is writable but a per-command /tmp; no network unless the spec asks. The sandbox's PID namespace ends with its
command, so nothing a command starts outlives it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import anyio
import anyio.abc

from agent.runtime._sandbox_agent import OutputCapture
from agent.runtime.local import copy_on_host, killpg
from agent.runtime.sandbox import DEFAULT_OUTPUT_CAP, ExecResult, SandboxError, SandboxSpec

KILL_GRACE_S = 1.0
"""Seconds between SIGTERM and SIGKILL when a timeout or a cancellation ends a command."""
SPAWN_BUFFER_CHARS = 1_000_000
"""Output of a spawned process kept between two reads (head and tail, this many characters each)."""
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
"""Host folders mounted read-only (symbolic links among them, as on merged-/usr systems, stay links)."""
DEFAULT_HOME = "/tmp/home"
"""HOME inside the sandbox: the host's home is not mounted."""

_USERNS_HINT = (
    "enable unprivileged user namespaces (`sudo sysctl -w kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04 "
    "and later `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), or use the docker backend"
)
_probed: dict[str, str | None] = {}  # bwrap path -> None when it works, else why not


class BubblewrapSandbox:
    """Runs each command under `bwrap` in new namespaces (all of them; the network's too unless `spec.network`).

    - Mounts: the host's /usr, /bin, /sbin, /lib*, /etc read-only, a fresh /proc, /dev and /tmp, and the
      workspace read-write at `spec.workdir`; the root itself is read-only. Capabilities are dropped,
      `--die-with-parent` ties the sandbox to this process, `--new-session` detaches it from the terminal.
    - Environment: the host variables named in `spec.env_passthrough`, then `spec.env`, then the call's `env`;
      HOME is /tmp/home (empty for each command) unless `spec.env` sets it.
    - `cwd` and the sandbox side of `copy_in`/`copy_out` are paths as commands see them, relative ones taken
      from `workdir`; copies must stay inside the workspace (the rest is read-only or per-command).
    - A timeout, a cancellation or `stop` SIGTERMs every process in the sandbox, then SIGKILLs bwrap after
      `kill_grace_s`, which takes the whole PID namespace down with it.
    """

    kind = "bubblewrap"

    def __init__(
        self, workspace: Path, spec: SandboxSpec | None = None, *, kill_grace_s: float = KILL_GRACE_S
    ):
        self.workspace = Path(workspace).resolve()
        self.spec = spec or SandboxSpec(kind="bubblewrap")
        self.workdir = self.spec.workdir
        self.kill_grace_s = kill_grace_s
        self._bwrap: str | None = None
        self._prefix: list[str] = []
        self._processes: set[BubblewrapProcess] = set()

    def __repr__(self) -> str:
        return f"BubblewrapSandbox({str(self.workspace)!r})"

    async def __aenter__(self) -> BubblewrapSandbox:
        if not self.workspace.is_dir():
            raise SandboxError(
                f"workspace {self.workspace} is not a directory; create it before opening the sandbox"
            )
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError(
                "bubblewrap is not installed (no `bwrap` on PATH): `sudo apt-get install bubblewrap` "
                "(Fedora: dnf install bubblewrap), or use the docker backend"
            )
        self._bwrap = bwrap
        self._prefix = self._mount_arguments()
        if bwrap not in _probed:
            _probed[bwrap] = await anyio.to_thread.run_sync(self._probe)
        if _probed[bwrap] is not None:
            raise SandboxError(_probed[bwrap])
        return self

    async def __aexit__(self, *exc: object) -> None:
        processes, self._processes = list(self._processes), set()
        with anyio.CancelScope(shield=True):
            for process in processes:
                await process.stop(self.kill_grace_s)

    # --- commands --------------------------------------------------------------------------------------

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
        argv = self._command(command, cwd)
        out, err = OutputCapture(output_cap), OutputCapture(output_cap)
        with contextlib.ExitStack() as files:
            out_sink: IO[bytes] | None = None
            err_sink: IO[bytes] | None = None
            if output_file is not None:
                output_file = Path(output_file)
                try:
                    output_file.parent.mkdir(parents=True, exist_ok=True)
                    out_sink = files.enter_context(open(output_file, "wb"))  # noqa: ASYNC230 (local file)
                    err_sink = files.enter_context(tempfile.TemporaryFile())
                except OSError as exc:
                    raise SandboxError(
                        f"cannot write the full output to {output_file}: {exc.strerror}"
                    ) from exc
            start = time.monotonic()
            process = await anyio.open_process(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._environment(env),
                start_new_session=True,
            )
            timed_out = False
            try:
                with anyio.move_on_after(timeout) as deadline:
                    async with anyio.create_task_group() as tg:
                        assert process.stdout is not None and process.stderr is not None
                        tg.start_soon(_pump, process.stdout, out, out_sink)
                        tg.start_soon(_pump, process.stderr, err, err_sink)
                        if stdin is not None:
                            tg.start_soon(_feed, process, stdin)
                    await process.wait()
                if deadline.cancelled_caught:
                    timed_out = True
                    await _terminate(process, self.kill_grace_s)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _terminate(process, self.kill_grace_s)
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    await process.aclose()
            duration = time.monotonic() - start
            out.feed(b"", final=True)
            err.feed(b"", final=True)
            if out_sink is not None and err_sink is not None:
                try:
                    err_sink.seek(0)
                    shutil.copyfileobj(err_sink, out_sink)
                except OSError as exc:
                    raise SandboxError(
                        f"cannot write the full output to {output_file}: {exc}; the command ran"
                    ) from exc
        if not timed_out and process.returncode == 1 and err.head.startswith("bwrap: "):
            return _bwrap_failure(argv[argv.index("--") + 1], err.head, duration)
        return ExecResult(
            exit_code=None if timed_out else process.returncode,
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
    ) -> BubblewrapProcess:
        argv = self._command(command, cwd)
        try:
            popen = await anyio.to_thread.run_sync(
                lambda: subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=self._environment(env),
                    start_new_session=True,
                )
            )
        except OSError as exc:
            raise SandboxError(f"cannot start bwrap: {exc.strerror or exc}") from exc
        process = BubblewrapProcess(popen)
        self._processes.add(process)
        return process

    # --- files: the workspace is a plain host folder ---------------------------------------------------

    async def copy_in(self, source: Path, dest: str) -> None:
        """A folder becomes `dest` (merged into it if it exists); a file lands at `dest`, or inside it if it is
        a folder. Parent folders are created. `dest` must lie in the workspace."""
        await anyio.to_thread.run_sync(copy_on_host, Path(source), self._host_path(dest, "copy destination"))

    async def copy_out(self, source: str, dest: Path) -> None:
        """Same rules as `copy_in`, the other way; symbolic links are copied as links, never followed."""
        await anyio.to_thread.run_sync(copy_on_host, self._host_path(source, "copy source"), Path(dest))

    # --- internals -------------------------------------------------------------------------------------

    def _mount_arguments(self) -> list[str]:
        assert self._bwrap is not None
        args = [self._bwrap]
        for name in SYSTEM_DIRS:
            path = Path("/", name)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        if self.spec.network and Path("/run/systemd/resolve").is_dir():  # where resolv.conf often points
            args += ["--ro-bind", "/run/systemd/resolve", "/run/systemd/resolve"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", DEFAULT_HOME]
        args += ["--bind", str(self.workspace), self.workdir, "--remount-ro", "/"]
        args += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self.spec.network:
            args.append("--share-net")
        return args

    def _probe(self) -> str | None:
        """None when bwrap can make its namespaces here, else a message saying why not and what to do."""
        try:
            done = subprocess.run(
                [*self._prefix, "--", "true"], capture_output=True, text=True, timeout=30, env={}
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap ({self._bwrap}) does not run: {exc}"
        if done.returncode == 0:
            return None
        detail = done.stderr.strip() or f"exit code {done.returncode}"
        if any(
            word in detail
            for word in ("namespace", "uid map", "Operation not permitted", "Permission denied")
        ):
            return f"bubblewrap cannot create its namespaces here ({detail}); {_USERNS_HINT}"
        return f"bubblewrap fails on this machine: {detail}"

    def _command(self, command: str | Sequence[str], cwd: str | None) -> list[str]:
        if self._bwrap is None:
            raise SandboxError("the bubblewrap sandbox is not open: use it inside `async with`")
        if isinstance(command, str):
            argv = ["/bin/sh", "-c", command]
        else:
            argv = [str(part) for part in command]
            if not argv:
                raise SandboxError("empty command: give a string for sh -c or a non-empty argv")
        return [*self._prefix, "--chdir", self._check_cwd(cwd), "--", *argv]

    def _sandbox_path(self, path: str | None) -> str:
        return posixpath.normpath(posixpath.join(self.workdir, path or "."))

    def _in_workspace(self, inside: str) -> Path | None:
        """The host path of a sandbox path when it lies in the workspace, else None."""
        if inside == self.workdir:
            return self.workspace
        if inside.startswith(self.workdir.rstrip("/") + "/"):
            return self.workspace / inside[len(self.workdir.rstrip("/")) + 1 :]
        return None

    def _check_cwd(self, cwd: str | None) -> str:
        inside = self._sandbox_path(cwd)
        host = self._in_workspace(inside)
        if host is not None:
            exists = host.is_dir()
        else:
            top = inside.split("/")[1] if inside != "/" else ""
            exists = inside in ("/", "/tmp", DEFAULT_HOME) or (top in SYSTEM_DIRS and Path(inside).is_dir())
        if not exists:
            raise SandboxError(f"cwd {cwd!r} is not an existing directory in the sandbox")
        return inside

    def _host_path(self, path: str, what: str) -> Path:
        host = self._in_workspace(self._sandbox_path(path))
        if host is None or not host.resolve().is_relative_to(self.workspace):
            raise SandboxError(
                f"{what} {path!r} is outside the workspace {self.workdir}; only the workspace outlives a command"
            )
        return host

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = {name: os.environ[name] for name in self.spec.env_passthrough if name in os.environ}
        merged["HOME"] = DEFAULT_HOME
        merged.update(self.spec.env)
        if env:
            merged.update(env)
        return merged


class BubblewrapProcess:
    """A command started by `BubblewrapSandbox.spawn`; a thread moves its output into a bounded buffer."""

    def __init__(self, popen: subprocess.Popen[bytes]):
        self._popen = popen
        self.pid = popen.pid  # of the host-side bwrap
        self._lock = threading.Lock()
        self._output = OutputCapture(SPAWN_BUFFER_CHARS)
        self._reader = threading.Thread(target=self._pump, name=f"bwrap-{self.pid}-output", daemon=True)
        self._reader.start()

    def __repr__(self) -> str:
        return f"BubblewrapProcess(pid={self.pid}, returncode={self.returncode})"

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def read(self, max_chars: int = DEFAULT_OUTPUT_CAP) -> str:
        """Output since the last read; beyond `max_chars` the middle is replaced by a note of what was cut."""
        if self._popen.poll() is not None:  # an exited process's last output belongs to this read
            await anyio.to_thread.run_sync(self._reader.join, 2.0)
        with self._lock:
            output, self._output = self._output, OutputCapture(SPAWN_BUFFER_CHARS)
        return output.render(max_chars)

    async def write(self, data: str) -> None:
        stdin = self._popen.stdin
        if self.returncode is not None or stdin is None or stdin.closed:
            raise SandboxError(f"process {self.pid} has exited (exit code {self.returncode})")

        def send() -> None:
            stdin.write(data.encode())
            stdin.flush()

        try:
            await anyio.to_thread.run_sync(send)
        except (BrokenPipeError, ValueError) as exc:
            raise SandboxError(f"process {self.pid} has closed its input") from exc

    async def stop(self, grace_s: float = 2.0) -> int | None:
        with anyio.CancelScope(shield=True):
            if self._popen.poll() is None:
                _signal_sandbox(self.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await anyio.to_thread.run_sync(self._popen.wait, grace_s)
                killpg(self.pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(self._popen.wait)
            await anyio.to_thread.run_sync(self._reader.join, 2.0)
            if self._popen.stdin is not None:
                with contextlib.suppress(OSError):
                    self._popen.stdin.close()
        return self._popen.returncode

    def _pump(self) -> None:
        assert self._popen.stdout is not None
        fd = self._popen.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            with self._lock:
                self._output.feed(data, final=not data)
            if not data:
                break
        self._popen.stdout.close()


async def _pump(stream: anyio.abc.ByteReceiveStream, capture: OutputCapture, sink: IO[bytes] | None) -> None:
    async for chunk in stream:
        capture.feed(chunk)
        if sink is not None:
            sink.write(chunk)


async def _feed(process: anyio.abc.Process, data: str) -> None:
    assert process.stdin is not None
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await process.stdin.send(data.encode())
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await process.stdin.aclose()


async def _terminate(process: anyio.abc.Process, grace_s: float) -> None:
    """SIGTERM everything in the sandbox, SIGKILL bwrap after `grace_s` (its PID namespace dies with it)."""
    if process.returncode is None and _signal_sandbox(process.pid, signal.SIGTERM):
        with anyio.move_on_after(grace_s):
            await process.wait()
    killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _bwrap_failure(program: str, message: str, duration: float) -> ExecResult:
    """bwrap's own failures (exit 1, a `bwrap:` message) are the sandbox's, except a program that cannot be
    executed: that fails as it would under a shell, 127 not found, 126 not executable."""
    for reason, code in (("No such file or directory", 127), ("Permission denied", 126)):
        if message.startswith("bwrap: execvp ") and reason in message:
            text = f"{program}: {reason}\n"
            return ExecResult(code, "", text, duration, stderr_chars=len(text))
    raise SandboxError(f"bubblewrap could not start the command: {message.strip()}")


def _signal_sandbox(bwrap_pid: int, sig: int) -> bool:
    """Send `sig` to every process in the PID namespace that bwrap `bwrap_pid` made, except its init.

    Signalling bwrap itself would not do: it does not forward signals. False when no sandbox was found.
    """
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:  # noqa: ASYNC230 (procfs, no wait)
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    inits = [pid for pid, parent in parents.items() if parent == bwrap_pid]
    if not inits:
        return False
    try:
        namespace = os.readlink(f"/proc/{inits[0]}/ns/pid")
    except OSError:
        return False
    found = False
    for pid in parents:
        if pid == inits[0]:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") == namespace:
                os.kill(pid, sig)
                found = True
    return found
