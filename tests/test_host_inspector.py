"""A real third-party MCP client, the MCP Inspector CLI (npm @modelcontextprotocol/inspector), drives what
`agent config mcp --client claude-desktop` prints, launched the way a host launches it: the entry's command and
args exactly, cwd `/`, and only the environment the SDKs give a stdio child (HOME, LOGNAME, PATH, SHELL,
TERM, USER) plus the entry's `env`. Then `agent serve --http` with a bearer token and `agent server files
--http`, over streamable HTTP.

The Inspector 2.x speaks the handshake era to ad-hoc targets and declares the roots capability without
listing any roots: the files entry must still serve its command-line root to such a client.

Install the Inspector and the Node 22 it needs with `.ci/thirdparty-setup.sh`; missing, these tests fail in CI
and skip elsewhere.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, require_installed, running_command
from mcp.client.stdio import get_default_environment

REPO = Path(__file__).resolve().parent.parent
NODE22 = REPO / ".thirdparty" / "node22" / "bin" / "node"
INSPECTOR = REPO / ".thirdparty" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
AGENT = Path(sys.executable).parent / "agent"  # the installed console script, beside the interpreter
QUICKSTART = REPO / "examples" / "quickstart" / "task.yaml"
INSPECTOR_TIMEOUT = 180
TOKEN = "inspector-test-token"

EXPECTED_TOOLS = {
    "agent-files": {
        "read_file", "read_multiple_files", "read_media_file", "write_file", "edit_file", "create_directory",
        "list_directory", "directory_tree", "move_file", "delete_file", "glob_search", "search_content",
        "get_file_info", "list_allowed_roots",
    },
    "agent-shell": {"run_command", "start_job", "read_job", "send_job_input", "stop_job", "list_jobs"},
    "agent-web": {"fetch"},
    "deepseek-agent": {"run", "run_task", "list_runs", "read_run"},
}


# --- the host and its client ---------------------------------------------------------------------------


@dataclass
class Answer:
    """What the Inspector CLI printed for one method: its `result` (stdout) or its error envelope (stderr)."""

    returncode: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}; result {self.result}; stderr:\n{self.stderr[-4000:]}"

    @property
    def tools(self) -> set[str]:
        assert self.result is not None, str(self)
        return {tool["name"] for tool in self.result["tools"]}

    @property
    def text(self) -> str:
        assert self.result is not None, str(self)
        return "\n".join(block.get("text", "") for block in self.result["content"])

    @property
    def structured(self) -> dict[str, Any]:
        assert self.result is not None and "structuredContent" in self.result, str(self)
        return self.result["structuredContent"]

    def ok(self) -> Answer:
        """This answer, after checking that the method (and the tool, for tools/call) succeeded."""
        assert self.returncode == 0 and self.result is not None, str(self)
        assert not self.result.get("isError"), str(self)
        return self


@dataclass
class Host:
    """A user's machine as an MCP host sees it: a home folder, a project root and the printed entries."""

    home: Path
    root: Path
    workdir: Path
    env: dict[str, str]
    entries: dict[str, dict[str, Any]]


def host_environment(home: Path) -> dict[str, str]:
    """What a host gives a stdio server: the SDK's allow-list, with a HOME of the test's own.

    The project's venv is taken off PATH, as a host's PATH knows nothing of it: the entries must work with
    their absolute paths alone.
    """
    env = get_default_environment()
    env["HOME"] = str(home)
    venv_bin = os.path.realpath(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and os.path.realpath(p) != venv_bin]
    env["PATH"] = os.pathsep.join(path) or "/usr/bin:/bin"
    return env


class Inspector:
    """The Inspector CLI (`inspector --cli ... --format json`) run with the host's environment."""

    def __init__(self, host: Host):
        self.host = host

    def _run(self, options: list[str], target: list[str]) -> Answer:
        # `--` ends the Inspector's options, so a target argument such as --workspace reaches the target.
        argv = [str(NODE22), str(INSPECTOR), "--cli", *options, "--format", "json", "--", *target]
        proc = subprocess.run(argv, env=self.host.env, cwd=self.host.workdir, capture_output=True, text=True,
                              timeout=INSPECTOR_TIMEOUT)
        result = json.loads(proc.stdout)["result"] if proc.stdout.strip() else None
        errors = [line for line in proc.stderr.splitlines() if line.startswith('{"error"')]
        error = json.loads(errors[-1])["error"] if errors else None
        return Answer(proc.returncode, result, error, proc.stderr)

    def launch(self, entry: dict[str, Any], *method: str, extra_args: tuple[str, ...] = ()) -> Answer:
        """Start a printed stdio entry as a host does (cwd /, the entry's env) and invoke one method."""
        env_options = [o for name, value in entry.get("env", {}).items() for o in ("-e", f"{name}={value}")]
        return self._run(["--cwd", "/", *env_options, *method],
                         [entry["command"], *entry["args"], *extra_args])

    def connect(self, url: str, *method: str, headers: tuple[str, ...] = ()) -> Answer:
        """Invoke one method on a streamable HTTP server; never start an interactive OAuth login."""
        header_options = [option for header in headers for option in ("--header", header)]
        return self._run(["--stored-auth-only", *header_options, *method], [url])


def tools_list() -> tuple[str, ...]:
    return ("--method", "tools/list")


def tools_call(tool: str, **arguments: str) -> tuple[str, ...]:
    args = ("--tool-arg", *(f"{key}={value}" for key, value in arguments.items())) if arguments else ()
    return ("--method", "tools/call", "--tool-name", tool, *args)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    base = tmp_path_factory.mktemp("host")
    home, root, workdir = base / "home", base / "project", base / "workdir"
    for folder in (home, root, workdir):
        folder.mkdir()
    printed = subprocess.run([str(AGENT), "config", "mcp", "--client", "claude-desktop", "--root", str(root)],
                             cwd=workdir, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    return Host(home, root, workdir, host_environment(home), json.loads(printed.stdout)["mcpServers"])


@pytest.fixture(scope="module")
def inspector(host: Host) -> Inspector:
    require_installed("the MCP Inspector CLI (npm @modelcontextprotocol/inspector) with Node 22",
                      NODE22.exists() and INSPECTOR.exists(), "run .ci/thirdparty-setup.sh to install it")
    return Inspector(host)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_site(tmp_path: Path) -> Iterator[str]:
    """A page served on 127.0.0.1 by this test; its URL."""
    (tmp_path / "index.html").write_text(
        "<html><head><title>Local page</title></head><body><h1>Served on loopback</h1>"
        "<p>This paragraph comes from the test's own web server.</p></body></html>", encoding="utf-8")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# --- the printed entries over stdio ------------------------------------------------------------------------


def test_claude_desktop_config_prints_the_three_servers_and_the_agent_as_the_installed_script(host: Host) -> None:
    assert set(host.entries) == set(EXPECTED_TOOLS)
    for name, entry in host.entries.items():
        assert Path(entry["command"]).is_absolute(), name
        assert Path(entry["command"]).samefile(AGENT), name


@pytest.mark.parametrize("name", sorted(EXPECTED_TOOLS))
def test_inspector_lists_the_tools_of_each_entry_launched_as_a_host_launches_it(
    inspector: Inspector, host: Host, name: str
) -> None:
    answer = inspector.launch(host.entries[name], *tools_list()).ok()
    assert answer.tools == EXPECTED_TOOLS[name]


def test_files_entry_writes_then_reads_a_file_in_its_root(inspector: Inspector, host: Host) -> None:
    files = host.entries["agent-files"]
    inspector.launch(files, *tools_call("write_file", path="note.txt", content="written by the inspector")).ok()
    assert (host.root / "note.txt").read_text(encoding="utf-8") == "written by the inspector"
    read = inspector.launch(files, *tools_call("read_file", path="note.txt")).ok()
    assert "written by the inspector" in read.text


def test_files_entry_keeps_its_root_for_a_client_that_declares_roots_but_lists_none(
    inspector: Inspector, host: Host
) -> None:
    answer = inspector.launch(host.entries["agent-files"], *tools_call("list_allowed_roots")).ok()
    assert answer.structured["roots"] == [os.path.realpath(host.root)]


def test_shell_entry_runs_echo_in_its_root(inspector: Inspector, host: Host) -> None:
    answer = inspector.launch(host.entries["agent-shell"], *tools_call("run_command", command="echo hi")).ok()
    assert answer.structured["exit_code"] == 0
    assert answer.structured["stdout"] == "hi\n"


def test_web_entry_refuses_a_loopback_page_and_names_the_option_that_allows_it(
    inspector: Inspector, host: Host, local_site: str
) -> None:
    """The printed entry has no --allow-host: the server answers, and its guard against private addresses holds."""
    answer = inspector.launch(host.entries["agent-web"], *tools_call("fetch", url=local_site))
    assert answer.result is not None and answer.result.get("isError") is True, str(answer)
    assert "loopback" in answer.text and "--allow-host 127.0.0.1" in answer.text


def test_web_entry_with_allow_host_fetches_a_page_served_on_loopback(
    inspector: Inspector, host: Host, local_site: str
) -> None:
    answer = inspector.launch(host.entries["agent-web"], *tools_call("fetch", url=local_site),
                              extra_args=("--allow-host", "127.0.0.1")).ok()
    assert "Served on loopback" in answer.text
    assert "comes from the test's own web server" in answer.text


def test_agent_entry_keeps_runs_in_a_per_user_state_folder(inspector: Inspector, host: Host) -> None:
    answer = inspector.launch(host.entries["deepseek-agent"], *tools_call("list_runs")).ok()
    assert Path(answer.structured["runs_dir"]).is_relative_to(host.home)


@dataclass
class TaskRun:
    answer: Answer
    runs_before: list[str] | None
    runs_after: list[str] | None


def _listing(folder: Path) -> list[str] | None:
    return sorted(os.listdir(folder)) if folder.is_dir() else None


@pytest.fixture(scope="module")
def quickstart_run(inspector: Inspector, host: Host) -> TaskRun:
    """run_task of the quick-start task through the agent entry, without DEEPSEEK_API_KEY (a host passes none)."""
    entry = host.entries["deepseek-agent"]
    assert "DEEPSEEK_API_KEY" not in host.env and "DEEPSEEK_API_KEY" not in entry.get("env", {})
    before = _listing(Path("/runs"))
    answer = inspector.launch(entry, *tools_call("run_task", path=str(QUICKSTART)))
    return TaskRun(answer, before, _listing(Path("/runs")))


def test_agent_entry_runs_the_quickstart_task_as_a_labelled_scripted_demo(quickstart_run: TaskRun) -> None:
    answer = quickstart_run.answer.ok()
    assert answer.structured["scripted_demo"] is True
    assert answer.text.startswith("SCRIPTED DEMO")
    assert answer.structured["stop_reason"] == "answer"
    assert "South" in answer.structured["answer"] and "2,458" in answer.structured["answer"]


def test_agent_entry_writes_the_trace_of_a_task_run_in_the_users_state_folder(
    quickstart_run: TaskRun, host: Host
) -> None:
    trace = Path(quickstart_run.answer.ok().structured["trace_path"])
    assert trace.is_relative_to(host.home)
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    assert events[-1]["type"] == "run_finished" and events[-1]["stop_reason"] == "answer"
    results = [e for e in events if e["type"] == "tool_result"]
    assert results and not any(e["is_error"] for e in results)


def test_agent_entry_writes_nothing_under_runs_in_the_root_folder_it_starts_in(quickstart_run: TaskRun) -> None:
    quickstart_run.answer.ok()
    assert quickstart_run.runs_after == quickstart_run.runs_before


def test_agent_entry_says_which_key_a_prompt_run_needs_when_the_host_passes_none(
    inspector: Inspector, host: Host
) -> None:
    """A host passes no DEEPSEEK_API_KEY unless the entry's env names it: the host's model must read why."""
    answer = inspector.launch(host.entries["deepseek-agent"], *tools_call("run", prompt="Say hi."))
    assert answer.result is not None and answer.result.get("isError") is True, str(answer)
    assert "DEEPSEEK_API_KEY is not set" in answer.text, str(answer)


def test_agent_entry_lists_a_finished_run_in_a_later_session(
    quickstart_run: TaskRun, inspector: Inspector, host: Host
) -> None:
    run_id = quickstart_run.answer.ok().structured["run_id"]
    listed = inspector.launch(host.entries["deepseek-agent"], *tools_call("list_runs")).ok()
    assert run_id in [run["run_id"] for run in listed.structured["runs"]]


# --- streamable HTTP ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent_over_http(inspector: Inspector, host: Host) -> Iterator[str]:
    """`agent serve --http 127.0.0.1:PORT --token T`; its URL."""
    port = free_port()
    argv = [str(AGENT), "serve", "--http", f"127.0.0.1:{port}", "--token", TOKEN]
    with running_command(argv, port, env=host.env, cwd=host.workdir):
        yield f"http://127.0.0.1:{port}/mcp"


def test_agent_over_http_lists_its_tools_to_the_inspector_with_the_bearer_token(
    inspector: Inspector, agent_over_http: str
) -> None:
    answer = inspector.connect(agent_over_http, *tools_list(), headers=(f"Authorization: Bearer {TOKEN}",)).ok()
    assert answer.tools == EXPECTED_TOOLS["deepseek-agent"]


def test_agent_over_http_answers_a_tool_call_from_the_inspector_with_the_bearer_token(
    inspector: Inspector, agent_over_http: str, host: Host
) -> None:
    answer = inspector.connect(agent_over_http, *tools_call("list_runs"),
                               headers=(f"Authorization: Bearer {TOKEN}",)).ok()
    assert Path(answer.structured["runs_dir"]).is_relative_to(host.home)


def test_agent_over_http_refuses_the_inspector_without_a_token(inspector: Inspector, agent_over_http: str) -> None:
    answer = inspector.connect(agent_over_http, *tools_list())
    assert answer.returncode != 0 and answer.result is None, str(answer)
    assert answer.error is not None and answer.error["code"] == "auth_required", str(answer)


def test_agent_over_http_refuses_the_inspector_with_a_wrong_token(inspector: Inspector, agent_over_http: str) -> None:
    answer = inspector.connect(agent_over_http, *tools_list(), headers=("Authorization: Bearer wrong-token",))
    assert answer.returncode != 0 and answer.result is None, str(answer)
    assert answer.error is not None and answer.error["code"] == "auth_required", str(answer)


def test_files_server_over_http_writes_then_reads_a_file_for_the_inspector(inspector: Inspector, host: Host) -> None:
    """`agent server files ROOT --http` has no token option: it is served on loopback only."""
    port = free_port()
    argv = [str(AGENT), "server", "files", str(host.root), "--http", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}/mcp"
    with running_command(argv, port, env=host.env, cwd=host.workdir):
        inspector.connect(url, *tools_call("write_file", path="over-http.txt", content="sent over http")).ok()
        read = inspector.connect(url, *tools_call("read_file", path="over-http.txt")).ok()
    assert "sent over http" in read.text
    assert (host.root / "over-http.txt").read_text(encoding="utf-8") == "sent over http"
