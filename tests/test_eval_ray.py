"""`agent eval --executor ray` on a real local Ray cluster of two raylets (.ci/ray-cluster.sh): the bundled offline
suite scores as with the local executor, runs spread over both nodes, a killed worker's run is retried or recorded,
a killed driver's suite resumes, Ctrl-C leaves nothing running (Ray tasks, processes, containers), and the limiter
actor shares an endpoint's limits and a 429's backoff."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest
from conftest import assert_grouped, write_suite

import agent.eval as evaluate
from agent.eval.ray_executor import EndpointLimits, RayExecutor, RayOptions, data_root, relocate

pytestmark = pytest.mark.xdist_group("ray")  # one cluster, machine-wide: these tests share one worker

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ROOT / "examples" / "suites" / "offline"
CLUSTER = ROOT / ".ci" / "ray-cluster.sh"
TEMP = "/tmp/ray-agent-ci"
IMAGE = "agent-sandbox:bookworm"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Locally, a machine without Ray (or Docker) skips; in CI that is a failure."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    """The two-node cluster's address; it is stopped afterwards, whatever happened."""
    try:
        import ray  # noqa: F401
    except ImportError:
        unavailable("ray is not installed (pip install -e '.[dev]')")
    started = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=180)
    try:
        if started.returncode != 0:
            unavailable(f"the Ray cluster did not start: {started.stderr[-2000:]}")
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=120)


def slow_suite(root: Path, count: int, delay_s: float) -> Path:
    task = {"prompt": "What is six times seven?", "grade": {"claims": ["The answer is 42."]}}
    return write_suite(root, {f"t{i}": (task, [{"content": "It is 42.", "delay_s": delay_s}]) for i in range(count)})


def records(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def eval_command(address: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "agent.eval", *args, "--executor", "ray", "--ray-address", address]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL", "RAY_ADDRESS")}


def processes() -> dict[int, tuple[int, str]]:
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(pid)] = (ppid, cmd)
    return table


def cluster_processes() -> dict[int, str]:
    """Our raylets and everything under them (workers, the servers runs start, orphans the raylets adopted)."""
    table = processes()
    ours = {pid for pid, (_, cmd) in table.items() if "raylet" in cmd and TEMP in cmd}
    grown = set()
    while grown != ours:
        grown = set(ours)
        ours |= {pid for pid, (ppid, _) in table.items() if ppid in ours}
    return {pid: table[pid][1] for pid in ours}


def running_runs() -> list[int]:
    return [pid for pid, cmd in cluster_processes().items() if cmd.startswith("ray::agent_eval_run")]


def wait_for(predicate, timeout: float, what: str, *, driver: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `predicate` until it holds; a bound against hanging (generous: a loaded machine starts Ray workers
    slowly), cut short when the eval driver we wait on has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if driver is not None and driver.poll() is not None:
            break
        time.sleep(0.1)
    said = f"; its stderr ends:\n{log.read_text(errors='replace')[-3000:]}" if log is not None and log.exists() else ""
    ended = f" (the eval driver exited with {driver.returncode})" if driver is not None and driver.poll() is not None \
        else ""
    raise AssertionError(f"timed out waiting for {what}{ended}{said}")


# --- the same results as the local executor ------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "passes"), [("reference", True), ("wrong", False)])
def test_the_offline_suite_scores_on_ray_as_with_the_local_executor(cluster, tmp_path, mode, passes):
    out = tmp_path / mode
    done = subprocess.run(eval_command(cluster, str(OFFLINE), "--scripted", mode, "--out", str(out), "--quiet"),
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=240)
    results = records(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(results) == 12 and all(r["passed"] is passes for r in results), done.stderr[-3000:]
    assert all(r["stop_reason"] in ("answer", "claim_done") for r in results)
    for record in results:  # the traces written on the nodes are on the driver, under the same paths
        trace = out / record["trace"]
        assert trace.is_file() and '"type"' in trace.read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["suite"]["pass@1"]["mean"] == (1.0 if passes else 0.0)
    assert f"graders proven: all 12 '{mode}' runs" in done.stderr


README_RAY_COMMAND = "agent eval examples/suites/offline --scripted reference --executor ray --ray-address auto"
"""The README's line (Larger than one machine), run here exactly as printed: it needs a cluster, and a machine
holds one test cluster at a time (tests/test_printed_commands.py defers to this test for it)."""


def test_the_readmes_ray_command_runs_as_printed(cluster, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    bin_dir = Path(sys.executable).parent  # the installed `agent` script; `auto` finds the cluster by RAY_ADDRESS
    env = {**clean_env(), "RAY_ADDRESS": cluster, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", README_RAY_COMMAND], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pass@1 100.0%" in done.stderr and "graders proven: all 12 'reference' runs passed" in done.stderr


def test_runs_spread_over_both_nodes_and_the_data_is_uploaded(cluster, tmp_path):
    suite = slow_suite(tmp_path / "spread", 4, 1.0)
    found = evaluate.discover([suite])
    evaluate.attach_scripts(found, "reference")
    executor = RayExecutor(RayOptions(address=cluster))
    settings = evaluate.RunSettings(out=tmp_path / "out", scripted="reference")
    try:
        outcome = anyio.run(functools.partial(evaluate.run_suite, found.tasks, settings, executor=executor))
    finally:
        executor.ray.shutdown()
    assert [r.passed for r in outcome.records] == [True] * 4
    assert len(executor.nodes) == 2, executor.nodes  # two raylets, one CPU each
    assert executor.limits["requests"] >= 4  # every model request went through the limiter actor


# --- faults -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [1, 0])
def test_a_killed_worker_is_retried_or_recorded_and_nothing_is_lost(cluster, tmp_path, retries):
    suite = slow_suite(tmp_path / "kill", 4, 3.0)
    out = tmp_path / "out"
    log = tmp_path / "driver.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(eval_command(cluster, str(suite), "--scripted", "reference", "--out", str(out),
                                             "--ray-retries", str(retries)),
                                cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        victim = wait_for(running_runs, 180, "a run on the cluster", driver=proc, log=log)[0]
        time.sleep(1.0)  # mid-run: its model is still "thinking"
        if victim not in running_runs():  # a loaded machine was slower than the sleep: take a run still going
            victim = wait_for(running_runs, 180, "a run on the cluster", driver=proc, log=log)[0]
        os.kill(victim, signal.SIGKILL)
        proc.wait(timeout=240)
    finally:
        proc.kill()
    err = log.read_text(errors="replace")
    results = records(out)
    assert sorted(r["task"] for r in results) == [f"t{i}" for i in range(4)], err[-2000:]
    failed = [r for r in results if not r["passed"]]
    if retries:
        assert proc.returncode == 0 and not failed, err[-2000:]
    else:
        assert proc.returncode == 1 and len(failed) == 1, err[-2000:]
        assert failed[0]["stop_reason"] == "harness_error"
        assert "worker" in failed[0]["failure"].lower() and "1 attempt" in failed[0]["failure"]
        report = json.loads((out / "report.json").read_text())
        assert not report["interrupted"] and report["suite"]["totals"]["runs"] == 3  # harness errors kept apart


def test_a_killed_driver_leaves_no_runs_and_resume_finishes_the_suite(cluster, tmp_path):
    suite = slow_suite(tmp_path / "resumable", 6, 1.5)
    out = tmp_path / "out"
    command = eval_command(cluster, str(suite), "--scripted", "reference", "--out", str(out))
    proc = subprocess.Popen(command, cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(records(out)) >= 2, 180, "two finished runs", driver=proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    before = records(out)
    wait_for(lambda: not running_runs(), 60, "Ray to end the dead driver's runs")
    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = records(out)
    assert sorted(r["task"] for r in after) == [f"t{i}" for i in range(6)]
    assert after[:len(before)] == before


def test_ctrl_c_cancels_the_remote_runs_and_leaves_nothing_running(cluster, tmp_path):
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.images.get(IMAGE)
    except Exception as exc:  # no daemon or no image
        unavailable(f"Docker with {IMAGE} is needed (bash .ci/docker-setup.sh): {exc}")
    token = uuid.uuid4().hex
    boxed = {"prompt": "wait", "sandbox": {"kind": "docker", "image": IMAGE}, "builtin_servers": ["shell"],
             "workspace": {"setup": [f"echo {token} > marker"]}, "grade": {"claims": ["x"]}}
    script = [{"tool_calls": [{"name": "shell__run_command", "arguments": {"command": "sleep 120"}}]},
              {"content": "done"}]
    suite = write_suite(tmp_path / "cancel", {
        "boxed": (boxed, script), "slow": ({"prompt": "wait", "grade": {"claims": ["x"]}},
                                           [{"content": "x", "delay_s": 120}])})
    out = tmp_path / "out"
    log = tmp_path / "driver.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(eval_command(cluster, str(suite), "--scripted", "reference", "--out", str(out)),
                                cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=stderr, text=True)

    def our_containers() -> list[str]:
        found = []
        for c in client.api.containers(filters={"label": "agent.sandbox=1"}):
            marker = Path(c["Labels"].get("agent.workspace", "/nonexistent")) / "marker"
            try:
                if marker.read_text().strip() == token:
                    found.append(c["Id"])
            except OSError:
                continue
        return found

    try:
        containers = wait_for(our_containers, 180, "the run's sandbox container", driver=proc, log=log)
        wait_for(lambda: len(running_runs()) == 2, 90, "both runs in flight", driver=proc, log=log)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    err = log.read_text(errors="replace")
    assert proc.returncode == 130, err[-2000:]
    assert "run again with --resume" in err
    left = [pid for pid, cmd in cluster_processes().items() if cmd.startswith("ray::agent_eval_run")
            or "agent.servers" in cmd]
    assert not left, left
    alive = {c["Id"] for c in client.api.containers(all=True)}
    assert not set(containers) & alive
    listed = subprocess.run([str(Path(sys.executable).parent / "ray"), "list", "tasks", "--address", cluster,
                             "--filter", "name=agent_eval_run", "--filter", "state=RUNNING", "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr[-2000:]
    text = listed.stdout.strip()
    assert text == "No resource in the cluster" or json.loads(text) == [], text  # what `ray list` says to none


# --- limits per endpoint, shared by the cluster's workers ---------------------------------------------------


def test_the_limiter_caps_requests_in_flight_and_per_second_and_spreads_a_429_backoff():
    async def main() -> tuple[float, float, dict]:
        limits = EndpointLimits(max_in_flight=2, per_second=20)
        peak, in_flight = 0, 0

        async def request(i: int) -> None:
            nonlocal peak, in_flight
            await limits.acquire("http://e/v1#m", f"run{i}")
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.sleep(0.05)
            in_flight -= 1
            await limits.release("http://e/v1#m", f"run{i}")

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for i in range(10):
                group.start_soon(request, i)
        spread = time.monotonic() - started
        await limits.acquire("http://e/v1#m", "a")
        await limits.release("http://e/v1#m", "a", backoff_s=0.5)  # a 429: everyone waits
        throttled = time.monotonic()
        await limits.acquire("http://e/v1#m", "b")
        waited = time.monotonic() - throttled
        await limits.acquire("http://e/v1#m", "c")
        await limits.forget("b")  # a run whose worker died gives its slots back
        await limits.forget("c")
        await limits.acquire("http://e/v1#m", "d")
        assert peak == 2
        return spread, waited, await limits.report()

    spread, waited, stats = asyncio_run(main)
    assert spread >= 9 / 20 * 0.9  # ten starts at 20 per second
    assert waited >= 0.45
    assert stats["throttled"] == 1 and stats["peak_in_flight"] == 2


def asyncio_run(main):
    return anyio.run(main, backend="asyncio")


def test_paths_of_the_driver_are_moved_to_where_the_node_unpacked_the_data(tmp_path):
    suite = slow_suite(tmp_path / "moved", 1, 0)
    found = evaluate.discover([suite])
    evaluate.attach_scripts(found, "reference")
    job = evaluate.RunJob(found.tasks[0], 0)
    root = data_root([job])
    assert root == suite.resolve()
    moved = relocate(job, str(root), "/elsewhere/pkg")
    assert str(moved.task.script).startswith("/elsewhere/pkg/tasks/t0/")
    assert str(moved.task.folder) == "/elsewhere/pkg/tasks/t0"
    assert job.task.script is not None and str(job.task.script).startswith(str(root))  # the original is untouched


def test_without_ray_installed_the_executor_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = evaluate.main([str(OFFLINE), "--scripted", "reference", "--executor", "ray", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "pip install 'deepseek-mcp-agent[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_model_client_asks_the_current_gate_and_reports_a_429_backoff():
    from agent.models import ChatModel, parse_model, request_gate
    from agent.testing import Fault, ScriptedModelServer, ScriptedTurn
    from agent.think import ThinkMode

    calls: list[tuple] = []

    class Gate:
        async def acquire(self, endpoint: str) -> None:
            calls.append(("acquire", endpoint))

        async def release(self, endpoint: str, *, backoff_s: float | None = None) -> None:
            calls.append(("release", endpoint, backoff_s))

    async def main() -> str:
        with ScriptedModelServer([Fault(status=429, retry_after=0.2), ScriptedTurn(content="ok")]) as server:
            config = parse_model(server.model_string).model_copy(update={"retry_base_s": 0.01})
            async with ChatModel(config) as model:
                body = model.request_body([b'{"role":"user","content":"hi"}'], tools_json=None, mode=ThinkMode.none)
                with request_gate(Gate()):
                    turn = await model.complete(body)
                endpoint = f"{model.base_url}#{model.model}"
        assert calls == [("acquire", endpoint), ("release", endpoint, pytest.approx(0.2)),
                         ("acquire", endpoint), ("release", endpoint, None)]
        return turn.content

    assert asyncio_run(main) == "ok"


def test_the_ray_tests_share_one_worker(request):
    assert_grouped(request, "ray")
