"""The Docker sandbox: one container per sandbox, commands run by a long-lived runner inside it.

The container's main process is `runtime/_sandbox_agent.py` (under docker-init), fed JSON lines over the
attach socket, so a command costs a fork/exec in the container rather than a `docker exec`; when the attach
connection closes (the agent exits or crashes) the runner exits and the daemon removes the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import posixpath
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from agent.runtime.sandbox import DEFAULT_OUTPUT_CAP, ExecResult, SandboxError, SandboxSpec

try:
    import docker
    import docker.errors
    from docker.types import Mount
except ImportError:  # pragma: no cover - docker is a dependency; this keeps the message actionable
    docker = None

LABEL = "agent.sandbox"
"""Every container this module creates carries `agent.sandbox=1`; `prune_containers` removes them all."""
RUN_LABEL = "agent.run"
OWNER_LABEL = "agent.owner"  # "<host>:<pid>" of the agent process that created the container
CREATED_LABEL = "agent.created"
WORKSPACE_LABEL = "agent.workspace"

KILL_GRACE_S = 1.0
"""Seconds between SIGTERM and SIGKILL when a timeout or a cancellation ends a command."""
START_TIMEOUT_S = 60.0
"""How long the runner may take to report ready after the container starts."""
DEFAULT_HOME = "/tmp/home"
"""HOME inside the container (the root file system is read-only; /tmp is a per-container volume)."""

_RUNNER_SOURCE = Path(__file__).with_name("_sandbox_agent.py").read_text()
_BUILD_HINT = (
    "build the default image offline with `sudo debootstrap --variant=minbase --include=python3,git,ca-certificates bookworm "
    "/tmp/rootfs && sudo tar -C /tmp/rootfs -c . | docker import - agent-sandbox:bookworm` (or run "
    ".ci/docker-setup.sh), `docker pull` an image that has python3, or name another image in `sandbox.image`"
)
_START_HINT = (
    "start one with `sudo dockerd &` or `sudo systemctl start docker` (Debian: `sudo apt-get install docker.io`), "
    "and make sure this user may use its socket (the `docker` group) or set DOCKER_HOST"
)
_ncpus: dict[str, int] = {}


def _connect() -> Any:
    """A Docker client that has reached its daemon; SandboxError saying how to start one otherwise."""
    if docker is None:
        raise SandboxError("the Docker sandbox needs the `docker` Python package: pip install docker")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise SandboxError(f"no Docker daemon answers at {where} ({exc}); {_START_HINT}") from exc
    return client


def _owner_alive(owner: str | None) -> bool:
    """Whether the agent process named by an owner label still runs (unknown owners count as alive)."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_containers(*, everything: bool = False) -> list[str]:
    """Remove leftover DockerSandbox containers: those whose agent process on this host has died, or with
    `everything`, every labelled container (live sandboxes of running agents included). Returns their ids.

    Blocking; for leftovers of crashed runs (`agent sandbox prune`). Raises SandboxError without a daemon.
    """
    client = _connect()
    removed = []
    try:
        # The low-level list carries ids and labels in one answer; `containers.list` inspects each container
        # afterwards and fails on one that removed itself in between (auto_remove).
        for container in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
            if not everything and _owner_alive((container.get("Labels") or {}).get(OWNER_LABEL)):
                continue
            if _remove(client, container["Id"]):
                removed.append(container["Id"])
    finally:
        client.close()
    return removed


def _remove(client: Any, container_id: str) -> bool:
    """Force-remove a container with its anonymous volumes and wait until it is gone; False if it was gone."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: the daemon's auto-removal is already under way
            raise SandboxError(
                f"cannot remove container {container_id[:12]}: {exc.explanation or exc}"
            ) from exc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                break
            time.sleep(0.05)
    return True


def _threadsafe_caller() -> Callable[[Callable[[], object]], object]:
    """How a plain thread schedules a callback on the running event loop (asyncio or trio)."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: dict[str, Any] | None = None


class _Channel:
    """JSON lines to the runner's stdin and from its stdout over one attach socket; replies matched by id.

    A plain thread reads the socket (Docker frames stdout and stderr with 8-byte headers when there is no
    TTY) and wakes the waiting task on the event loop; it also applies the runner's unsolicited events.
    """

    READY = 0

    def __init__(self, raw: Any, on_event: Callable[[dict[str, Any]], None]):
        self._raw = raw  # keeps the SDK's response object (and so the connection) alive
        self._sock = getattr(raw, "_sock", raw)
        with contextlib.suppress(AttributeError, OSError):
            self._sock.settimeout(None)  # the SDK leaves its HTTP timeout on the socket
        self._on_event = on_event
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {self.READY: _Pending()}
        self._send_lock = threading.Lock()
        self._stderr: deque[str] = deque(maxlen=40)
        self.failure: str | None = None
        self._call_soon = _threadsafe_caller()
        self._thread = threading.Thread(target=self._read_loop, name="docker-sandbox-reader", daemon=True)
        self._thread.start()

    def next_id(self) -> int:
        return next(self._ids)

    async def ready(self, timeout: float) -> dict[str, Any]:
        return await self._await(self.READY, self._pending[self.READY], timeout)

    async def request(self, message: dict[str, Any], request_id: int | None = None) -> dict[str, Any]:
        request_id = self.next_id() if request_id is None else request_id
        pending = self._pending[request_id] = _Pending()
        await self.send({**message, "id": request_id})
        return await self._await(request_id, pending, None)

    async def _await(self, request_id: int, pending: _Pending, timeout: float | None) -> dict[str, Any]:
        try:
            if self.failure is None:  # checked after registering: a failure wakes only registered waiters
                with anyio.fail_after(timeout):
                    await pending.event.wait()
        finally:
            self._pending.pop(request_id, None)
        if pending.reply is None:
            raise SandboxError(self.failure or "the sandbox's runner did not answer")
        if "error" in pending.reply:
            raise SandboxError(pending.reply["error"])
        return pending.reply

    async def send(self, message: dict[str, Any]) -> None:
        if self.failure is not None:
            raise SandboxError(self.failure)
        data = json.dumps(message).encode() + b"\n"
        try:
            if len(data) > 65536:
                await anyio.to_thread.run_sync(self._send_blocking, data)
            else:
                self._send_blocking(data)
        except OSError as exc:
            raise SandboxError(f"lost the connection to the sandbox container: {exc}") from exc

    def _send_blocking(self, data: bytes) -> None:
        with self._send_lock:
            self._sock.sendall(data)

    def stderr_tail(self) -> str:
        return "".join(self._stderr).strip()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread
        with contextlib.suppress(OSError):
            self._raw.close()

    async def join(self) -> None:
        await anyio.to_thread.run_sync(self._thread.join, 5.0)

    def _read_loop(self) -> None:
        buffer = bytearray()
        lines = bytearray()
        reason = "the sandbox container stopped"
        try:
            while True:
                chunk = self._sock.recv(1 << 18)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= 8:
                    size = int.from_bytes(buffer[4:8], "big")
                    if len(buffer) < 8 + size:
                        break
                    stream, payload = buffer[0], bytes(buffer[8 : 8 + size])
                    del buffer[: 8 + size]
                    if stream == 1:
                        lines += payload
                        *complete, rest = lines.split(b"\n")
                        lines = bytearray(rest)
                        for line in complete:
                            self._dispatch(line)
                    else:
                        self._stderr.append(payload.decode(errors="replace"))
        except OSError as exc:
            reason = f"lost the connection to the sandbox container: {exc}"
        except Exception as exc:  # a bug here must still wake every waiter
            reason = f"the sandbox's reader failed: {exc!r}"
        self._fail(reason)

    def _dispatch(self, line: bytes | bytearray) -> None:
        if not line.strip():
            return
        message = json.loads(line)
        if message.get("event") == "ready":
            self._wake(self.READY, message)
        elif "event" in message:
            self._on_event(message)
        else:
            self._wake(message.get("id"), message)

    def _wake(self, request_id: Any, message: dict[str, Any] | None) -> None:
        pending = self._pending.get(request_id)
        if pending is None:
            return  # its caller was cancelled
        pending.reply = message
        with contextlib.suppress(RuntimeError):  # the event loop is gone
            self._call_soon(pending.event.set)

    def _fail(self, reason: str) -> None:
        stderr = self.stderr_tail()
        self.failure = f"{reason}: {stderr}" if stderr else reason
        for request_id in list(self._pending):
            self._wake(request_id, None)


class DockerProcess:
    """A command started by `DockerSandbox.spawn`; its exit is reported by the runner as it happens."""

    def __init__(self, sandbox: DockerSandbox, pid: int):
        self._sandbox = sandbox
        self.pid = pid
        self._returncode: int | None = None

    def __repr__(self) -> str:
        return f"DockerProcess(pid={self.pid}, returncode={self.returncode})"

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def read(self, max_chars: int = DEFAULT_OUTPUT_CAP) -> str:
        """Output since the last read; beyond `max_chars` the middle is replaced by a note of what was cut."""
        reply = await self._sandbox._channel_or_fail().request(
            {"op": "read", "proc": self.pid, "max": max_chars}
        )
        if reply.get("returncode") is not None:
            self._returncode = reply["returncode"]
        return reply["data"]

    async def write(self, data: str) -> None:
        if self._returncode is not None:
            raise SandboxError(f"process {self.pid} has exited (exit code {self._returncode})")
        await self._sandbox._channel_or_fail().request({"op": "write", "proc": self.pid, "data": data})

    async def stop(self, grace_s: float = 2.0) -> int | None:
        channel = self._sandbox._channel
        if channel is None or channel.failure is not None:
            return self._returncode
        with anyio.CancelScope(shield=True):
            reply = await channel.request({"op": "stop", "proc": self.pid, "grace": grace_s})
        self._returncode = reply["returncode"]
        return self._returncode


class DockerSandbox:
    """Commands run in a container of `spec.image` that lives as long as the `async with` block.

    - The workspace is bind-mounted read-write at `spec.workdir`; the image's root file system is read-only
      (pass `read_only_root=False` to let commands install packages); /tmp is a per-container volume and
      HOME is /tmp/home unless `spec.env` sets it.
    - Network off (`network_mode="none"`) unless `spec.network`; CPU, memory and process limits from the
      spec; commands run as the workspace owner's uid:gid (or `spec.user`), so files they make are the
      caller's.
    - `cwd` and the sandbox side of `copy_in`/`copy_out` are container paths, relative ones taken from
      `workdir`. The environment is the image's, then `spec.env`, then the call's `env`.
    - The image needs python3 (the runner is Python); every container carries the label `agent.sandbox=1`.
    """

    kind = "docker"

    def __init__(
        self,
        workspace: Path,
        spec: SandboxSpec | None = None,
        *,
        read_only_root: bool = True,
        kill_grace_s: float = KILL_GRACE_S,
        start_timeout: float = START_TIMEOUT_S,
    ):
        self.workspace = Path(workspace).resolve()
        self.spec = spec or SandboxSpec(kind="docker")
        self.workdir = self.spec.workdir
        self.read_only_root = read_only_root
        self.kill_grace_s = kill_grace_s
        self.start_timeout = start_timeout
        self.run_id = uuid.uuid4().hex[:16]
        self.container_id: str | None = None
        self._client: Any = None
        self._channel: _Channel | None = None
        self._processes: dict[int, DockerProcess] = {}
        self._user = ""

    def __repr__(self) -> str:
        return f"DockerSandbox({str(self.workspace)!r}, image={self.spec.image!r})"

    async def __aenter__(self) -> DockerSandbox:
        if not self.workspace.is_dir():
            raise SandboxError(
                f"workspace {self.workspace} is not a directory; create it before opening the sandbox"
            )
        try:
            self._client = await anyio.to_thread.run_sync(_connect)
            raw = await anyio.to_thread.run_sync(self._create_and_attach)
            self._channel = _Channel(raw, self._on_event)
            await anyio.to_thread.run_sync(self._client.api.start, self.container_id)
            try:
                await self._channel.ready(self.start_timeout)
            except TimeoutError:
                raise SandboxError(
                    f"the sandbox runner in {self.spec.image!r} did not start within {self.start_timeout:.0f} s"
                ) from None
            except SandboxError as exc:
                raise SandboxError(
                    f"the container of {self.spec.image!r} stopped before its runner started ({exc}); "
                    "the image needs python3 on its PATH"
                ) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._close()

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
        channel = self._channel_or_fail()
        request_id = channel.next_id()
        inside_output, copy_output = self._output_target(output_file, request_id)
        request = {
            "op": "exec",
            "argv": _argv(command),
            "cwd": self._container_path(cwd),
            "env": dict(env or {}),
            "timeout": timeout,
            "grace": self.kill_grace_s,
            "cap": output_cap,
            "stdin": stdin,
            "output_file": inside_output,
        }
        start = time.monotonic()
        try:
            reply = await channel.request(request, request_id)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), contextlib.suppress(SandboxError):
                await channel.send({"op": "kill", "target": request_id, "grace": self.kill_grace_s, "id": -1})
            raise
        duration = time.monotonic() - start
        if copy_output and output_file is not None:
            with anyio.CancelScope(shield=True):
                await self._fetch_output(inside_output, Path(output_file))
        return ExecResult(
            exit_code=reply["exit_code"],
            stdout=reply["stdout"],
            stderr=reply["stderr"],
            duration_s=duration,
            timed_out=reply["timed_out"],
            stdout_chars=reply["stdout_chars"],
            stderr_chars=reply["stderr_chars"],
            output_path=Path(output_file) if output_file is not None else None,
        )

    async def spawn(
        self, command: str | Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> DockerProcess:
        channel = self._channel_or_fail()
        reply = await channel.request(
            {"op": "spawn", "argv": _argv(command), "cwd": self._container_path(cwd), "env": dict(env or {})}
        )
        process = DockerProcess(self, reply["pid"])
        self._processes[process.pid] = process
        return process

    # --- files -----------------------------------------------------------------------------------------

    async def copy_in(self, source: Path, dest: str) -> None:
        """A folder becomes `dest` (merged into it if it exists); a file lands at `dest`, or inside it if it is
        a folder. Parent folders are created. Only the workspace and /tmp are writable by default."""
        self._channel_or_fail()
        source = Path(source)
        if not source.exists() and not source.is_symlink():
            raise SandboxError(f"cannot copy {source}: it does not exist")
        target = self._container_path(dest)
        kind = await self._stat(target)
        if kind == "dir" and not (source.is_dir() and not source.is_symlink()):
            target = posixpath.join(target, source.name)
        parent, name = posixpath.split(target.rstrip("/") or "/")
        if kind is None or kind == "dir":
            await self._make_dirs(parent)
        uid, gid = _numeric_ids(self._user)
        with tempfile.TemporaryFile() as archive:
            await anyio.to_thread.run_sync(_pack, source, name, archive, uid, gid)
            archive.seek(0)
            await self._docker(
                self._client.api.put_archive, self.container_id, parent, archive, what=f"copy to {dest}"
            )

    async def copy_out(self, source: str, dest: Path) -> None:
        """Same rules as `copy_in`, the other way; symbolic links are copied as links, never followed."""
        self._channel_or_fail()
        origin = self._container_path(source)
        dest = Path(dest)
        with tempfile.TemporaryFile() as archive:
            await self._docker(self._fetch_archive, origin, archive, what=f"copy {source}")
            archive.seek(0)
            await anyio.to_thread.run_sync(_unpack, archive, dest)

    # --- internals -------------------------------------------------------------------------------------

    def _channel_or_fail(self) -> _Channel:
        channel = self._channel
        if channel is None:
            raise SandboxError("the Docker sandbox is not running: use it inside `async with`")
        if channel.failure is not None:
            raise SandboxError(channel.failure)
        return channel

    def _create_and_attach(self) -> Any:
        spec = self.spec
        self._user = spec.user or _owner(self.workspace)
        environment = dict(spec.env)
        if self.read_only_root:
            environment.setdefault("HOME", DEFAULT_HOME)
        options: dict[str, Any] = {
            "command": ["python3", "-I", "-u", "-c", _RUNNER_SOURCE],
            "stdin_open": True,
            "detach": False,  # with stdin_open: StdinOnce, the runner's stdin closes with this attach connection
            "tty": False,
            "auto_remove": True,  # a container whose runner exited (agent crashed) removes itself
            "init": True,  # docker-init reaps orphans of daemonised commands
            "labels": {
                LABEL: "1",
                RUN_LABEL: self.run_id,
                OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}",
                CREATED_LABEL: datetime.now(UTC).isoformat(timespec="seconds"),
                WORKSPACE_LABEL: str(self.workspace),
            },
            "network_mode": "bridge" if spec.network else "none",
            "working_dir": self.workdir,
            "user": self._user,
            "environment": environment,
            "mounts": [
                Mount(self.workdir, str(self.workspace), type="bind"),
                Mount("/tmp", None, type="volume"),  # a volume, not tmpfs: docker cp works there
            ],
            "read_only": self.read_only_root,
        }
        if spec.cpus is not None:
            options["nano_cpus"] = int(min(spec.cpus, self._daemon_cpus()) * 1e9)
        if spec.memory is not None:
            options["mem_limit"] = spec.memory
        if spec.pids is not None:
            options["pids_limit"] = spec.pids
        try:
            container = self._client.containers.create(spec.image, **options)
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(f"Docker image {spec.image!r} is not on this machine; {_BUILD_HINT}") from exc
        except docker.errors.APIError as exc:
            raise SandboxError(
                f"cannot create a container of {spec.image!r}: {exc.explanation or exc}"
            ) from exc
        self.container_id = container.id
        return self._client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )

    def _daemon_cpus(self) -> int:
        base = self._client.api.base_url
        if base not in _ncpus:
            _ncpus[base] = int(self._client.info().get("NCPU") or os.cpu_count() or 1)
        return _ncpus[base]

    async def _close(self) -> None:
        """Remove the container (and everything running in it); safe to call at any stage of start-up."""
        client, channel = self._client, self._channel
        self._channel = None
        try:
            if client is not None:
                ids = [self.container_id] if self.container_id else []
                if not ids:  # cancelled while creating: find it by its label
                    found = await anyio.to_thread.run_sync(
                        lambda: client.api.containers(
                            all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"}
                        )
                    )
                    ids = [c["Id"] for c in found]
                for container_id in ids:
                    await anyio.to_thread.run_sync(_remove, client, container_id)
        finally:
            for process in self._processes.values():
                if process._returncode is None:
                    process._returncode = -9
            if channel is not None:
                channel.close()
                await channel.join()
            if client is not None:
                client.close()
            self._client = None

    def _on_event(self, message: dict[str, Any]) -> None:
        # Runs on the reader thread; a plain attribute write needs no event loop.
        if message.get("event") == "exit" and (process := self._processes.get(message["proc"])):
            process._returncode = message["returncode"]

    def _container_path(self, path: str | None) -> str:
        if path is None:
            return self.workdir
        return posixpath.normpath(posixpath.join(self.workdir, str(path)))

    def _output_target(self, output_file: Path | None, request_id: int) -> tuple[str | None, bool]:
        """Where the runner writes the full output, and whether it must be fetched from the container."""
        if output_file is None:
            return None, False
        host = Path(output_file).absolute()
        try:
            host.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SandboxError(f"cannot write the full output to {output_file}: {exc.strerror}") from exc
        if host.resolve().is_relative_to(self.workspace):
            relative = host.resolve().relative_to(self.workspace).as_posix()
            return posixpath.join(self.workdir, relative), False
        return f"/tmp/.agent-output-{self.run_id}-{request_id}", True

    async def _fetch_output(self, inside: str | None, host: Path) -> None:
        assert inside is not None
        try:
            with tempfile.TemporaryFile() as archive:
                await self._docker(self._fetch_archive, inside, archive, what="fetch the full output")
                archive.seek(0)
                await anyio.to_thread.run_sync(_unpack, archive, host)
        finally:
            with contextlib.suppress(SandboxError):
                await self._channel_or_fail().request({"op": "unlink", "path": inside})

    def _fetch_archive(self, path: str, archive: Any) -> None:
        stream, _ = self._client.api.get_archive(self.container_id, path)
        for chunk in stream:
            archive.write(chunk)

    async def _stat(self, path: str) -> str | None:
        """'dir', 'file' or None (missing) for a container path, as the runner's user sees it."""
        return (await self._channel_or_fail().request({"op": "stat", "path": path}))["kind"]

    async def _make_dirs(self, path: str) -> None:
        await self._channel_or_fail().request({"op": "mkdirs", "path": path})

    async def _docker(self, call: Callable[..., Any], *args: Any, what: str) -> Any:
        try:
            return await anyio.to_thread.run_sync(call, *args)
        except docker.errors.NotFound as exc:
            raise SandboxError(f"cannot {what}: {exc.explanation or exc}") from exc
        except docker.errors.APIError as exc:
            detail = exc.explanation or str(exc)
            if "read-only" in detail:
                detail += " (only the workspace and /tmp are writable)"
            raise SandboxError(f"cannot {what}: {detail}") from exc


def _argv(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    argv = [str(part) for part in command]
    if not argv:
        raise SandboxError("empty command: give a string for sh -c or a non-empty argv")
    return argv


def _owner(path: Path) -> str:
    info = path.stat()
    return f"{info.st_uid}:{info.st_gid}"


def _numeric_ids(user: str) -> tuple[int, int]:
    """uid and gid for files copied in; names cannot be resolved from outside, so they become root."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return 0, 0
    return int(uid), int(gid) if gid.isdigit() else int(uid)


def _pack(source: Path, name: str, archive: Any, uid: int, gid: int) -> None:
    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(source, arcname=name, recursive=True, filter=owned)


def _unpack(archive: Any, dest: Path) -> None:
    """Extract a `get_archive` tar (one top entry) so that it becomes `dest`, with `copy_in`'s rules."""
    try:
        with tarfile.open(fileobj=archive, mode="r") as tar:
            members = tar.getmembers()
            if not members:
                raise SandboxError("the container sent an empty archive")
            top = members[0].name.split("/")[0]
            is_dir = members[0].isdir()
            if not is_dir and dest.is_dir():
                dest = dest / top
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=dest.parent))
            try:
                tar.extractall(staging, filter="tar")
                extracted = staging / top
                if is_dir:
                    shutil.copytree(extracted, dest, symlinks=True, dirs_exist_ok=True)
                else:
                    if dest.is_symlink() or dest.exists():
                        dest.unlink()
                    os.replace(extracted, dest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (OSError, tarfile.TarError, shutil.Error) as exc:
        raise SandboxError(f"cannot copy to {dest}: {exc}") from exc
