"""The shell MCP server as a real subprocess, driven by mcp.Client over stdio and streamable HTTP.

Each server runs once per module and is shared through a blocking portal (one task enters and leaves the
client); every test works in a folder of its own under the server's root.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from conftest import alive, free_port, running_server
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from agent.servers import shell as shell_server

# Sandboxes and signals look at machine-wide state (bwrap and docker processes, labelled containers,
# `agent sandbox prune --all`): with pytest-xdist these modules share one worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sandboxes")

REPO = Path(__file__).resolve().parent.parent
SECRET = "hunter2-in-the-server-environment"
SERVER_ENV = {"AGENT_TEST_SECRET": SECRET}
TOOLS = {"run_command", "start_job", "read_job", "send_job_input", "stop_job", "list_jobs"}
RESTRICTED = [
    "--allow",
    r"^(echo|printf|sleep) ",
    "--deny",
    "forbidden",
    "--env-allow",
    "AGENT_TEST_SECRET",
    "--timeout-max",
    "1",
    "--timeout-default",
    "1",
]


def gone(*pids: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def stdio_params(root: Path, *options: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "agent.servers.shell", str(root), *options],
        cwd=str(REPO),
        env=SERVER_ENV,
    )


@contextlib.contextmanager
def http_server(root: Path, *options: str) -> Iterator[tuple[str, Any]]:
    """The server over HTTP in a subprocess that inherits SERVER_ENV; yields its URL and process."""
    port = free_port()
    saved = {name: os.environ.get(name) for name in SERVER_ENV}
    os.environ.update(SERVER_ENV)
    try:
        with running_server(
            ["-m", "agent.servers.shell", str(root), *options, "--http", f"127.0.0.1:{port}"], port
        ) as proc:
            yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Connection:
    portal: anyio.from_thread.BlockingPortal
    client: Client
    root: Path


@contextlib.contextmanager
def connected(target: Any, root: Path) -> Iterator[Connection]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(target)) as client,
    ):
        yield Connection(portal, client, root)


@pytest.fixture(scope="module", params=["stdio", "http"])
def connection(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Connection]:
    root = tmp_path_factory.mktemp(f"{request.param}-root")
    if request.param == "stdio":
        with connected(stdio_params(root), root) as conn:
            yield conn
    else:
        with http_server(root) as (url, _), connected(url, root) as conn:
            yield conn


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    """A stdio server with allow/deny patterns, --env-allow and a 1 s timeout cap."""
    root = tmp_path_factory.mktemp("restricted-root")
    with connected(stdio_params(root, *RESTRICTED), root) as conn:
        yield conn


@dataclass
class Shell:
    """A shared connection plus a folder of this test's own; commands run there unless told otherwise."""

    conn: Connection
    folder: Path
    """Host path of the folder."""
    name: str
    """The folder relative to the root, as `cwd`."""

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        if tool in ("run_command", "start_job"):
            arguments.setdefault("cwd", self.name)
        return self.conn.portal.call(self.conn.client.call_tool, tool, arguments)

    def run(self, command: str, **arguments: Any) -> dict[str, Any]:
        result = self.call("run_command", command=command, **arguments)
        assert not result.is_error, result.content
        return result.structured_content

    def call_cancelled_after(self, seconds: float, tool: str, **arguments: Any) -> None:
        """Call a tool and cancel the call (the client sends notifications/cancelled) after `seconds`."""

        async def cancelled() -> None:
            with anyio.move_on_after(seconds):
                await self.conn.client.call_tool(tool, arguments)

        arguments.setdefault("cwd", self.name)
        self.conn.portal.call(cancelled)


def folder_in(conn: Connection) -> Shell:
    name = f"t-{uuid.uuid4().hex[:8]}"
    (conn.root / name).mkdir()
    return Shell(conn, conn.root / name, name)


@pytest.fixture
def shell(connection: Connection) -> Shell:
    return folder_in(connection)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


# --- tool list ----------------------------------------------------------------------------------------


def test_tools_have_described_parameters_output_schemas_and_annotations(shell: Shell) -> None:
    tools = {tool.name: tool for tool in shell.conn.portal.call(shell.conn.client.list_tools).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.title and tool.annotations is not None
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
        assert tool.output_schema is not None, tool.name
    run = tools["run_command"]
    assert run.input_schema["required"] == ["command"]
    assert set(run.input_schema["properties"]) == {"command", "cwd", "timeout", "env"}
    assert {"exit_code", "stdout", "stderr", "duration_s", "timed_out", "output_path"} <= set(
        run.output_schema["required"]
    )
    hints = {name: tool.annotations for name, tool in tools.items()}
    assert hints["run_command"].destructive_hint and hints["run_command"].open_world_hint
    assert hints["run_command"].read_only_hint is False
    assert hints["start_job"].destructive_hint and hints["start_job"].open_world_hint
    assert hints["read_job"].read_only_hint and hints["list_jobs"].read_only_hint
    assert hints["stop_job"].idempotent_hint and hints["stop_job"].open_world_hint is False


# --- run_command --------------------------------------------------------------------------------------


def test_run_command_returns_exit_code_and_both_streams(shell: Shell) -> None:
    result = shell.call("run_command", command="echo out; echo err >&2; exit 3")
    assert not result.is_error
    data = result.structured_content
    assert (data["exit_code"], data["stdout"], data["stderr"]) == (3, "out\n", "err\n")
    assert data["timed_out"] is False and data["truncated"] is False and data["output_path"] is None
    text = text_of(result)
    assert "Exit code 3" in text and "out" in text and "err" in text


def test_run_command_runs_in_cwd_relative_to_the_root(shell: Shell) -> None:
    (shell.folder / "sub").mkdir()
    data = shell.run("pwd", cwd=f"{shell.name}/sub")
    assert Path(data["stdout"].strip()) == (shell.folder / "sub").resolve()


@pytest.mark.parametrize("cwd", ["..", "/", "../../etc"])
def test_run_command_refuses_a_cwd_outside_the_root(shell: Shell, cwd: str) -> None:
    result = shell.call("run_command", command="touch ran", cwd=cwd)
    assert result.is_error and "outside the workspace" in text_of(result)


def test_run_command_reports_a_missing_cwd(shell: Shell) -> None:
    result = shell.call("run_command", command="true", cwd="no/such/folder")
    assert result.is_error and "not an existing directory" in text_of(result)


def test_run_command_passes_env_but_no_host_secret(shell: Shell) -> None:
    data = shell.run("env", env={"GREETING": "hi"})
    assert "GREETING=hi" in data["stdout"] and "PATH=" in data["stdout"]
    assert "AGENT_TEST_SECRET" not in data["stdout"] and SECRET not in data["stdout"]


def test_timeout_kills_the_command_and_its_children(shell: Shell) -> None:
    data = shell.run("echo $$ > shell.pid; sleep 300 & echo $! > child.pid; wait", timeout=3)
    pids = [int((shell.folder / name).read_text()) for name in ("shell.pid", "child.pid")]
    assert data["timed_out"] is True and data["exit_code"] is None
    assert gone(*pids), "a timed-out command left processes running"


def test_invalid_timeout_is_an_error(shell: Shell) -> None:
    result = shell.call("run_command", command="true", timeout=-1)
    assert result.is_error and "timeout" in text_of(result)


def test_output_of_100_mb_is_capped_and_saved_in_full(shell: Shell) -> None:
    result = shell.call("run_command", command="yes | head -c 100000000")
    data = result.structured_content
    assert data["exit_code"] == 0 and data["truncated"] is True and data["stdout_chars"] == 100_000_000
    assert len(data["stdout"]) < 31_000 and "characters elided" in data["stdout"]
    assert len(text_of(result)) < 32_000
    saved = shell.conn.root / data["output_path"]
    assert data["output_path"].startswith(".agent/outputs/") and saved.stat().st_size == 100_000_000
    assert data["output_path"] in text_of(result)
    saved.unlink()


def saved_logs(root: Path) -> set[Path]:
    outputs = root / ".agent" / "outputs"
    return set(outputs.glob("*.log")) if outputs.exists() else set()


def test_untruncated_output_leaves_no_saved_file(shell: Shell) -> None:
    before = saved_logs(shell.conn.root)
    data = shell.run("echo small")
    assert saved_logs(shell.conn.root) == before and data["output_path"] is None


def test_cancelled_call_kills_the_command(shell: Shell) -> None:
    shell.call_cancelled_after(
        1.5, "run_command", command="echo $$ > shell.pid; sleep 300 & echo $! > child.pid; wait"
    )
    pids = [int((shell.folder / name).read_text()) for name in ("shell.pid", "child.pid")]
    assert gone(*pids), "cancelling the call left the command running"


# --- odd bytes: output and file names that are not valid UTF-8 ---------------------------------------


def test_output_that_is_not_utf8_comes_back_with_replacement_characters(shell: Shell) -> None:
    data = shell.run(r"printf 'caf\351\n'; printf 'cr\350me\n' >&2")
    assert (data["stdout"], data["stderr"]) == ("caf\ufffd\n", "cr\ufffdme\n")
    assert shell.run("echo still serving")["stdout"] == "still serving\n"


def test_non_utf8_output_beyond_the_cap_is_saved_in_full(shell: Shell) -> None:
    data = shell.run(r"i=0; while [ $i -lt 4000 ]; do printf 'caf\351 %d\n' $i; i=$((i+1)); done")
    assert data["truncated"] is True and "caf\ufffd" in data["stdout"]
    saved = (shell.conn.root / data["output_path"]).read_bytes()
    assert saved == b"".join(b"caf\xe9 %d\n" % i for i in range(4000))  # the bytes as printed


def test_non_utf8_file_names_in_the_workspace_do_no_harm(shell: Shell) -> None:
    with open(os.path.join(os.fsencode(shell.folder), b"caf\xe9.txt"), "wb") as file:
        file.write(b"bonjour\n")
    data = shell.run("ls; cat caf*")
    assert data["stdout"] == "caf\ufffd.txt\nbonjour\n"
    job = shell.call("start_job", command="ls").structured_content["job_id"]
    output = shell.call("read_job", job_id=job, wait_s=10).structured_content["output"]
    assert "caf\ufffd.txt" in output


def test_cwd_takes_a_folder_name_shown_with_escapes(shell: Shell) -> None:
    os.mkdir(os.path.join(os.fsencode(shell.folder), b"d\xfc"))
    data = shell.run("pwd", cwd=f"{shell.name}/d\\xfc")
    assert data["stdout"] == f"{shell.folder}/d\ufffd\n"
    job = shell.call("start_job", command="pwd", cwd=f"{shell.name}/d\\xfc").structured_content
    assert job["cwd"] == f"{shell.name}/d\\xfc"


def test_a_workspace_whose_own_name_is_not_utf8_is_served(tmp_path: Path) -> None:
    root = os.path.join(os.fsencode(tmp_path), b"w\xe9")
    os.mkdir(root)
    with connected(stdio_params(Path(os.fsdecode(root))), tmp_path) as conn:
        assert f"{tmp_path}/w\\xe9" in (conn.client.instructions or "")
        result = conn.portal.call(conn.client.call_tool, "run_command", {"command": "pwd"})
        assert not result.is_error and result.structured_content["stdout"] == f"{tmp_path}/w\ufffd\n"


# --- options: allow/deny, env-allow, timeout cap ------------------------------------------------------


def test_allowed_command_runs(restricted: Connection) -> None:
    data = folder_in(restricted).run("echo fine")
    assert data["stdout"] == "fine\n"


def test_command_matching_no_allow_pattern_is_refused(restricted: Connection) -> None:
    result = folder_in(restricted).call("run_command", command="ls")
    assert result.is_error and "matches none of the allowed patterns" in text_of(result)


def test_command_matching_a_deny_pattern_is_refused(restricted: Connection) -> None:
    shell = folder_in(restricted)
    result = shell.call("run_command", command="echo forbidden > x")
    assert result.is_error and "deny pattern 'forbidden'" in text_of(result)
    assert not (shell.folder / "x").exists()


def test_patterns_apply_to_jobs(restricted: Connection) -> None:
    result = folder_in(restricted).call("start_job", command="cat")
    assert result.is_error and "refused" in text_of(result)


def test_tool_descriptions_state_the_patterns(restricted: Connection) -> None:
    tools = {tool.name: tool for tool in restricted.portal.call(restricted.client.list_tools).tools}
    assert "forbidden" in tools["run_command"].description and "forbidden" in tools["start_job"].description


def test_env_allow_passes_a_named_server_variable(restricted: Connection) -> None:
    data = folder_in(restricted).run('printf "%s" "$AGENT_TEST_SECRET"')
    assert data["stdout"] == SECRET


def test_timeout_above_the_maximum_is_lowered(restricted: Connection) -> None:
    result = folder_in(restricted).call("run_command", command="sleep 30", timeout=500)
    assert result.structured_content["timed_out"] is True
    assert "lowered from 500 s" in text_of(result)


# --- background jobs ----------------------------------------------------------------------------------


def test_job_lifecycle_start_write_read_list_stop(shell: Shell) -> None:
    started = shell.call("start_job", command="cat")
    job_id = started.structured_content["job_id"]
    assert started.structured_content["running"] is True
    listed = shell.call("list_jobs")
    assert job_id in [j["job_id"] for j in listed.structured_content["jobs"]]
    sent = shell.call("send_job_input", job_id=job_id, text="hello job\n")
    assert not sent.is_error
    first = shell.call("read_job", job_id=job_id, wait_s=5)
    assert first.structured_content["output"] == "hello job\n" and first.structured_content["running"]
    again = shell.call("read_job", job_id=job_id)
    assert again.structured_content["output"] == ""
    stopped = shell.call("stop_job", job_id=job_id)
    assert stopped.structured_content["running"] is False
    assert job_id not in [j["job_id"] for j in shell.call("list_jobs").structured_content["jobs"]]
    unknown = shell.call("read_job", job_id=job_id)
    assert unknown.is_error and "no job" in text_of(unknown)


def test_job_that_exits_reports_its_code_and_takes_no_input(shell: Shell) -> None:
    job_id = shell.call("start_job", command="echo done; exit 4").structured_content["job_id"]
    output = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        read = shell.call("read_job", job_id=job_id, wait_s=1).structured_content
        output += read["output"]
        if not read["running"]:
            break
    output += shell.call("read_job", job_id=job_id).structured_content["output"]
    late = shell.call("send_job_input", job_id=job_id, text="x\n")
    shell.call("stop_job", job_id=job_id)
    assert read["exit_code"] == 4 and output == "done\n"
    assert late.is_error


def test_stop_job_kills_the_jobs_children(shell: Shell) -> None:
    job_id = shell.call("start_job", command="sleep 300 & echo $!; wait").structured_content["job_id"]
    child = int(shell.call("read_job", job_id=job_id, wait_s=5).structured_content["output"])
    assert alive(child)
    shell.call("stop_job", job_id=job_id)
    assert gone(child)


def test_unknown_job_ids_are_errors(shell: Shell) -> None:
    for tool, extra in [("read_job", {}), ("send_job_input", {"text": "x"}), ("stop_job", {})]:
        result = shell.call(tool, job_id="job-999", **extra)
        assert result.is_error and "no job 'job-999'" in text_of(result), tool


def start_sleeping_job(conn: Connection) -> int:
    shell = folder_in(conn)
    job_id = shell.call("start_job", command="sleep 300 & echo $!; wait").structured_content["job_id"]
    child = int(shell.call("read_job", job_id=job_id, wait_s=5).structured_content["output"])
    assert alive(child)
    return child


def test_jobs_stop_when_the_stdio_client_disconnects(tmp_path: Path) -> None:
    with connected(stdio_params(tmp_path), tmp_path) as conn:
        child = start_sleeping_job(conn)
    assert gone(child), "the job outlived its server"


def test_jobs_stop_when_the_stdio_server_gets_sigterm(tmp_path: Path) -> None:
    with connected(stdio_params(tmp_path), tmp_path) as conn:
        child = start_sleeping_job(conn)
        server_pid = int(folder_in(conn).run("echo $PPID")["stdout"])  # the shell's parent is the server
        os.kill(server_pid, signal.SIGTERM)
        assert gone(child), "the job outlived its server"
        assert gone(server_pid)


def test_jobs_stop_when_the_http_server_is_terminated(tmp_path: Path) -> None:
    with http_server(tmp_path) as (url, proc):
        with connected(url, tmp_path) as conn:
            child = start_sleeping_job(conn)
        proc.terminate()
        proc.wait(timeout=10)
    assert gone(child), "the job outlived its server"


# --- command line ---------------------------------------------------------------------------------------


def test_missing_root_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        shell_server.main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2 and "is not a directory" in capsys.readouterr().err


def test_bad_regex_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        shell_server.main([str(tmp_path), "--deny", "("])
    assert exit_info.value.code == 2 and "invalid regular expression" in capsys.readouterr().err


def test_unavailable_backend_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setitem(shell_server.SANDBOX_BACKENDS, "docker", ("agent.runtime.no_such_backend", "NoSandbox"))
    assert shell_server.main([str(tmp_path), "--sandbox", "docker"]) == 2
    assert "the docker sandbox is not available" in capsys.readouterr().err


BROKEN_BACKEND = """
import sys
from agent.runtime.sandbox import SandboxError
from agent.servers import shell


class Broken:
    kind, workdir = "docker", "/workspace"

    def __init__(self, workspace, spec):
        self.workspace = workspace

    async def __aenter__(self):
        raise SandboxError("no Docker daemon: start one")

    async def __aexit__(self, *exc):
        pass


shell.SANDBOX_BACKENDS["docker"] = ("__main__", "Broken")
sys.exit(shell.main(sys.argv[1:]))
"""


def test_a_sandbox_that_cannot_start_ends_the_server_with_one_line(tmp_path: Path) -> None:
    # stdin stays open, as a client would keep it: the server must not wait for it to close
    proc = subprocess.Popen(
        [sys.executable, "-c", BROKEN_BACKEND, str(tmp_path), "--sandbox", "docker"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code = proc.wait(timeout=30)
        stderr = proc.stderr.read()
    finally:
        proc.kill()
        proc.communicate()
    assert code == 1 and stderr.strip() == "shell server: no Docker daemon: start one"


def test_help_does_not_import_the_sdk() -> None:
    code = (
        "import sys, agent.servers.shell as s; s._parser(); print('mcp' in sys.modules, 'pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["False", "False"], out.stderr
