"""The Sandbox protocol: where commands run (host, Docker container, bubblewrap namespace).

Every backend runs the same calls with the same results, so the shell server and workspaces never care
which one they were given. Backends: `agent.runtime.local.LocalSandbox`, `agent.runtime.docker.DockerSandbox`,
`agent.runtime.bubblewrap.BubblewrapSandbox`; `open_sandbox` picks one from a `SandboxSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import AgentError

DEFAULT_OUTPUT_CAP = 30_000
"""Characters of stdout (and separately of stderr) kept in an ExecResult: head and tail, middle elided."""


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one command. Stable: tools and traces depend on these fields.

    `stdout`/`stderr` are capped to the call's `output_cap` characters each: the head and the tail are kept
    and the middle is replaced by a line `[... N characters elided ...]`. `stdout_chars`/`stderr_chars` are
    the full sizes. `exit_code` is None when the command was killed (timeout or cancellation);
    `timed_out` says whether the timeout did it. `output_path` is the host path of the full, uncapped
    output (stdout then stderr) when the call asked for it with `output_file`.
    """

    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    stdout_chars: int = 0
    stderr_chars: int = 0
    output_path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def truncated(self) -> bool:
        return len(self.stdout) < self.stdout_chars or len(self.stderr) < self.stderr_chars


@runtime_checkable
class SandboxProcess(Protocol):
    """A long-running command (a dev server, a build) started with `Sandbox.spawn`."""

    @property
    def returncode(self) -> int | None:
        """None while it runs."""

    async def read(self, max_chars: int = DEFAULT_OUTPUT_CAP) -> str:
        """Output (stdout and stderr interleaved) produced since the last read; never blocks."""

    async def write(self, data: str) -> None:
        """Send text to its stdin."""

    async def stop(self, grace_s: float = 2.0) -> int | None:
        """SIGTERM its whole process group, SIGKILL after `grace_s`; returns the exit code."""


@runtime_checkable
class Sandbox(Protocol):
    """A place to run commands, bound to one workspace folder on the host.

    Use as `async with sandbox:`; leaving it stops every process and removes what the backend created
    (containers, namespaces), also on cancellation. The workspace folder itself belongs to the caller.
    """

    kind: str
    """"local", "docker" or "bubblewrap"."""
    workspace: Path
    """The workspace on the host."""
    workdir: str
    """The workspace as commands see it (the host path for local; e.g. /workspace in Docker)."""

    async def __aenter__(self) -> Sandbox: ...

    async def __aexit__(self, *exc: object) -> None: ...

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
        """Run a command to completion: a string runs under `sh -c`, a sequence is an argv.

        `cwd` is a path as commands see it (default `workdir`); `env` adds to the sandbox's environment;
        on timeout or cancellation the whole process group is killed. `output_file` (a host path) receives
        the full output. Never raises for a failing command; raises `SandboxError` when the sandbox
        itself cannot run anything.
        """

    async def spawn(
        self, command: str | Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> SandboxProcess:
        """Start a background command; the sandbox stops it on exit if the caller did not."""

    async def copy_in(self, source: Path, dest: str) -> None:
        """Copy a host file or folder to `dest` (a path as commands see it)."""

    async def copy_out(self, source: str, dest: Path) -> None:
        """Copy a file or folder from the sandbox to the host."""


class SandboxSpec(BaseModel):
    """Where a task's commands run (the `sandbox:` section of a task file)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "docker", "bubblewrap"] = Field("local", description="Backend")
    image: str = Field("agent-sandbox:bookworm", description="Docker image (docker only)")
    network: bool = Field(False, description="Allow network access (docker and bubblewrap; local always has it)")
    env: dict[str, str] = Field(default_factory=dict, description="Environment for every command")
    env_passthrough: list[str] = Field(
        default_factory=lambda: ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ"],
        description="Host variables passed through (local and bubblewrap); host secrets are not passed by default",
    )
    cpus: float | None = Field(2.0, gt=0, description="CPU limit (docker)")
    memory: str | None = Field("2g", description="Memory limit, docker syntax (docker)")
    pids: int | None = Field(512, gt=0, description="Process limit (docker)")
    user: str | None = Field(None, description="User inside the container; default: the workspace owner's uid:gid")
    workdir: str = Field("/workspace", description="Where the workspace appears inside docker and bubblewrap")


class SandboxError(AgentError):
    """The sandbox itself failed (no Docker daemon, bubblewrap missing, container gone)."""


def elide(text: str, cap: int) -> str:
    """Keep the head and tail of `text` within `cap` characters, naming how much was cut."""
    if len(text) <= cap:
        return text
    half = max(cap // 2, 1)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters elided ...]\n{text[-half:]}"


def open_sandbox(spec: SandboxSpec | None, workspace: Path) -> Sandbox:
    """The backend `spec.kind` names, bound to `workspace` (enter it with `async with`)."""
    spec = spec or SandboxSpec()
    if spec.kind == "docker":
        from .docker import DockerSandbox

        return DockerSandbox(workspace, spec)
    if spec.kind == "bubblewrap":
        from .bubblewrap import BubblewrapSandbox

        return BubblewrapSandbox(workspace, spec)
    from .local import LocalSandbox

    return LocalSandbox(workspace, spec)
