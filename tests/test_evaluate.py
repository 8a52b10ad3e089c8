"""`agent eval`: metrics on known result sets, limits, timeouts and failures as reasons, the judge, resume
after a killed suite, and the same scores with 4 workers as with 1. Real runs: the scripted model over
HTTP, real workspaces, the real shell server where a task needs one."""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from conftest import write_suite

import agent.eval as evaluate
from agent.eval.report import build_report, mean_std, pass_at_k, pass_hat_k, render_html, render_markdown
from agent.testing import RecordedRequest, ScriptedModelServer, ScriptedTurn

ROOT = Path(__file__).resolve().parent.parent


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


# --- metrics -----------------------------------------------------------------------------------------


def test_pass_at_k_and_pass_hat_k_equal_brute_force_enumeration():
    for n in range(1, 7):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                draws = list(itertools.combinations(outcomes, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))
                assert pass_hat_k(n, c, k) == pytest.approx(sum(all(d) for d in draws) / len(draws))
    assert pass_at_k(3, 1, 4) is None and pass_hat_k(3, 3, 4) is None
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_mean_and_both_standard_deviations():
    assert mean_std([]) == (0.0, 0.0, 0.0)
    assert mean_std([0.5]) == (0.5, 0.0, 0.0)
    mean, pop, sample = mean_std([2 / 3, 1 / 3, 1 / 3])
    assert (mean, pop, sample) == pytest.approx((4 / 9, 0.157135, 0.192450), abs=1e-6)


def known_records() -> list[dict]:
    # a passes 3/3, b passes only round 0, c never; c's runs are claims-graded.
    outcomes = {"a": [True, True, True], "b": [True, False, False], "c": [False, False, False]}
    rows = []
    for task, results in outcomes.items():
        for repeat, passed in enumerate(results):
            rows.append({
                "task": task, "repeat": repeat, "passed": passed,
                "stop_reason": "answer" if task != "c" or repeat else "max_steps",
                "failure": None if passed else "claims coverage 0.50 < 0.75",
                "coverage": 0.5 if task == "c" else None, "steps": 4, "tool_calls": 2,
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "reasoning_tokens": 40,
                          "cache_hit_tokens": 600, "cache_miss_tokens": 400, "requests": 4},
                "cost": 0.01, "judge_cost": 0.001, "duration_s": 2.0, "wall_s": 3.0,
                "timings": {"workspace_s": 0.1, "servers_s": 0.5, "agent_s": 2.0, "grade_s": 0.2},
                "think": {"high": {"steps": 3, "reasoning_tokens": 40, "completion_tokens": 90, "seconds": 1.5},
                          "none": {"steps": 1, "reasoning_tokens": 0, "completion_tokens": 10, "seconds": 0.1}},
                "grade": None,
            })
    return rows


def test_suite_metrics_on_a_known_result_set():
    report = build_report(known_records(), ["a", "b", "c"], repeats=3, wall_s=12.5)
    suite = report["suite"]
    assert suite["pass@1"]["rounds"] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert suite["pass@1"]["mean"] == pytest.approx(4 / 9) and suite["pass@1"]["estimator"] == pytest.approx(4 / 9)
    assert suite["pass@1"]["std"] == pytest.approx(0.157135, abs=1e-6)
    assert suite["pass@1"]["std_sample"] == pytest.approx(0.192450, abs=1e-6)
    assert suite["pass@k"] == pytest.approx({"1": 4 / 9, "2": 5 / 9, "3": 2 / 3})
    assert suite["pass^k"] == pytest.approx({"1": 4 / 9, "2": 1 / 3, "3": 1 / 3})
    assert suite["mean_coverage"] == 0.5 and suite["coverage_pass_rate_0.50"] == 1.0
    totals = suite["totals"]
    assert (totals["runs"], totals["passes"], totals["prompt_tokens"], totals["cache_hit_tokens"]) == (9, 4, 9000, 5400)
    assert totals["reasoning_tokens"] == 360 and totals["cache_hit_rate"] == pytest.approx(0.6)
    assert totals["cost"] == pytest.approx(0.09) and totals["judge_cost"] == pytest.approx(0.009)
    assert suite["stop_reasons"] == {"answer": 8, "max_steps": 1}
    assert suite["failure_kinds"] == {"max_steps": 1, "crash": 4}  # answer-ended fails without a grade record
    assert suite["think"]["high"]["steps"] == 27 and suite["mean_per_run"]["servers_s"] == pytest.approx(0.5)
    b = next(row for row in report["tasks"] if row["task"] == "b")
    assert (b["runs"], b["passes"], b["pass_rate"], b["tokens"]["cache_hit_tokens"]) == (3, 1, 1 / 3, 600)
    assert report["complete"] and len(report["failures"]) == 5


def test_reports_render_the_metrics_and_html_is_self_contained():
    report = build_report(known_records(), ["a", "b", "c"], repeats=3, config={"model": "m", "scripted": None})
    markdown = render_markdown(report)
    assert "| pass@1 | 44.4% ± 15.7% (std over 3 rounds) |" in markdown
    assert "| pass@3 | 66.7% |" in markdown and "| pass^3 | 33.3% |" in markdown
    assert "| b | 1/3 |" in markdown and "## Think modes" in markdown
    page = render_html(report)
    assert page.count("<svg") == 3 and "<script" not in page.lower()
    assert "src=" not in page and "<link" not in page and "@import" not in page
    assert "pass rate per task" in page and "cost against success" in page and "think mode usage" in page


# --- runs through the suite runner ---------------------------------------------------------------------


CLAIM_TASK = {"prompt": "What is six times seven?", "grade": {"claims": ["The answer is 42."]}}


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory):
    """One suite of edge cases, run once with -j 2, a 4 s wall timeout and an LLM judge."""
    root = tmp_path_factory.mktemp("edge")
    suite = write_suite(root / "edge", {
        "limit": ({"prompt": "loop", "limits": {"max_steps": 1}, "grade": {"claims": ["x is 1"]}},
                  [{"tool_calls": [{"name": "nope__missing", "arguments": {}}]}, "x is 1"]),
        "setup-fails": ({"prompt": "p", "workspace": {"setup": ["echo broken >&2; exit 3"]}}, ["ok"]),
        "slow": (CLAIM_TASK, [{"content": "42", "delay_s": 30}]),
        "judged": ({"prompt": "p", "grade": {"claims": ["the first claim", "the second claim"], "pass_coverage": 0.75}},
                   ["Final answer: one and two-ish."]),
        "no-grade": ({"prompt": "p"}, ["finished"]),
    })

    def judge(request: RecordedRequest) -> ScriptedTurn:
        claim = request.body["messages"][-1]["content"].split("Claim:")[1]
        verdict = "fulfilled" if "first" in claim else "partially_fulfilled"
        return ScriptedTurn(content=json.dumps({"verdict": verdict, "reason": "checked"}))

    out = root / "out"
    with ScriptedModelServer(judge) as judge_server:
        started = time.monotonic()
        code = evaluate.main([str(suite), "--scripted", "reference", "--out", str(out), "-j", "2", "--timeout", "4",
                              "--judge", judge_server.model_string, "--quiet"])
        took = time.monotonic() - started
        judge_label = judge_server.model_string
    by_task = {r["task"]: r for r in records(out)}
    return {"code": code, "out": out, "by_task": by_task, "took": took, "judge": judge_label}


def test_a_run_stopped_by_a_limit_fails_with_the_reason_and_is_not_graded(edge_run):
    limit = edge_run["by_task"]["limit"]
    assert (limit["passed"], limit["stop_reason"], limit["grade"]) == (False, "max_steps", None)
    assert limit["failure"].startswith("not graded: the run stopped on max_steps")


def test_a_failing_workspace_setup_fails_that_run_and_the_suite_goes_on(edge_run):
    setup = edge_run["by_task"]["setup-fails"]
    assert (setup["passed"], setup["stop_reason"]) == (False, "workspace_error")
    assert "exited with 3" in setup["failure"] and "broken" in setup["failure"]
    assert edge_run["by_task"]["no-grade"]["passed"]  # a task with nothing to check passes when it finishes


def test_the_wall_timeout_cuts_a_run_and_keeps_what_it_used(edge_run):
    slow = edge_run["by_task"]["slow"]
    assert (slow["passed"], slow["stop_reason"]) == (False, "timeout")
    assert slow["failure"] == "the run passed the wall timeout of 4 s"
    assert 3.5 < slow["wall_s"] < 15 and edge_run["took"] < 25
    assert Path(edge_run["out"], slow["trace"]).exists()


def test_claims_are_judged_by_the_configured_model_and_the_verdicts_are_traced(edge_run):
    judged = edge_run["by_task"]["judged"]
    assert judged["passed"] and judged["coverage"] == 0.75
    assert [c["judge"]["verdict"] for c in judged["grade"]["checks"]] == ["fulfilled", "partially_fulfilled"]
    assert judged["grade"]["judge_model"].startswith("deepseek:http://127.0.0.1:")
    graded = json.loads(Path(edge_run["out"], judged["trace"]).read_text().splitlines()[-1])
    assert graded["type"] == "graded" and "Final answer: one and two-ish." in graded["checks"][0]["judge"]["prompt"]


def test_the_reports_are_written_and_the_scripted_verdict_fails_on_wrong_outcomes(edge_run):
    out = edge_run["out"]
    report = json.loads((out / "report.json").read_text())
    # The task whose workspace setup failed is not graded: listed apart, outside every rate.
    assert report["suite"]["totals"]["runs"] == 4 and report["suite"]["totals"]["passes"] == 2
    assert [(r["task"], r["stop_reason"]) for r in report["not_graded"]] == [("setup-fails", "workspace_error")]
    assert "## Not graded" in (out / "report.md").read_text()
    assert report["suite"]["stop_reasons"]["timeout"] == 1
    assert (out / "report.md").exists() and (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert edge_run["code"] == 1  # reference trajectories that fail make --scripted reference exit 1


def test_existing_results_are_not_overwritten_without_resume(edge_run, capsys):
    code = evaluate.main([str(edge_run["out"].parent / "edge"), "--scripted", "reference", "--out",
                          str(edge_run["out"])])
    assert code == 2 and "already holds results; pass --resume" in capsys.readouterr().err


def mixed_suite(root: Path) -> Path:
    """Passing and failing tasks; two write into their own workspace through the real shell server and
    check that the workspace holds only their file (isolation)."""
    tasks: dict[str, tuple[dict, list]] = {}
    for i in range(3):
        tasks[f"good-{i}"] = (CLAIM_TASK, [{"content": f"It is 42 (try {i}).", "delay_s": 0.2}])
        tasks[f"bad-{i}"] = (CLAIM_TASK, [{"content": "It is 41.", "delay_s": 0.2}])
    tasks["half"] = ({"prompt": "p", "grade": {"claims": ["a is 1", "b is 2"]}}, ["a is 1, b is 3"])
    for i in range(2):
        tasks[f"isolated-{i}"] = (
            {"prompt": "write", "builtin_servers": ["shell"],
             "grade": {"files": [{"path": "mine.txt", "text": str(i)}, {"path": "other.txt", "exists": False}]}},
            [{"tool_calls": [{"name": "shell__run_command",
                              "arguments": {"command": f"echo {i} > mine.txt; ls; sleep 0.3"}}]},
             "written"])
    return write_suite(root, tasks)


def outcome(out: Path) -> dict:
    return {(r["task"], r["repeat"]): (r["passed"], r["coverage"], r["stop_reason"], r["steps"]) for r in records(out)}


def test_four_workers_give_the_same_scores_as_one(tmp_path):
    suite = mixed_suite(tmp_path / "mixed")
    for jobs in ("1", "4"):
        code = evaluate.main([str(suite), "--scripted", "reference", "-k", "2", "-j", jobs,
                              "--out", str(tmp_path / f"j{jobs}"), "--quiet"])
        assert code == 1  # the bad tasks fail their "reference" on purpose
    one, four = outcome(tmp_path / "j1"), outcome(tmp_path / "j4")
    assert one == four and len(one) == 18
    assert {k[0] for k, v in one.items() if v[0]} == {"good-0", "good-1", "good-2", "isolated-0", "isolated-1"}
    assert one[("half", 0)][1] == 0.5
    r1, r4 = (json.loads((tmp_path / f"j{j}" / "report.json").read_text())["suite"] for j in ("1", "4"))
    for key in ("pass@1", "pass@k", "pass^k", "mean_coverage"):
        assert r1[key] == r4[key]
    assert r1["pass@1"]["mean"] == pytest.approx(5 / 9)
    assert max_overlap(records(tmp_path / "j1")) == 1 and max_overlap(records(tmp_path / "j4")) > 1


class ThreadExecutor:
    """A stand-in for a distributed executor: each job goes, with the settings, to a worker thread that calls
    `run_job_sync` in its own event loop (as a remote worker would); `done` runs on the driver."""

    def __init__(self, settings: evaluate.RunSettings):
        self.settings = settings
        self.shipped: list[tuple[str, int]] = []

    async def map(self, jobs, work, done) -> None:
        for job in jobs:
            self.shipped.append(job.key)
            await done(await anyio.to_thread.run_sync(evaluate.run_job_sync, job, self.settings))


def test_an_executor_of_our_own_runs_the_jobs_through_run_job_sync(tmp_path):
    suite = write_suite(tmp_path / "remote", {"good": (CLAIM_TASK, ["It is 42."]), "bad": (CLAIM_TASK, ["It is 41."])})
    found = evaluate.discover([suite])
    evaluate.attach_scripts(found, "reference")
    settings = evaluate.RunSettings(out=tmp_path / "out", scripted="reference")
    executor = ThreadExecutor(settings)
    result = anyio.run(functools.partial(evaluate.run_suite, found.tasks, settings, executor=executor))
    assert sorted(executor.shipped) == [("bad", 0), ("good", 0)]
    assert {r.task: r.passed for r in result.records} == {"good": True, "bad": False}
    assert len(records(tmp_path / "out")) == 2 and (tmp_path / "out" / "report.json").exists()


def test_the_harness_names_are_importable_from_agent_eval():
    assert evaluate.__all__ and all(hasattr(evaluate, name) for name in evaluate.__all__)


def max_overlap(rows: list[dict]) -> int:
    """The most runs in flight at once, from each run's [finished_at - wall_s, finished_at]."""
    edges = sorted([(r["finished_at"] - r["wall_s"] + 0.01, 1) for r in rows] + [(r["finished_at"], -1) for r in rows])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_resume_after_a_killed_suite_runs_only_what_is_missing(tmp_path):
    tasks = {f"t{i}": (CLAIM_TASK, [{"content": "It is 42.", "delay_s": 0.5}]) for i in range(6)}
    suite = write_suite(tmp_path / "resumable", tasks)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "agent.eval", str(suite), "--scripted", "reference", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL")}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "results.jsonl").exists() and len(records(out)) >= 2:
                break
            assert proc.poll() is None, "the suite ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    before = records(out)
    assert 2 <= len(before) < 6
    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = records(out)
    assert sorted((r["task"], r["repeat"]) for r in after) == [(f"t{i}", 0) for i in range(6)]
    assert after[:len(before)] == before  # finished runs were kept as they were
    assert resumed.stderr.count("PASS ") == 6 - len(before)
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["suite"]["totals"]["runs"] == 6
