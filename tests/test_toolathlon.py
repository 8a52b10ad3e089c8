"""Toolathlon as it is: a checkout-shaped root (tests/fixtures/toolathlon_root) with the benchmark's server
definitions and placeholders, its run settings, checkers that import the checkout's `utils` and a package only
the benchmark's virtualenv has, tasks that need services or keys, run through the installed `agent` script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent.eval.grading import harness_problem
from agent.eval.toolathlon import ToolathlonRoot, import_toolathlon_task

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "toolathlon_root"
AGENT = Path(sys.executable).parent / "agent"
MARK = "made-by-the-grader-env"


def make_root(tmp_path: Path, *, venv: bool = True) -> Path:
    """The fixture checkout in a temporary folder, with the `.venv` that `uv sync` would make."""
    root = tmp_path / "Toolathlon"
    shutil.copytree(FIXTURE, root)
    if venv:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
        site = next((root / ".venv" / "lib").glob("python3*/site-packages"))
        (site / "grader_only_dep.py").write_text(f"MARK = {MARK!r}\n", encoding="utf-8")
        (site / "checker_only_dep.py").write_text("", encoding="utf-8")
        terminal = root / ".venv" / "bin" / "fixture-terminal"
        # The benchmark's terminal program, found by `uv run` in the benchmark's environment only.
        terminal.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agent.servers.shell "$ALLOWED_DIR"\n',
                            encoding="utf-8")
        terminal.chmod(0o755)
    return root


def agent(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("SERPER_API_KEY", "DEEPSEEK_API_KEY")}
    return subprocess.run([str(AGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**environment, **(env or {})})


def records(out: Path) -> dict[str, dict]:
    return {r["task"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}


# --- what a task becomes -----------------------------------------------------------------------------------


def test_the_benchmarks_own_server_definitions_are_used_with_their_placeholders(tmp_path):
    root = make_root(tmp_path)
    imported = import_toolathlon_task(root / "tasks" / "finalpool" / "word-stats")
    assert imported.runnable, imported.problem
    servers = imported.spec.servers
    assert imported.servers == {"filesystem": "benchmark (configs/mcp_servers/filesystem.yaml)",
                                "terminal": "benchmark (configs/mcp_servers/terminal.yaml)"}
    terminal = servers["terminal"]
    assert Path(terminal.command).name == "uv" and terminal.args == ["run", "fixture-terminal"]
    assert terminal.env["ALLOWED_DIR"] == "${WORKSPACE}" and terminal.env["COMMAND_TIMEOUT"] == "60"
    assert terminal.env["VIRTUAL_ENV"] == str(root / ".venv")  # `uv run` resolves in the benchmark's environment
    assert terminal.cwd == "${WORKSPACE}" and terminal.tool_timeout == 60
    assert servers["filesystem"].args == ["-m", "agent.servers.files", "${WORKSPACE}"]
    assert servers["filesystem"].tool_timeout == 300
    spec = imported.spec
    # scripts/formal_run_v0.json: steps per task and the generation settings.
    assert spec.limits.max_steps == 200
    assert (spec.model.temperature, spec.model.top_p, spec.model.max_tokens) == (0.6, 1.0, 4096)
    assert spec.local_tools == ["claim_done", "python_execute", "history", "manage_context",
                                "handle_overlong_tool_outputs"]
    assert "local-claim_done" not in spec.prompt and "`claim_done`" in spec.prompt
    assert "Accessible workspace directory: ${WORKSPACE}" in spec.system and "local-claim_done" not in spec.system
    # Preprocess and checker run as modules from the root with the root's interpreter.
    python = str(root / ".venv" / "bin" / "python")
    assert f'cd "{root}"' in spec.workspace.setup[0] and python in spec.workspace.setup[0]
    assert "-m tasks.finalpool.word-stats.preprocess.main" in spec.workspace.setup[0]
    assert python in spec.grade.commands[0].run and "-m tasks.finalpool.word-stats.evaluation.main" in spec.grade.commands[0].run


def test_only_toolathlons_own_tool_names_lose_their_local_prefix():
    from agent.eval.toolathlon import _our_names

    text = "Call `local-claim_done` or local-python-execute, then local-search_history; a local-first design."
    assert _our_names(text) == "Call `claim_done` or python-execute, then search_history; a local-first design."


def test_our_servers_stand_in_only_on_request(tmp_path):
    root = make_root(tmp_path)
    imported = import_toolathlon_task(root / "tasks" / "finalpool" / "word-stats", our_servers=True)
    assert imported.servers == {"filesystem": "ours (files)", "terminal": "ours (shell)"}
    assert imported.spec.servers["terminal"].args == ["-m", "agent.servers.shell", "${WORKSPACE}"]


def test_what_a_task_lacks_is_named_one_thing_at_a_time(tmp_path):
    root = make_root(tmp_path)
    canvas = import_toolathlon_task(root / "tasks" / "finalpool" / "canvas-grades")
    assert not canvas.runnable
    needs = "\n".join(canvas.needs)
    assert "a Canvas LMS instance" in needs and "--toolathlon-services canvas" in needs
    assert "canvas_api_token in configs/token_key_session.py (configs/mcp_servers/canvas.yaml)" in needs
    assert "configs/token_key_session.py (copy token_key_session_example.py and fill it in)" in needs
    web = import_toolathlon_task(root / "tasks" / "finalpool" / "web-lookup")
    assert not web.runnable and "local tool web_search: no search backend: set SERPER_API_KEY" in web.needs[0]


def test_without_the_benchmarks_environment_its_scripts_are_not_run(tmp_path):
    root = make_root(tmp_path, venv=False)
    imported = import_toolathlon_task(root / "tasks" / "finalpool" / "word-stats")
    assert not imported.runnable
    # One line for it, though both the terminal server (`uv run`) and the scripts need it.
    assert [need for need in imported.needs if "the benchmark's environment" in need] == [
        f"the benchmark's environment (run `uv sync` in {root}, or pass --grader-python): its checkers and "
        "preprocess scripts import the benchmark's own dependencies"]
    with_python = import_toolathlon_task(root / "tasks" / "finalpool" / "word-stats", our_servers=True,
                                         toolathlon_root=ToolathlonRoot.open(root, sys.executable))
    assert with_python.runnable, with_python.problem  # --grader-python names an interpreter to use instead


def test_uvx_and_npx_servers_run_the_versions_the_benchmark_installed(tmp_path, monkeypatch):
    """uvx: the tool `uv tool install` put in uv's tool folder (a bare uvx would fetch today's release); npx:
    the package of the checkout's node_modules (its package.json pins it)."""
    root = make_root(tmp_path)
    tools = tmp_path / "uv-tools"
    executable = tools / "pdf-tools-mcp" / "bin" / "pdf-tools-mcp"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n", encoding="utf-8")
    executable.chmod(0o755)
    package = root / "node_modules" / "@modelcontextprotocol" / "server-memory"
    package.mkdir(parents=True)
    (package / "package.json").write_text("{}", encoding="utf-8")
    monkeypatch.setenv("UV_TOOL_DIR", str(tools))
    imported = import_toolathlon_task(root / "tasks" / "finalpool" / "memory-notes")
    if not shutil.which("npx"):
        assert "program 'npx'" in imported.problem
        return
    assert imported.runnable, imported.problem
    pdf = imported.spec.servers["pdf-tools"]
    assert pdf.command == str(executable)
    assert pdf.args == ["--workspace_path", "${WORKSPACE}", "--tempfile_dir", "${WORKSPACE}/.pdf_tools_tempfiles"]
    memory = imported.spec.servers["memory"]
    assert memory.args == ["--prefix", str(root), "-y", "@modelcontextprotocol/server-memory"]
    assert memory.env["PATH"].startswith(f"{root}/node_modules/.bin:")
    assert memory.env["MEMORY_FILE_PATH"] == "${WORKSPACE}/memory/memory.json"


def test_a_missing_program_is_named_with_how_to_get_it(tmp_path, monkeypatch):
    root = make_root(tmp_path)
    (root / "configs" / "mcp_servers" / "terminal.yaml").write_text(
        (root / "configs" / "mcp_servers" / "terminal.yaml").read_text().replace("command: uv", "command: uvq-missing"))
    imported = import_toolathlon_task(root / "tasks" / "finalpool" / "word-stats")
    assert "program 'uvq-missing': install it and put it on PATH" in imported.needs


def test_a_checker_that_cannot_load_is_the_harnesses_problem_not_the_agents(tmp_path):
    traceback = ('Traceback (most recent call last):\n  File "/bench/tasks/x/evaluation/main.py", line 3, in <module>\n'
                 "    import pandas\nModuleNotFoundError: No module named 'pandas'\n")
    assert harness_problem(1, traceback, tmp_path) == "ModuleNotFoundError: No module named 'pandas'"
    assert harness_problem(127, "sh: 1: uv: not found", tmp_path).startswith("the checker's program could not start")
    agents_file = traceback.replace("/bench/tasks/x/evaluation/main.py", str(tmp_path / "solution.py"))
    assert harness_problem(1, agents_file, tmp_path) is None  # the agent's own file failed to import
    assert harness_problem(1, "stats.json is wrong\n", tmp_path) is None
    assert harness_problem(1, traceback.replace("ModuleNotFoundError: No module named 'pandas'",
                                                "KeyError: 'lines'"), tmp_path) is None


# --- through the installed `agent` script ------------------------------------------------------------------


def test_list_says_per_task_runnable_or_exactly_what_is_missing(tmp_path):
    root = make_root(tmp_path)
    no_tools = {"UV_TOOL_DIR": str(tmp_path / "no-uv-tools")}  # none of the benchmark's uv tools installed
    done = agent("eval", "tasks/finalpool", "--list", cwd=root, env=no_tools)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ("word-stats  [toolathlon] servers: filesystem (benchmark (configs/mcp_servers/filesystem.yaml)), "
            "terminal (benchmark (configs/mcp_servers/terminal.yaml))") in out
    assert "- canvas-grades (" in out and "· a Canvas LMS instance" in out
    assert "· canvas_api_token in configs/token_key_session.py" in out
    assert "- web-lookup (" in out and "SERPER_API_KEY" in out
    assert "- memory-notes (" in out
    assert "· npm package @modelcontextprotocol/server-memory in" in out and "(`npm install` in the checkout" in out
    assert "· `uv tool install pdf-tools-mcp@0.1.4 --with 'mcp<2'` (the benchmark's pinned pdf-tools-mcp" in out
    ours = agent("eval", "tasks/finalpool", "--list", "--our-servers", cwd=root)
    assert "word-stats  [toolathlon] servers: filesystem (ours (files)), terminal (ours (shell))" in ours.stdout


def test_the_reference_passes_and_the_wrong_answer_fails_with_the_benchmarks_checker(tmp_path):
    root = make_root(tmp_path)
    for name, expect in (("reference", True), ("wrong", False)):
        out = tmp_path / f"out-{name}"
        done = agent("eval", str(root / "tasks" / "finalpool"), "--filter", "word-stats", "--scripted", name,
                     "--out", str(out), "--quiet", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        record = records(out)["word-stats"]
        assert record["passed"] is expect, record["failure"]
        assert record["stop_reason"] == "claim_done"
        events = [json.loads(line) for line in (out / record["trace"]).read_text().splitlines()]
        results = {e["tool"]: e for e in events if e["type"] == "tool_result"}
        assert not [e for e in results.values() if e["is_error"]], results
        if expect:  # Toolathlon's local tools, by its names, in the run
            assert "{'lines': 3, 'words': 6, 'chars': 36}" in results["python-execute"]["content"]
            assert "notes.txt" in results["search_history"]["content"]
        if not expect:
            assert "stats.json is {'lines': 6" in record["failure"]
        config = json.loads((out / "eval.json").read_text())
        assert config["servers_used"]["word-stats"]["terminal"].startswith("benchmark")


def test_a_checker_crash_is_reported_as_not_graded(tmp_path):
    root = make_root(tmp_path)
    site = next((root / ".venv" / "lib").glob("python3*/site-packages"))
    (site / "checker_only_dep.py").unlink()  # the checker now dies on `import checker_only_dep`
    checker = root / "tasks" / "finalpool" / "word-stats" / "evaluation" / "main.py"
    checker.write_text(checker.read_text().replace("import grader_only_dep\n", "import checker_only_dep  # noqa\nimport grader_only_dep\n"))
    out = tmp_path / "out"
    done = agent("eval", str(root / "tasks" / "finalpool"), "--filter", "word-stats", "--scripted", "reference",
                 "--out", str(out), cwd=tmp_path)
    record = records(out)["word-stats"]
    assert (record["passed"], record["stop_reason"]) == (False, "harness_error")
    assert "not graded: command evaluation/main.py: ModuleNotFoundError: No module named 'checker_only_dep'" in record["failure"]
    report = json.loads((out / "report.json").read_text())
    assert report["suite"]["totals"]["runs"] == 0 and report["not_graded"][0]["task"] == "word-stats"
    assert "NOT GRADED word-stats" in done.stderr and "1 run(s) not graded" in done.stderr
