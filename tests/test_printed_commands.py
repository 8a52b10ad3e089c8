"""Every command line the project prints for people runs, exactly as printed, through the installed `agent`
console script (its folder first on PATH): the README's `agent ...` lines (code blocks and inline code), the
commands the `--help` texts name, every `--help` itself, and the MCP host entries `agent config mcp` prints.

The README and the help texts are read at test time. EXPECTED says what each command must do, keyed by its
text: a README or help change that prints a command without an expectation fails here, and so does an
expectation whose command is printed nowhere any more. Commands run in a temporary folder (with `.venv` and
`examples` linked in, for the README's repository-relative paths) and a temporary HOME.

Commands that need what CI lacks assert the documented behaviour instead: without DEEPSEEK_API_KEY the task
runs as a labelled scripted demo; the vLLM endpoint `gpu-box:8000` and the OpenAI-compatible one on
`localhost:8080` are scripted model servers inside a private network namespace (only loopback, `gpu-box`
naming 127.0.0.1); `agent vllm serve` is checked with --dry-run and its errors without vLLM or GPUs.
Synopsis lines (`agent run TASK.yaml [--model M] ...`) must name only options that their command's --help
lists, and run as the concrete instances given here. Servers are started, asked for their tools and stopped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from conftest import free_port, require_installed, running_command
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent  # holds the installed console script `agent`
AGENT = VENV_BIN / "agent"
QUICKSTART = REPO / "examples" / "quickstart"
TIMEOUT = 150
DEMO_LABEL = "DEEPSEEK_API_KEY is not set: running a SCRIPTED DEMO"
QUICKSTART_ANSWER = "South had the highest revenue in 2026 Q3"
SECRETS = ("DEEPSEEK_API_KEY", "OPENAI_API_KEY", "VLLM_API_KEY", "BRAVE_API_KEY", "AGENT_MODEL",
           "AGENT_SERVE_TOKEN", "AGENT_JUDGE_MODEL", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")

TOOLS = {
    "files": {"read_file", "read_multiple_files", "read_media_file", "write_file", "edit_file", "create_directory",
              "list_directory", "directory_tree", "move_file", "delete_file", "glob_search", "search_content",
              "get_file_info", "list_allowed_roots"},
    "shell": {"run_command", "start_job", "read_job", "send_job_input", "stop_job", "list_jobs"},
    "web": {"fetch"},
    "agent": {"run", "run_task", "list_runs", "read_run"},
}
ENTRY_TOOLS = {"agent-files": TOOLS["files"], "agent-shell": TOOLS["shell"], "agent-web": TOOLS["web"],
               "deepseek-agent": TOOLS["agent"]}


# --- where the commands are printed ----------------------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(text.split())


_FENCE = re.compile(r"^```\s*(\S*)\s*$")
_SHELL_COMMENT = re.compile(r"\s+#(\s.*)?$")
_INVOKES_AGENT = re.compile(r"(?:^|&&|;)\s*(?:\w+=\S*\s+)*(?:\S*/)?agent(?:\s|$)")


def readme_commands(text: str | None = None) -> list[str]:
    """`agent` command lines in the README: lines of shell code blocks that run `agent` (indented lines continue
    the one above, `# comments` dropped) and inline code that starts with `agent `, in prose or in the comments
    of other code blocks."""
    text = README.read_text(encoding="utf-8") if text is None else text
    commands: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    continuing = False
    for line in text.splitlines():
        match = _FENCE.match(line)
        if match:
            fence = None if fence is not None else match.group(1)
            continuing = False
            continue
        if fence is None:
            prose.append(line)
        elif fence not in ("", "bash", "sh", "shell", "console"):
            prose.append(line.replace("`", "") if line.count("`") % 2 else line)  # e.g. `agent ...` in a YAML comment
        else:
            code = _SHELL_COMMENT.sub("", line)
            if continuing and line[:1].isspace() and code.strip():
                commands[-1] = _normal(f"{commands[-1]} {code}")
            elif _INVOKES_AGENT.search(code):
                commands.append(_normal(code))
                continuing = True
            else:
                continuing = False
    for span in re.findall(r"`([^`]+)`", "\n".join(prose)):
        if span.startswith("agent "):
            commands.append(_normal(span))
    return list(dict.fromkeys(commands))


_HELP_SUBCOMMAND = re.compile(r"^ {4}([a-z][\w-]*)(?:\s|$)", re.MULTILINE)


def positional_choices(help_text: str) -> list[str]:
    """The choices of a positional argument in a usage line (`{files,shell,web}`), not those of an option."""
    usage = _normal(help_text.split("\n\n", 1)[0])
    tokens = usage.split()
    choices: list[str] = []
    for before, token in zip(tokens, tokens[1:], strict=False):
        if not (token.startswith("{") and token.endswith("}")):
            continue
        if before.lstrip("[").startswith("-") and not before.endswith("]"):
            continue  # an option's value, e.g. [--think {auto,none,high,max}]
        choices.extend(token[1:-1].split(","))
    return choices


def help_printed_commands(help_text: str) -> list[str]:
    """Commands a help text names for people: in backticks, or as the last clause in parentheses."""
    text = _normal(help_text)
    found = [span for span in re.findall(r"`([^`]+)`", text) if span.startswith("agent ")]
    for group in re.findall(r"\(([^()]*)\)", text):
        clause = group.split("; ")[-1].strip()
        if clause.startswith("agent ") and "`" not in clause:
            found.append(clause)
    return [_normal(c) for c in found]


# --- running them ------------------------------------------------------------------------------------------


@dataclass
class Ran:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"$ {self.command}\nexit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n"
                f"--- stderr\n{self.stderr[-3000:]}")


@dataclass
class Shell:
    """A user's shell: a scratch folder to work in, a scratch HOME, the venv's bin first on PATH, no keys."""

    cwd: Path
    home: Path
    env: dict[str, str]

    def run(self, command: str, *, timeout: float = TIMEOUT) -> Ran:
        proc = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        return Ran(command, proc.returncode, proc.stdout, proc.stderr)

    def help_text(self, command: str) -> str:
        ran = self.run(f"{command} --help", timeout=60)
        assert ran.returncode == 0, str(ran)
        return ran.stdout


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    (cwd / ".venv").symlink_to(VENV_BIN.parent)
    (cwd / "examples").symlink_to(REPO / "examples")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    return Shell(cwd, home, env)


Check = Callable[[Shell, str], None]


def exits_0(*expected: str) -> Check:
    """Runs as printed, exits 0, and prints each of `expected` (stdout or stderr)."""
    def check(shell: Shell, command: str) -> None:
        ran = shell.run(command)
        assert ran.returncode == 0, str(ran)
        for text in expected:
            assert text in ran.stdout + ran.stderr, f"{text!r} not printed\n{ran}"
    return check


def fails_clearly(returncode: int, *expected: str) -> Check:
    """Exits with `returncode` and a message naming what is wrong (no traceback)."""
    def check(shell: Shell, command: str) -> None:
        ran = shell.run(command)
        assert ran.returncode == returncode, str(ran)
        assert "Traceback" not in ran.stderr, str(ran)
        for text in expected:
            assert text in ran.stderr, f"{text!r} not in the error\n{ran}"
    return check


def help_text() -> Check:
    """A --help: exits 0 and its usage line names the command that printed it."""
    def check(shell: Shell, command: str) -> None:
        ran = shell.run(command, timeout=60)
        assert ran.returncode == 0, str(ran)
        usage = ran.stdout.split("\n", 1)[0]
        assert usage.startswith("usage: agent"), str(ran)
        prog = usage.removeprefix("usage: ").split(" [", 1)[0].split()
        typed = command.removesuffix(" --help").split()
        assert typed[: len(prog)] == prog, f"usage names {' '.join(prog)!r}, typed {' '.join(typed)!r}\n{ran}"
    return check


def command_name() -> Check:
    """A command named in prose (`agent run`): the command exists and its --help exits 0."""
    def check(shell: Shell, command: str) -> None:
        shell.help_text(command)
    return check


def _trace_of(ran: Ran, shell: Shell) -> list[dict[str, Any]]:
    match = re.search(r"^trace: (.+\.jsonl)$", ran.stderr, re.MULTILINE)
    assert match, f"no trace path printed\n{ran}"
    path = shell.cwd / match.group(1)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _finished_with_real_tools(ran: Ran, shell: Shell) -> None:
    events = _trace_of(ran, shell)
    assert events[-1]["type"] == "run_finished" and events[-1]["stop_reason"] == "answer", str(ran)
    results = [e for e in events if e["type"] == "tool_result"]
    assert results and not [e for e in results if e["is_error"]], str(ran)


def scripted_demo(setup: Callable[[Shell], Any] | None = None) -> Check:
    """Without DEEPSEEK_API_KEY: says so, replays the task's demo with real MCP servers, answers, exits 0."""
    def check(shell: Shell, command: str) -> None:
        if setup is not None:
            setup(shell)
        ran = shell.run(command)
        assert ran.returncode == 0, str(ran)
        assert DEMO_LABEL in ran.stderr, str(ran)
        assert QUICKSTART_ANSWER in ran.stdout, str(ran)
        _finished_with_real_tools(ran, shell)
    return check


def copy_quickstart(shell: Shell) -> None:
    """The folder a user who writes `agent run task.yaml` stands in: a task with its files."""
    for item in QUICKSTART.iterdir():
        if item.is_file():
            shutil.copy2(item, shell.cwd / item.name)


def install_then_scripted_demo() -> Check:
    """The quick-start line: its install steps are what CI's .ci/run does before the tests (reaching PyPI is
    no test's business); the rest of the line runs as printed, as a scripted demo without a key."""
    def check(shell: Shell, command: str) -> None:
        steps = command.split(" && ")
        ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
        install = [s for s in steps if s.startswith("python3 -m venv") or "/pip install" in s]
        assert install == ["python3 -m venv .venv", ".venv/bin/pip install -e '.[dev]'"], command
        assert "python3 -m venv .venv" in ci and re.search(r"\.venv/bin/python -m pip install .*-e '\.\[dev\]'", ci)
        scripted_demo()(shell, " && ".join(s for s in steps if s not in install))
    return check


_NETNS_HELPER = r"""
import fcntl, json, socket, struct, subprocess, sys
from agent.testing import ScriptedModelServer, load_script
spec = json.loads(sys.argv[1])
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sh", fcntl.ioctl(probe, 0x8913, struct.pack("16sh", b"lo", 0)))[1]  # SIOCGIFFLAGS
fcntl.ioctl(probe, 0x8914, struct.pack("16sh", b"lo", flags | 1))  # SIOCSIFFLAGS: lo up
server = ScriptedModelServer(load_script(spec["script"]), dialect="vllm", model=spec["model"], port=spec["port"])
with server:
    ran = subprocess.run(["bash", "-c", spec["command"]], cwd=spec["cwd"], env=spec["env"], capture_output=True,
                         text=True, timeout=spec["timeout"])
    print(json.dumps({"returncode": ran.returncode, "stdout": ran.stdout, "stderr": ran.stderr,
                      "paths": [r.path for r in server.requests]}))
"""


def against_endpoint(host: str, port: int, model: str, label: str) -> Check:
    """An endpoint CI lacks (a vLLM GPU box, a local OpenAI-compatible server) is a scripted model server at that
    host and port, in a network namespace of its own (loopback only; `host` names 127.0.0.1 there). The
    command runs as printed and gets its answers from that endpoint: no scripted-demo fallback."""
    def check(shell: Shell, command: str) -> None:
        require_installed("unshare and mount (util-linux) with the right to make namespaces (root)",
                          shutil.which("unshare") is not None and os.geteuid() == 0,
                          "run the tests as root, as CI does")
        hosts = shell.cwd.parent / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {host}\n", encoding="utf-8")
        helper = shell.cwd.parent / "endpoint.py"
        helper.write_text(_NETNS_HELPER, encoding="utf-8")
        spec = {"script": str(QUICKSTART / "demo.yaml"), "model": model, "port": port, "command": command,
                "cwd": str(shell.cwd), "env": shell.env, "timeout": TIMEOUT}
        proc = subprocess.run(
            ["unshare", "--net", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
             str(hosts), sys.executable, str(helper), json.dumps(spec)],
            capture_output=True, text=True, timeout=TIMEOUT + 30)
        assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
        outcome = json.loads(proc.stdout)
        ran = Ran(command, outcome["returncode"], outcome["stdout"], outcome["stderr"])
        assert ran.returncode == 0, str(ran)
        assert "SCRIPTED DEMO" not in ran.stderr, str(ran)
        assert label in ran.stderr, str(ran)
        assert QUICKSTART_ANSWER in ran.stdout, str(ran)
        assert outcome["paths"] and set(outcome["paths"]) == {"/v1/chat/completions"}, outcome["paths"]
        _finished_with_real_tools(ran, shell)
    return check


async def _stdio_tools(params: StdioServerParameters) -> set[str]:
    with anyio.fail_after(60):
        async with Client(params) as client:
            return {tool.name for tool in (await client.list_tools()).tools}


def stdio_server(tools: set[str], setup: Callable[[Shell], Any] | None = None) -> Check:
    """A stdio MCP server: started as printed, lists `tools` to an MCP client, stops when the client leaves."""
    def check(shell: Shell, command: str) -> None:
        if setup is not None:
            setup(shell)
        params = StdioServerParameters(command="bash", args=["-c", command], env=shell.env, cwd=str(shell.cwd))
        listed = anyio.run(_stdio_tools, params)
        assert listed == tools, f"{command}: lists {sorted(listed)}"
    return check


async def _http_tools(url: str, headers: dict[str, str]) -> set[str]:
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(headers=headers) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                return {tool.name for tool in (await client.list_tools()).tools}


def http_server(tools: set[str], token: str | None = None) -> Check:
    """A streamable HTTP MCP server on the command's `{port}`: listens, lists `tools` (with the bearer token,
    if any), is stopped; without the token it answers 401."""
    def check(shell: Shell, command: str) -> None:
        port = free_port()
        command = command.format(port=port)
        url = f"http://127.0.0.1:{port}/mcp"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with running_command(["bash", "-c", command], port, env=shell.env, cwd=shell.cwd):
            listed = anyio.run(_http_tools, url, headers)
            assert listed == tools, f"{command}: lists {sorted(listed)}"
            if token:
                with httpx2.Client() as http:
                    refused = http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                        headers={"Accept": "application/json, text/event-stream"})
                assert refused.status_code == 401, f"{command}: no token, answered {refused.status_code}"
    return check


def prints_url_and_serves_models(model: str, setup: Callable[[Shell], Any] | None = None) -> Check:
    """`agent scripted-server`: prints its base URL and model string, answers GET /models, runs until stopped."""
    def check(shell: Shell, command: str) -> None:
        if setup is not None:
            setup(shell)
        port = free_port()
        proc = subprocess.Popen(["bash", "-c", command.format(port=port)], cwd=shell.cwd, env=shell.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 30
            while not select.select([proc.stdout], [], [], 0.2)[0]:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "no URL printed within 30 s"
            url, model_string = proc.stdout.readline().decode().split()
            with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
                listed = json.loads(response.read())
            assert model in [m["id"] for m in listed["data"]]
            assert model_string.endswith(f"{url}#{model}")
            assert proc.poll() is None, "the server stopped on its own"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    return check


def writes_host_config(path: Callable[[Shell], Path], key: str) -> Check:
    """`agent config mcp ... --install`: the host's file holds our four entries, launching the installed script."""
    def check(shell: Shell, command: str) -> None:
        exits_0("installed")(shell, command)
        document = json.loads(path(shell).read_text(encoding="utf-8"))
        assert set(document[key]) == set(ENTRY_TOOLS)
        assert {Path(e["command"]) for e in document[key].values()} == {AGENT}
    return check


def prints_host_config(key: str) -> Check:
    def check(shell: Shell, command: str) -> None:
        ran = shell.run(command)
        assert ran.returncode == 0, str(ran)
        entries = json.loads(ran.stdout)[key]
        assert set(entries) <= set(ENTRY_TOOLS) and entries, str(ran)
        assert {Path(e["command"]) for e in entries.values()} == {AGENT}
    return check


def dry_run(repo_id: str) -> Check:
    """`agent vllm serve ... --dry-run`: prints the vllm serve command and the model string to use."""
    return exits_0(f"vllm serve {repo_id} ", f"use --model vllm:http://127.0.0.1:8000/v1#{repo_id}")


def vllm_absent() -> Check:
    """Without --dry-run on a machine without vLLM (CI): a clear error that says how to get it."""
    def check(shell: Shell, command: str) -> None:
        if shutil.which("vllm", path=shell.env["PATH"]) is not None:
            pytest.skip("vLLM is installed here: this checks the error on machines without it")
        fails_clearly(2, "'vllm' is not installed", "--dry-run prints the command")(shell, command)
    return check


def docker_prune() -> Check:
    """`agent sandbox prune` talks to the Docker daemon CI starts (.ci/docker-setup.sh)."""
    def check(shell: Shell, command: str) -> None:
        docker = shutil.which("docker") is not None and subprocess.run(
            ["docker", "info"], capture_output=True, timeout=60).returncode == 0
        require_installed("a running Docker daemon", docker, "run .ci/docker-setup.sh (as root)")
        exits_0("sandbox container(s)")(shell, command)
    return check


TOOLATHLON_ROOT = REPO / "tests" / "fixtures" / "toolathlon_root"
ATLAS_OFFLINE = REPO / "tests" / "fixtures" / "atlas" / "offline"


def toolathlon_checkout(shell: Shell) -> None:
    """Where the README's Toolathlon lines run: a checkout (our fixture shaped like the benchmark's) after
    `uv sync`, whose `.venv` holds what its checkers import."""
    (shell.cwd / ".venv").unlink()  # the scratch folder's link to our venv: the checkout has its own
    shutil.copytree(TOOLATHLON_ROOT, shell.cwd, dirs_exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(shell.cwd / ".venv")], check=True)
    site = next((shell.cwd / ".venv" / "lib").glob("python3*/site-packages"))
    (site / "grader_only_dep.py").write_text("MARK = 'ok'\n", encoding="utf-8")
    terminal = shell.cwd / ".venv" / "bin" / "fixture-terminal"
    terminal.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agent.servers.shell "$ALLOWED_DIR"\n', encoding="utf-8")
    terminal.chmod(0o755)


def atlas_checkout(shell: Shell) -> None:
    """What the README's MCP-Atlas lines set up: task rows, the data folder and the server template (our
    fixtures shaped like the benchmark's, with offline stand-ins for its npx/uvx servers)."""
    shutil.copy2(ATLAS_OFFLINE / "tasks.csv", shell.cwd / "sample_tasks.csv")
    shell.env.update(TEMPLATE=str(ATLAS_OFFLINE / "mcp_server_template.json"),
                     DATA=str(REPO / "tests" / "fixtures" / "atlas" / "data"),
                     ATLAS_TEST_PYTHON=sys.executable, ATLAS_TEST_STUB=str(ATLAS_OFFLINE / "stub_server.py"))


def after(setup: Callable[[Shell], Any], check: Check) -> Check:
    def run(shell: Shell, command: str) -> None:
        setup(shell)
        check(shell, command)
    return run


def run_by_the_ray_tests() -> Check:
    """A line that needs a Ray cluster: tests/test_eval_ray.py runs it exactly as printed on its two-node cluster
    (one test cluster per machine at a time); here, that it is the very line the README prints."""
    def check(shell: Shell, command: str) -> None:
        from test_eval_ray import README_RAY_COMMAND

        assert command == README_RAY_COMMAND, "tests/test_eval_ray.py runs another line than the README prints"
    return check


OAUTH_SERVER = REPO / "tests" / "servers" / "oauth_server.py"


@contextlib.contextmanager
def oauth_notes_server(shell: Shell) -> Iterator[str]:
    """The README's `notes` server: an OAuth-protected MCP server (our test authorization server) named in
    ./.mcp.json; BROWSER is a no-op, so the person in front of the browser is this test."""
    port = free_port()
    with running_command([sys.executable, str(OAUTH_SERVER), str(port), "--scope", "notes:read"], port):
        base = f"http://127.0.0.1:{port}"
        (shell.cwd / ".mcp.json").write_text(json.dumps(
            {"mcpServers": {"notes": {"url": f"{base}/mcp", "oauth": True}}}), encoding="utf-8")
        shell.env["BROWSER"] = "true"
        yield base


def _browser_login(shell: Shell, command: str, base: str) -> Ran:
    """Run a login command, open the URL it prints as a browser would (the test server approves at once)."""
    proc = subprocess.Popen(["bash", "-c", command], cwd=shell.cwd, env=shell.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if line.strip().startswith(f"{base}/authorize?"):
                break
        with httpx2.Client(follow_redirects=True, timeout=30) as http:
            assert http.get(printed[-1].strip()).status_code == 200, "".join(printed)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Ran(command, proc.returncode, "".join(printed) + out, err)


def logs_in_with_the_browser_flow() -> Check:
    def check(shell: Shell, command: str) -> None:
        with oauth_notes_server(shell) as base:
            ran = _browser_login(shell, command, base)
            assert ran.returncode == 0 and "logged in to 'notes'" in ran.stdout, str(ran)
    return check


def after_a_login(*expected: str) -> Check:
    """`agent auth status` / `logout` once `agent auth login notes` has stored tokens."""
    def check(shell: Shell, command: str) -> None:
        with oauth_notes_server(shell) as base:
            login = _browser_login(shell, "agent auth login notes", base)
            assert login.returncode == 0, str(login)
            exits_0(*expected)(shell, command)
    return check


@contextlib.contextmanager
def thirdparty_site(shell: Shell) -> Iterator[None]:
    """What the README says to do first: the thirdparty servers installed and the release page on port 8766."""
    require_installed(
        "npm server-filesystem, mcp-server-fetch and mcp-server-git",
        (REPO / ".thirdparty/npm/node_modules/.bin/mcp-server-filesystem").exists()
        and importlib.util.find_spec("mcp_server_fetch") is not None
        and importlib.util.find_spec("mcp_server_git") is not None,
        "run .ci/thirdparty-setup.sh to install them")
    site = "python -m http.server 8766 --bind 127.0.0.1 --directory examples/thirdparty/site"
    with running_command(["bash", "-c", site], 8766, env=shell.env, cwd=shell.cwd):
        yield


def thirdparty_demo() -> Check:
    def check(shell: Shell, command: str) -> None:
        with thirdparty_site(shell):
            ran = shell.run(command)
        assert ran.returncode == 0, str(ran)
        assert DEMO_LABEL in ran.stderr and "dark theme" in ran.stdout, str(ran)
        _finished_with_real_tools(ran, shell)
    return check


def traces_a_demo_run() -> Check:
    """`agent trace PATH` reads back the trace a run wrote (the quick-start demo, run first)."""
    def check(shell: Shell, command: str) -> None:
        run = shell.run("agent run examples/quickstart/task.yaml --quiet")
        assert run.returncode == 0, str(run)
        trace = sorted((shell.cwd / "runs").glob("*.jsonl"))[-1]
        ran = shell.run(command.format(trace=trace.relative_to(shell.cwd)))
        assert ran.returncode == 0, str(ran)
        result = json.loads(ran.stdout)
        assert result["stop_reason"] == "answer" and QUICKSTART_ANSWER in result["answer"]
    return check


def writes_pack(shell_file: str) -> Check:
    def check(shell: Shell, command: str) -> None:
        exits_0("snapshot:", "tokens by folder")(shell, command)
        assert "sales_server.py" in (shell.cwd / shell_file).read_text(encoding="utf-8")
    return check


def agent_yaml(shell: Shell) -> None:
    (shell.cwd / "agent.yaml").write_text("builtin_servers: [files]\nlimits: {max_steps: 5}\n", encoding="utf-8")


_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def synopsis(help_of: list[str], instances: dict[str, Check] | None = None) -> Check:
    """A usage line with placeholders: every option it names is in the --help of `help_of` (each exits 0), and
    each concrete instance given runs with its own check."""
    def check(shell: Shell, command: str) -> None:
        helps = " ".join(shell.help_text(c) for c in help_of)
        for option in _OPTION.findall(command):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helps), (
                f"{command!r} names {option}, which `{' --help`, `'.join(help_of)} --help` does not list")
        for instance, instance_check in (instances or {}).items():
            instance_check(shell, instance)
    return check


def _home_config(shell: Shell) -> Path:
    return shell.home / ".config" / "Claude" / "claude_desktop_config.json"


SERVER_INSTANCES: dict[str, Check] = {
    "agent server files .": stdio_server(TOOLS["files"]),
    "agent server shell .": stdio_server(TOOLS["shell"]),
    "agent server web": stdio_server(TOOLS["web"]),
    "agent server files . --http 127.0.0.1:{port}": http_server(TOOLS["files"]),
    "agent server web --http 127.0.0.1:{port}": http_server(TOOLS["web"]),
}
SERVE_INSTANCES: dict[str, Check] = {
    "agent serve --http 127.0.0.1:{port} --token s3cret": http_server(TOOLS["agent"], token="s3cret"),
    "agent serve --http {port}": http_server(TOOLS["agent"]),
    "agent serve --http 0.0.0.0:9 --workspace .": fails_clearly(2, "refusing to serve on 0.0.0.0",
                                                                "without a bearer token"),
    "agent serve --config agent.yaml --workspace . --runs-dir runs --model deepseek:deepseek-flash":
        stdio_server(TOOLS["agent"], setup=agent_yaml),
}
CONFIG_INSTANCES: dict[str, Check] = {
    "agent config mcp --client claude-desktop --root . --servers files,shell,web,agent": prints_host_config("mcpServers"),
    "agent config mcp --client claude-code --root .": prints_host_config("mcpServers"),
    "agent config mcp --client cursor --servers web": prints_host_config("mcpServers"),
    "agent config mcp --client vscode --root .": prints_host_config("servers"),
    "agent config mcp --client claude-desktop --install": writes_host_config(_home_config, "mcpServers"),
}
VLLM_MODELS = {"v4-flash": "deepseek-ai/DeepSeek-V4-Flash", "v4-pro": "deepseek-ai/DeepSeek-V4-Pro",
               "v3.2": "deepseek-ai/DeepSeek-V3.2", "v3.1": "deepseek-ai/DeepSeek-V3.1"}

HELP_COMMANDS = [
    "agent --help", "agent run --help", "agent eval --help", "agent serve --help", "agent trace --help",
    "agent server --help", "agent server files --help", "agent server shell --help", "agent server web --help",
    "agent vllm --help", "agent vllm serve --help", "agent sandbox --help", "agent sandbox prune --help",
    "agent config --help", "agent config mcp --help", "agent pack --help", "agent scripted-server --help",
    "agent chat --help", "agent auth --help", "agent auth login --help", "agent auth logout --help",
    "agent auth status --help",
]

EXPECTED: dict[str, Check] = {
    **{command: help_text() for command in HELP_COMMANDS},
    # README, Quick start
    "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/agent run examples/quickstart/task.yaml":
        install_then_scripted_demo(),
    ".venv/bin/agent run examples/quickstart/task.yaml --model deepseek:deepseek-v4-pro --think max": scripted_demo(),
    ".venv/bin/agent run examples/quickstart/task.yaml --model vllm:http://gpu-box:8000/v1#deepseek-ai/DeepSeek-V4-Flash":
        against_endpoint("gpu-box", 8000, "deepseek-ai/DeepSeek-V4-Flash",
                         "vllm:http://gpu-box:8000/v1#deepseek-ai/DeepSeek-V4-Flash"),
    "AGENT_MODEL=openai-compatible:http://localhost:8080/v1#qwen3 .venv/bin/agent run examples/quickstart/task.yaml":
        against_endpoint("localhost", 8080, "qwen3", "openai-compatible:http://localhost:8080/v1#qwen3"),
    "agent run task.yaml": scripted_demo(setup=copy_quickstart),
    # README, prose
    "agent run": command_name(),
    "agent eval": command_name(),
    "agent chat": command_name(),
    "agent pack": command_name(),
    "agent run --keep-workspace": synopsis(["agent run"]),
    "agent eval --judge": synopsis(["agent eval"]),
    "agent pack PATH --budget N [--tokenizer tokenizer.json | --tokenize-url URL]": synopsis(
        ["agent pack"], {"agent pack examples/quickstart --budget 2000 --out snapshot.txt": writes_pack("snapshot.txt")}),
    "agent server files|shell|web [options]": synopsis(
        ["agent server files", "agent server shell", "agent server web"], SERVER_INSTANCES),
    "agent config mcp --client claude-desktop|claude-code|cursor|vscode [--root DIR] [--servers files,shell,web,agent]":
        synopsis(["agent config mcp"], CONFIG_INSTANCES),
    "agent serve": stdio_server(TOOLS["agent"]),
    "agent config mcp --client claude-code --install": writes_host_config(lambda s: s.cwd / ".mcp.json", "mcpServers"),
    "agent serve [--http [HOST:]PORT] [--config agent.yaml] [--token TOKEN] [--workspace DIR] [--runs-dir DIR] [--model M]":
        synopsis(["agent serve"], SERVE_INSTANCES),
    "agent run examples/thirdparty/task.yaml": thirdparty_demo(),
    "agent sandbox prune": docker_prune(),
    "agent vllm serve v4-flash|v4-pro|v3.2|v3.1 [--gpus 8xH200] [--max-model-len N] [--think-max] [--dry-run]": synopsis(
        ["agent vllm serve"], {
            **{f"agent vllm serve {alias} --gpus 8xH200 --dry-run": dry_run(repo) for alias, repo in VLLM_MODELS.items()},
            "agent vllm serve v4-flash --gpus 8xH200 --max-model-len 131072 --dry-run": exits_0("--max-model-len 131072"),
            "agent vllm serve v4-pro --gpus 1xH100 --dry-run": fails_clearly(2, "needs at least", "found 1x H100"),
            "agent vllm serve v4-flash --gpus 8xH200": vllm_absent(),
        }),
    "agent eval PATH... [-j N] [-k K] [--model M] [--think T] [--filter PATTERN] [--out DIR] [--resume] [--timeout S] "
    "[--judge MODEL] [--scripted NAME] [--servers FILE] [--atlas-data DIR] [--toolathlon-root DIR] "
    "[--grader-python PATH] [--our-servers] [--toolathlon-services NAMES] [--list] [--executor local|ray] "
    "[--ray-address ADDRESS] [--cpus-per-run N]": synopsis(
        ["agent eval"], {"agent eval examples/suites/offline --list": exits_0("desensitize-records  [task]")}),
    # README, Running Toolathlon (in the checkout) and Running MCP-Atlas
    "agent eval tasks/finalpool --list": after(toolathlon_checkout, exits_0(
        "word-stats  [toolathlon] servers: filesystem (benchmark", "· a Canvas LMS instance",
        "canvas_api_token in configs/token_key_session.py")),
    "agent eval tasks/finalpool -k 3 -j 4 --model deepseek:deepseek-v4-pro --think max --out evals/toolathlon-v4-pro":
        after(toolathlon_checkout, fails_clearly(2, "DEEPSEEK_API_KEY is not set")),
    "agent eval sample_tasks.csv --servers $TEMPLATE --atlas-data $DATA --list": after(atlas_checkout, exits_0(
        "5f0e1d2c3b4a596877869504  [atlas]", "ATLAS_TEST_NOTION_TOKEN")),
    "agent eval sample_tasks.csv --servers $TEMPLATE --atlas-data $DATA --model deepseek:deepseek-v4-pro --judge "
    "deepseek:deepseek-v4-pro -j 5 --out evals/atlas": after(atlas_checkout, fails_clearly(2, "DEEPSEEK_API_KEY is not set")),
    # README, OAuth for HTTP servers
    "agent auth login notes --config .mcp.json": logs_in_with_the_browser_flow(),
    "agent auth status": after_a_login("notes:", "logged in"),
    "agent auth logout notes": after_a_login("removed"),
    "agent auth login NAME": synopsis(["agent auth login"]),
    # README, Larger than one machine
    "agent eval --executor ray": synopsis(["agent eval"]),
    "agent eval examples/suites/offline --scripted reference --executor ray --ray-address auto":
        run_by_the_ray_tests(),
    "agent eval examples/suites/offline -k 3 --model deepseek:deepseek-v4-flash --executor ray --ray-address auto "
    "--cpus-per-run 2 --endpoint-concurrency 16 --endpoint-rate 5": fails_clearly(2, "DEEPSEEK_API_KEY is not set"),
    "agent eval examples/suites/offline --scripted reference": exits_0(
        "pass@1 100.0%", "graders proven: all 12 'reference' runs passed as expected"),
    "agent scripted-server script.yaml": prints_url_and_serves_models(
        "deepseek-v4-flash", setup=lambda s: shutil.copy2(QUICKSTART / "demo.yaml", s.cwd / "script.yaml")),
    # README, CLI
    "agent run TASK.yaml [--model M] [--think auto|none|high|max] [--trace PATH] [--max-steps N] [--demo] [--quiet] "
    "[--no-reasoning] [--json] [--keep-workspace] [--approve ask|destructive|never] [--otel]": synopsis(["agent run"], {
        "agent run examples/quickstart/task.yaml --think none --max-steps 5 --trace t.jsonl --demo --no-reasoning":
            exits_0(QUICKSTART_ANSWER, "trace: t.jsonl")}),
    "agent eval PATH... [-j N] [-k K] [--resume] [--out DIR] [--scripted NAME]": synopsis(["agent eval"], {
        "agent eval examples/suites/offline -j 2 -k 1 --out out --scripted wrong --filter 'csv*'":
            exits_0("pass@1 0.0%", "graders proven: all 1 'wrong' runs failed as expected")}),
    "agent chat [TASK.yaml] [--model M] [--think auto|none|high|max] [--session FILE] "
    "[--approve ask|destructive|never]": synopsis(["agent chat"]),
    "agent chat [TASK.yaml] [--session FILE]": synopsis(["agent chat"]),
    "agent run TASK.yaml --otel": synopsis(["agent run"]),
    "agent trace PATH": synopsis(["agent trace"], {"agent trace {trace}": traces_a_demo_run()}),
    "agent pack PATH... [--budget N] [--max-file-tokens N] [--include GLOB] [--exclude GLOB] [--out FILE] "
    "[--tokenizer FILE | --tokenize-url URL]": synopsis(["agent pack"], {
        "agent pack examples/quickstart --budget 5000 --max-file-tokens 500 --include '*.py' --exclude '*.csv' "
        "--out pack.txt": writes_pack("pack.txt")}),
    "agent server shell|files|web [options]": synopsis(
        ["agent server shell", "agent server files", "agent server web"]),
    "agent vllm serve MODEL [--gpus 4xB200] [--think-max] [--dry-run]": synopsis(["agent vllm serve"], {
        "agent vllm serve v4-flash --gpus 4xB200 --think-max --dry-run": dry_run("deepseek-ai/DeepSeek-V4-Flash")}),
    "agent config mcp --client claude-desktop|claude-code|cursor|vscode [--install]": synopsis(["agent config mcp"]),
    "agent sandbox prune [--all]": synopsis(["agent sandbox prune"]),
    "agent serve [--http [HOST:]PORT] [--config agent.yaml] [--token TOKEN]": synopsis(["agent serve"]),
    "agent scripted-server SCRIPT.yaml [--dialect deepseek|vllm] [--model NAME] [--port N]": synopsis(
        ["agent scripted-server"], {
            "agent scripted-server examples/quickstart/demo.yaml --dialect vllm --model qwen3 --port {port}":
                prints_url_and_serves_models("qwen3")}),
    # --help texts (agent --help, agent vllm --help, agent sandbox --help, agent config --help)
    "agent vllm serve MODEL [--gpus ...] [--dry-run]": synopsis(["agent vllm serve"], {
        "agent vllm serve v3.2 --gpus 8xH200 --dry-run": dry_run("deepseek-ai/DeepSeek-V3.2")}),
    "agent config mcp --client claude-desktop": prints_host_config("mcpServers"),
    "agent config mcp --client NAME": synopsis(["agent config mcp"], {
        "agent config mcp --client cursor": prints_host_config("mcpServers")}),
}


# --- coverage: nothing printed goes untested, nothing tested is printed nowhere -------------------------------


@dataclass
class Printed:
    """Every command the README and the help texts print, and the --help invocations the CLI has."""

    readme: list[str]
    by_help: dict[str, list[str]] = field(default_factory=dict)
    help_invocations: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> Printed:
    home = tmp_path_factory.mktemp("help-home")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    found = Printed(readme_commands())
    pending = ["agent"]
    while pending:
        command = pending.pop(0)
        ran = subprocess.run(["bash", "-c", f"{command} --help"], env=env, cwd=home, capture_output=True,
                             text=True, timeout=60)
        assert ran.returncode == 0, f"{command} --help: exit {ran.returncode}\n{ran.stderr}"
        found.help_invocations.append(f"{command} --help")
        found.by_help[f"{command} --help"] = help_printed_commands(ran.stdout)
        if command == "agent":
            section = ran.stdout.split("positional arguments:", 1)[-1].split("options:")[0]
            pending.extend(f"agent {name}" for name in _HELP_SUBCOMMAND.findall(section))
        elif ran.stdout.startswith(f"usage: {command} "):  # a parser of its own: its positional choices nest
            pending.extend(f"{command} {name}" for name in positional_choices(ran.stdout))
    return found


def test_every_command_the_readme_prints_has_an_expectation(printed: Printed) -> None:
    missing = [c for c in printed.readme if c not in EXPECTED]
    assert not missing, "README commands without an expectation in EXPECTED:\n" + "\n".join(missing)


def test_every_command_a_help_text_prints_has_an_expectation(printed: Printed) -> None:
    missing = [f"{c}    (printed by `{where}`)" for where, commands in printed.by_help.items()
               for c in commands if c not in EXPECTED]
    assert not missing, "commands printed by --help texts without an expectation:\n" + "\n".join(missing)


def test_every_subcommand_has_its_help_checked(printed: Printed) -> None:
    assert sorted(printed.help_invocations) == sorted(HELP_COMMANDS)


def test_every_expectation_is_for_a_command_still_printed(printed: Printed) -> None:
    known = {*printed.readme, *printed.help_invocations, *(c for cs in printed.by_help.values() for c in cs)}
    stale = [c for c in EXPECTED if c not in known]
    assert not stale, "expectations for commands printed nowhere any more:\n" + "\n".join(stale)


def test_the_readme_extraction_finds_code_lines_continuations_and_inline_commands() -> None:
    text = ("Run `agent run t.yaml` or `python x.py`.\n\n```bash\nexport K=1\nA=b .venv/bin/agent run t.yaml  # go\n"
            "pip install x && agent pack .\n```\n\n```\nagent eval P [-j N]\n     [--list]\nagent/  the SDK\n```\n"
            "```python\nfrom agent import Agent\nagent = 1\n```\n```yaml\nkeep: false  # or `agent run --keep`\n```\n")
    assert readme_commands(text) == ["A=b .venv/bin/agent run t.yaml", "pip install x && agent pack .",
                                     "agent eval P [-j N] [--list]", "agent run t.yaml", "agent run --keep"]


# --- each printed command, run ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(EXPECTED), ids=list(EXPECTED))
def test_printed_command_runs_as_documented(shell: Shell, command: str) -> None:
    EXPECTED[command](shell, command)


# --- what `agent config mcp` prints -----------------------------------------------------------------------------

@dataclass
class ConfigHost:
    """One project root and HOME for every client, so that identical printed entries start only once."""

    root: Path
    home: Path
    launched: dict[str, set[str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def config_host(tmp_path_factory: pytest.TempPathFactory) -> ConfigHost:
    base = tmp_path_factory.mktemp("config-host")
    (base / "project").mkdir()
    (base / "home").mkdir()
    return ConfigHost(base / "project", base / "home")


def _host_env(entry: dict[str, Any], home: Path) -> dict[str, str]:
    """A host's environment for a stdio server: the SDK's allow-list (HOME our own) plus the entry's env, with
    `${VAR}` expanded from that environment as Claude Code and Cursor do."""
    env = get_default_environment()
    env["HOME"] = str(home)
    for name, value in entry.get("env", {}).items():
        env[name] = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), value)
    return env


@pytest.mark.parametrize("client", ["claude-desktop", "claude-code", "cursor", "vscode"])
def test_every_entry_agent_config_mcp_prints_starts_and_lists_its_tools(
    shell: Shell, config_host: ConfigHost, client: str
) -> None:
    ran = shell.run(f"agent config mcp --client {client} --root {shlex.quote(str(config_host.root))}")
    assert ran.returncode == 0, str(ran)
    entries = json.loads(ran.stdout)["servers" if client == "vscode" else "mcpServers"]
    assert set(entries) == set(ENTRY_TOOLS)
    for name, entry in entries.items():
        # Launched as a host launches it: command and args exactly, cwd /, the SDK's environment.
        params = StdioServerParameters(command=entry["command"], args=entry["args"],
                                       env=_host_env(entry, config_host.home), cwd="/")
        key = json.dumps(params.model_dump(mode="json"), sort_keys=True)
        if key not in config_host.launched:  # the clients print the same command lines; start each once
            config_host.launched[key] = anyio.run(_stdio_tools, params)
        assert config_host.launched[key] == ENTRY_TOOLS[name], name
