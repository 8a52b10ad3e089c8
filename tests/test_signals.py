"""SIGTERM ends `agent run` and `agent eval` as Ctrl-C does: a traced `cancelled`, nothing left running, exit 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.trace import read_trace
from tests.conftest import DEMO_SERVER, alive, child_pids, write_suite
from tests.test_cli_run import AGENT, write_task

# Sandboxes and signals look at machine-wide state (bwrap and docker processes, labelled containers,
# `agent sandbox prune --all`): with pytest-xdist these modules share one worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("sandboxes")

EXIT_TERMINATED = 143
SLOW_TOOL = [ScriptedTurn(tool_calls=[ScriptedToolCall("demo__slow", {"seconds": 60})]), ScriptedTurn(content="never")]
DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL")}


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = set().union(*(child_pids(p) for p in frontier)) - found
        found |= frontier
    return found


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the process ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.05)


def none_alive(pids: set[int], timeout: float = 10) -> bool:
    """Whether every pid has exited (polled: an orphan may take a moment to be reaped)."""
    deadline = time.monotonic() + timeout
    while [p for p in pids if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    return not [p for p in pids if alive(p)]


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def terminate(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=60)


def test_sigterm_during_a_tool_call_cancels_agent_run_with_a_complete_trace_and_exit_143(tmp_path):
    with ScriptedModelServer(SLOW_TOOL) as model:
        task, trace = write_task(tmp_path, model.model_string), tmp_path / "trace.jsonl"
        proc = subprocess.Popen([str(AGENT), "run", str(task), "--trace", str(trace)], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
        wait_for(lambda: '"tool_call"' in text(trace), proc, "tool call in the trace")
        spawned = descendants(proc.pid)
        assert spawned, "the MCP server should be running"
        _, stderr = terminate(proc)
    assert proc.returncode == EXIT_TERMINATED, stderr
    assert "terminated" in stderr
    last = read_trace(trace)[-1]
    assert last.type == "run_finished" and last.stop_reason == "cancelled"
    assert none_alive(spawned)


def test_sigterm_while_waiting_for_the_model_cancels_agent_run(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="late", delay_s=60)]) as model:
        task, trace = write_task(tmp_path, model.model_string), tmp_path / "trace.jsonl"
        proc = subprocess.Popen([str(AGENT), "run", str(task), "--trace", str(trace)], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
        wait_for(lambda: bool(model.requests), proc, "model request")
        spawned = descendants(proc.pid)
        _, stderr = terminate(proc)
    assert proc.returncode == EXIT_TERMINATED, stderr
    last = read_trace(trace)[-1]
    assert last.type == "run_finished" and last.stop_reason == "cancelled"
    assert none_alive(spawned)


def test_sigterm_cancels_agent_run_even_where_sigint_is_ignored(tmp_path):
    """A background job of a shell script starts with SIGINT ignored; SIGTERM must still stop it cleanly."""
    with ScriptedModelServer(SLOW_TOOL) as model:
        task, trace = write_task(tmp_path, model.model_string), tmp_path / "trace.jsonl"
        proc = subprocess.Popen([str(AGENT), "run", str(task), "--trace", str(trace)], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        wait_for(lambda: '"tool_call"' in text(trace), proc, "tool call in the trace")
        spawned = descendants(proc.pid)
        _, stderr = terminate(proc)
    assert proc.returncode == EXIT_TERMINATED, stderr
    last = read_trace(trace)[-1]
    assert last.type == "run_finished" and last.stop_reason == "cancelled"
    assert none_alive(spawned)


def signals_suite(root: Path) -> Path:
    """Three tasks run in order: `a` answers at once, `b` waits in a slow tool, `c` would answer at once."""
    quick = {"prompt": "p", "servers": DEMO}
    tasks = {"a": (quick, ["done"]),
             "b": ({"prompt": "p", "servers": DEMO},
                   [{"tool_calls": [{"name": "demo__slow", "arguments": {"seconds": 60}}]}, "never"]),
             "c": (quick, ["done"])}
    return write_suite(root, tasks, name="signals")


def test_sigterm_stops_agent_eval_keeping_finished_results_and_tracing_the_cut_run(tmp_path):
    suite, out = signals_suite(tmp_path / "suite"), tmp_path / "out"
    slow_trace = out / "traces" / "b" / "r0.jsonl"
    proc = subprocess.Popen([str(AGENT), "eval", str(suite), "--scripted", "reference", "--out", str(out)],
                            cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=environment())
    wait_for(lambda: '"tool_call"' in text(slow_trace), proc, "tool call in task b's trace")
    spawned = descendants(proc.pid)
    assert spawned, "task b's MCP server should be running"
    _, stderr = terminate(proc)
    assert proc.returncode == EXIT_TERMINATED, stderr
    results = [json.loads(line) for line in text(out / "results.jsonl").splitlines()]
    assert [(r["task"], r["passed"]) for r in results] == [("a", True)]  # kept; c never ran
    last = read_trace(slow_trace)[-1]
    assert last.type == "run_finished" and last.stop_reason == "cancelled"
    assert not (out / "traces" / "c").exists()
    assert json.loads((out / "report.json").read_text())["interrupted"]
    assert none_alive(spawned)


def test_sigterm_removes_the_docker_sandbox_containers_of_agent_run(tmp_path):
    import docker
    import pytest

    from tests.test_sandbox_docker import _docker_problem

    if problem := _docker_problem():
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run .ci/docker-setup.sh before the tests", pytrace=False)
        pytest.skip(f"{problem} (run .ci/docker-setup.sh as root)")
    client = docker.from_env()

    def containers_of(pids: set[int]) -> list[str]:
        owners = {f"{os.uname().nodename}:{pid}" for pid in pids}
        return [c["Id"] for c in client.api.containers(all=True, filters={"label": "agent.sandbox=1"})
                if (c.get("Labels") or {}).get("agent.owner") in owners]

    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("shell__run_command", {"command": "sleep 60"})]),
              ScriptedTurn(content="never")]
    try:
        with ScriptedModelServer(script) as model:
            task = write_task(tmp_path, model.model_string, servers={}, builtin_servers=["shell"],
                              sandbox={"kind": "docker"})
            trace = tmp_path / "trace.jsonl"
            proc = subprocess.Popen([str(AGENT), "run", str(task), "--trace", str(trace)], cwd=tmp_path, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
            wait_for(lambda: '"tool_call"' in text(trace), proc, "tool call in the trace", timeout=120)
            owners = {proc.pid} | descendants(proc.pid)
            assert containers_of(owners), "the sandbox container should be running"
            _, stderr = terminate(proc)
        assert proc.returncode == EXIT_TERMINATED, stderr
        assert read_trace(trace)[-1].stop_reason == "cancelled"
        assert containers_of(owners) == []
        assert none_alive(owners - {proc.pid})
    finally:
        client.close()
