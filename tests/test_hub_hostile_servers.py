"""Servers that break the stdio rule (text that is not JSON-RPC on stdout) never crash or stall a run."""

from __future__ import annotations

import sys

import anyio
import pytest
import yaml
from conftest import SERVERS_DIR, free_port, running_server

from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.tools.config import parse_servers
from agent.tools.hub import ToolHub
from agent.tools.supervisor import GARBAGE_GRACE_S
from tests.test_cli_run import run_cli

NOISY = {"noisy": {"command": sys.executable, "args": [str(SERVERS_DIR / "noisy_server.py")]}}


def hub() -> ToolHub:
    return ToolHub(parse_servers(NOISY, where="test"), tool_timeout=600)


async def test_a_startup_banner_on_stdout_does_not_stop_the_server():
    async with hub() as h:
        assert h.servers == ["noisy"]
        assert any("noisy server 1.0 starting" in n for n in h.notices())


async def test_a_line_printed_before_the_answer_is_reported_and_the_answer_arrives():
    async with hub() as h:
        outcome = await h.call("noisy__chatty", {})
        assert not outcome.is_error and outcome.text == "chatty answer"
        assert any("progress: 50%" in n for n in h.notices())


async def test_an_answer_glued_to_text_on_the_same_line_is_salvaged():
    async with hub() as h:
        outcome = await h.call("noisy__glued", {})
        assert not outcome.is_error and outcome.text == "glued answer"
        assert any("wrote text before a JSON-RPC message" in n for n in h.notices())


async def test_bytes_that_are_not_utf8_on_stdout_do_not_break_the_connection():
    async with hub() as h:
        outcome = await h.call("noisy__binary", {})
        assert not outcome.is_error and outcome.text == "binary answer"
        assert (await h.call("noisy__chatty", {})).text == "chatty answer"


async def test_a_call_whose_answer_was_replaced_by_text_fails_fast_instead_of_waiting_out_its_timeout():
    async with hub() as h:  # tool_timeout is 600 s: only the grace after the bad line can end this call
        with anyio.fail_after(GARBAGE_GRACE_S + 60):
            outcome = await h.call("noisy__lost", {})
        assert outcome.is_error
        assert "not JSON-RPC" in outcome.text and "something went wrong" in outcome.text
        assert (await h.call("noisy__chatty", {})).text == "chatty answer"  # the server is still usable


def test_agent_run_prints_one_line_per_bad_output_no_traceback_and_traces_it(tmp_path):
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("noisy__chatty", {})]), ScriptedTurn(content="ok")]
    with ScriptedModelServer(script) as model:
        task = {"prompt": "go", "model": model.model_string, "servers": NOISY}
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
        trace = tmp_path / "trace.jsonl"
        proc = run_cli("run", str(tmp_path / "task.yaml"), "--trace", str(trace), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "ValidationError" not in proc.stderr
    banner = [line for line in proc.stderr.splitlines() if "noisy server 1.0 starting" in line]
    assert len(banner) == 1, proc.stderr
    assert "progress: 50%" in trace.read_text()


@pytest.mark.parametrize(("status", "headers", "expected"), [
    (401, {}, "HTTP 401 Unauthorized from {url}: the server needs credentials and no Authorization header"),
    (403, {"Authorization": "Bearer weak"}, "HTTP 403 Forbidden from {url}: the credentials were accepted but"),
])
def test_an_http_server_refusing_credentials_is_named_with_status_url_and_fix(tmp_path, status, headers, expected):
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with running_server([str(SERVERS_DIR / "refusing_server.py"), str(port), str(status)], port):
        task = {"prompt": "go", "model": "deepseek:http://127.0.0.1:9/v1#m",
                "servers": {"remote": {"url": url, "headers": headers}}}
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
        proc = run_cli("run", str(tmp_path / "task.yaml"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert expected.format(url=url) in proc.stderr
    assert "headers" in proc.stderr and "Server returned an error response" not in proc.stderr
