"""Sandbox costs: Docker container start, per-command overhead in Docker and bubblewrap.

Prints the median of `--starts` container starts (create, attach, start, runner ready; then removal), median
and p95 ms of `true` through the in-container runner over `--commands` runs, the same through plain
`docker exec` (the SDK's `exec_run`) for comparison, and bubblewrap's per-command cost, next to a host
fork/exec of `true`. Needs dockerd and the image (.ci/docker-setup.sh); parts whose backend is missing are
skipped with a note.

    python benchmarks/sandbox_start.py [--starts 5] [--commands 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.runtime.bubblewrap import BubblewrapSandbox  # noqa: E402
from agent.runtime.docker import DockerSandbox  # noqa: E402
from agent.runtime.sandbox import SandboxError  # noqa: E402


def line(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name:<44} median {statistics.median(ordered) * 1000:8.2f} ms   p95 {p95 * 1000:8.2f} ms   (n={len(ordered)})"


async def timed(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def docker_figures(workspace: Path, starts: int, commands: int) -> None:
    start_samples, stop_samples = [], []
    for _ in range(starts):
        box = DockerSandbox(workspace)
        begin = time.perf_counter()
        await box.__aenter__()
        start_samples.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        await box.__aexit__(None, None, None)
        stop_samples.append(time.perf_counter() - begin)
    print(line("docker: container start (to runner ready)", start_samples))
    print(line("docker: container removal", stop_samples))

    async with DockerSandbox(workspace) as box:
        await box.exec(["true"])  # warm
        print(
            line(
                "docker: `true` via the in-container runner",
                await timed(lambda: box.exec(["true"]), commands),
            )
        )
        print(line("docker: `sh -c true` via the runner", await timed(lambda: box.exec("true"), commands)))
        client = box._client
        container = client.containers.get(box.container_id)
        container.exec_run(["true"])

        async def plain() -> None:
            await anyio.to_thread.run_sync(lambda: container.exec_run(["true"]))

        print(line("docker: `true` via exec_run (docker exec)", await timed(plain, commands)))


async def bubblewrap_figures(workspace: Path, commands: int) -> None:
    async with BubblewrapSandbox(workspace) as box:
        await box.exec(["true"])
        print(line("bubblewrap: `true` per command", await timed(lambda: box.exec(["true"]), commands)))
        print(line("bubblewrap: `sh -c true` per command", await timed(lambda: box.exec("true"), commands)))

    async def host() -> None:
        await anyio.run_process(["true"])

    print(line("host: `true` via anyio.run_process", await timed(host, commands)))


async def main(starts: int, commands: int) -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as folder:
        workspace = Path(folder)
        try:
            await docker_figures(workspace, starts, commands)
        except SandboxError as exc:
            print(f"docker: skipped ({exc})")
        try:
            await bubblewrap_figures(workspace, commands)
        except SandboxError as exc:
            print(f"bubblewrap: skipped ({exc})")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--commands", type=int, default=200)
    args = parser.parse_args()
    anyio.run(main, args.starts, args.commands)
