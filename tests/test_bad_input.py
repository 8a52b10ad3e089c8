"""Bad input gets a clear error naming the file, the field and what was expected."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.task import load_task
from agent.testing import ScriptedModelServer, ScriptedTurn
from tests.test_cli_run import run_cli, write_task

ROOT = Path(__file__).resolve().parent.parent


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("prompt: hello\nservers: [unclosed\n")
    with pytest.raises(ConfigError, match=r"task\.yaml: not valid YAML at line \d+"):
        load_task(path)


def test_unknown_field_is_named_with_the_known_fields(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("promt: hello\n")
    with pytest.raises(ConfigError) as info:
        load_task(path)
    message = str(info.value)
    assert "task.yaml" in message and "'promt': unknown field" in message and "prompt" in message


def test_wrong_type_names_the_field_and_the_expectation(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("prompt: hi\nlimits:\n  max_steps: many\n")
    with pytest.raises(ConfigError, match=r"field 'limits.max_steps': Input should be a valid integer.*'many'"):
        load_task(path)


def test_unknown_model_syntax_in_a_task_file_names_the_file(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("prompt: hi\nmodel: gpt-5\n")
    with pytest.raises(ConfigError, match=r"task\.yaml: model: unknown model syntax 'gpt-5'.*PROFILE:"):
        load_task(path)


def test_server_entry_without_command_or_url_is_named(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("prompt: hi\nservers:\n  fs:\n    args: [x]\n")
    with pytest.raises(ConfigError, match=r"task\.yaml: .*'fs'.*exactly one of 'command'"):
        load_task(path)


def test_missing_task_file_is_a_clear_error(tmp_path):
    proc = run_cli("run", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.yaml: no such task file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_reports_bad_task_with_exit_code_two_and_no_traceback(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("prompt: hi\nthink: deep\n")
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "task.yaml: think: expected auto, none, high or max; got 'deep'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_reports_unknown_model_syntax_given_on_the_command_line(tmp_path):
    path = write_task(tmp_path, "deepseek:deepseek-flash")
    proc = run_cli("run", str(path), "--model", "llama", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--model: unknown model syntax 'llama'" in proc.stderr


def test_a_server_command_that_does_not_exist_is_named(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="unused")]) as model:
        path = write_task(tmp_path, model.model_string, servers={"ghost": {"command": "no-such-mcp-server-xyz"}})
        proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "ghost" in proc.stderr and "no-such-mcp-server-xyz" in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_server_that_never_answers_initialize_fails_within_its_startup_timeout(tmp_path):
    silent = {"command": sys.executable, "args": [str(ROOT / "tests" / "servers" / "silent_server.py")],
              "startup_timeout": 3}
    with ScriptedModelServer([ScriptedTurn(content="unused")]) as model:
        path = write_task(tmp_path, model.model_string, servers={"mute": silent})
        started = time.monotonic()
        proc = run_cli("run", str(path), cwd=tmp_path)
        elapsed = time.monotonic() - started
    assert proc.returncode == 2
    assert "mute" in proc.stderr and "3" in proc.stderr
    assert "silent server starting" in proc.stderr  # its stderr is quoted
    assert elapsed < 30


def test_missing_api_key_without_a_demo_names_the_variable(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("prompt: hi\nmodel: deepseek:deepseek-v4-pro\n")
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "DEEPSEEK_API_KEY is not set" in proc.stderr
