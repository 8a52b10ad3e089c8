"""MCP-Atlas as it is: rows in the benchmark's columns with its `<server>_<tool>` names, its
mcp_server_template.json with `${VAR}` keys, its `/data` paths served from each run's copy (our files and shell
servers, and the template's own servers behind the alias proxy), claims judged by its scorer's rules or by the
offline matcher, scripted reference and wrong solutions run through the installed `agent` script, and failure
categories from its diagnostics taxonomy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from agent.eval.atlas import ATLAS_SERVERS, import_atlas_rows, solutions_folder, split_atlas_tool
from agent.eval.claims import JUDGE_SYSTEM, clean_claim, judge_prompt, match_claim, parse_verdict
from agent.eval.grading import ModelJudge
from agent.eval.importers import read_server_entries
from agent.eval.jobs import RunRecord
from agent.eval.report import build_report, render_markdown
from agent.eval.taxonomy import FAMILY, classify_failure, read_trace, summarise_failures
from agent.grade_spec import Claim
from agent.servers.alias_proxy import parse_arguments, rewrite_message
from agent.servers.files import AliasedGuard
from agent.servers.shell import PathAlias
from agent.testing import ScriptedModelServer

REPO = Path(__file__).resolve().parent.parent
ATLAS = Path(__file__).resolve().parent / "fixtures" / "atlas"
OFFLINE = ATLAS / "offline"
TASKS = OFFLINE / "tasks.csv"
TEMPLATE = OFFLINE / "mcp_server_template.json"
DATA = ATLAS / "data"
REGIONS, PETS, SHELL, NOTION = ("5f0e1d2c3b4a596877869504", "6a7b8c9d0e1f203142536475", "7c8d9e0f1a2b3c4d5e6f7081",
                                "8d9e0f1a2b3c4d5e6f708192")
RUNNABLE = (REGIONS, PETS, SHELL)
AGENT = Path(sys.executable).parent / "agent"
# What the fixture template's ${VAR}s need; the keys of notion and twelvedata stay unset.
STUB_ENV = {"ATLAS_TEST_PYTHON": sys.executable, "ATLAS_TEST_STUB": str(OFFLINE / "stub_server.py")}


@pytest.fixture
def stub_env(monkeypatch):
    for name, value in STUB_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("ATLAS_TEST_NOTION_TOKEN", "ATLAS_TEST_TWELVE_DATA_KEY"):
        monkeypatch.delenv(name, raising=False)


# --- tool names --------------------------------------------------------------------------------------------


def test_tool_names_split_on_the_longest_server_name_of_the_template_the_paper_and_ours():
    assert split_atlas_tool("cli-mcp-server_run_command") == ("cli-mcp-server", "run_command")
    assert split_atlas_tool("mcp-server-code-runner_run-code") == ("mcp-server-code-runner", "run-code")
    assert split_atlas_tool("mcp-code-executor_execute_code") == ("mcp-code-executor", "execute_code")
    assert split_atlas_tool("clinicaltrialsgov-mcp-server_clinicaltrials_get_study") == (
        "clinicaltrialsgov-mcp-server", "clinicaltrials_get_study")
    assert split_atlas_tool("clinicaltrialsgov_search") == ("clinicaltrialsgov", "search")  # the paper's name
    assert split_atlas_tool("weather-data_get_forecast") == ("weather-data", "get_forecast")
    assert split_atlas_tool("weather_get_hourly_forecast") == ("weather", "get_hourly_forecast")
    assert split_atlas_tool("osm-mcp-server_find_nearby_places") == ("osm-mcp-server", "find_nearby_places")
    assert split_atlas_tool("met-museum_get-museum-object") == ("met-museum", "get-museum-object")
    assert split_atlas_tool("notion_API-post-search") == ("notion", "API-post-search")
    assert split_atlas_tool("balldontlie_get_teams") == ("balldontlie", "get_teams")  # named by tasks only
    assert split_atlas_tool("files_read_file") == ("files", "read_file")
    assert split_atlas_tool("shell_run_command") == ("shell", "run_command")
    assert split_atlas_tool("web_fetch") == ("web", "fetch")
    assert split_atlas_tool("my_server_tool", {"my_server"}) == ("my_server", "tool")
    assert split_atlas_tool("unknown_do_it") == ("unknown", "do_it")


def test_legacy_tool_names_are_renamed_as_the_benchmark_renames_them():
    assert split_atlas_tool("brave_brave_web_search") == ("brave-search", "brave_web_search")
    assert split_atlas_tool("MongoDB_find") == ("mongodb", "find")


def test_every_server_of_a_template_shaped_file_is_known():
    servers = json.loads(TEMPLATE.read_text())["mcpServers"]
    assert set(servers) <= set(ATLAS_SERVERS)
    for name in ATLAS_SERVERS:
        assert split_atlas_tool(f"{name}_some_tool") == (name, "some_tool")


# --- the template and its keys -----------------------------------------------------------------------------


def test_a_server_whose_variables_are_unset_is_unavailable_with_the_variable_named(stub_env, monkeypatch):
    monkeypatch.setenv("ATLAS_TEST_TWELVE_DATA_KEY", "")  # empty counts as unset, as in the benchmark
    entries = read_server_entries(TEMPLATE)
    assert set(entries.specs) == {"calculator", "filesystem"}
    assert entries.specs["filesystem"].args == [str(OFFLINE / "stub_server.py"), "filesystem", "/data"]
    assert "environment variable ATLAS_TEST_NOTION_TOKEN is not set" in entries.unavailable["notion"]
    assert "ATLAS_TEST_TWELVE_DATA_KEY" in entries.unavailable["twelvedata"]


def test_a_set_key_enables_its_server_and_env_lists_use_the_first_complete_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("ATLAS_TEST_KEY_B", "b-key")
    monkeypatch.delenv("ATLAS_TEST_KEY_A", raising=False)
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"mcpServers": {
        "exa": {"command": "npx", "args": ["exa-mcp-server"],
                "env": [{"EXA_API_KEY": "${ATLAS_TEST_KEY_A}"}, {"EXA_API_KEY": "${ATLAS_TEST_KEY_B}"}]},
        "fetch": {"command": "uvx", "args": ["mcp-server-fetch", "${ATLAS_TEST_UNSET:-default}"]}}}))
    entries = read_server_entries(path)
    assert entries.unavailable == {}
    assert entries.specs["exa"].env == {"EXA_API_KEY": "b-key"}
    assert entries.specs["fetch"].args[-1] == "default"


def test_a_row_that_needs_a_server_without_its_key_is_not_runnable_and_says_which_variable(stub_env):
    entries = read_server_entries(TEMPLATE)
    tasks = {t.id: t for t in import_atlas_rows(TASKS, servers=entries.specs, data=DATA,
                                               unavailable=entries.unavailable)}
    notion = tasks[NOTION]
    assert not notion.runnable and notion.missing_servers == ["notion"]
    assert "ATLAS_TEST_NOTION_TOKEN is not set" in notion.problem
    pets = tasks[PETS]
    assert pets.runnable  # notion is only a distractor there: dropped, the variable named
    assert any("distractor tools of notion dropped" in w and "ATLAS_TEST_NOTION_TOKEN" in w for w in pets.warnings)


def test_template_servers_run_behind_the_data_alias_and_ours_answer_to_data(stub_env):
    entries = read_server_entries(TEMPLATE)
    tasks = {t.id: t for t in import_atlas_rows(TASKS, servers=entries.specs, data=DATA,
                                               unavailable=entries.unavailable)}
    filesystem = tasks[REGIONS].spec.servers["filesystem"]
    assert filesystem.command == sys.executable
    assert filesystem.args == ["-m", "agent.servers.alias_proxy", "/data=${WORKSPACE}", "--", sys.executable,
                               str(OFFLINE / "stub_server.py"), "filesystem", "/data"]
    assert filesystem.allow == ["read_text_file", "list_directory", "list_allowed_directories"]
    shell = tasks[SHELL].spec.servers["cli-mcp-server"]  # not in the template: our shell stands in
    assert shell.args == ["-m", "agent.servers.shell", "${WORKSPACE}", "--alias", "/data"]
    assert tasks[REGIONS].spec.workspace.files == DATA.resolve()
    ours = {t.id: t for t in import_atlas_rows(TASKS, data=DATA)}
    assert ours[REGIONS].spec.servers["filesystem"].args == [
        "-m", "agent.servers.files", "${WORKSPACE}", "--alias", "/data=${WORKSPACE}"]
    assert not ours[PETS].runnable and ours[PETS].problem == "needs servers we do not have: calculator"


def test_a_template_server_whose_program_is_missing_is_not_run_and_ours_stand_in_where_we_have_one(tmp_path):
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"mcpServers": {name: {"command": "no-such-program-here", "args": []}
                                               for name in ("calculator", "cli-mcp-server")}}))
    rows = tmp_path / "rows.csv"
    rows.write_text('TASK,ENABLED_TOOLS,PROMPT,GTFA_CLAIMS\n'
                    't1,"[""calculator_calculate""]",Add 1 and 2.,"[""It is 3.""]"\n'
                    't2,"[""cli-mcp-server_run_command""]",List /data.,"[""It holds 2 files.""]"\n')
    calculator, shell = import_atlas_rows(rows, servers=read_server_entries(path).specs)
    assert calculator.problem == "needs servers we do not have: calculator (no-such-program-here is not " \
                                 "installed (needed by calculator))"
    assert shell.runnable and shell.spec.servers["cli-mcp-server"].args[1] == "agent.servers.shell"
    assert "our shell server stands in for cli-mcp-server" in shell.warnings[0]


# --- /data --------------------------------------------------------------------------------------------------


def test_the_files_guard_resolves_data_paths_below_the_root_and_shows_them_as_data(tmp_path):
    root = str(tmp_path.resolve())
    (tmp_path / "a.csv").write_text("x")
    guard = AliasedGuard((root,), (("/data", root),))
    assert guard.resolve("/data/a.csv") == f"{root}/a.csv"
    assert guard.display(f"{root}/a.csv") == "/data/a.csv" and guard.display(root) == "/data"
    with pytest.raises(Exception) as refused:
        guard.resolve("/data/../../etc/passwd")
    assert root not in str(refused.value) and "/data" in str(refused.value)


async def test_the_files_server_with_an_alias_serves_data_paths_from_its_root(tmp_path):
    (tmp_path / "Sales.csv").write_text("Region,Q4\nNorth,1\n")
    params = StdioServerParameters(command=sys.executable, cwd=str(REPO), args=[
        "-m", "agent.servers.files", str(tmp_path), "--alias", f"/data={tmp_path}"])
    async with Client(params) as client:
        read = await client.call_tool("read_file", {"path": "/data/Sales.csv"})
        roots = await client.call_tool("list_allowed_roots", {})
        listing = await client.call_tool("list_directory", {"path": "/data"})
    assert not read.is_error and "North,1" in read.content[0].text
    assert roots.structured_content["roots"] == ["/data"]
    text = listing.content[0].text
    assert text.startswith("/data/") and "Sales.csv" in text and str(tmp_path) not in text


def test_the_shell_alias_rewrites_whole_path_components_only():
    alias = PathAlias("/data", "/tmp/run-1")
    assert alias.inward("cat '/data/Pet Care.csv' /data") == "cat '/tmp/run-1/Pet Care.csv' /tmp/run-1"
    assert alias.inward("find /data -name x --root=/data/sub") == "find /tmp/run-1 -name x --root=/tmp/run-1/sub"
    assert alias.inward("ls /database foo/data /data2 ~/data") == "ls /database foo/data /data2 ~/data"
    assert alias.outward("/tmp/run-1/a.csv\n") == "/data/a.csv\n"


async def test_the_shell_server_with_an_alias_runs_data_commands_on_its_root(tmp_path):
    (tmp_path / "a.csv").write_text("1,2\n")
    params = StdioServerParameters(command=sys.executable, cwd=str(REPO), args=[
        "-m", "agent.servers.shell", str(tmp_path), "--alias", "/data"])
    async with Client(params) as client:
        found = await client.call_tool("run_command", {"command": "find /data -name '*.csv'; pwd"})
        inside = await client.call_tool("run_command", {"command": "cat a.csv", "cwd": "/data"})
        job = await client.call_tool("start_job", {"command": "ls /data/a.csv"})
        output = await client.call_tool("read_job", {"job_id": job.structured_content["job_id"], "wait_s": 5})
    assert found.structured_content["stdout"] == "/data/a.csv\n/data\n"
    assert inside.structured_content["stdout"] == "1,2\n"
    assert output.structured_content["output"].strip() == "/data/a.csv"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
async def test_the_shell_server_in_bubblewrap_mounts_the_workspace_at_the_alias(tmp_path):
    (tmp_path / "a.csv").write_text("1,2\n")
    params = StdioServerParameters(command=sys.executable, cwd=str(REPO), args=[
        "-m", "agent.servers.shell", str(tmp_path), "--alias", "/data", "--sandbox", "bubblewrap"])
    async with Client(params) as client:
        found = await client.call_tool("run_command", {"command": "pwd; cat /data/a.csv"})
    assert found.structured_content["stdout"] == "/data\n1,2\n"


def test_the_alias_proxy_rewrites_tool_arguments_inward_and_replies_outward():
    (alias,), command = parse_arguments(["/data=/tmp/run-1", "--", "npx", "server", "/data"])
    assert command == ["npx", "server", "/data"] and alias.root == "/tmp/run-1"
    call = b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read","arguments":{"path":"/data/a b.csv"}}}\n'
    assert json.loads(rewrite_message(call, alias.inward))["params"]["arguments"]["path"] == "/tmp/run-1/a b.csv"
    reply = b'{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"Allowed: /tmp/run-1"}]}}\n'
    assert json.loads(rewrite_message(reply, alias.outward))["result"]["content"][0]["text"] == "Allowed: /data"
    assert rewrite_message(b"not json\n", alias.inward) == b"not json\n"
    with pytest.raises(ValueError):
        parse_arguments(["data=/x", "--", "cmd"])


# --- claims ------------------------------------------------------------------------------------------------


def test_the_matcher_does_not_pass_the_right_numbers_for_the_wrong_region():
    claim = Claim(claim="The North region had the highest Q4 sales, at $48,200.")
    right = match_claim("North led Q4 with $48,200 in sales.", claim)
    wrong = match_claim("The South region had the highest Q4 sales, at $48,200.", claim)
    assert right.verdict == "fulfilled"
    assert wrong.verdict == "not_fulfilled" and "'North'" in wrong.reason


def test_the_matcher_reads_numbers_in_context():
    assert match_claim("Sales rose in Q4.", Claim(claim="Sales rose in 4 regions.")).score == 0.0  # Q4 is no 4
    assert match_claim("It averaged 6446.2 dollars.", Claim(claim="It averaged $6,446.20.")).score == 1.0
    assert match_claim("It averaged $6,446.", Claim(claim="It averaged $6,446.20.")).score == 0.0
    assert match_claim("48.39 percent", Claim(claim="48.39% of clients were female.")).score == 1.0
    assert match_claim("a share of 0.4839 were female", Claim(claim="48.39% of clients were female.")).score == 1.0
    assert match_claim("Beer spending fell 18.4% on Saturday", Claim(claim="Saturday changed by -18.4%.")).score == 1.0
    assert match_claim("revenue of $1,200,000", Claim(claim="Revenue was $1.2 million.")).score == 1.0
    assert match_claim("COVID-19 cases: 7", Claim(claim="There were 19 cases.")).score == 0.0


def test_the_matcher_fails_the_right_numbers_given_to_the_wrong_labels():
    claim = Claim(claim="Q3 revenue was $12.5M and Q4 was $14.2M.")
    right = ["Q3: $12.5M; Q4: $14.2M", "Revenue was $12.5M in Q3 and $14.2M in Q4.",
             "Q3 and Q4 revenue were $12.5M and $14.2M respectively.", "For Q3, revenue was $12.5M. For Q4, $14.2M.",
             "| Q3 | 12.5M |\n| Q4 | 14.2M |", "Revenue: 12.5M (Q3), 14.2M (Q4)", "Q4 grew to $14.2M from $12.5M in Q3."]
    swapped = ["Q3: $14.2M, Q4: $12.5M", "Revenue was $14.2M in Q3 and $12.5M in Q4.",
               "Q3 and Q4 revenue were $14.2M and $12.5M respectively.", "| Q3 | 14.2M |\n| Q4 | 12.5M |",
               "Q4 fell to $12.5M from $14.2M in Q3."]
    for answer in right:
        assert match_claim(answer, claim).verdict == "fulfilled", answer
    for answer in swapped:
        verdict = match_claim(answer, claim)
        assert verdict.verdict == "not_fulfilled", answer
        assert "12,500,000 is given for Q4, the claim gives it for Q3" in verdict.reason
    # Only clauses that pair one label with one number count; a claim with one subject and two numbers has no pairs.
    assert match_claim("Alice: 85 in Science, 90 in Math.",
                       Claim(claim="Alice scored 90 in Math and 85 in Science.")).verdict == "fulfilled"
    # A number the answer never puts beside a label is no evidence of a swap.
    assert match_claim("Q3 and Q4 both grew. The figures: $12.5M, then $14.2M.", claim).verdict == "fulfilled"


def test_the_matcher_checks_key_terms_of_claims_without_numbers():
    gehry = Claim(claim="The lead architect of the Guggenheim Museum in Bilbao is Frank Gehry.")
    assert match_claim("It was designed by Frank Gehry (Guggenheim Museum, Bilbao).", gehry).verdict == "fulfilled"
    assert match_claim("It was designed by Frank Lloyd Wright (Guggenheim Museum, Bilbao).", gehry).score == 0.0
    victims = Claim(claim="All of the kidnapping victims were female.")
    assert match_claim("All of the kidnapping victims were male.", victims).score < 1.0  # 'male' is not 'female'
    assert match_claim("Every kidnapping victim was female.", victims).verdict == "fulfilled"


def test_claims_are_cleaned_as_the_benchmark_scorer_cleans_them():
    assert clean_claim("- \u201cLéon\u201d is the pick \u2013 rated 8.5\u2019") == "\"Léon\" is the pick - rated 8.5"
    assert clean_claim("2. The total is 5.") == "The total is 5."


def test_the_judge_prompt_carries_the_benchmark_scorer_rules_and_its_reply_schema():
    for rule in ("fulfilled", "partially_fulfilled", "not_fulfilled", "within 5%", "1 percentage point",
                 '"0.5", "50%", "half"', "coverage_outcome", "confidence_level"):
        assert rule in JUDGE_SYSTEM
    prompt = judge_prompt("The answer.", "The claim.")
    assert prompt.index("The claim.") < prompt.index("The answer.")
    reply = '{"claim_text": "c", "coverage_outcome": "partially_fulfilled", "justification": "half", "confidence_level": 0.8}'
    assert parse_verdict(reply) == ("partially_fulfilled", "half")


async def test_an_empty_answer_fulfils_no_claim_without_asking_the_judge():
    with ScriptedModelServer([]) as server:
        async with ModelJudge(server.model_string) as judge:
            verdict = await judge.judge("  ", Claim(claim="It is 3."))
        assert server.requests == []
    assert (verdict.score, verdict.verdict) == (0.0, "not_fulfilled")


# --- scripted solutions through the installed `agent` script ---------------------------------------------------


def agent_eval(out: Path, *args: str) -> tuple[int, str, list[dict]]:
    env = {**os.environ, **STUB_ENV}
    for name in ("ATLAS_TEST_NOTION_TOKEN", "ATLAS_TEST_TWELVE_DATA_KEY", "AGENT_JUDGE_MODEL"):
        env.pop(name, None)
    done = subprocess.run([str(AGENT), "eval", str(TASKS), "--servers", str(TEMPLATE), "--atlas-data", str(DATA),
                           "--out", str(out), "--quiet", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()] \
        if (out / "results.jsonl").exists() else []
    return done.returncode, done.stderr, results


def only(*tasks: str) -> list[str]:
    return [arg for task in tasks for arg in ("--filter", task)]


def test_every_runnable_row_has_reference_and_wrong_solutions_beside_the_csv():
    for task in RUNNABLE:
        folder = solutions_folder(TASKS, task)
        assert folder == OFFLINE / "tasks.solutions" / task
        assert (folder / "reference.yaml").is_file() and (folder / "wrong.yaml").is_file()


def test_reference_solutions_pass_with_the_template_servers_at_data(tmp_path):
    code, err, results = agent_eval(tmp_path / "out", "--scripted", "reference", *only(*RUNNABLE))
    assert code == 0, err
    assert sorted(r["task"] for r in results) == sorted(RUNNABLE) and all(r["passed"] for r in results)
    assert all(r["grade"]["judge_model"] == "match" for r in results)
    assert "graders proven: all 3 'reference' runs passed" in err
    for record in results:  # the tools really answered from the run's copy of /data, and said /data
        events = read_trace(tmp_path / "out" / record["trace"])
        tool_results = [e for e in events if e["type"] == "tool_result"]
        assert tool_results and not any(e["is_error"] for e in tool_results), tool_results
        assert not any("/tmp" in e["content"] or "workspace" in e["content"] for e in tool_results), tool_results
    text = {r["task"]: read_trace(tmp_path / "out" / r["trace"]) for r in results}
    contents = {task: " ".join(e["content"] for e in events if e["type"] == "tool_result") for task, events in text.items()}
    assert "Allowed directories:\n/data" in contents[REGIONS] and "North,39800" in contents[REGIONS]
    assert "340.4" in contents[PETS] and "Pet Care 2023 Weekly Financials.csv" in contents[PETS]
    assert "/data/Regional Sales 2024.csv" in contents[SHELL]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Graded by the offline matcher" in report


def test_wrong_solutions_fail(tmp_path):
    code, err, results = agent_eval(tmp_path / "out", "--scripted", "wrong", *only(*RUNNABLE))
    assert code == 0, err
    assert len(results) == 3 and not any(r["passed"] for r in results)
    assert all(r["stop_reason"] == "answer" and r["grade"] for r in results)


def test_the_right_numbers_with_the_wrong_region_fail_under_the_matcher(tmp_path):
    code, err, results = agent_eval(tmp_path / "out", "--scripted", "wrong_entity", *only(REGIONS))
    assert code == 0, err
    (record,) = results
    assert not record["passed"] and record["coverage"] == 0.5
    first = record["grade"]["checks"][0]
    assert first["score"] == 0.0 and "North" in first["detail"]


def test_a_row_without_the_named_solution_is_reported_with_where_it_should_be(tmp_path):
    code, err, _ = agent_eval(tmp_path / "out", "--scripted", "wrong_entity", *only(PETS))
    assert code != 0
    assert f"tasks.solutions/{PETS}/wrong_entity.yaml" in err


# --- failure categories ------------------------------------------------------------------------------------


def events(*items: tuple) -> list[dict]:
    out: list[dict] = []
    for n, item in enumerate(items):
        kind, tool, payload = item
        if kind == "call":
            out.append({"type": "tool_call", "call_id": f"c{n}", "tool": tool, "arguments": payload})
        else:
            out.append({"type": "tool_result", "call_id": f"c{n - 1}", "tool": tool, "is_error": kind == "error",
                        "content": payload})
    return out


def finished(answer: str) -> dict:
    return {"type": "run_finished", "answer": answer}


def record(stop: str = "answer", scores: tuple[float, ...] = (0.0,), claims: tuple[str, ...] = ("It is 12.",)) -> dict:
    checks = [{"kind": "claim", "name": c, "score": s, "passed": s >= 1} for c, s in zip(claims, scores, strict=True)]
    return {"passed": False, "stop_reason": stop, "grade": {"checks": checks}}


def test_failures_are_classified_into_the_benchmark_modes():
    ok = ("call", "fs__read", "{}"), ("result", "fs__read", "the total is 12")
    assert classify_failure({"passed": True}, []) is None
    assert classify_failure(record("server_error"), []) == "analysis_error"
    assert classify_failure(record(), [finished("It is 7.")]) == "no_tool_use"
    assert classify_failure(record(), [*events(("call", "fs__nope", "{}"), ("error", "fs__nope",
                                                 "Unknown tool 'fs__nope'. Tools: fs__read")), finished("7")]) == "wrong_tool"
    assert classify_failure(record(), [*events(("call", "fs__read", "{}"), ("error", "fs__read",
                                                 "Input validation error: 'path' is a required property")),
                                       finished("7")]) == "malformed_call"
    assert classify_failure(record(), [*events(*ok, ("call", "db__q", "{}"), ("error", "db__q", "connection refused")),
                                       finished("7")]) == "err_recovery"
    assert classify_failure(record("max_tool_calls"), [*events(*ok)]) == "early_termination"
    assert classify_failure(record(scores=(1.0, 0.0), claims=("A is 1.", "B is 2.")),
                            [*events(*ok), finished("A is 1.")]) == "early_termination"
    assert classify_failure(record(), [*events(*ok), finished("It is 7.")]) == "response_misparsing"
    assert classify_failure(record(claims=("It is 99.",)), [*events(*ok), finished("It is 7.")]) == "faulty_synthesis"


def test_the_report_counts_failure_categories_by_mode_and_family():
    base = RunRecord(task="a", repeat=0, passed=False, stop_reason="answer", coverage=0.0,
                     failure="claims coverage 0.00 < 0.75").model_dump(mode="json")
    base["grade"] = {"judge_model": "match", "checks": []}
    records = [{**base, "task": "a", "repeat": 0, "failure_category": "no_tool_use"},
               {**base, "task": "b", "repeat": 0, "failure_category": "faulty_synthesis"},
               {**base, "task": "c", "repeat": 0, "failure_category": "faulty_synthesis"}]
    report = build_report(records, repeats=1)
    assert report["suite"]["failure_categories"] == {
        "modes": {"faulty_synthesis": 2, "no_tool_use": 1}, "families": {"cognitive": 2, "tool_call": 1}}
    assert len(report["matcher_graded"]) == 3
    markdown = render_markdown(report)
    assert "| cognitive | faulty_synthesis | 2 |" in markdown and "[no_tool_use]" in markdown
    assert summarise_failures([None, "analysis_error"])["families"] == {"programmatic": 1}
    assert FAMILY["err_recovery"] == "tool_call"
