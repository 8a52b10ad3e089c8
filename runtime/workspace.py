"""Per-run workspaces: a folder prepared from the task (files, git repositories, setup commands), with the
sandbox the task's commands run in, removed at the end unless kept.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agent.errors import AgentError, ConfigError

from .sandbox import Sandbox, SandboxSpec, open_sandbox


class RepoInit(BaseModel):
    """A git repository in the workspace: cloned from a local path, or created from the files present."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(".", description="Folder inside the workspace")
    clone: Path | None = Field(None, description="A local repository to clone (no network)")
    ref: str | None = Field(None, description="Branch, tag or commit to check out after cloning")
    message: str = Field("initial state", description="Commit message when creating the repository")


class WorkspaceSpec(BaseModel):
    """The `workspace:` section of a task file."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(None, description="Use this folder (never removed) instead of a fresh temporary one")
    files: Path | None = Field(None, description="A folder or tar archive copied into the workspace first")
    repos: list[RepoInit] = Field(default_factory=list)
    setup: list[str] = Field(default_factory=list, description="Shell commands run in the sandbox before the agent")
    setup_timeout_s: float = Field(300.0, gt=0)
    keep: bool = Field(False, description="Keep the workspace after the run")


class WorkspaceError(AgentError):
    """The workspace could not be prepared (a missing file, a failing setup command)."""


class Workspace:
    """Owns a run's folder and sandbox: `async with Workspace(spec, sandbox_spec) as ws:` then `ws.path`."""

    def __init__(self, spec: WorkspaceSpec | None = None, sandbox: SandboxSpec | None = None, *,
                 keep: bool | None = None):
        self.spec = spec or WorkspaceSpec()
        self.sandbox_spec = sandbox or SandboxSpec()
        self.keep = self.spec.keep if keep is None else keep
        self.path: Path = Path()
        self.sandbox: Sandbox | None = None
        self._owned = False

    async def __aenter__(self) -> Workspace:
        if self.spec.path is not None:
            self.path = self.spec.path.resolve()
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path = Path(tempfile.mkdtemp(prefix="agent-ws-"))
            self._owned = True
        try:
            await anyio.to_thread.run_sync(self._lay_files)
            self.sandbox = open_sandbox(self.sandbox_spec, self.path)
            await self.sandbox.__aenter__()
            for command in self.spec.setup:
                result = await self.sandbox.exec(command, timeout=self.spec.setup_timeout_s)
                if result.exit_code != 0:
                    why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
                    raise WorkspaceError(f"workspace setup command {command!r} {why}:\n{result.stdout}{result.stderr}")
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        with anyio.CancelScope(shield=True):
            if sandbox is not None:
                await sandbox.__aexit__(None, None, None)
            if self._owned and not self.keep:
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(self.path, ignore_errors=True))

    def _lay_files(self) -> None:
        source = self.spec.files
        if source is not None:
            if source.is_dir():
                shutil.copytree(source, self.path, dirs_exist_ok=True, symlinks=True)
            elif source.is_file() and tarfile.is_tarfile(source):
                with tarfile.open(source) as archive:
                    archive.extractall(self.path, filter="data")  # refuses absolute paths and `..`
            else:
                raise ConfigError(f"workspace.files: {source} is neither a folder nor a tar archive")
        for repo in self.spec.repos:
            target = (self.path / repo.path).resolve()
            if not target.is_relative_to(self.path):
                raise ConfigError(f"workspace.repos: path {repo.path!r} leaves the workspace")
            if repo.clone is not None:
                _git(["clone", "--quiet", str(repo.clone.resolve()), str(target)], cwd=self.path)
                if repo.ref:
                    _git(["checkout", "--quiet", repo.ref], cwd=target)
            else:
                target.mkdir(parents=True, exist_ok=True)
                _git(["init", "--quiet", "-b", "main"], cwd=target)
                _git(["add", "-A"], cwd=target)
                _git(["commit", "--quiet", "--allow-empty", "-m", repo.message], cwd=target)


def _git(args: list[str], *, cwd: Path) -> None:
    env = {"GIT_AUTHOR_NAME": "agent", "GIT_AUTHOR_EMAIL": "agent@localhost", "GIT_COMMITTER_NAME": "agent",
           "GIT_COMMITTER_EMAIL": "agent@localhost", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd)}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
