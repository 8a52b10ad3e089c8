"""Figures for our MCP servers: start-up of files, shell and web; the files server's stdio round trip and its
content search against grep -rn.

    python benchmarks/files_server.py [--files 50000] [--calls 200] [--repeat 3]

Start-up is spawn -> answer to a raw JSON-RPC `initialize` (median of 5). The round trip is
`list_allowed_roots` through mcp.Client over stdio. The search runs `search_content` over a generated
tree in a temp dir (Python-like files, 1% binary, a .gitignore) next to `grep -rn` on the same tree,
alternating the two so that both see the same page cache and machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
NEEDLE = "needle_marker"
WORDS = (
    "alpha beta gamma delta value result config handler request response client server index count".split()
)


def make_tree(top: Path, files: int) -> None:
    """`files` files in 10 x 10 x 10 folders: ~2 KB of code-like text each, every 97th with the needle."""
    rnd = random.Random(7)
    per_folder = max(1, files // 1000)
    index = 0
    for a in range(10):
        for b in range(10):
            for c in range(10):
                folder = top / f"pkg{a}" / f"mod{b}" / f"sub{c}"
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(per_folder):
                    if index % 100 == 50:
                        (folder / f"blob{k}.bin").write_bytes(os.urandom(1000) + b"\0" + NEEDLE.encode())
                    else:
                        lines = [
                            f"    {w[0]}_{j} = {w[1]}({w[2]}, {w[3]}) + {index * j}  # line {j}"
                            for j, w in ((j, rnd.sample(WORDS, 4)) for j in range(40))
                        ]
                        if index % 97 == 0:
                            lines[rnd.randrange(40)] = f"    raise NeedleError('{NEEDLE} found')"
                        (folder / f"file{k}.py").write_text(f"def f{index}():\n" + "\n".join(lines) + "\n")
                    index += 1
    (top / ".gitignore").write_text("*.pyc\n__pycache__/\nbuild/\n/dist\n*.log\nnode_modules/\n.venv/\n")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def startup_seconds(server_args: list[str]) -> float:
    """Spawn `python -m <server_args>` and time until it answers `initialize` on stdin/stdout."""
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"},
        },
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", *server_args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write((json.dumps(request) + "\n").encode())
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        elapsed = time.perf_counter() - started
        assert answer.get("id") == 1 and "result" in answer, answer
        return elapsed
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def round_trips(root: Path, calls: int) -> list[float]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "agent.servers.files", str(root)], cwd=str(ROOT)
    )
    async with Client(params) as client:
        for _ in range(20):  # warm-up
            await client.call_tool("list_allowed_roots", {})
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("list_allowed_roots", {})
            times.append((time.perf_counter() - started) * 1000)
            assert not result.is_error
        return times


async def search_vs_grep(tree: Path, repeat: int) -> tuple[list[float], list[float], int, int]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "agent.servers.files", str(tree)], cwd=str(ROOT)
    )
    ours, grep = [], []
    lines_ours = lines_grep = 0
    async with Client(params) as client:
        args = {"pattern": NEEDLE, "max_matches": 5000}
        await client.call_tool("search_content", args)  # warm the page cache and the server
        await anyio.run_process(["grep", "-rn", NEEDLE, str(tree)], check=False)
        for _ in range(repeat):
            started = time.perf_counter()
            result = await client.call_tool("search_content", args, read_timeout_seconds=300)
            ours.append(time.perf_counter() - started)
            assert not result.is_error, result.content
            lines_ours = len(result.structured_content["matches"])
            started = time.perf_counter()
            done = await anyio.run_process(["grep", "-rn", NEEDLE, str(tree)], check=False)
            grep.append(time.perf_counter() - started)
            lines_grep = sum(1 for line in done.stdout.splitlines() if not line.startswith(b"Binary file"))
    return ours, grep, lines_ours, lines_grep


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=50_000, help="files in the generated search tree")
    parser.add_argument("--calls", type=int, default=200, help="timed round trips")
    parser.add_argument("--repeat", type=int, default=5, help="timed searches (each next to one grep)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="files-bench-"))
    try:
        small = folder / "small"
        small.mkdir()
        (small / "a.txt").write_text("hello\n")
        for name, server_args in (("files", ["agent.servers.files", str(small)]),
                                  ("shell", ["agent.servers.shell", str(small)]), ("web", ["agent.servers.web"])):
            starts = [startup_seconds(server_args) for _ in range(5)]
            print(
                f"{name} server start-up (spawn -> initialize answered): median "
                f"{statistics.median(starts) * 1000:.0f} ms, min {min(starts) * 1000:.0f} ms, "
                f"max {max(starts) * 1000:.0f} ms (5 runs)"
            )

        times = anyio.run(round_trips, small, args.calls)
        print(
            f"stdio round trip, list_allowed_roots: median {statistics.median(times):.2f} ms, "
            f"p95 {pct(times, 0.95):.2f} ms ({args.calls} calls)"
        )

        tree = folder / "tree"
        started = time.perf_counter()
        make_tree(tree, args.files)
        count = sum(len(names) for _, _, names in os.walk(tree))
        print(f"generated {count} files in {time.perf_counter() - started:.1f} s under {tree}")
        ours, grep, lines_ours, lines_grep = anyio.run(search_vs_grep, tree, args.repeat)
        mo, mg = statistics.median(ours), statistics.median(grep)
        print(
            f"search_content over MCP: median {mo:.3f} s (runs: {', '.join(f'{x:.3f}' for x in ours)}); "
            f"{lines_ours} matching lines"
        )
        print(
            f"grep -rn:                median {mg:.3f} s (runs: {', '.join(f'{x:.3f}' for x in grep)}); "
            f"{lines_grep} matching lines"
        )
        print(
            f"ratio search_content / grep -rn: {mo / mg:.2f}x (median); "
            f"best-vs-best {min(ours) / min(grep):.2f}x"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
