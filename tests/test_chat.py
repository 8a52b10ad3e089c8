"""`agent chat` end to end: a real chat process reading piped stdin, the scripted model over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.conftest import DEMO_SERVER, SERVERS_DIR, terminal

TIMEOUT = 90


AGENT = Path(sys.executable).parent / "agent"  # the installed console script, as users run it


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "AGENT_MODEL")}


def chat(*args: str, stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AGENT), "chat", *args], input=stdin, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT, env=environment())


def sent(server: ScriptedModelServer, index: int) -> list[tuple[str, str | None]]:
    """The conversation of the index-th request, system prompt left out."""
    return [(m["role"], m.get("content")) for m in server.requests[index].body["messages"] if m["role"] != "system"]


def write_task(folder: Path, **fields: object) -> Path:
    task = {"prompt": "(not sent by chat)", "servers": {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}},
            **fields}
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


class ChatProcess:
    """A chat process whose output is collected as it comes, for tests that act while it runs."""

    def __init__(self, *args: str, cwd: Path):
        self.proc = subprocess.Popen([str(AGENT), "chat", *args], cwd=cwd, env=environment(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=(stream, into), daemon=True)
                         for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream, into: list[str]) -> None:
        for chunk in iter(lambda: stream.read(1), ""):
            into.append(chunk)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def wait_until(self, condition, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            assert self.proc.poll() is None, f"chat exited ({self.proc.returncode}) before {what}:\n{self.stderr}"
            assert time.monotonic() < deadline, f"no {what} within {TIMEOUT}s:\n{self.stderr}"
            time.sleep(0.02)

    def finish(self) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        code = self.proc.wait(timeout=TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=TIMEOUT)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_two_prompts_share_one_conversation_and_answers_go_to_stdout(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="Paris."), ScriptedTurn(content="About 2.1 million.")]) as model:
        done = chat("--model", model.model_string, stdin="Capital of France?\nAnd its population?\n", cwd=tmp_path)
        second = sent(model, 1)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Paris.", "About 2.1 million."]
    assert second == [("user", "Capital of France?"), ("assistant", "Paris."), ("user", "And its population?")]
    assert "▶ run" in done.stderr and "✔ answer" in done.stderr  # the run's progress, as `agent run` shows it


def test_think_none_changes_the_mode_of_the_next_prompts(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="one"), ScriptedTurn(content="two")]) as model:
        done = chat("--model", model.model_string, "--think", "high", stdin="first\n/think none\nsecond\n",
                    cwd=tmp_path)
        modes = model.think_modes
    assert done.returncode == 0, done.stderr
    assert modes == ["high", "none"]


def test_tools_lists_the_tools_offered_without_asking_the_model(tmp_path):
    with ScriptedModelServer([]) as model:
        done = chat(str(write_task(tmp_path)), "--model", model.model_string, stdin="/tools\n", cwd=tmp_path)
        requests = model.requests
    assert done.returncode == 0, done.stderr
    assert "demo__add" in done.stderr and "demo__echo" in done.stderr
    assert [r for r in requests if r.path.endswith("chat/completions")] == []


def test_tools_of_the_task_servers_are_called_during_the_chat(tmp_path):
    script = [ScriptedTurn(tool_calls=[ScriptedToolCall("demo__add", {"a": 2, "b": 3})]), ScriptedTurn(content="5")]
    with ScriptedModelServer(script) as model:
        done = chat(str(write_task(tmp_path)), "--model", model.model_string, stdin="Add 2 and 3.\n", cwd=tmp_path)
        tool_results = [m["content"] for m in model.requests[1].body["messages"] if m["role"] == "tool"]
    assert done.returncode == 0, done.stderr
    assert tool_results == ["5"] and done.stdout.strip() == "5"
    assert "→ demo__add" in done.stderr


def test_exit_ends_the_chat_and_later_lines_are_not_sent(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="never")]) as model:
        done = chat("--model", model.model_string, stdin="/exit\nnot a prompt\n", cwd=tmp_path)
        requests = model.requests
    assert done.returncode == 0, done.stderr
    assert requests == [] and done.stdout == ""


def test_reset_starts_the_conversation_again(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="one"), ScriptedTurn(content="two")]) as model:
        done = chat("--model", model.model_string, stdin="first\n/reset\nsecond\n", cwd=tmp_path)
        second = sent(model, 1)
    assert done.returncode == 0, done.stderr
    assert second == [("user", "second")]


def test_model_switches_to_another_endpoint_and_keeps_the_conversation(tmp_path):
    with ScriptedModelServer([ScriptedTurn(content="from A")]) as first, \
            ScriptedModelServer([ScriptedTurn(content="from B")], dialect="vllm", model="served") as second:
        done = chat("--model", first.model_string, stdin=f"hello\n/model {second.model_string}\nand now?\n",
                    cwd=tmp_path)
        seen_by_b = sent(second, 0)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["from A", "from B"]
    assert seen_by_b == [("user", "hello"), ("assistant", "from A"), ("user", "and now?")]


def test_a_session_file_lets_a_second_chat_continue_the_first(tmp_path):
    session = tmp_path / "chat.json"
    with ScriptedModelServer([ScriptedTurn(content="Noted: 7."), ScriptedTurn(content="It was 7.")]) as model:
        first = chat("--model", model.model_string, "--session", str(session), stdin="Remember 7.\n", cwd=tmp_path)
        second = chat("--model", model.model_string, "--session", str(session), stdin="Which number?\n",
                      cwd=tmp_path)
        continued = sent(model, 1)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert continued == [("user", "Remember 7."), ("assistant", "Noted: 7."), ("user", "Which number?")]
    assert "continuing" in second.stderr
    assert [t["prompt"] for t in json.loads(session.read_text())["turns"]] == ["Remember 7.", "Which number?"]


def test_a_file_that_is_not_a_session_exits_two_naming_it(tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_text("[]")
    done = chat("--model", "vllm:http://127.0.0.1:9/v1#m", "--session", str(notes), stdin="hi\n", cwd=tmp_path)
    assert done.returncode == 2
    assert f"{notes}: not a session file" in done.stderr


def test_without_an_api_key_a_task_with_a_demo_runs_the_scripted_demo_and_says_so(tmp_path):
    demo = tmp_path / "demo.yaml"
    demo.write_text(yaml.safe_dump([{"content": "A scripted hello."}]))
    task = write_task(tmp_path, model="deepseek:deepseek-v4-flash", demo="demo.yaml")
    done = chat(str(task), stdin="hello\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "SCRIPTED DEMO" in done.stderr
    assert done.stdout.strip() == "A scripted hello."


def test_ctrl_c_during_a_run_cancels_it_and_the_chat_goes_on(tmp_path):
    script = [ScriptedTurn(content="too late", delay_s=120), ScriptedTurn(content="right away")]
    with ScriptedModelServer(script) as model:
        chat_process = ChatProcess("--model", model.model_string, cwd=tmp_path)
        try:
            chat_process.send("slow question\n")
            chat_process.wait_until(lambda: len(model.requests) == 1, "model request")
            chat_process.proc.send_signal(signal.SIGINT)
            chat_process.wait_until(lambda: "run cancelled" in chat_process.stderr, "cancellation notice")
            chat_process.send("quick question\n/exit\n")
            code = chat_process.finish()
        finally:
            chat_process.kill()
        continued = sent(model, 1)
    assert code == 0, chat_process.stderr
    assert chat_process.stdout.splitlines() == ["right away"]
    assert "■ cancelled" in chat_process.stderr
    assert continued == [("user", "slow question"), ("user", "quick question")]


def test_ctrl_c_at_the_prompt_leaves_the_chat(tmp_path):
    with ScriptedModelServer([]) as model:
        chat_process = ChatProcess("--model", model.model_string, cwd=tmp_path)
        try:
            chat_process.wait_until(lambda: chat_process.stderr.endswith("> "), "prompt")
            chat_process.proc.send_signal(signal.SIGINT)
            code = chat_process.finish()
        finally:
            chat_process.kill()
    assert code == 130


# -- a person on the terminal: approvals and servers' questions ------------------------------------------------------

ASKING = {"asking": {"command": sys.executable, "args": [str(SERVERS_DIR / "asking_server.py")]}}
BOOK = [ScriptedTurn(tool_calls=[ScriptedToolCall("asking__book_table", {"date": "friday"})]),
        ScriptedTurn(content="Booked.")]


def chat_on_a_terminal(*args: str, typed: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A chat whose stdin is a real pseudo-terminal with `typed` already typed (a terminal in canonical mode hands
    over one line per read, so the prompt loop and the questions asked during a run each take only their lines)."""
    with terminal() as (stdin, master):
        os.write(master, typed.encode())
        return subprocess.run([str(AGENT), "chat", *args], stdin=stdin, cwd=cwd, capture_output=True, text=True,
                              timeout=TIMEOUT, env=environment())


def test_approve_ask_and_a_servers_form_are_answered_on_the_terminal_during_a_chat(tmp_path):
    with ScriptedModelServer(BOOK) as model:
        task = write_task(tmp_path, servers=ASKING)
        # the prompt; yes to the approval; yes to the form, then its fields (guests, time, vegan, name); /exit
        done = chat_on_a_terminal(str(task), "--model", model.model_string, "--approve", "ask",
                                  typed="Book a table for friday.\ny\ny\n5\n18:00\nn\nAda\n/exit\n", cwd=tmp_path)
        observed = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert done.returncode == 0, done.stderr
    assert "Approve asking__book_table" in done.stderr
    assert "The MCP server 'asking' asks (during asking__book_table): Book a table for friday?" in done.stderr
    assert observed == ["Booked a table on friday at 18:00 for 5 under Ada."]
    assert done.stdout.strip() == "Booked."


def test_without_a_terminal_the_chat_refuses_approvals_and_declines_forms(tmp_path):
    script = [*BOOK, *BOOK]
    with ScriptedModelServer(script) as model:
        asked = chat(str(write_task(tmp_path, servers=ASKING)), "--model", model.model_string, "--approve", "ask",
                     stdin="Book a table.\n", cwd=tmp_path)
        refused = [m["content"] for m in model.requests[1].body["messages"] if m["role"] == "tool"]
        declined_chat = chat(str(write_task(tmp_path, servers=ASKING)), "--model", model.model_string,
                             stdin="Book a table.\n", cwd=tmp_path)
        declined = [m["content"] for m in model.requests[3].body["messages"] if m["role"] == "tool"]
    assert asked.returncode == 0 and declined_chat.returncode == 0, asked.stderr + declined_chat.stderr
    assert len(refused) == 1 and "refused" in refused[0] and "no terminal to ask" in refused[0]
    assert len(declined) == 1 and declined[0].endswith("The question was declined: no terminal to ask "
                                                       "(the run is not interactive).]")
