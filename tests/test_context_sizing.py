"""Context sizing against a real scripted endpoint: the tool list counts, compaction keeps a tail by tokens and
is never repeated for nothing, and a prompt that cannot fit the window is refused before it is sent."""

from __future__ import annotations

import sys

import yaml

from agent import Agent
from agent.testing import ScriptedModelServer, ScriptedToolCall, ScriptedTurn
from agent.tools.local import LocalTool
from agent.tools.results import ToolOutcome
from tests.conftest import DEMO_SERVER
from tests.test_cli_run import run_cli

DEMO = {"demo": {"command": sys.executable, "args": [str(DEMO_SERVER)]}}


def call(name: str, **arguments) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=[ScriptedToolCall(name, arguments)])


def many_tools(count: int = 80) -> list[LocalTool]:
    """`count` tools with long schemas: about 25,000 tokens of tool list for 80."""

    async def handler(arguments: dict) -> ToolOutcome:
        return ToolOutcome(text="ok")

    words = " ".join(f"word{i}" for i in range(80))
    return [LocalTool(name=f"tool_{n:02d}", description=f"Tool number {n}. {words}",
                      input_schema={"type": "object", "properties": {
                          f"field_{k}": {"type": "string", "description": f"Field {k} of tool {n}. {words[:100]}"}
                          for k in range(3)}}, handler=handler)
            for n in range(count)]


def summariser_or(turns: list[ScriptedTurn]):
    """A callable script: summary requests (no tools) get a short summary, agent steps get `turns` in order."""
    steps = iter(turns)

    def answer(request):
        if "tools" not in request.body:
            return ScriptedTurn(content="Goals: echo things. Decisions: none.")
        return next(steps, ScriptedTurn(content="done"))

    return answer


async def test_the_first_estimate_counts_the_tool_list(tmp_path):
    events = []
    with ScriptedModelServer([ScriptedTurn(content="ok")]) as server:
        await Agent(server.model_string, local_tools=many_tools(), trace_dir=tmp_path).run("go", on_event=events.append)
    estimated = next(e.context_tokens for e in events if e.type == "model_request")
    counted = next(e.usage.prompt_tokens for e in events if e.type == "model_response")
    assert counted > 20_000
    assert abs(estimated - counted) / counted < 0.25, (estimated, counted)


async def test_a_result_under_the_cap_is_not_cut_when_the_tool_list_is_large(tmp_path):
    lines = 1100  # 37 characters a line: about 40,000 characters, about 11,000 tokens
    warm_up = [call("demo__echo", text=f"{n}:" + "x" * 3000) for n in range(5)]  # the estimate calibrates
    script = [*warm_up, call("demo__generate", lines=lines), ScriptedTurn(content="ok")]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, local_tools=many_tools(), trace_dir=tmp_path).run("go")
        results = [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]
    assert result.ok, result.error
    assert len(results[-1]) > 40_000 and "output cut" not in results[-1]


async def test_the_estimate_after_a_compaction_counts_the_tool_list(tmp_path):
    events = []
    turns = [call("demo__echo", text=f"{n}:" + "x" * 3000) for n in range(6)]
    config = {"window_tokens": 48_000, "compact_at": 0.6, "keep_recent_messages": 4}
    with ScriptedModelServer(summariser_or(turns)) as server:
        result = await Agent(server.model_string, DEMO, local_tools=many_tools(), context=config,
                             trace_dir=tmp_path).run("go", on_event=events.append)
    assert result.ok, result.error
    compaction = next(e for e in events if e.type == "context_compacted")
    assert compaction.tokens_after > 20_000  # the tool list alone is about 25,000 tokens
    requests = [e for e in events if e.type == "model_request"]
    responses = [e for e in events if e.type == "model_response"]
    after = next(i for i, e in enumerate(requests) if e.t > compaction.t)
    estimated, counted = requests[after].context_tokens, responses[after + 1].usage.prompt_tokens
    assert abs(estimated - counted) / counted < 0.25, (estimated, counted)


async def test_compaction_keeps_a_tail_that_fits_under_the_threshold(tmp_path):
    events = []
    turns = [call("demo__echo", text=f"{n}:" + "x" * 3000) for n in range(9)]
    config = {"window_tokens": 6000, "compact_at": 0.75, "keep_recent_messages": 12}
    with ScriptedModelServer(summariser_or(turns)) as server:
        result = await Agent(server.model_string, DEMO, context=config, trace_dir=tmp_path).run(
            "task", on_event=events.append)
    assert result.ok, result.error
    compactions = [e for e in events if e.type == "context_compacted"]
    assert compactions and all(c.tokens_after < 4500 for c in compactions)
    assert len(compactions) <= 4  # 9 steps of ~900 tokens: one compaction per few steps, not one per step


async def test_a_compaction_that_cannot_get_under_the_threshold_is_not_repeated_next_step(tmp_path):
    events = []
    # The system prompt alone takes most of the threshold: no compaction can get under it.
    turns = [call("demo__echo", text=f"{n}:" + "y" * 1200) for n in range(6)]
    config = {"window_tokens": 20_000, "compact_at": 0.25, "keep_recent_messages": 4}
    with ScriptedModelServer(summariser_or(turns)) as server:
        result = await Agent(server.model_string, DEMO, context=config, system="s" * 18_000,
                             trace_dir=tmp_path).run("task", on_event=events.append)
    assert result.ok, result.error
    steps = [e.step for e in events if e.type == "context_compacted"]
    assert steps, "the threshold was passed: one compaction is expected"
    assert all(later - earlier > 1 for earlier, later in zip(steps, steps[1:], strict=False)), steps


async def test_compaction_runs_before_a_prompt_that_would_overflow_the_window(tmp_path):
    events = []
    turns = [call("demo__echo", text=f"{n}:" + "z" * 2000) for n in range(8)]
    config = {"window_tokens": 3000, "compact_at": 1.0, "keep_recent_messages": 2}
    with ScriptedModelServer(summariser_or(turns)) as server:
        result = await Agent(server.model_string, DEMO, context=config, trace_dir=tmp_path).run(
            "task", on_event=events.append)
        counted = [r.body for r in server.requests]
    assert result.ok, result.error
    compactions = [e for e in events if e.type == "context_compacted"]
    assert compactions and compactions[0].reason == "the next prompt would not fit the window"
    assert all(e.context_tokens <= 3000 for e in events if e.type == "model_request")
    assert len(counted) == 9 + len(compactions)


async def test_a_tool_result_that_overflows_the_window_is_refused_before_it_is_sent(tmp_path):
    script = [call("demo__echo", text="w" * 12_000), ScriptedTurn(content="never sent")]
    with ScriptedModelServer(script) as server:
        result = await Agent(server.model_string, DEMO, trace_dir=tmp_path,
                             context={"window_tokens": 2000, "tool_output_cap_tokens": 10_000}).run("task")
        sent = len(server.requests)
    assert sent == 1
    assert result.stop_reason == "error"
    assert "the next prompt needs about" in result.error and "window is 2,000" in result.error
    assert "context.tool_output_cap_tokens" in result.error


def test_agent_run_refuses_a_snapshot_larger_than_the_window_and_names_the_sizes(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "big.py").write_text("".join(f"value_{i} = {i}\n" for i in range(1500)))
    with ScriptedModelServer([ScriptedTurn(content="never")]) as server:
        task = tmp_path / "task.yaml"
        task.write_text(yaml.safe_dump({
            "prompt": "Read it.", "model": server.model_string,
            "context": {"window_tokens": 2000, "repos": [{"path": "repo"}], "repo_budget_tokens": 50_000,
                        "max_file_tokens": 50_000}}))
        proc = run_cli("run", str(task), "--trace", str(tmp_path / "trace.jsonl"), cwd=tmp_path)
        sent = len(server.requests)
    assert proc.returncode == 1
    assert sent == 0
    assert "the model's window is 2,000 (context.window_tokens), so it was not sent" in proc.stderr
    assert "context.repo_budget_tokens (now 50,000)" in proc.stderr


async def test_a_configured_tokenizer_decides_whether_the_first_prompt_fits(tmp_path):
    from tests.test_context import make_tokenizer

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "words.txt").write_text("a b c d e f g h i j\n" * 250)  # 5,000 characters, 2,500 words
    tokenizer = make_tokenizer(tmp_path / "tokenizer.json")  # one token per word: 2 characters a token here
    context = {"window_tokens": 2000, "repos": [{"path": str(repo)}], "tokenizer": str(tokenizer)}
    with ScriptedModelServer([ScriptedTurn(content="never sent")]) as server:
        result = await Agent(server.model_string, trace_dir=tmp_path, context=context).run("Read it.")
        sent = len(server.requests)
    assert sent == 0
    assert result.stop_reason == "error" and "window is 2,000" in result.error
    assert "the tokenizer's count of the repository snapshot" in result.error
