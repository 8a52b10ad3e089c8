"""Harness overhead of `agent eval`: a suite of N tasks (default 50) with instant scripted models, run with
-j 1 and -j 4, with and without the fork server (agent.tools.forkserver): wall time, runs per second, per-run time
by stage (workspace, servers, agent loop, grading, cleanup) and peak memory (the eval process alone, and the
whole process tree with its MCP servers and the fork server).

    python benchmarks/eval_harness.py                         # 50 tasks, files+shell servers, -j 1 and -j 4
    python benchmarks/eval_harness.py --servers none          # the harness alone, no MCP servers
    python benchmarks/eval_harness.py --tasks 20 --jobs 1,2,8
    python benchmarks/eval_harness.py --forkserver on         # only with the fork server (off: only without)

Each task: a workspace seeded with a file, one model turn calling two tools (shell and files), one answer
turn, then a file check and a shell-command check. The scripted model answers at once, so what is left is
the harness. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def build_suite(folder: Path, tasks: int, servers: list[str]) -> Path:
    (folder / "seed").mkdir(parents=True)
    (folder / "seed" / "input.txt").write_text("alpha beta gamma\n")
    (folder / "suite.yaml").write_text(yaml.safe_dump({"name": "overhead", "tasks": ["tasks/*/task.yaml"]}))
    for i in range(tasks):
        task = folder / "tasks" / f"t{i:03d}"
        (task / "solutions").mkdir(parents=True)
        calls = []
        if "shell" in servers:
            calls.append({"name": "shell__run_command", "arguments": {"command": f"echo {i} > out.txt"}})
        if "files" in servers:
            calls.append({"name": "files__read_file", "arguments": {"path": "input.txt"}})
        script = ([{"tool_calls": calls}] if calls else []) + [{"content": f"done {i}"}]
        grade = {"claims": [f"done {i}"]} if "shell" not in servers else {
            "files": [{"path": "out.txt", "text": str(i)}], "commands": ["test -s out.txt"]}
        spec = {"name": f"t{i:03d}", "prompt": f"task {i}", "builtin_servers": servers,
                "workspace": {"files": str(folder / "seed")}, "grade": grade}
        (task / "task.yaml").write_text(yaml.safe_dump(spec))
        (task / "solutions" / "reference.yaml").write_text(yaml.safe_dump(script))
    return folder


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(suite: Path, out: Path, jobs: int, fork: bool) -> dict:
    command = [sys.executable, "-m", "agent.eval", str(suite), "--scripted", "reference", "-j", str(jobs),
               "--out", str(out), "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL")}
    env["AGENT_FORKSERVER"] = "1" if fork else "0"
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_tree = peak_main = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak_tree = max(peak_tree, sum(_rss_kib(p) for p in pids))
        peak_main = max(peak_main, _rss_kib(proc.pid, "VmHWM"))
        time.sleep(0.05)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"agent eval -j {jobs} failed ({proc.returncode}):\n{stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    stages: dict[str, float] = {}
    for record in records:
        for name, value in record["timings"].items():
            stages[name] = stages.get(name, 0.0) + value
    n = len(records)
    walls = sorted(r["wall_s"] for r in records)
    first = min(records, key=lambda r: r["finished_at"])["wall_s"]
    return {"jobs": jobs, "fork": fork, "runs": n, "passed": sum(r["passed"] for r in records), "wall_s": wall,
            "median_s": walls[n // 2], "first_s": first, "runs_per_s": n / wall, "run_wall_s": sum(r["wall_s"] for r in records) / n,
            "stages": {k: v / n for k, v in stages.items()}, "peak_main_mib": peak_main / 1024,
            "peak_tree_mib": peak_tree / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--jobs", default="1,4", help="comma-separated worker counts (default 1,4)")
    parser.add_argument("--servers", default="files,shell", help="builtin servers per task: files,shell | shell | none")
    parser.add_argument("--forkserver", default="both", choices=["both", "on", "off"],
                        help="start the servers through the fork server, the ordinary way, or both (default)")
    args = parser.parse_args()
    forks = {"both": [False, True], "on": [True], "off": [False]}[args.forkserver]
    servers = [] if args.servers == "none" else [s for s in args.servers.split(",") if s]
    print(f"{args.tasks} tasks, servers per run: {', '.join(servers) or 'none'}; cpus: {os.cpu_count()}; "
          f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        suite = build_suite(Path(tmp) / "suite", args.tasks, servers)
        results = [run(suite, Path(tmp) / f"out-j{j}-{'fork' if fork else 'plain'}", int(j), fork)
                   for fork in forks for j in args.jobs.split(",")]
    header = (f"{'fork':>4} {'-j':>3} {'wall s':>8} {'runs/s':>7} {'s/run':>7} {'median':>7} {'first':>6} "
              f"{'workspace':>9} {'servers':>8} {'agent':>7} "
              f"{'grade':>7} {'cleanup':>8} {'peak eval MiB':>14} {'peak tree MiB':>14} {'pass':>6}")
    print(header)
    for r in results:
        s = r["stages"]
        print(f"{'on' if r['fork'] else 'off':>4} {r['jobs']:>3} {r['wall_s']:>8.1f} {r['runs_per_s']:>7.2f} {r['run_wall_s']:>7.3f} {r['median_s']:>7.3f} {r['first_s']:>6.2f} "
              f"{s.get('workspace_s', 0):>9.3f} {s.get('servers_s', 0):>8.3f} {s.get('agent_s', 0):>7.3f} "
              f"{s.get('grade_s', 0):>7.3f} {s.get('cleanup_s', 0):>8.3f} {r['peak_main_mib']:>14.1f} "
              f"{r['peak_tree_mib']:>14.1f} {r['passed']:>3}/{r['runs']}")
    for fork in forks:
        rows = [r for r in results if r["fork"] == fork]
        for r in rows[1:]:
            print(f"fork server {'on' if fork else 'off'}: -j {r['jobs']} vs -j {rows[0]['jobs']}: "
                  f"{rows[0]['wall_s'] / r['wall_s']:.2f}x faster")
    if len(forks) == 2:
        for j in args.jobs.split(","):
            off, on = (next(r for r in results if r["fork"] == fork and r["jobs"] == int(j)) for fork in forks)
            print(f"-j {j}: harness time per run {off['run_wall_s']:.3f} s without the fork server, "
                  f"{on['run_wall_s']:.3f} s with it ({off['run_wall_s'] / on['run_wall_s']:.1f}x; "
                  f"median {off['median_s']:.3f} s and {on['median_s']:.3f} s)")
    print("s/run: one run's wall time inside the harness (workspace + servers + agent + grade + cleanup), the "
          "mean; median: the median run; first: the run that finished first (with the fork server it also waits "
          "for the fork server to start, about as long as one ordinary server start). Stage columns are means "
          "per run in seconds; 'agent' includes the scripted model's HTTP turns and the tool calls.")


if __name__ == "__main__":
    main()
