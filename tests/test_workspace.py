"""Per-run workspaces: files, archives, git repositories, setup commands, cleanup; wired into `agent run`."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import anyio
import pytest
import yaml

from agent.errors import ConfigError
from agent.runtime.workspace import RepoInit, Workspace, WorkspaceError, WorkspaceSpec
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.conftest import DEMO_SERVER
from tests.test_cli_run import run_cli


def seed(folder: Path) -> Path:
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "a.txt").write_text("alpha\n")
    (folder / "b.txt").write_text("beta\n")
    return folder


async def test_a_fresh_workspace_gets_files_repo_and_setup_and_is_removed_after(tmp_path):
    spec = WorkspaceSpec(files=seed(tmp_path / "seed"), repos=[RepoInit(path=".")],
                         setup=["echo ready > setup.txt", "git log --oneline | wc -l > commits.txt"])
    async with Workspace(spec) as ws:
        path = ws.path
        assert (path / "docs" / "a.txt").read_text() == "alpha\n"
        assert (path / "setup.txt").read_text() == "ready\n"
        assert (path / "commits.txt").read_text().strip() == "1"
        result = await ws.sandbox.exec("git status --porcelain --untracked-files=no")
        assert result.exit_code == 0
    assert not path.exists()


async def test_a_tar_archive_is_unpacked(tmp_path):
    archive = tmp_path / "seed.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(seed(tmp_path / "seed"), arcname=".")
    async with Workspace(WorkspaceSpec(files=archive)) as ws:
        assert (ws.path / "b.txt").read_text() == "beta\n"


@pytest.fixture
def origin(tmp_path) -> Path:
    """A local repository with a tag v1 (f.txt = v1) and a later commit (f.txt = v2)."""
    origin = tmp_path / "origin"
    origin.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=origin, check=True)
    (origin / "f.txt").write_text("v1\n")
    subprocess.run([*git, "add", "-A"], cwd=origin, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=origin, check=True)
    subprocess.run([*git, "tag", "v1"], cwd=origin, check=True)
    (origin / "f.txt").write_text("v2\n")
    subprocess.run([*git, "commit", "-qam", "two"], cwd=origin, check=True)
    return origin


async def test_a_local_repository_is_cloned_at_a_ref(origin):
    async with Workspace(WorkspaceSpec(repos=[RepoInit(path="code", clone=origin, ref="v1")])) as ws:
        assert (ws.path / "code" / "f.txt").read_text() == "v1\n"


async def test_a_failing_setup_command_is_reported_and_cleaned_up(tmp_path):
    workspace = Workspace(WorkspaceSpec(setup=["echo broken >&2; exit 3"]))
    with pytest.raises(WorkspaceError, match=r"'echo broken >&2; exit 3' exited with 3:\s+broken"):
        await workspace.__aenter__()
    assert not workspace.path.exists()


async def test_kept_and_given_paths_stay(tmp_path):
    async with Workspace(WorkspaceSpec(), keep=True) as ws:
        kept = ws.path
    assert kept.is_dir()
    given = tmp_path / "mine"
    async with Workspace(WorkspaceSpec(path=given)) as ws:
        assert ws.path == given.resolve()
    assert given.is_dir()


async def test_cancellation_during_setup_removes_the_workspace(tmp_path):
    workspace = Workspace(WorkspaceSpec(setup=["sleep 30"]))
    with anyio.move_on_after(1):
        await workspace.__aenter__()
    assert not workspace.path.exists()


def test_files_that_are_neither_folder_nor_archive_are_refused(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="neither a folder nor a tar archive"):
        anyio.run(Workspace(WorkspaceSpec(files=tmp_path / "x.txt")).__aenter__)


def test_agent_run_prepares_the_workspace_and_points_servers_at_it(tmp_path):
    seed(tmp_path / "seed")
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("demo__getenv", {"name": "WS"})]), ScriptedTurn(content="ok")]
    with ScriptedModelServer(script) as model:
        task = {
            "prompt": "where am I?", "model": model.model_string,
            "workspace": {"files": "seed", "setup": ["echo set > setup.txt"]},
            "servers": {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)], "env": {"WS": "${WORKSPACE}"}}},
        }
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
        proc = run_cli("run", str(tmp_path / "task.yaml"), "--keep-workspace", "--json", cwd=tmp_path)
        tool_result = next(m for m in model.requests[-1].body["messages"] if m["role"] == "tool")["content"]
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stop_reason"] == "answer"
    kept = Path(proc.stderr.split("workspace: ")[1].split(" (kept)")[0])
    assert tool_result == str(kept)
    assert (kept / "setup.txt").read_text() == "set\n" and (kept / "docs" / "a.txt").exists()
