"""Context for long runs: repository packing, capped outputs, prefix stability, edits as diffs, compaction."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from agent import Agent
from agent.context import ContextConfig
from agent.repo import RepoSpec, outline, pack_repos
from agent.testing import Fault, ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from tests.conftest import DEMO_SERVER

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}


def call(name: str, **arguments) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=[ScriptedToolCall(name, arguments)])


def make_repo(root: Path) -> Path:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "core.py").write_text("def add(a, b):\n    return a + b\n\n\nclass Box:\n    pass\n")
    (root / "src" / "pkg" / "big.py").write_text("".join(f"def f{i}():\n    return {i}\n" for i in range(3000)))
    (root / "README.md").write_text("# Demo\n\nA small repository.\n")
    (root / ".gitignore").write_text("*.log\nsecret/\n")
    (root / "debug.log").write_text("ignored\n")
    (root / "secret").mkdir()
    (root / "secret" / "key.txt").write_text("hidden\n")
    (root / "src" / ".gitignore").write_text("generated.py\n")
    (root / "src" / "generated.py").write_text("x = 1\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0binary")
    (root / "package-lock.json").write_text("{}\n")
    (root / "node_modules" / "lib").mkdir(parents=True)
    (root / "node_modules" / "lib" / "index.js").write_text("module.exports = 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def test_packing_honours_gitignore_files_and_skips_binaries_lockfiles_and_vendored_folders(tmp_path):
    pack = pack_repos([RepoSpec(path=make_repo(tmp_path / "repo"))], budget_tokens=1_000_000)
    paths = {f.path for f in pack.files}
    assert paths == {"README.md", "src/pkg/core.py", "src/pkg/big.py", ".gitignore", "src/.gitignore"}
    assert "### repo/src/pkg/core.py" in pack.text and "def add(a, b):" in pack.text
    assert "hidden" not in pack.text and "ignored" not in pack.text


def test_packing_is_deterministic(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = pack_repos([RepoSpec(path=repo)], budget_tokens=5000).text
    second = pack_repos([RepoSpec(path=repo)], budget_tokens=5000).text
    assert first.encode() == second.encode()


def test_over_budget_files_become_outlines_then_are_omitted_and_are_listed(tmp_path):
    repo = make_repo(tmp_path / "repo")
    pack = pack_repos([RepoSpec(path=repo)], budget_tokens=5000)
    big = next(f for f in pack.files if f.path == "src/pkg/big.py")
    assert big.status in ("outline", "omitted")
    assert pack.tokens <= 5000 + 200
    assert "## Not included in full" in pack.text and f"repo/src/pkg/big.py ({big.tokens:,} tokens)" in pack.text
    tiny = pack_repos([RepoSpec(path=repo)], budget_tokens=300)
    assert {f.status for f in tiny.files} <= {"outline", "omitted"} and any(f.status == "omitted" for f in tiny.files)


def test_include_and_exclude_globs(tmp_path):
    repo = make_repo(tmp_path / "repo")
    only_py = pack_repos([RepoSpec(path=repo, include=["*.py"], exclude=["big.py"])], budget_tokens=10**6)
    assert {f.path for f in only_py.files} == {"src/pkg/core.py"}


def test_outline_keeps_signatures_with_line_numbers():
    assert outline("import os\n\nclass A:\n    def f(self):\n        return 1\n") == "3: class A:\n4:     def f(self):"


async def test_a_5mb_tool_result_is_capped_saved_and_readable_page_by_page(tmp_path):
    full = "\n".join(f"line {i:07d} of the generated output" for i in range(150_000))
    assert len(full) > 5_000_000
    output_id = hashlib.sha1(full.encode()).hexdigest()[:12]
    script = [
        call("demo__generate", lines=150_000),
        call("read_output", output_id=output_id, offset=2_000_000, limit=100),
        call("search_output", output_id=output_id, pattern="line 0123456", context_lines=0),
        ScriptedTurn(content="done"),
    ]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, workspace=tmp_path, trace_dir=tmp_path / "runs",
                             context={"tool_output_cap_tokens": 2000}).run("go")
        tools = [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]
    assert result.ok, result.error
    cut, page, found = tools
    assert len(cut) < 10_000 and f'output id {output_id}' in cut and "read_output" in cut
    assert (tmp_path / ".agent" / "outputs" / f"{output_id}.txt").read_text() == full
    assert page.startswith("[characters 2,000,000-2,000,100 of") and full[2_000_000:2_000_100] in page
    assert "123457: line 0123456 of the generated output" in found


async def test_prefix_stays_byte_stable_over_a_30_step_run_with_long_outputs_and_edits(tmp_path):
    repo = make_repo(tmp_path / "repo")
    target = repo / "src" / "pkg" / "core.py"
    script = []
    for i in range(29):
        if i % 5 == 1:
            script.append(call("demo__generate", lines=3000))
        elif i % 7 == 3:
            script.append(call("demo__write_file", path=str(target), text=f"def add(a, b):\n    return a + b + {i}\n"))
        else:
            script.append(call("demo__echo", text=f"step {i}"))
    script.append(ScriptedTurn(content="done"))
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, workspace=tmp_path, trace_dir=tmp_path / "runs",
                             limits={"max_steps": 40},
                             context={"repos": [{"path": str(repo)}], "tool_output_cap_tokens": 1000}).run("go")
        requests = [r.body for r in server.requests]
    assert result.ok and len(requests) == 30
    for earlier, later in zip(requests, requests[1:], strict=False):
        assert later["messages"][: len(earlier["messages"])] == earlier["messages"]
        assert later["tools"] == earlier["tools"]
    first_user = requests[0]["messages"][1]["content"]
    assert first_user.startswith("# Repository snapshot") and first_user.endswith("# Task\n\ngo")
    diffs = [m["content"] for m in requests[-1]["messages"] if m["role"] == "user" and "(diffs)" in m["content"]]
    assert diffs and "+    return a + b + 3" in diffs[0] and "-    return a + b" in diffs[0]
    assert "b/repo/src/pkg/core.py" in diffs[0]


async def test_compaction_at_the_threshold_keeps_head_and_recent_turns_verbatim(tmp_path):
    steps = {"n": 0}

    def answer(request):
        if "tools" not in request.body:  # the summariser's request: no tools, non-think
            return ScriptedTurn(content="Goals: echo things. Decisions: none.")
        steps["n"] += 1
        if steps["n"] > 8:
            return ScriptedTurn(content="done")
        return call("demo__echo", text=f"{steps['n']}:" + "x" * 3000)

    events = []
    config = ContextConfig(window_tokens=6000, compact_at=0.75, keep_recent_messages=4)
    with ScriptedModelServer(answer) as server:
        result = await Agent(server.model_string, DEMO, context=config, trace_dir=tmp_path).run(
            "task", on_event=events.append)
        requests = [r.body for r in server.requests]
    assert result.ok, result.error
    compactions = [e for e in events if e.type == "context_compacted"]
    assert compactions and all(c.removed_messages > 0 and c.tokens_after < c.tokens_before for c in compactions)
    i = next(n for n, body in enumerate(requests) if "tools" not in body)
    assert requests[i]["thinking"] == {"type": "disabled"}
    assert "x" * 100 in requests[i]["messages"][1]["content"]  # the middle turns, as a transcript
    before, after = requests[i - 1]["messages"], requests[i + 1]["messages"]
    assert after[:2] == before[:2]  # system prompt and task verbatim
    assert after[2] == {"role": "user", "content": "Summary of the earlier part of this session (compacted to "
                                                   "save context):\n\nGoals: echo things. Decisions: none."}
    tail = after[3:]
    assert tail[0]["role"] != "tool"  # results never separated from their call
    assert tail[-2]["role"] == "assistant" and tail[-1]["role"] == "tool"
    assert tail[:-2] == before[len(before) - len(tail) + 2:]  # the most recent messages, unchanged
    for earlier, later in zip(requests[i + 1:], requests[i + 2:], strict=False):
        if "tools" in earlier and "tools" in later and len(later["messages"]) > len(earlier["messages"]):
            assert later["messages"][: len(earlier["messages"])] == earlier["messages"]


async def test_a_context_length_error_triggers_compaction_and_a_retry(tmp_path):
    too_long = Fault(status=400, message="This model's maximum context length is 1048576 tokens. However, you "
                                         "requested 1200000 tokens.")
    script = [call("demo__echo", text="a"), call("demo__echo", text="b"), call("demo__echo", text="c"),
              too_long, ScriptedTurn(content="summary of a and b"), ScriptedTurn(content="done")]
    events = []
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, context={"keep_recent_messages": 2},
                             trace_dir=tmp_path).run("task", on_event=events.append)
    assert result.ok and result.answer == "done"
    compaction = next(e for e in events if e.type == "context_compacted")
    assert "too long" in compaction.reason


async def test_context_status_tool_reports_the_window(tmp_path):
    script = [call("context_status"), ScriptedTurn(content="ok")]
    with ScriptedModelServer(script) as server:
        await Agent(server.model_string, trace_dir=tmp_path, context={"window_tokens": 50_000}).run("go")
        status = json.loads(next(m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"))
    assert status["window_tokens"] == 50_000 and 0 < status["tokens_used"] < 50_000
    assert status["compact_at_tokens"] == 37_500 and status["compactions"] == []


def make_tokenizer(path: Path) -> Path:
    """A small word-level tokenizer.json, built offline with the tokenizers library."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "def": 1, "add": 2, "return": 3}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(path))
    return path


def test_packing_counts_exactly_with_a_tokenizer_file(tmp_path):
    from agent.tokens import tokenizer_file_counter

    count = tokenizer_file_counter(make_tokenizer(tmp_path / "tokenizer.json"))
    assert count("def add(a, b):") == 7  # def, add, (, a, ",", b, "):"
    pack = pack_repos([RepoSpec(path=make_repo(tmp_path / "repo"))], budget_tokens=10**6, count=count)
    core = next(f for f in pack.files if f.path == "src/pkg/core.py")
    assert core.tokens == count(core.text) != int(len(core.text) / 3.6) + 1


def test_packing_counts_with_a_vllm_servers_tokenize(tmp_path):
    from agent.tokens import make_counter

    with ScriptedModelServer([], dialect="vllm") as server:
        count = make_counter("server", base_url=server.url, model="m")
        assert count("x" * 400) == 100  # the scripted server counts 4 characters per token
        requests = [r.path for r in server.requests]
    assert requests == ["/tokenize"]


def test_agent_pack_prints_the_breakdown_with_the_chosen_counter(tmp_path):
    from tests.test_cli_run import run_cli

    repo = make_repo(tmp_path / "repo")
    tokenizer = make_tokenizer(tmp_path / "tokenizer.json")
    proc = run_cli("pack", str(repo), "--budget", "2000", "--tokenizer", str(tokenizer), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(tokenizer file; budget 2,000)" in proc.stdout and "repo/src" in proc.stdout
    assert "outline  repo/src/pkg/big.py" in proc.stdout or "omitted  repo/src/pkg/big.py" in proc.stdout
