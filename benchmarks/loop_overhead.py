"""Per-step overhead of the agent loop against an instant scripted model and a no-op stdio MCP tool.

Prints, for 1, 10, 50 and 500 steps: median and p95 ms per step, ms per tool call and peak RSS, next to
a plain loop that posts a prepared dict body through AsyncOpenAI and calls the tool with mcp.Client.
The scripted model server runs in its own process so that it does not share our GIL.

    python benchmarks/loop_overhead.py [--steps 1,10,50,500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import yaml
from mcp import Client, StdioServerParameters
from openai import AsyncOpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import Agent  # noqa: E402
from agent.events import ModelRequest, ToolResult  # noqa: E402

NOOP = {"command": sys.executable, "args": [str(ROOT / "benchmarks" / "noop_server.py")]}


def script(steps: int) -> list[dict]:
    turns = [{"content": "", "tool_calls": [{"name": "bench__noop", "arguments": {"value": i}}]} for i in range(steps - 1)]
    return turns + [{"content": "done"}]


class ScriptedProcess:
    """`python -m agent.testing` in a child process, restarted per measurement."""

    def __init__(self, steps: int, folder: Path):
        path = folder / f"script-{steps}.yaml"
        path.write_text(yaml.safe_dump(script(steps)))
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.testing", str(path)], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.url = next(p for p in line.split() if p.startswith("http"))
        self.model_string = next(p for p in line.split() if p.startswith("deepseek:"))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def framework_run(model_string: str, steps: int) -> tuple[list[float], list[float]]:
    marks: list[float] = []
    tools: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, ModelRequest):
            marks.append(time.perf_counter())
        elif isinstance(event, ToolResult):
            tools.append(event.duration_s * 1000)

    async with Agent(model_string, {"bench": NOOP}, think="none", limits={"max_steps": steps + 1},
                     trace_dir=None) as agent:
        result = await agent.run("benchmark", on_event=on_event)
        marks.append(time.perf_counter())
    assert result.stop_reason == "answer", result
    return [(b - a) * 1000 for a, b in zip(marks, marks[1:], strict=False)], tools


async def plain_run(url: str, steps: int) -> list[float]:
    """The floor: a hand-written loop posting a prepared dict body (no framework)."""
    client = AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    tools = [{"type": "function", "function": {"name": "bench__noop", "description": "noop",
                                               "parameters": {"type": "object", "properties": {}}}}]
    messages: list[dict] = [{"role": "user", "content": "benchmark"}]
    times: list[float] = []
    params = StdioServerParameters(command=NOOP["command"], args=NOOP["args"])
    async with Client(params) as mcp:
        for _ in range(steps):
            started = time.perf_counter()
            body = {"model": "deepseek-v4-flash", "messages": messages, "tools": tools,
                    "thinking": {"type": "disabled"}}
            data = await client.post("/chat/completions", cast_to=object, body=body)
            message = data["choices"][0]["message"]
            messages.append({"role": "assistant", "content": message.get("content") or "",
                             "tool_calls": message.get("tool_calls"), "reasoning_content": ""})
            for call in message.get("tool_calls") or []:
                result = await mcp.call_tool("noop", json.loads(call["function"]["arguments"]))
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result.content[0].text})
            times.append((time.perf_counter() - started) * 1000)
            if not message.get("tool_calls"):
                break
    await client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1,10,50,500")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best median is kept")
    args = parser.parse_args()
    sizes = [int(s) for s in args.steps.split(",")]
    print(f"{'steps':>6} {'framework median':>17} {'p95':>7} {'tool call':>10} {'plain post median':>18} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for steps in sizes:
            best: tuple[float, float, float] | None = None
            plain_best = None
            for _ in range(args.repeat):
                server = ScriptedProcess(steps, Path(folder))
                try:
                    per_step, tools = anyio.run(framework_run, server.model_string, steps)
                finally:
                    server.close()
                med = statistics.median(per_step)
                if best is None or med < best[0]:
                    best = (med, pct(per_step, 0.95), statistics.median(tools) if tools else 0.0)
                server = ScriptedProcess(steps, Path(folder))
                try:
                    plain = anyio.run(plain_run, server.url, steps)
                finally:
                    server.close()
                plain_med = statistics.median(plain)
                plain_best = plain_med if plain_best is None else min(plain_best, plain_med)
            med, p95, tool = best
            print(f"{steps:>6} {med:>14.2f} ms {p95:>7.2f} {tool:>7.2f} ms {plain_best:>15.2f} ms {med / plain_best:>6.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the benchmark process: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
