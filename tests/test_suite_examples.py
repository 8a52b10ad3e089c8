"""The bundled offline suite proves its graders: every reference trajectory passes through the real loop,
servers and graders, and every wrong or do-nothing trajectory fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agent.eval as evaluate
from agent.task import load_task

SUITE = Path(__file__).resolve().parent.parent / "examples" / "suites" / "offline"
TASKS = sorted(p.parent for p in SUITE.glob("tasks/*/task.yaml"))


def test_the_suite_has_twelve_tasks_half_state_checked_half_claims_each_with_solutions():
    assert len(TASKS) >= 12
    claims = [t.name for t in TASKS if load_task(t / "task.yaml").grade.claims]
    state = [t.name for t in TASKS if not load_task(t / "task.yaml").grade.claims]
    assert len(claims) >= 6 and len(state) >= 6
    for task in TASKS:
        assert (task / "solutions" / "reference.yaml").is_file(), task
        assert (task / "solutions" / "wrong.yaml").is_file(), task


@pytest.mark.parametrize(("mode", "passes"), [("reference", True), ("wrong", False), ("nothing", False)])
def test_scripted_trajectories_score_as_expected(tmp_path, capsys, mode, passes):
    out = tmp_path / mode
    code = evaluate.main([str(SUITE), "--scripted", mode, "-j", "2", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    wrong = {r["task"]: r["failure"] for r in results if r["passed"] != passes}
    assert code == 0 and not wrong, (wrong, err)
    assert len(results) == len(TASKS)
    assert f"graders proven: all {len(TASKS)} '{mode}' runs {'passed' if passes else 'failed'}" in err
    if mode == "reference":
        assert all(r["stop_reason"] in ("answer", "claim_done") for r in results)
        report = json.loads((out / "report.json").read_text())
        assert report["suite"]["pass@1"]["mean"] == 1.0 and report["suite"]["mean_coverage"] == 1.0
    else:
        # Failures are the graders' verdicts on finished runs, not crashes or limits.
        assert all(r["stop_reason"] in ("answer", "claim_done") and r["grade"] for r in results)
