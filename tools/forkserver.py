"""The fork server: a helper process that has imported the MCP SDK and our servers, and forks a fresh child per
stdio server start, so `python -m agent.servers.files WS` costs a fork instead of a second of imports.

Used only where a child is exactly what the ordinary start would run (`fork_plan`); anything else, and every
failure of the helper, takes the ordinary path. `AGENT_FORKSERVER=0` turns it off.
"""

from __future__ import annotations

import atexit
import codecs
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, NoReturn

ENV_SWITCH = "AGENT_FORKSERVER"
"""`AGENT_FORKSERVER=0` in the agent's environment: every server starts the ordinary way."""
ALLOWED_MODULES: set[str] = set()
"""Modules besides `agent.servers.<name>` that may be started through the fork server (`python -m <module>`)."""
PRELOAD = ("agent.servers.files", "agent.servers.shell", "agent.servers._stdio_pipes", "agent.runtime.local",
           "anyio._backends._asyncio")
"""Imported by the fork server before it forks: what our servers import at start-up (the MCP SDK among it)."""

_SERVER_MODULE = re.compile(r"agent\.servers\.[a-z][a-z0-9_]*")
_MAX_MESSAGE = 1 << 20
_BOOT_LIMIT_S = 30.0
"""A fork server not ready this long after its start is given up."""
_REPLY_TIMEOUT_S = 10.0
_MAX_FAILURES = 3
"""After this many fork servers of one agent process died or failed to start, servers start the ordinary way."""
# As the MCP SDK's stdio shutdown: grace after stdin closes, then SIGTERM to the group, then SIGKILL.
_STDIN_CLOSE_GRACE_S = 2.0
_TERM_GRACE_S = 2.0
_KILL_REAP_S = 2.0
_WRITER_FLUSH_S = 0.5
_EXIT_AFTER_EOF_S = 0.5
"""After stdout closed, how long the transport waits for the exit (and its code) before reporting the close."""


def enabled() -> bool:
    """Whether the fork server may be used at all: the switch, and the kernel features it needs (Linux)."""
    return (os.environ.get(ENV_SWITCH, "1").strip() != "0" and sys.platform == "linux"
            and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal") and hasattr(socket, "send_fds"))


# -- which starts may fork ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForkPlan:
    """A stdio server start the fork server can do: `executable -m module *args` in `cwd` with `env`."""

    executable: str
    command: str
    module: str
    args: list[str]
    cwd: str
    env: dict[str, str]


def fork_plan(command: str, args: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> ForkPlan | None:
    """The plan for starting `command args` (in `cwd`, with exactly `env`) through the fork server, or None when
    that would not be exactly the ordinary start: another interpreter, interpreter options, a module that is not
    ours (nor on `ALLOWED_MODULES`), or a shell server on a sandbox other than `local`."""
    if len(args) < 2 or args[0] != "-m" or not (_SERVER_MODULE.fullmatch(args[1]) or args[1] in ALLOWED_MODULES):
        return None
    if args[1] == "agent.servers.shell" and not _local_sandbox(args[2:]):
        return None  # docker and bubblewrap runs cost seconds anyway; keep them on the path they were tested on
    directory = os.path.abspath(cwd) if cwd is not None else os.getcwd()
    executable = _this_interpreter(command, directory, env)
    if executable is None:
        return None
    return ForkPlan(executable=executable, command=command, module=args[1], args=list(args[2:]), cwd=directory,
                    env=dict(env))


def _this_interpreter(command: str, cwd: str, env: Mapping[str, str]) -> str | None:
    """The path `command` runs if it is this interpreter (the same file, in the same folder: a venv's python and
    python3), else None."""
    if os.sep in command:
        path: str | None = os.path.join(cwd, command)
    else:
        search = env.get("PATH") or os.defpath
        if any(not os.path.isabs(entry) for entry in search.split(os.pathsep)):
            return None  # relative PATH entries are looked up from the child's cwd; not worth modelling
        path = shutil.which(command, path=search)
    if path is None:
        return None
    path = os.path.abspath(path)
    if path == sys.executable:
        return path
    try:
        same = os.path.dirname(path) == os.path.dirname(sys.executable) and os.path.samefile(path, sys.executable)
    except OSError:
        return None
    return path if same else None


def _local_sandbox(args: Sequence[str]) -> bool:
    """Whether a shell server's arguments leave it on the local sandbox (abbreviations count as another one)."""
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if arg == "--sandbox":
            value = args[i + 1] if i + 1 < len(args) else ""
        elif name != "--sandbox":
            if len(name) > 3 and "--sandbox".startswith(name):
                return False
            continue
        if value != "local":
            return False
    return True


def _startup_view(env: Mapping[str, str]) -> dict[str, str]:
    """The variables the interpreter reads while it starts (before any module of a server runs)."""
    return {k: v for k, v in env.items()
            if k.startswith(("PYTHON", "LC_")) or k in ("LANG", "LANGUAGE", "HOME", "TZ", "__PYVENV_LAUNCHER__")}


# -- the agent's side -------------------------------------------------------------------------------------


class ForkedProcess:
    """A server child of the fork server, as its supervisor holds it: stdin and stdout pipes, a pidfd to
    signal it, and the exit code the fork server reports (None while it runs, or when the fork server died
    before it could report)."""

    def __init__(self, pid: int, pidfd: int, stdin: int, stdout: int, status: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.exited = False
        self._pidfd, self._stdin, self._stdout, self._status = pidfd, stdin, stdout, status
        for fd in (stdin, stdout, status):
            os.set_blocking(fd, False)
        self._exit_event: Any = None

    # exit ---------------------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Follow the child until it exits; one task per process (the fork server writes the code, or dies)."""
        import anyio

        self._exit_event = self._exit_event or anyio.Event()
        try:
            await anyio.wait_readable(self._status)
            data = _read_ready(self._status)
            if data:
                self.returncode = int(data.split()[0])
            else:  # the fork server went away: the code is lost, the exit is still seen
                await anyio.wait_readable(self._pidfd)
        except (OSError, ValueError, anyio.ClosedResourceError):
            return
        self.exited = True
        self._exit_event.set()

    async def wait(self, timeout: float) -> bool:
        """Whether the child exited within `timeout` seconds (needs `watch` running)."""
        import anyio

        if self.exited:
            return True
        self._exit_event = self._exit_event or anyio.Event()
        with anyio.move_on_after(timeout):
            await self._exit_event.wait()
        return self.exited

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the child itself (through its pidfd: never to a process that reused the pid)."""
        with suppress(OSError):
            signal.pidfd_send_signal(self._pidfd, signum)

    def signal_group(self, signum: int) -> bool:
        """Send `signum` to the child's process group (its session: it may have started processes); False when
        the group is gone."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    # pipes --------------------------------------------------------------------------------------------

    async def read(self) -> bytes:
        """The next chunk of the child's stdout; b"" at its end."""
        import anyio

        while True:
            try:
                data = os.read(self._stdout, 1 << 16)
            except BlockingIOError:
                await anyio.wait_readable(self._stdout)
                continue
            except OSError:
                if self._stdout < 0:
                    raise anyio.ClosedResourceError from None
                raise
            await anyio.lowlevel.checkpoint()
            return data

    async def write(self, data: bytes) -> None:
        import anyio

        view = memoryview(data)
        while view:
            if self._stdin < 0:
                raise anyio.ClosedResourceError
            try:
                view = view[os.write(self._stdin, view):]
            except BlockingIOError:
                await anyio.wait_writable(self._stdin)

    def close_stdin(self) -> None:
        self._stdin = _close_watched(self._stdin)

    def close_stdout(self) -> None:
        self._stdout = _close_watched(self._stdout)

    # stop ---------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """As the MCP SDK stops a stdio server: close stdin, wait, SIGTERM the group, wait, SIGKILL it."""
        import anyio

        self.close_stdin()
        if not await self.wait(_STDIN_CLOSE_GRACE_S):
            if self.signal_group(signal.SIGTERM):
                with anyio.move_on_after(_TERM_GRACE_S):
                    await self.wait(_TERM_GRACE_S)
                    # The rest of its group: nothing tells when that is gone.
                    while _group_alive(self.pid):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
            self.signal_group(signal.SIGKILL)
            self.send_signal(signal.SIGKILL)
            await self.wait(_KILL_REAP_S)
        self.close_stdout()

    def close(self) -> None:
        """Kill the child's group if it still runs, and close every descriptor (the last owner's safety net)."""
        if not self.exited and self._pidfd >= 0 and not _readable(self._pidfd):
            self.signal_group(signal.SIGKILL)
            self.send_signal(signal.SIGKILL)
        self.close_stdin()
        self.close_stdout()
        self._status = _close_watched(self._status)
        self._pidfd = _close_watched(self._pidfd)


def _readable(fd: int, timeout_ms: int = 0) -> bool:
    poller = select.poll()  # not select(): an agent process may hold more than 1024 descriptors
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout_ms))


def _read_ready(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 64)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _close_watched(fd: int) -> int:
    """Close `fd`, waking any task waiting on it; returns -1 (the closed marker)."""
    if fd >= 0:
        try:
            import anyio

            anyio.notify_closing(fd)
        except Exception:
            pass  # no event loop here, or nothing waits on it
        with suppress(OSError):
            os.close(fd)
    return -1


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class ForkServer:
    """One fork server process, started on the first request, used by every hub of this process.

    Requests are blocking and serialised by a lock (call them in a worker thread); each returns None where the
    fork server cannot serve it (not started in time, died, or refused), and the caller starts the server the
    ordinary way.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._env: dict[str, str] = {}
        self._ready = False
        self._started_at = 0.0
        self._boots = 0
        self._failures = 0

    @property
    def pid(self) -> int | None:
        """The fork server's process id while one runs."""
        return self._proc.pid if self._proc is not None else None

    def spawn(self, plan: ForkPlan, stderr_fd: int, timeout: float) -> ForkedProcess | None:
        """Fork a child that runs `plan`, its stderr on `stderr_fd`; None: start it the ordinary way instead."""
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            return None
        try:
            if not self._started(deadline):
                return None
            if _startup_view(plan.env) != _startup_view(self._env):
                return None  # the interpreter would start differently
            return self._request(plan, stderr_fd)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop the fork server (its children go on: each is owned by its supervisor)."""
        with self._lock:
            self._retire()

    # -- internals (under the lock) -------------------------------------------------------------------

    def _started(self, deadline: float) -> bool:
        if self._proc is None:
            if self._failures >= _MAX_FAILURES:
                return False
            self._boot()
        if self._ready:
            return True
        assert self._sock is not None
        wait = min(deadline, self._started_at + _BOOT_LIMIT_S) - time.monotonic()
        try:
            self._sock.settimeout(max(0.001, wait))
            message = self._sock.recv(_MAX_MESSAGE)
        except TimeoutError:
            if time.monotonic() >= self._started_at + _BOOT_LIMIT_S:
                self._failed()
            return False
        except OSError:
            self._failed()
            return False
        if not message or json.loads(message).get("ready") is not True:
            self._failed()
            return False
        self._ready = True
        return True

    def _boot(self) -> None:
        from mcp.client.stdio import get_default_environment

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The minimal environment every stdio server gets by default: the fork server holds no credentials.
        self._env = get_default_environment()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "agent.tools.forkserver", str(theirs.fileno()), str(os.getpid())],
                env=self._env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), start_new_session=True,
            )
        except OSError:
            ours.close()
            self._failures += 1
            return
        finally:
            theirs.close()
        self._sock, self._ready, self._started_at = ours, False, time.monotonic()
        self._boots += 1
        if self._boots == 1:
            atexit.register(self.close)

    def _request(self, plan: ForkPlan, stderr_fd: int) -> ForkedProcess | None:
        assert self._sock is not None
        request = {"module": plan.module, "args": plan.args, "cwd": plan.cwd, "env": plan.env,
                   "executable": plan.executable, "orig_argv": [plan.command, "-m", plan.module, *plan.args]}
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        status_r, status_w = os.pipe()
        ours, pidfds = [stdin_w, stdout_r, status_r], list[int]()
        try:
            self._sock.settimeout(_REPLY_TIMEOUT_S)
            socket.send_fds(self._sock, [json.dumps(request).encode()], [stdin_r, stdout_w, stderr_fd, status_w])
            data, pidfds, _, _ = socket.recv_fds(self._sock, _MAX_MESSAGE, 1)
            reply = json.loads(data) if data else {}
        except (OSError, ValueError):
            reply = {}
        finally:
            for fd in (stdin_r, stdout_w, status_w):
                os.close(fd)
        if "pid" in reply and len(pidfds) == 1:
            return ForkedProcess(reply["pid"], pidfds[0], stdin_w, stdout_r, status_r)
        for fd in [*ours, *pidfds]:
            os.close(fd)
        if reply.get("refused"):
            if reply.get("stale"):
                self._retire()  # our modules changed on disk: the next start boots a fresh fork server
            return None
        self._failed()  # no answer, or a broken one: it died, or cannot be trusted to answer in turn
        return None

    def _failed(self) -> None:
        self._failures += 1
        self._retire()

    def _retire(self) -> None:
        sock, proc, self._sock, self._proc, self._ready = self._sock, self._proc, None, None, False
        if sock is not None:
            sock.close()  # its end of file: the fork server exits
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_shared: ForkServer | None = None
_shared_owner = 0
_shared_lock = threading.Lock()


def shared() -> ForkServer:
    """This process's fork server (a forked copy of the agent gets its own)."""
    global _shared, _shared_owner
    with _shared_lock:
        if _shared is None or _shared_owner != os.getpid():
            _shared, _shared_owner = ForkServer(), os.getpid()
        return _shared


async def spawn(plan: ForkPlan, stderr_fd: int, timeout: float) -> ForkedProcess | None:
    """`shared().spawn(...)` in a worker thread; a child forked for a caller cancelled meanwhile is killed."""
    import anyio

    got: list[ForkedProcess | None] = []
    try:
        await anyio.to_thread.run_sync(lambda: got.append(shared().spawn(plan, stderr_fd, timeout)))
    except BaseException:
        if got and got[0] is not None:
            got[0].close()
        raise
    return got[0]


@asynccontextmanager
async def forked_stdio_client(process: ForkedProcess, *, errors: str = "replace") -> AsyncIterator[tuple[Any, Any]]:
    """The MCP SDK's stdio transport over a forked child: newline-delimited JSON-RPC on its pipes, the same
    shutdown sequence (close stdin, wait, SIGTERM the group, SIGKILL), the child's exit code in `returncode`."""
    import anyio
    import anyio.lowlevel
    import mcp.types as types
    from mcp.shared.message import SessionMessage

    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    writer_done = anyio.Event()

    def parse(line: str) -> SessionMessage | Exception:
        try:
            return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
        except ValueError as exc:
            return exc

    async def stdout_reader() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors)
        buffer, delivering = "", True
        try:
            async with read_writer:
                while chunk := await process.read():
                    if not delivering:
                        continue  # the session is gone: drain, so that a chatty child can still exit
                    lines = (buffer + decoder.decode(chunk)).split("\n")
                    buffer = lines.pop()
                    for line in lines:
                        try:
                            await read_writer.send(parse(line))
                        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                            delivering = False
                            break
                # Its stdout ended, most likely because it exited: have the code before the session hears of it.
                await process.wait(_EXIT_AFTER_EOF_S)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass

    async def stdin_writer() -> None:
        try:
            async with write_reader:
                async for message in write_reader:
                    json_text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.write((json_text + "\n").encode("utf-8", errors))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()  # the child may live on: the session must see the connection end
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(process.watch)
        tg.start_soon(stdout_reader)
        tg.start_soon(stdin_writer)
        try:
            yield read_stream, write_stream
        finally:
            # Shielded and bounded, as the SDK's: a cancelled caller must not leave the child running.
            with anyio.CancelScope(shield=True):
                read_stream.close()
                write_stream.close()
                with anyio.move_on_after(_WRITER_FLUSH_S):
                    await writer_done.wait()
                await process.stop()
                for stream in (read_writer, write_reader):
                    await stream.aclose()
            tg.cancel_scope.cancel()


# -- the fork server's side ---------------------------------------------------------------------------------


class _Zygote:
    """The fork server: preloads, then forks one child per request and reports each child's exit code."""

    def __init__(self, sock: socket.socket, parent: int) -> None:
        self.sock = sock
        self.parent = parent
        self.children: dict[int, tuple[int, int]] = {}
        """pidfd -> (pid, status pipe)"""
        self.polled: set[int] = set()
        # What the interpreter's start-up set up, to give each child the same: signal dispositions, and what
        # start-up changed in the environment it was given (PEP 538 adds LC_CTYPE to a C locale's).
        self.signals = {sig: signal.getsignal(sig) for sig in signal.valid_signals()}
        with open("/proc/self/environ", "rb") as f:
            given = dict(item.decode("utf-8", "surrogateescape").partition("=")[::2]
                         for item in f.read().split(b"\0") if item)
        self.startup_env = {k: v for k, v in os.environ.items() if given.get(k) != v}
        import importlib.machinery
        import logging

        for name in (*PRELOAD, "random", "runpy", "traceback", "types", "io"):  # what a child needs, loaded once
            __import__(name)
        self.tops = {name.partition(".")[0] for name in sys.modules}
        self.suffixes = importlib.machinery.all_suffixes()
        self.files = _module_files()
        self.handlers = {name: list(logger.handlers) for name, logger in
                         [("", logging.getLogger()), *logging.Logger.manager.loggerDict.items()]
                         if isinstance(logger, logging.Logger)}

    def serve(self) -> NoReturn:
        self.sock.send(json.dumps({"ready": True}).encode())
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        while True:
            for pidfd in self.children.keys() - self.polled:
                poller.register(pidfd, select.POLLIN)
                self.polled.add(pidfd)
            ready = [fd for fd, _ in poller.poll(1000)]
            if os.getppid() != self.parent:
                os._exit(0)  # the agent died without closing its end (its end leaked into another process)
            for pidfd in ready:
                if pidfd in self.children:
                    poller.unregister(pidfd)
                    self.polled.discard(pidfd)
                    self._reap(pidfd)
            if self.sock.fileno() in ready:
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, _MAX_MESSAGE, 8)
                except OSError:
                    os._exit(0)
                if not data:
                    os._exit(0)  # the agent closed its end, or exited
                self._handle(data, fds)

    def _reap(self, pidfd: int) -> None:
        pid, status = self.children.pop(pidfd)
        try:
            _, code = os.waitpid(pid, 0)
            with suppress(OSError):
                os.write(status, b"%d\n" % os.waitstatus_to_exitcode(code))
        except ChildProcessError:
            pass
        os.close(status)
        os.close(pidfd)

    def _handle(self, data: bytes, fds: list[int]) -> None:
        try:
            request = json.loads(data)
            if len(fds) != 4:
                raise ValueError("expected 4 descriptors")
        except ValueError:
            for fd in fds:
                os.close(fd)
            self.sock.send(json.dumps({"refused": "bad request"}).encode())
            return
        refusal = self._refusal(request)
        if refusal is not None:
            for fd in fds:
                os.close(fd)
            self.sock.send(json.dumps({"refused": refusal, "stale": refusal == "stale"}).encode())
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become(request, fds)
        for fd in fds[:3]:
            os.close(fd)
        pidfd = os.pidfd_open(pid)  # before any reaping: it names this child and no other
        self.children[pidfd] = (pid, fds[3])
        try:
            socket.send_fds(self.sock, [json.dumps({"pid": pid}).encode()], [pidfd])
        except OSError:
            os._exit(0)  # the agent is gone; the child gets the end of its stdin

    def _refusal(self, request: dict[str, Any]) -> str | None:
        if threading.active_count() != 1:
            return "threads"
        if any(_mtime(path) != mtime for path, mtime in self.files.items()):
            return "stale"
        cwd = request["cwd"]
        try:
            entries = os.listdir(cwd)
        except OSError:
            return "cwd"
        if any(_shadows(cwd, entry, self.tops, self.suffixes) for entry in entries):
            return "shadowed"  # `python -m` there would import that instead of what this process has loaded
        return None

    def _become(self, request: dict[str, Any], fds: list[int]) -> NoReturn:
        """In the child: become `python -m module args` as the ordinary start would have, run it, exit."""
        code = 1
        try:
            os.setsid()
            self.sock.close()
            for std, fd in enumerate(fds[:3]):
                os.dup2(fd, std)
            _close_from(3)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            for sig, handler in self.signals.items():
                if handler is not None and signal.getsignal(sig) != handler:
                    with suppress(OSError, ValueError):
                        signal.signal(sig, handler)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update({**request["env"], **self.startup_env})
            time.tzset()
            sys.executable = request["executable"]
            sys.orig_argv[:] = request["orig_argv"]
            sys.argv[:] = ["-m", *request["args"]]
            if not sys.flags.safe_path:
                sys.path[0] = os.getcwd()
            _fresh_stdio()
            import random

            random.seed()
            self._reset_logging()
            code = _run_module(request["module"])
        except BaseException:
            with suppress(BaseException):
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
        finally:
            os._exit(code)

    def _reset_logging(self) -> None:
        import logging

        for name, logger in [("", logging.getLogger()), *logging.Logger.manager.loggerDict.items()]:
            if isinstance(logger, logging.Logger):
                logger.handlers[:] = self.handlers.get(name, [])


def _module_files() -> dict[str, int]:
    """Source files of the loaded modules with their modification times: a change means the child would run
    other code than the ordinary start (which reads the files afresh)."""
    found: dict[str, int] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path not in found:
            found[path] = _mtime(path)
    return found


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _shadows(cwd: str, entry: str, tops: set[str], suffixes: Sequence[str]) -> bool:
    """Whether `entry` in the child's first sys.path folder would be imported in place of a loaded module
    (a folder of that name counts, package or not)."""
    if entry in tops:
        return os.path.isdir(os.path.join(cwd, entry))
    for suffix in suffixes:
        if entry.endswith(suffix) and entry[: -len(suffix)] in tops:
            return True
    return False


def _close_from(low: int) -> None:
    """Close every descriptor from `low` up: the ordinary start gives the child only stdin, stdout, stderr."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= low:
            with suppress(OSError):
                os.close(fd)


def _fresh_stdio() -> None:
    """sys.stdin/stdout/stderr over the child's descriptors, as the interpreter makes them at start-up."""
    import io

    streams = []
    for fd, old, name in ((0, sys.__stdin__, "<stdin>"), (1, sys.__stdout__, "<stdout>"), (2, sys.__stderr__, "<stderr>")):
        assert old is not None
        write = fd != 0
        buffered = not old.write_through
        buffer: Any = open(fd, "wb" if write else "rb", -1 if buffered or not write else 0, closefd=False)
        raw = buffer.raw if hasattr(buffer, "raw") else buffer
        raw.name = name
        line_buffering = old.line_buffering or (buffered and raw.isatty())
        stream = io.TextIOWrapper(buffer, old.encoding, old.errors, "\n", line_buffering, not buffered)
        stream.mode = "w" if write else "r"  # type: ignore[misc]
        streams.append(stream)
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # type: ignore[misc]


def _run_module(module: str) -> int:
    """Run `module` as `python -m` does, and end as the interpreter would: the exit code, after non-daemon
    threads, atexit functions and a flush of stdout and stderr (the rest of a full finalisation is skipped)."""
    import atexit as exits
    import runpy
    import types

    sys.modules.pop(module, None)  # preloaded: `python -m` runs a module that was not imported yet
    package, _, leaf = module.rpartition(".")
    if package and package in sys.modules and hasattr(sys.modules[package], leaf):
        delattr(sys.modules[package], leaf)
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = sys.modules["builtins"]
    main.__dict__["__annotations__"] = {}
    sys.modules["__main__"] = main
    interrupted = False
    try:
        runpy._run_module_as_main(module, True)  # type: ignore[attr-defined]  # what `python -m` calls
        code = 0
    except SystemExit as exc:
        code = _system_exit_code(exc)
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        code, interrupted = 1, isinstance(exc, KeyboardInterrupt)
    with suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads, as at exit
    with suppress(BaseException):
        exits._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            code = 120 if stream is sys.stdout and code == 0 else code
    if interrupted:  # as the interpreter: exit through SIGINT, so that the parent sees the interruption
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    with suppress(BaseException):
        print(exc.code, file=sys.stderr)
    return 1


def _zygote_main(argv: Sequence[str]) -> NoReturn:
    sock = socket.socket(fileno=int(argv[0]))
    sock.setblocking(True)
    _Zygote(sock, int(argv[1])).serve()


if __name__ == "__main__":
    _zygote_main(sys.argv[1:])
