"""Think policies on a scripted 40-step agent workload: reasoning tokens, estimated latency and cost.

Each policy runs the same workload through the real loop, a real stdio MCP server and the scripted model
server. The model's reasoning length depends on the mode it was asked for (figures below, in the range
DeepSeek V4 shows on agent steps); the tool calls do not. Some steps are marked critical (the first step,
the step after a tool error, the step after a repeated call): a good policy thinks there.

    python benchmarks/think_policies.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import Agent  # noqa: E402
from agent.models.profiles import DEEPSEEK_PRICES  # noqa: E402
from agent.testing import RecordedRequest, ScriptedModelServer, ScriptedToolCall, ScriptedTurn  # noqa: E402

DEMO = {"demo": {"command": sys.executable, "args": [str(ROOT / "tests" / "servers" / "demo_server.py")]}}
REASONING_TOKENS = {"none": 0, "high": 900, "max": 3000}  # per step
OUTPUT_TOKENS = 120  # visible content + tool-call arguments per step
DECODE_TOKENS_PER_S = 60.0
PREFILL_TOKENS_PER_S = 4000.0  # uncached prompt tokens
STEPS = 40


def workload() -> list[tuple[str, dict, bool]]:
    """(tool, arguments, is the NEXT step critical) for steps 1..39; step 40 answers."""
    steps: list[tuple[str, dict, bool]] = []
    for i in range(1, STEPS):
        if i in (9, 22):
            steps.append(("fail", {"message": f"build failed at {i}"}, True))
        elif i in (15, 16):
            steps.append(("echo", {"text": "same query"}, i == 16))
        elif i % 7 == 0:
            steps.append(("note", {"key": f"k{i}", "value": "edit"}, False))
        elif i % 3 == 0:
            steps.append(("page", {"offset": i * 10}, False))
        else:
            steps.append(("echo", {"text": f"read {i}"}, False))
    return steps


def make_script(steps: list[tuple[str, dict, bool]]):
    def answer(request: RecordedRequest) -> ScriptedTurn:
        index = sum(1 for m in request.body["messages"] if m["role"] == "assistant")
        reasoning = REASONING_TOKENS[request.think_mode]
        usage = {"reasoning_tokens": reasoning, "completion_tokens": reasoning + OUTPUT_TOKENS}
        text = "r" * min(reasoning, 200)
        if index >= len(steps):
            return ScriptedTurn(reasoning=text, content="done", usage=usage)
        tool, arguments, _ = steps[index]
        return ScriptedTurn(reasoning=text, tool_calls=[ScriptedToolCall(f"demo__{tool}", arguments)], usage=usage)

    return answer


async def measure(dialect: str, think: str) -> dict:
    steps = workload()
    critical = {1} | {i + 2 for i, (_, _, nxt) in enumerate(steps) if nxt}
    with ScriptedModelServer(make_script(steps), dialect=dialect, model="deepseek-v4-pro") as server:
        result = await Agent(server.model_string, DEMO, think=think, limits={"max_steps": STEPS + 5},
                             trace_dir=None).run("benchmark workload")
        modes = server.think_modes
        requests = server.requests
    assert result.ok, result
    latency = 0.0
    invalidations = 0
    cost = 0.0
    price = DEEPSEEK_PRICES["deepseek-v4-pro"]
    previous = None
    for mode, request in zip(modes, requests, strict=True):
        prompt = len(str(request.body["messages"])) // 4
        # On self-hosted V4 a switch into or out of max rewrites token 0: the whole prompt is prefilled again.
        if dialect == "vllm" and previous is not None and (previous == "max") != (mode == "max"):
            invalidations += 1
            uncached = prompt
        else:
            uncached = min(prompt, 400)
        latency += uncached / PREFILL_TOKENS_PER_S + (REASONING_TOKENS[mode] + OUTPUT_TOKENS) / DECODE_TOKENS_PER_S
        cost += ((prompt - uncached) * price.cache_hit + uncached * price.cache_miss
                 + (REASONING_TOKENS[mode] + OUTPUT_TOKENS) * price.output) / 1e6
        previous = mode
    missed = [step for step in sorted(critical) if step <= len(modes) and modes[step - 1] == "none"]
    return {"reasoning": result.usage.reasoning_tokens, "latency": latency, "cost": cost,
            "invalidations": invalidations, "missed": missed, "modes": modes,
            "counts": {m: modes.count(m) for m in ("none", "high", "max")}}


async def main() -> None:
    print(f"{STEPS}-step workload; reasoning tokens per step: {REASONING_TOKENS}; "
          f"decode {DECODE_TOKENS_PER_S:.0f} tok/s, prefill {PREFILL_TOKENS_PER_S:.0f} tok/s; V4-Pro off-peak prices")
    for dialect in ("deepseek", "vllm"):
        print(f"\n{dialect} profile" + (" (entering or leaving max invalidates the prefix cache)" if dialect == "vllm" else ""))
        print(f"{'policy':>10} {'reasoning tok':>14} {'vs high':>8} {'est. latency':>13} {'est. cost':>10} "
              f"{'cache inval.':>12} {'none/high/max':>14} {'critical steps thought through':>31}")
        baseline = None
        for think in ("high", "max", "auto"):
            r = await measure(dialect, think)
            baseline = baseline or r["reasoning"]
            counts = "/".join(str(r["counts"][m]) for m in ("none", "high", "max"))
            critical = "all" if not r["missed"] else f"missed {r['missed']}"
            print(f"{think:>10} {r['reasoning']:>14,} {r['reasoning'] / baseline:>7.0%} {r['latency']:>11.1f} s "
                  f"${r['cost']:>8.4f} {r['invalidations']:>12} {counts:>14} {critical:>31}")


if __name__ == "__main__":
    anyio.run(main)
