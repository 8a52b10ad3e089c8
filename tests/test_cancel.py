"""Ctrl-C and cancellation during a tool call leave no processes behind and a readable trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import anyio

from agent import Agent, result_from_trace
from agent.events import Event
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.conftest import DEMO_SERVER, alive, child_pids
from tests.shell_suite import until
from tests.test_cli_run import AGENT, write_task

SLOW = [ScriptedTurn(tool_calls=[ScriptedToolCall("demo__slow", {"seconds": 60})]), ScriptedTurn(content="never")]


def descendants(pid: int) -> set[int]:
    found = set()
    frontier = {pid}
    while frontier:
        children = set().union(*(child_pids(p) for p in frontier))
        found |= children
        frontier = children
    return found


def test_ctrl_c_during_a_tool_call_stops_the_run_and_leaves_no_child_processes(tmp_path):
    with ScriptedModelServer(SLOW) as model:
        task = write_task(tmp_path, model.model_string)
        trace = tmp_path / "trace.jsonl"
        env = {k: v for k, v in os.environ.items() if k != "DEEPSEEK_API_KEY"}
        proc = subprocess.Popen([str(AGENT), "run", str(task), "--trace", str(trace)], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "tool_call" not in (trace.read_text() if trace.exists() else ""):
            time.sleep(0.1)
        spawned = descendants(proc.pid)
        assert spawned, "the MCP server should be running"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    deadline = time.monotonic() + 10  # an orphan may take a moment to be reaped
    while [pid for pid in spawned if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in spawned if alive(pid)]
    assert result_from_trace(trace).stop_reason == "cancelled"


async def test_cancelling_a_run_mid_tool_call_closes_the_servers(tmp_path):
    before = child_pids()
    in_tool_call = anyio.Event()

    def on_event(event: Event) -> None:
        if event.type == "tool_call":
            in_tool_call.set()

    with ScriptedModelServer(SLOW) as server:
        # Cancelled once the tool call is under way, however long the servers and the model took to get there.
        async with anyio.create_task_group() as group:
            async def cancel_in_tool_call() -> None:
                await in_tool_call.wait()
                group.cancel_scope.cancel()

            group.start_soon(cancel_in_tool_call)
            await Agent(server.model_string, {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}},
                        trace_dir=tmp_path).run("go", on_event=on_event)
    assert group.cancel_scope.cancelled_caught
    # An orphan may take a moment to be reaped.
    assert await until(lambda: not [pid for pid in child_pids() - before if alive(pid)], timeout=10)
    traces = list(tmp_path.glob("*.jsonl"))
    assert result_from_trace(traces[0]).stop_reason == "cancelled"
