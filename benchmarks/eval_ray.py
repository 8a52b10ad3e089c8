"""`agent eval --executor ray` against the local executor on the bundled offline suite (12 tasks, scripted
reference trajectories): harness overhead per run (suite wall time minus the runs' own wall time, per run) and
throughput with a Ray cluster of one node against two (one CPU each), on this machine (.ci/ray-cluster.sh).

    python benchmarks/eval_ray.py              # local -j 1 and -j 2, Ray on 1 node and on 2 nodes
    python benchmarks/eval_ray.py --repeats 2  # each suite twice (-k 2)

Figures are printed, never asserted. Both raylets share this machine's cores, so "2 nodes" measures the
scheduling across nodes, not twice the hardware.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import tempfile
import time
from pathlib import Path

import anyio

import agent.eval as evaluate
from agent.eval.ray_executor import RayExecutor, RayOptions

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "examples" / "suites" / "offline"
CLUSTER = ROOT / ".ci" / "ray-cluster.sh"


def run(label: str, executor: evaluate.Executor, repeats: int, out: Path) -> dict[str, float]:
    found = evaluate.discover([SUITE])
    evaluate.attach_scripts(found, "reference")
    settings = evaluate.RunSettings(out=out, scripted="reference")
    started = time.perf_counter()
    outcome = anyio.run(functools.partial(evaluate.run_suite, found.tasks, settings, repeats=repeats,
                                          executor=executor))
    wall = time.perf_counter() - started
    runs = len(outcome.records)
    inside = sum(r.wall_s for r in outcome.records)
    passed = sum(r.passed for r in outcome.records)
    figures = {"wall_s": wall, "runs": runs, "run_s": inside / runs, "per_min": runs / wall * 60, "passed": passed}
    print(f"{label:<22} {runs:>4} runs  {passed:>3} passed  suite {wall:6.1f} s  {figures['per_min']:6.1f} runs/min  "
          f"run itself {figures['run_s']:5.2f} s", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="eval-ray-bench-") as tmp:
        for jobs in (1, 2):
            results[f"local -j {jobs}"] = run(f"local -j {jobs}", evaluate.LocalExecutor(jobs), args.repeats,
                                              Path(tmp) / f"local{jobs}")
        for nodes in (1, 2):
            address = subprocess.run(["bash", str(CLUSTER), "start"], env={**os.environ, "RAY_CI_NODES": str(nodes)},
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            try:
                executor = RayExecutor(RayOptions(address=address))
                connect = time.perf_counter()
                executor.connect(str(SUITE))  # joining and uploading the suite, apart from the runs
                connect_s = time.perf_counter() - connect
                label = f"ray, {nodes} node{'s' * (nodes > 1)}"
                results[label] = run(label, executor, args.repeats, Path(tmp) / f"ray{nodes}")
                print(f"{'':<22} joining the cluster and uploading the suite: {connect_s:.1f} s; runs per node: "
                      f"{sorted(executor.nodes.values())}", flush=True)
                executor.ray.shutdown()
            finally:
                subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True)
    print()
    for label, one in (("local -j 1", "ray, 1 node"), ("local -j 2", "ray, 2 nodes")):
        a, b = results[label], results[one]
        overhead_local = (a["wall_s"] - a["run_s"] * a["runs"] / int(label[-1])) / a["runs"]
        overhead_ray = (b["wall_s"] - b["run_s"] * b["runs"] / (1 if one.endswith("node") else 2)) / b["runs"]
        print(f"harness overhead per run, {label}: {overhead_local:+.2f} s · {one}: {overhead_ray:+.2f} s "
              f"(suite wall / runs minus a run's own wall / slots)")
    one, two = results["ray, 1 node"], results["ray, 2 nodes"]
    print(f"throughput on Ray: 1 node {one['per_min']:.1f} runs/min · 2 nodes {two['per_min']:.1f} runs/min "
          f"(× {two['per_min'] / one['per_min']:.2f})")


if __name__ == "__main__":
    main()
