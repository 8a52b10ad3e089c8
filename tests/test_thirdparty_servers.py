"""Real third-party MCP servers from the registries, driven through the hub and the agent: the npm reference
filesystem server (handshake era: protocol fallback, roots), mcp-server-fetch against a local site, and
mcp-server-git against a repository made here; then examples/thirdparty end to end.

Install them with `.ci/thirdparty-setup.sh`. Missing servers fail the tests in CI and skip them elsewhere.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import child_pids, require_installed

from agent import Agent, load_task
from agent.testing import ScriptedModelServer, load_script
from agent.tools.config import parse_servers
from agent.tools.hub import ToolHub

REPO = Path(__file__).resolve().parent.parent
FILESYSTEM_BIN = REPO / ".thirdparty" / "npm" / "node_modules" / ".bin" / "mcp-server-filesystem"
EXAMPLE = REPO / "examples" / "thirdparty"
PY = sys.executable
SETUP = "run .ci/thirdparty-setup.sh to install it"


def require(what: str, present: bool) -> None:
    """Fail in CI (it must be installed there), skip with the reason elsewhere."""
    require_installed(what, present, SETUP)


@pytest.fixture
def filesystem_bin() -> Path:
    require("npm @modelcontextprotocol/server-filesystem", FILESYSTEM_BIN.exists() and shutil.which("node") is not None)
    return FILESYSTEM_BIN


@pytest.fixture
def fetch_server() -> list[str]:
    require("PyPI mcp-server-fetch", importlib.util.find_spec("mcp_server_fetch") is not None)
    return [PY, "-m", "mcp_server_fetch"]


@pytest.fixture
def git_server() -> list[str]:
    require("PyPI mcp-server-git", importlib.util.find_spec("mcp_server_git") is not None)
    require("git", shutil.which("git") is not None)
    return [PY, "-m", "mcp_server_git"]


@pytest.fixture
def site() -> Iterator[str]:
    """A local web site (examples/thirdparty/site) on 127.0.0.1; its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(EXAMPLE / "site"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_hub(servers: dict[str, dict[str, Any]], **kwargs: Any) -> ToolHub:
    return ToolHub(parse_servers(servers, where="test"), **kwargs)


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


# -- the npm reference filesystem server -------------------------------------------------------------------


async def test_filesystem_server_speaks_the_handshake_era_and_takes_its_directory_from_our_roots(
    filesystem_bin, tmp_path
):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("hello from the workspace\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    before = child_pids()
    # No directory arguments: the server waits for the client's roots, and we offer the workspace.
    async with make_hub({"fs": {"command": str(filesystem_bin)}}, roots=[workspace]) as hub:
        assert hub.protocol_versions == {"fs": "2025-11-25"}  # fell back from 2026-07-28
        with anyio.fail_after(30):  # the server asks for roots right after the handshake
            while True:
                allowed = await hub.call("fs__list_allowed_directories", {})
                if str(workspace.resolve()) in allowed.text:
                    break
                await anyio.sleep(0.05)
        read = await hub.call("fs__read_text_file", {"path": str(workspace / "notes.txt")})
        assert not read.is_error and "hello from the workspace" in read.text
        outside = await hub.call("fs__read_text_file", {"path": str(tmp_path / "secret.txt")})
        assert outside.is_error and "Access denied" in outside.text
        wrote = await hub.call("fs__write_file", {"path": str(workspace / "new.txt"), "content": "written"})
        assert not wrote.is_error
    assert (workspace / "new.txt").read_text() == "written"
    assert child_pids() - before == set()


async def test_filesystem_server_without_roots_uses_its_directory_arguments(filesystem_bin, tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    servers = {"fs": {"command": str(filesystem_bin), "args": [str(tmp_path)], "roots": []}}
    async with make_hub(servers) as hub:
        listing = await hub.call("fs__list_directory", {"path": str(tmp_path)})
        assert "[FILE] a.txt" in listing.text


async def test_filesystem_server_keeps_a_folder_outside_its_working_directory_by_default(filesystem_bin, tmp_path):
    """No roots unless the entry asks: offering the cwd would replace the server's folder argument."""
    task_dir, data = tmp_path / "task", tmp_path / "data"
    task_dir.mkdir()
    data.mkdir()
    (data / "sales.csv").write_text("region,revenue\nnorth,10\n")
    servers = {"fs": {"command": str(filesystem_bin), "args": [str(data)], "cwd": str(task_dir)}}
    async with make_hub(servers) as hub:
        read = await hub.call("fs__read_text_file", {"path": str(data / "sales.csv")})
        assert not read.is_error and "north,10" in read.text


# -- mcp-server-fetch ---------------------------------------------------------------------------------------


async def test_fetch_server_reads_a_local_page_when_private_addresses_are_allowed(fetch_server, site):
    servers = {"web": {"command": fetch_server[0], "args": [*fetch_server[1:], "--allow-private-ips"]},
               "strict": {"command": fetch_server[0], "args": fetch_server[1:]}}
    async with make_hub(servers) as hub:
        page = await hub.call("web__fetch", {"url": f"{site}/release.html"})
        refused = await hub.call("strict__fetch", {"url": f"{site}/release.html"})
        bad = await hub.call("web__fetch", {"url": f"{site}/release.html", "max_length": "10"})
    assert not page.is_error
    assert "came out on 2026-11-02" in page.text and "\n* A dark theme." in page.text  # HTML became markdown
    assert refused.is_error and "not a public address" in refused.text
    assert bad.is_error  # strict argument types: "10" is not an integer


# -- mcp-server-git -------------------------------------------------------------------------------------------


async def test_git_server_reads_and_changes_a_repository_made_here(git_server, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("first\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "Add the readme")
    (repo / "README.md").write_text("first\nsecond\n")
    servers = {"git": {"command": git_server[0], "args": [*git_server[1:], "--repository", str(repo)]}}
    async with make_hub(servers) as hub:
        assert hub.protocol_versions == {"git": "2026-07-28"}
        status = await hub.call("git__git_status", {"repo_path": str(repo)})
        diff = await hub.call("git__git_diff_unstaged", {"repo_path": str(repo)})
        await hub.call("git__git_add", {"repo_path": str(repo), "files": ["README.md"]})
        committed = await hub.call("git__git_commit", {"repo_path": str(repo), "message": "Extend the readme"})
        log = await hub.call("git__git_log", {"repo_path": str(repo), "max_count": 5})
        escape = await hub.call("git__git_status", {"repo_path": str(tmp_path)})
    assert "modified:   README.md" in status.text
    assert "+second" in diff.text
    assert not committed.is_error
    assert log.text.index("Extend the readme") < log.text.index("Add the readme")
    assert escape.is_error and "outside the allowed repository" in escape.text


# -- the example task ------------------------------------------------------------------------------------------


async def test_the_thirdparty_example_runs_as_a_scripted_demo(filesystem_bin, fetch_server, git_server, site,
                                                              tmp_path):
    """examples/thirdparty/task.yaml with its demo script; the site's port is the one this test got."""
    require("a git checkout of this project (the example reads its history)", (REPO / ".git").exists())
    task = load_task(EXAMPLE / "task.yaml")
    prompt = task.prompt.replace("http://127.0.0.1:8766", site)
    script = load_script(task.demo)
    for call in script[0].tool_calls:
        call.arguments = {k: v.replace("http://127.0.0.1:8766", site) if isinstance(v, str) else v
                          for k, v in call.arguments.items()}
    with ScriptedModelServer(script) as model:
        agent = Agent.from_task(task, model=model.model_string, trace_dir=tmp_path)
        with anyio.fail_after(90):
            result = await agent.run(prompt)
        page, changelog, log = (m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool")
    assert result.ok and "dark theme" in result.answer
    assert "A dark theme." in page
    assert "## 0.3.0 (unreleased)" in changelog
    assert log.startswith("Commit history:") and "Message:" in log
