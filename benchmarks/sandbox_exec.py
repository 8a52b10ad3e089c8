"""Per-command overhead of `Sandbox.exec` on each backend, and the cost of a command printing 100 MB.

Prints, per backend: median and p95 ms of `exec("true")` (through `sh -c`) and of `exec(["true"])` (an argv)
over --runs calls after a warm-up, then the seconds, MB/s and peak Python memory of `yes | head -c 100000000`
with the full output saved to a file. For the local backend a bare `asyncio.create_subprocess_exec("true")`
is measured as the floor. Backends that cannot start here (no daemon, no bwrap) are skipped with a note.

    python benchmarks/sandbox_exec.py [--backend local] [--backend docker] [--backend bubblewrap] [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.runtime.sandbox import SandboxError, SandboxSpec  # noqa: E402

BACKENDS = {
    "local": ("agent.runtime.local", "LocalSandbox"),
    "docker": ("agent.runtime.docker", "DockerSandbox"),
    "bubblewrap": ("agent.runtime.bubblewrap", "BubblewrapSandbox"),
}
BIG = 100_000_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def timed(call: Callable[[], Awaitable[object]], runs: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    print(f"  {label:<34} median {statistics.median(samples):7.2f} ms   p95 {pct(samples, 0.95):7.2f} ms")


async def bare_true() -> None:
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()


async def bench(kind: str, runs: int) -> None:
    module_name, class_name = BACKENDS[kind]
    try:
        backend = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        print(f"{kind}: skipped ({module_name}.{class_name} not available: {exc})")
        return
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as folder:
        workspace = Path(folder)
        sandbox = backend(workspace, SandboxSpec(kind=kind))
        try:
            started = time.perf_counter()
            await sandbox.__aenter__()
        except (SandboxError, OSError) as exc:
            print(f"{kind}: skipped (cannot start: {exc})")
            return
        try:
            print(f"{kind}: started in {(time.perf_counter() - started) * 1000:.0f} ms; {runs} runs each")
            if kind == "local":
                report("asyncio.create_subprocess_exec", await timed(bare_true, runs))
            report('exec("true")  (sh -c)', await timed(lambda: sandbox.exec("true"), runs))
            report('exec(["true"])  (argv)', await timed(lambda: sandbox.exec(["true"]), runs))
            tracemalloc.start()
            start = time.perf_counter()
            result = await sandbox.exec(
                f"yes | head -c {BIG}", output_file=workspace / "big.log", timeout=300
            )
            seconds = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert result.stdout_chars == BIG, result
            print(
                f"  {'100 MB of output, saved to a file':<34} {seconds:7.2f} s   {BIG / seconds / 1e6:7.0f} MB/s"
                f"   peak Python memory {peak / 1e6:.1f} MB"
            )
        finally:
            await sandbox.__aexit__(None, None, None)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend", action="append", choices=sorted(BACKENDS), help="repeatable; default local"
    )
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    for kind in args.backend or ["local"]:
        await bench(kind, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
