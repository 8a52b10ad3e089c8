"""Graders: file checks, commands and Toolathlon-contract scripts in a real sandbox, claims by the
deterministic matcher and by an LLM judge served over real HTTP by the scripted model server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.eval.grading import (
    Claim,
    FileCheck,
    GradeContext,
    GradeSpec,
    MatchJudge,
    ModelJudge,
    check_file,
    csv_difference,
    grade_run,
    json_difference,
    match_claim,
    parse_verdict,
)
from agent.result import RunResult
from agent.runtime.workspace import Workspace
from agent.task import load_task
from agent.testing import RecordedRequest, ScriptedModelServer, ScriptedTurn


def finished(answer: str = "done") -> RunResult:
    return RunResult(run_id="r", answer=answer, stop_reason="answer",
                     messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}])


# --- file checks ------------------------------------------------------------------------------------


def test_text_equality_honours_the_normalisation(tmp_path):
    (tmp_path / "out.txt").write_text("a b\n c\n")
    assert check_file(FileCheck(path="out.txt", text="a b\n c"), tmp_path) is None
    assert check_file(FileCheck(path="out.txt", text="ab c", normalize="whitespace"), tmp_path) is None
    assert check_file(FileCheck(path="out.txt", text="a b\nc", normalize="lines"), tmp_path) is None
    problem = check_file(FileCheck(path="out.txt", text="a  b", normalize="none"), tmp_path)
    assert problem and "differs" in problem and "first difference at character 2" in problem


def test_existence_contains_and_regex_checks(tmp_path):
    (tmp_path / "r.txt").write_text("Commit Hash: abc123\nAuthor: Pat\n")
    assert check_file(FileCheck(path="missing.txt", exists=False), tmp_path) is None
    assert "should not" in check_file(FileCheck(path="r.txt", exists=False), tmp_path)
    assert "does not exist" in check_file(FileCheck(path="missing.txt"), tmp_path)
    assert check_file(FileCheck(path="r.txt", matches=r"^Commit Hash: [0-9a-f]+$", contains=["Pat"]), tmp_path) is None
    assert "does not match" in check_file(FileCheck(path="r.txt", matches=r"^Author: Bob$"), tmp_path)
    assert "contains 'Pat'" in check_file(FileCheck(path="r.txt", not_contains=["Pat"]), tmp_path)
    assert "leaves the workspace" in check_file(FileCheck(path="../x"), tmp_path)


def test_json_equality_uses_the_tolerance_and_ignores_key_order():
    want = {"total": 645.13, "by": {"a": 1, "b": [1.0, "x"]}}
    assert json_difference({"by": {"b": [1.004, "x"], "a": 1}, "total": 645.1349}, want, 0.01) is None
    assert json_difference({"by": {"b": [1.2, "x"], "a": 1}, "total": 645.13}, want, 0.01) == "$.by.b[0]: 1.2 != 1.0"
    assert "keys differ" in json_difference({"total": 645.13}, want)
    assert json_difference([1, 2], [1, 2, 3]) == "$: 2 items, expected 3"
    assert json_difference(True, 1) is not None  # booleans are not numbers


def test_json_and_csv_file_checks_read_the_expected_files(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "s.json").write_text('{"v": 1.5}')
    (tmp_path / "s.json").write_text('{"v": 1.5000001}')
    (tmp_path / "gt" / "t.csv").write_text("m,v\n2024-12,1,000\n")
    (tmp_path / "t.csv").write_text('m,v\n2024-12,"1,000.00"\n')
    assert check_file(FileCheck(path="s.json", json=str(tmp_path / "gt" / "s.json")), tmp_path) is None
    assert check_file(FileCheck(path="s.json", json_value={"v": 2}), tmp_path) == "s.json: $.v: 1.5000001 != 2"
    (tmp_path / "gt" / "t.csv").write_text('m,v\n2024-12,"1,000"\n')
    assert check_file(FileCheck(path="t.csv", csv=str(tmp_path / "gt" / "t.csv")), tmp_path) is None


def test_csv_comparison_reports_header_rows_and_order():
    want = "Month,Units\n2024-12,210\n2024-11,160\n"
    assert csv_difference("Month,Units\r\n2024-12,210.0\r\n2024-11,160\r\n\r\n", want) is None
    assert csv_difference("Month,Qty\n2024-12,210\n2024-11,160\n", want).startswith("header")
    assert csv_difference("Month,Units\n2024-11,160\n2024-12,210\n", want).startswith("row 2")
    assert csv_difference("Month,Units\n2024-11,160\n2024-12,210\n", want, ignore_row_order=True) is None
    assert csv_difference("Month,Units\n2024-12,210\n", want) == "1 data rows, expected 2"
    assert csv_difference("Month,Units\n2024-12,211\n2024-11,160\n", want, tolerance=1.0) is None


def test_tree_check_compares_file_sets_and_optionally_contents(tmp_path):
    gt, ws = tmp_path / "gt", tmp_path / "ws"
    for root in (gt, ws):
        (root / "School").mkdir(parents=True)
        (root / "School" / "a.txt").write_text("x y\n")
    (ws / ".agent").mkdir()
    (ws / ".agent" / "noise").write_text("framework files are ignored")
    assert check_file(FileCheck(path=".", tree=str(gt), tree_contents=True), ws) is None
    (ws / "inbox").mkdir()
    (ws / "inbox" / "b.txt").write_text("left behind")
    assert "unexpected inbox/b.txt" in check_file(FileCheck(path=".", tree=str(gt)), ws)
    (ws / "inbox" / "b.txt").unlink()
    (ws / "School" / "a.txt").write_text("xy")
    assert check_file(FileCheck(path=".", tree=str(gt), tree_contents=True, normalize="whitespace"), ws) is None
    assert "differs" in check_file(FileCheck(path=".", tree=str(gt), tree_contents=True), ws)


# --- the grade section in task files -----------------------------------------------------------------


def test_a_task_file_grade_section_resolves_paths_and_shorthands(tmp_path):
    (tmp_path / "task.yaml").write_text(
        "prompt: p\n"
        "grade:\n"
        "  groundtruth: gt\n"
        "  script: evaluation/main.py\n"
        "  command: test -f out.txt\n"
        "  files: [{path: out.json, json: expected.json}, {path: . , tree: tree}]\n"
        "  claims: [plain claim, {claim: with hints, numbers: [1.5]}]\n")
    grade = load_task(tmp_path / "task.yaml").grade
    assert grade.groundtruth == tmp_path / "gt" and grade.script == tmp_path / "evaluation" / "main.py"
    assert grade.commands[0].run == "test -f out.txt"
    assert grade.files[0].json_file == str(tmp_path / "gt" / "expected.json")
    assert grade.files[1].tree == str(tmp_path / "gt" / "tree")
    assert [c.claim for c in grade.claims] == ["plain claim", "with hints"] and grade.pass_coverage == 0.75


def test_a_bad_grade_section_names_the_field(tmp_path):
    (tmp_path / "task.yaml").write_text("prompt: p\ngrade:\n  files: [{path: a, bogus: 1}]\n")
    with pytest.raises(ConfigError, match=r"task.yaml: field 'grade.files.0.bogus': unknown field"):
        load_task(tmp_path / "task.yaml")


# --- commands and scripts in the sandbox -----------------------------------------------------------------


async def test_commands_and_a_toolathlon_script_run_in_the_sandbox_with_the_contract(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "expected.txt").write_text("42\n")
    checker = tmp_path / "check.py"
    checker.write_text(
        "import argparse, json, pathlib, sys\n"
        "p = argparse.ArgumentParser()\n"
        "for a in ('--agent_workspace', '--groundtruth_workspace', '--res_log_file', '--launch_time'):\n"
        "    p.add_argument(a, required=True)\n"
        "a = p.parse_args()\n"
        "log = json.loads(pathlib.Path(a.res_log_file).read_text())\n"
        "got = pathlib.Path(a.agent_workspace, 'out.txt').read_text()\n"
        "want = pathlib.Path(a.groundtruth_workspace, 'expected.txt').read_text()\n"
        "print('launch', a.launch_time, 'answer', log['answer'])\n"
        "sys.exit(0 if got == want and log['stop_reason'] == 'answer' else 1)\n")
    spec = GradeSpec(groundtruth=gt, script=checker, commands=[
        {"run": 'test "$(cat out.txt)" = 42 && test "$GROUNDTRUTH_WORKSPACE" = ' + f'"{gt}"', "name": "env"},
        {"run": "echo nope >&2; exit 3"},
        {"run": "sleep 5", "timeout_s": 0.3},
    ])
    async with Workspace() as ws:
        (ws.path / "out.txt").write_text("42\n")
        result = await grade_run(spec, GradeContext(ws.path, finished("forty-two"), ws.sandbox, "2026-01-01 10:00:00 Thursday"))
    script, env, failing, slow = result.checks
    assert script.kind == "script" and script.passed, script.detail
    assert "launch 2026-01-01 10:00:00 Thursday answer forty-two" in script.detail
    assert env.passed and env.name == "env"
    assert not failing.passed and "exit code 3" in failing.detail and "nope" in failing.detail
    assert not slow.passed and "timed out" in slow.detail
    assert not result.passed and result.reason.startswith("command echo nope")


# --- claims --------------------------------------------------------------------------------------------


def test_the_matcher_needs_numbers_to_the_claims_precision_and_quoted_text():
    assert match_claim("First: $6446.2 per week", Claim(claim="It was $6,446.20.")).score == 1.0
    assert match_claim("about 6446", Claim(claim="It was $6,446.20.")).score == 0.0
    assert match_claim("Stand by me, 89 min", Claim(claim='"Stand by Me" runs 89 minutes')).score == 1.0
    half = match_claim("Stand by Me, 90 min", Claim(claim='"Stand by Me" runs 89 minutes'))
    assert (half.score, half.verdict) == (0.5, "partially_fulfilled") and "89" in half.reason
    hints = Claim(claim="all female, none male", numbers=[7], contains=["female"], regex=r"\bno\b.{0,20}\bmale")
    assert match_claim("7 cases, all female, no male victims", hints).score == 1.0
    assert match_claim("9 cases, 8 female, 1 male", hints).score == 0.0
    assert match_claim("anything", Claim(claim="no checkable content")).verdict == "not_fulfilled"


def test_judge_replies_are_parsed_as_json_or_keywords():
    assert parse_verdict('{"verdict": "partially_fulfilled", "reason": "half"}') == ("partially_fulfilled", "half")
    assert parse_verdict("Verdict: NOT FULFILLED, the number differs")[0] == "not_fulfilled"
    assert parse_verdict("```json\n{\"verdict\":\"fulfilled\"}\n```")[0] == "fulfilled"
    assert parse_verdict("no idea")[0] == "not_fulfilled"


async def test_claims_with_the_matcher_pass_at_the_coverage_threshold(tmp_path):
    spec = GradeSpec(claims=["A is 1.", "B is 2.", "C is 3.", "D is 4."], pass_coverage=0.75)
    three = await grade_run(spec, GradeContext(tmp_path, finished("A 1, B 2, C 3, D 5"), judge=MatchJudge()))
    two = await grade_run(spec, GradeContext(tmp_path, finished("A 1, B 2"), judge=None))
    assert (three.passed, three.coverage, three.judge_model) == (True, 0.75, "match")
    assert (two.passed, two.coverage) == (False, 0.5) and two.reason == "claims coverage 0.50 < 0.75"


def test_the_final_answer_falls_back_to_the_last_assistant_message_with_content(tmp_path):
    result = RunResult(run_id="r", stop_reason="claim_done", messages=[
        {"role": "assistant", "content": "The total is 12."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}])
    assert GradeContext(tmp_path, result).answer == "The total is 12."


async def test_an_llm_judge_scores_each_claim_through_a_configured_model(tmp_path):
    def judge(request: RecordedRequest) -> ScriptedTurn:
        prompt = request.body["messages"][-1]["content"]
        verdict = ("fulfilled" if "first" in prompt.split("Claim:")[1] else
                   "partially_fulfilled" if "second" in prompt.split("Claim:")[1] else "not_fulfilled")
        return ScriptedTurn(content=json.dumps({"verdict": verdict, "reason": f"judged {verdict}"}))

    spec = GradeSpec(claims=["the first claim", "the second claim", "the third claim"], judge="model")
    with ScriptedModelServer(judge) as server:
        async with ModelJudge(server.model_string) as model_judge:
            result = await grade_run(spec, GradeContext(tmp_path, finished("Final: forty-two."), judge=model_judge))
        bodies = [r.body for r in server.requests]
    assert [c.score for c in result.checks] == [1.0, 0.5, 0.0]
    assert result.coverage == 0.5 and not result.passed and result.judge_model == model_judge.label
    assert all(b["temperature"] == 0.0 and b["thinking"] == {"type": "disabled"} for b in bodies)
    assert "Final: forty-two." in bodies[0]["messages"][1]["content"]
    record = result.checks[1].judge
    assert record["verdict"] == "partially_fulfilled" and "the second claim" in record["prompt"]
    assert json.loads(record["reply"])["reason"] == "judged partially_fulfilled"
    assert json.loads(result.trace_line())["type"] == "graded"


async def test_match_judging_can_be_forced_even_with_a_judge_model(tmp_path):
    spec = GradeSpec(claims=["It is 42."], judge="match")
    with ScriptedModelServer([]) as server:
        async with ModelJudge(server.model_string) as model_judge:
            result = await grade_run(spec, GradeContext(tmp_path, finished("42"), judge=model_judge))
        assert server.requests == []
    assert result.passed and result.judge_model == "match"


def test_grade_paths_write_the_run_log_outside_the_workspace(tmp_path):
    """Checkers may compare the workspace's exact contents (Toolathlon's arrange-workspace does): grading adds
    nothing to it when the checker runs on the host."""
    from agent.eval.grading import _grade_paths

    workspace, scratch = tmp_path / "ws", tmp_path / "scratch"
    workspace.mkdir()
    paths = _grade_paths(GradeSpec(commands=[{"run": "true"}]), GradeContext(workspace, finished("hi")), scratch)
    log = json.loads(Path(paths.res_log).read_text())
    assert paths.python == sys.executable and log["answer"] == "hi" and log["messages"][-1]["content"] == "hi"
    assert log["status"] == "success" and Path(paths.res_log).parent == scratch
    assert list(workspace.iterdir()) == []
