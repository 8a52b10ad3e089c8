"""Context figures: packing a large real repository, and the prefix-cache share over a 50-step run.

    python benchmarks/context.py [--repo PATH]

Packing: seconds, peak traced memory against the packed text's size, tokens per MB (estimated).
Prefix share: for each request of a 50-step scripted run (tool calls, long outputs), the share of its
messages' bytes that equal the previous request's (target >= 99% outside compaction steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import Agent  # noqa: E402
from agent.repo import RepoSpec, pack_repos  # noqa: E402
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn  # noqa: E402


def packing(repo: Path) -> None:
    spec = RepoSpec(path=repo, exclude=["site-packages/"])
    tracemalloc.start()
    started = time.perf_counter()
    pack = pack_repos([spec], budget_tokens=10**9)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    source_mb = sum(f.size for f in pack.files) / 1e6
    text_mb = len(pack.text.encode()) / 1e6
    print(f"pack {repo}: {len(pack.files):,} text files, {source_mb:.1f} MB of source")
    print(f"  {elapsed:.2f} s, peak traced memory {peak / 1e6:.0f} MB = {peak / 1e6 / text_mb:.1f}x the packed "
          f"text ({text_mb:.1f} MB), {pack.tokens / text_mb:,.0f} tokens per MB (estimate)")


async def prefix_share() -> None:
    script = []
    for i in range(49):
        if i % 6 == 2:
            script.append(ScriptedTurn(tool_calls=[ScriptedToolCall("demo__generate", {"lines": 5000})]))
        else:
            script.append(ScriptedTurn(reasoning="r" * 200, tool_calls=[ScriptedToolCall("demo__echo", {"text": f"{i}"})]))
    script.append(ScriptedTurn(content="done"))
    demo = {"demo": {"command": sys.executable, "args": [str(ROOT / "tests" / "servers" / "demo_server.py")]}}
    with tempfile.TemporaryDirectory() as folder, ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, demo, limits={"max_steps": 60}, trace_dir=None, workspace=folder,
                             context={"tool_output_cap_tokens": 4000}).run("benchmark")
        bodies = [json.dumps(r.body["messages"], separators=(",", ":")) for r in server.requests]
    assert result.ok, result.error
    shares = []
    for earlier, later in zip(bodies, bodies[1:], strict=False):
        common = len(earlier) - 1  # the previous request without its closing bracket
        shares.append(common / len(later) if later.startswith(earlier[:-1]) else 0.0)
    broken = sum(share == 0.0 for share in shares)
    total = sum(len(b) for b in bodies[1:])
    print(f"prefix share over {len(bodies)} requests (bytes of each request equal to the previous request): "
          f"{sum(s * len(b) for s, b in zip(shares, bodies[1:], strict=True)) / total:.2%} of all bytes, "
          f"mean {statistics.mean(shares):.2%}, last 25 steps mean {statistics.mean(shares[-25:]):.2%}, "
          f"min {min(shares):.2%}; requests that were not an extension of the previous one: {broken}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    args = parser.parse_args()
    packing(args.repo)
    anyio.run(prefix_share)


if __name__ == "__main__":
    main()
