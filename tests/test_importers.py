"""Importers: Toolathlon task folders and MCP-Atlas rows (CSV and JSONL) written in the benchmarks' own
formats, what they lack reported before anything runs, and imported tasks run end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

import agent.eval as evaluate
from agent.eval.atlas import import_atlas_rows, split_atlas_tool
from agent.eval.importers import load_server_entries
from agent.eval.toolathlon import import_toolathlon_task
from agent.testing import ScriptedModelServer
from tests.conftest import DEMO_SERVER

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOOLATHLON = FIXTURES / "toolathlon"
COUNT_WORDS = TOOLATHLON / "tasks" / "finalpool" / "count-words"
ATLAS_CSV = FIXTURES / "atlas" / "sample_tasks.csv"
ATLAS_JSONL = FIXTURES / "atlas" / "sample_tasks.jsonl"
ATLAS_DATA = FIXTURES / "atlas" / "data"


def test_a_toolathlon_task_folder_becomes_a_task_with_our_servers_and_its_checker():
    imported = import_toolathlon_task(COUNT_WORDS)
    spec = imported.spec
    assert imported.runnable and imported.id == "count-words" and imported.kind == "toolathlon"
    assert spec.prompt.startswith("Count the words in poem.txt")
    assert "Accessible workspace directory: ${WORKSPACE}" in spec.system
    assert "`claim_done`" in spec.system and "local-claim_done" not in spec.system
    assert spec.limits.max_steps == 200  # Toolathlon's formal_run_v0.json
    assert spec.servers["filesystem"].args == ["-m", "agent.servers.files", "${WORKSPACE}"]
    assert spec.servers["terminal"].args == ["-m", "agent.servers.shell", "${WORKSPACE}"]
    assert spec.workspace.files == COUNT_WORDS / "initial_workspace"
    assert "-m tasks.finalpool.count-words.preprocess.main" in spec.workspace.setup[0]
    assert spec.grade.groundtruth == COUNT_WORDS / "groundtruth_workspace"
    command = spec.grade.commands[0].run
    assert f'cd "{TOOLATHLON}"' in command and "-m tasks.finalpool.count-words.evaluation.main" in command
    for flag in ("--agent_workspace", "--groundtruth_workspace", "--res_log_file", "--launch_time"):
        assert flag in command
    assert imported.warnings == [  # no Toolathlon checkout above it: our servers and this interpreter
        "server filesystem: our files server stands in for the benchmark's",
        "server terminal: our shell server stands in for the benchmark's",
        f"no Toolathlon root: the checker runs with this interpreter ({sys.executable}); pass --toolathlon-root "
        "for the benchmark's environment"]
    assert imported.spec.local_tools == ["claim_done", "handle_overlong_tool_outputs", "history"]


def test_toolathlon_servers_we_lack_are_reported_and_can_be_supplied(tmp_path):
    folder = TOOLATHLON / "tasks" / "finalpool" / "find-alita-paper"
    imported = import_toolathlon_task(folder)
    assert not imported.runnable
    assert imported.missing_servers == ["arxiv_local", "scholarly"]
    assert imported.problem == "needs servers we do not have: arxiv_local, scholarly"
    entries = tmp_path / "servers.yaml"
    entries.write_text(yaml.safe_dump({"mcpServers": {
        name: {"command": sys.executable, "args": [str(DEMO_SERVER), "${WORKSPACE}"]} for name in ("arxiv_local", "scholarly")}}))
    supplied = import_toolathlon_task(folder, servers=load_server_entries(entries))
    assert supplied.runnable and set(supplied.spec.servers) == {"arxiv_local", "filesystem", "scholarly"}
    assert supplied.spec.servers["scholarly"].args[-1] == "${WORKSPACE}"  # bound per run, not expanded now


def check_atlas_rows(tasks):
    pet, week10, weeks = tasks
    assert [t.id for t in tasks] == ["5c6d7e8f9a", "7a8b9c0d1e", "1f2e3d4c5b"]
    # The trajectory calls calculator_calculate: a required server we lack.
    assert not pet.runnable and pet.missing_servers == ["calculator"]
    assert pet.problem == "needs servers we do not have: calculator"
    # wikipedia tools are only distractors there: dropped with a warning, the task runs.
    assert week10.runnable and any("distractor tools of wikipedia dropped" in w for w in week10.warnings)
    assert any("cli-mcp-server_show_security_rules has no counterpart" in w for w in week10.warnings)
    files = week10.spec.servers["filesystem"]
    assert files.args == ["-m", "agent.servers.files", "${WORKSPACE}", "--alias", "/data=${WORKSPACE}"]
    assert files.allow == ["read_file", "read_multiple_files", "list_directory", "directory_tree", "glob_search",
                           "get_file_info", "list_allowed_roots"]
    assert week10.spec.servers["cli-mcp-server"].allow == ["run_command"]
    assert [c.claim for c in week10.spec.grade.claims] == ["The profit in week 10 was $6,917."]
    assert week10.spec.grade.pass_coverage == 0.75
    assert (week10.spec.limits.max_tool_calls, week10.spec.limits.max_steps) == (100, 256)
    assert weeks.runnable and weeks.spec.workspace.files == ATLAS_DATA.resolve()
    assert len(pet.spec.grade.claims) == 3 and pet.spec.grade.claims[2].claim.endswith("was $340.40.")


def test_atlas_rows_from_the_sample_csv_with_python_literal_claims():
    check_atlas_rows(import_atlas_rows(ATLAS_CSV, data=ATLAS_DATA))


def test_atlas_rows_from_jsonl_with_lowercase_columns_and_real_lists():
    check_atlas_rows(import_atlas_rows(ATLAS_JSONL, data=ATLAS_DATA))


def test_atlas_tool_names_split_on_the_longest_known_server():
    assert split_atlas_tool("cli-mcp-server_run_command") == ("cli-mcp-server", "run_command")
    assert split_atlas_tool("notion_API-post-search") == ("notion", "API-post-search")
    assert split_atlas_tool("weather-data_get_forecast") == ("weather-data", "get_forecast")
    assert split_atlas_tool("my_server_tool", {"my_server": None}) == ("my_server", "tool")
    assert split_atlas_tool("unknown_do_it") == ("unknown", "do_it")


def test_list_reports_per_task_what_is_missing_before_anything_runs(capsys):
    code = evaluate.main([str(TOOLATHLON), str(ATLAS_CSV), "--atlas-data", str(ATLAS_DATA), "--list"])
    out = capsys.readouterr().out
    assert code == 0
    assert ("count-words  [toolathlon] servers: filesystem (ours (files)), terminal (ours (shell)); "
            "grade: 1 commands") in out
    assert "2 task(s) cannot run here and are skipped:" in out
    assert "find-alita-paper" in out and "needs servers we do not have: arxiv_local, scholarly" in out
    assert "5c6d7e8f9a" in out and "needs servers we do not have: calculator" in out
    assert "--servers FILE" in out


def run_imported(tmp_path: Path, path: Path, script: list, *extra: str) -> tuple[dict, list]:
    out = tmp_path / "out"
    with ScriptedModelServer(script) as model:
        code = evaluate.main([str(path), "--model", model.model_string, "--out", str(out), "--quiet", *extra])
        requests = model.requests
    assert code == 0
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    return record, requests


def test_an_imported_toolathlon_task_runs_preprocess_the_agent_and_its_checker(tmp_path):
    script = [
        {"tool_calls": [{"name": "terminal__run_command", "arguments": {"command": "wc -w < poem.txt"}}]},
        {"tool_calls": [{"name": "filesystem__write_file", "arguments": {"path": "word_count.txt", "content": "9\n"}}]},
        {"tool_calls": [{"name": "claim_done", "arguments": {}}]},
    ]
    record, requests = run_imported(tmp_path, TOOLATHLON, script, "--filter", "count-words")
    system = requests[0].body["messages"][0]["content"]
    tool_result = next(m for m in requests[1].body["messages"] if m["role"] == "tool")["content"]
    assert "Accessible workspace directory: /" in system and "${WORKSPACE}" not in system
    assert "9" in tool_result  # preprocess unpacked files.tar.gz into the workspace
    assert record["passed"] and record["stop_reason"] == "claim_done", record["failure"]
    check = record["grade"]["checks"][0]
    assert check["kind"] == "command" and "Pass all tests!" in check["detail"]


def test_an_imported_toolathlon_task_fails_when_the_checker_says_so(tmp_path):
    script = [{"tool_calls": [{"name": "filesystem__write_file", "arguments": {"path": "word_count.txt", "content": "8"}}]},
              {"content": "There are 8 words."}]
    record, _ = run_imported(tmp_path, COUNT_WORDS, script)
    assert not record["passed"]
    assert "word_count.txt says '8', expected '9'" in record["failure"]


def test_an_imported_atlas_row_offers_only_its_enabled_tools_and_is_judged_on_claims(tmp_path):
    script = [{"tool_calls": [{"name": "filesystem__read_file",
                               "arguments": {"path": "Pet Care 2023 Weekly Financials.csv"}}]},
              {"content": "Your files hold 10 weeks of pet store financials (weeks 1 to 10 of 2023)."}]
    record, requests = run_imported(tmp_path, ATLAS_JSONL, script, "--atlas-data", str(ATLAS_DATA),
                                    "--filter", "1f2e3d4c5b")
    offered = sorted(t["function"]["name"] for t in requests[0].body["tools"] if "__" in t["function"]["name"])
    assert offered == sorted(f"filesystem__{t}" for t in ("read_file", "read_multiple_files", "list_directory",
                                                           "directory_tree", "glob_search", "get_file_info",
                                                           "list_allowed_roots"))
    assert record["passed"] and record["coverage"] == 1.0
    assert record["grade"]["judge_model"] == "match"
