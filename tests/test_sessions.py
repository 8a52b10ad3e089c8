"""Sessions: a conversation saved to a file after every run and continued from it, by any later Agent."""

from __future__ import annotations

import json

import anyio
import pytest

from agent import Agent, ConfigError
from agent.models import Price
from agent.session import UNRUN_CALL, Session
from agent.testing import FakeModel, FunctionModel, ScriptedToolCall, ScriptedTurn

PRICE = Price(cache_hit=0.1, cache_miss=1.0, output=2.0)


def conversation(call_messages: list[dict]) -> list[tuple[str, str | None]]:
    return [(m["role"], m.get("content")) for m in call_messages if m["role"] != "system"]


async def test_a_run_saves_the_messages_and_a_record_of_the_turn(tmp_path):
    path = tmp_path / "chat.json"
    session = Session(Agent(FakeModel(["Paris."]), trace_dir=tmp_path / "runs"), path)
    result = await session.run("Capital of France?")
    saved = json.loads(path.read_text())
    assert saved["format"] == "agent-session"
    assert saved["messages"] == result.messages
    (turn,) = saved["turns"]
    assert turn["prompt"] == "Capital of France?" and turn["run_id"] == result.run_id
    assert turn["stop_reason"] == "answer" and turn["trace_path"] == str(result.trace_path.absolute())
    assert turn["usage"]["prompt_tokens"] == result.usage.prompt_tokens > 0 and turn["cost"] == result.cost


async def test_a_new_agent_reopening_the_file_continues_the_conversation(tmp_path):
    path = tmp_path / "chat.json"
    await Session(Agent(FakeModel(["Paris."]), trace_dir=None), path).run("Capital of France?")
    later = FakeModel(["About 2.1 million."])
    session = Session(Agent(later, trace_dir=None), path)
    result = await session.run("And its population?")
    assert conversation(later.calls[0].messages) == [
        ("user", "Capital of France?"), ("assistant", "Paris."), ("user", "And its population?")]
    assert result.answer == "About 2.1 million." and len(session.turns) == 2


async def test_agent_session_opens_a_session_on_the_file(tmp_path):
    session = Agent(FakeModel(["hi"]), trace_dir=None).session(tmp_path / "chat.json")
    assert isinstance(session, Session)
    await session.run("hello")
    assert Session(session.agent, tmp_path / "chat.json").messages == session.messages


async def test_runs_on_one_session_follow_each_other(tmp_path):
    model = FakeModel(["one", "two"])
    session = Session(Agent(model, trace_dir=None), tmp_path / "chat.json")
    async with anyio.create_task_group() as group:
        group.start_soon(session.run, "first")
        group.start_soon(session.run, "second")
    assert len(model.calls[1].messages) > len(model.calls[0].messages)  # the second saw the first exchange
    assert [t.prompt for t in session.turns] == ["first", "second"]


async def test_saving_leaves_no_temp_files_and_replaces_the_file_by_a_rename(tmp_path):
    path = tmp_path / "chat.json"
    session = Session(Agent(FakeModel(["a", "b"]), trace_dir=None), path)
    await session.run("first")
    with path.open() as before:  # a reader of the old file keeps a whole, valid copy
        await session.run("second")
        assert len(json.load(before)["turns"]) == 1
    assert len(json.loads(path.read_text())["turns"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]


async def test_the_session_folder_is_created_on_the_first_save(tmp_path):
    path = tmp_path / "sessions" / "today" / "chat.json"
    await Session(Agent(FakeModel(["ok"]), trace_dir=None), path).run("hi")
    assert json.loads(path.read_text())["turns"][0]["prompt"] == "hi"


@pytest.mark.parametrize("content", ["not json at all", "[1, 2]", '{"messages": []}', ""])
def test_a_file_that_is_not_a_session_is_a_config_error_naming_it(tmp_path, content):
    path = tmp_path / "notes.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"notes\.json: not a session file"):
        Session(Agent(FakeModel([]), trace_dir=None), path)


def test_a_session_file_with_a_bad_field_is_a_config_error_naming_file_and_field(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"format": "agent-session", "messages": "hello"}))
    with pytest.raises(ConfigError, match=r"chat\.json: not a valid session file: field 'messages'"):
        Session(Agent(FakeModel([]), trace_dir=None), path)


async def test_reset_forgets_the_conversation_and_saves_the_empty_session(tmp_path):
    path = tmp_path / "chat.json"
    model = FakeModel(["first answer", "fresh answer"])
    session = Session(Agent(model, trace_dir=None), path)
    await session.run("first")
    session.reset()
    assert json.loads(path.read_text())["messages"] == [] and session.turns == []
    await session.run("fresh start")
    assert conversation(model.calls[1].messages) == [("user", "fresh start")]


async def test_totals_add_up_usage_cost_and_turns_across_runs_and_reopening(tmp_path):
    path = tmp_path / "chat.json"
    first = await Session(Agent(FakeModel(["a"], price=PRICE), trace_dir=None), path).run("one")
    session = Session(Agent(FakeModel(["b"], price=PRICE), trace_dir=None), path)
    second = await session.run("two")
    assert len(session.turns) == 2
    assert session.usage == first.usage + second.usage
    assert session.cost == pytest.approx(first.cost + second.cost) and session.cost > 0


async def test_a_run_stopped_with_unanswered_tool_calls_leaves_a_conversation_the_next_run_can_send(tmp_path):
    calls = [ScriptedToolCall("context_status", {}, id="c1"), ScriptedToolCall("context_status", {}, id="c2")]
    model = FakeModel([ScriptedTurn(tool_calls=calls), "fine"])
    session = Session(Agent(model, trace_dir=None, limits={"max_tool_calls": 1}), tmp_path / "chat.json")
    assert (await session.run("check twice")).stop_reason == "max_tool_calls"
    await session.run("go on")
    sent = model.calls[1].messages
    assert [(m["tool_call_id"], m["content"]) for m in sent if m["role"] == "tool"] == [
        ("c1", UNRUN_CALL), ("c2", UNRUN_CALL)]
    assert sent[-1] == {"role": "user", "content": "go on"}


async def test_a_cancelled_run_is_recorded_and_the_session_goes_on(tmp_path):
    started = anyio.Event()

    async def slow_then_answer(call):
        if call.index == 0:
            started.set()
            await anyio.sleep_forever()
        return "back"

    model = FunctionModel(slow_then_answer)
    session = Session(Agent(model, trace_dir=None), tmp_path / "chat.json")
    async with anyio.create_task_group() as group:
        group.start_soon(session.run, "never answered")
        await started.wait()
        group.cancel_scope.cancel()
    assert [t.stop_reason for t in session.turns] == ["cancelled"]
    assert (await session.run("again")).answer == "back"
    assert conversation(model.calls[1].messages) == [("user", "never answered"), ("user", "again")]


def test_a_session_without_a_path_keeps_the_conversation_in_memory_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    async def two_runs() -> Session:
        session = Session(Agent(FakeModel(["a", "b"]), trace_dir=None), None)
        await session.run("one")
        await session.run("two")
        return session

    session = anyio.run(two_runs)
    assert len(session.turns) == 2 and len(session.messages) == 5
    assert list(tmp_path.iterdir()) == []
