"""The scripted model server speaks DeepSeek's and vLLM's wire dialects over real HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest

from agent.errors import ConfigError
from agent.testing import (
    Fault,
    RecordedRequest,
    ScriptedModelServer,
    ScriptedToolCall,
    ScriptedTurn,
    load_script,
)

REPO = Path(__file__).resolve().parent.parent
USER = [{"role": "user", "content": "hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "read_file", "description": "Read a file", "parameters": {"type": "object"}},
    }
]
REPLAY_ERROR = {
    "error": {
        "message": "The reasoning_content in the thinking mode must be passed back to the API.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request_error",
    }
}
TOOL_TURN = ScriptedTurn(
    reasoning="I should read the file before answering.",
    content="Reading it now.",
    tool_calls=[ScriptedToolCall("read_file", {"path": "src/main.py"})],
)


@pytest.fixture
def serve():
    """Start servers for one test and stop them all afterwards."""
    started: list[ScriptedModelServer] = []

    def start(script, **kwargs) -> ScriptedModelServer:
        server = ScriptedModelServer(script, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def sdk():
    """Make AsyncOpenAI clients without retries, closed after the test."""
    clients: list[openai.AsyncOpenAI] = []

    def make(server: ScriptedModelServer) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="x", max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def chat(server: ScriptedModelServer, **body) -> httpx.Response:
    body.setdefault("model", server.model)
    body.setdefault("messages", USER)
    return httpx.post(f"{server.url}/chat/completions", json=body, timeout=10)


async def collect(stream) -> dict:
    """Reassemble a streamed answer the way a client does: reasoning, content and tool calls by index."""
    reasoning, content, calls, chunks = [], [], {}, []
    async for chunk in stream:
        chunks.append(chunk)
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        reasoning.append(extra.get("reasoning_content") or extra.get("reasoning") or "")
        content.append(delta.content or "")
        for call in delta.tool_calls or []:
            slot = calls.setdefault(call.index, {"id": None, "name": "", "arguments": "", "pieces": 0})
            slot["id"] = call.id or slot["id"]
            if call.function and call.function.name:
                slot["name"] += call.function.name
            if call.function and call.function.arguments:
                slot["arguments"] += call.function.arguments
                slot["pieces"] += 1
    return {
        "reasoning": "".join(reasoning),
        "content": "".join(content),
        "calls": [calls[i] for i in sorted(calls)],
        "chunks": chunks,
    }


# --- think modes ---------------------------------------------------------------------------------------


def test_deepseek_dialect_reads_think_mode_from_thinking_and_reasoning_effort(serve):
    server = serve([ScriptedTurn(content="ok")] * 4)
    chat(server, thinking={"type": "disabled"})
    chat(server)
    chat(server, thinking={"type": "enabled"}, reasoning_effort="high")
    chat(server, reasoning_effort="max")
    assert server.think_modes == ["none", "high", "high", "max"]


def test_vllm_dialect_reads_think_mode_from_chat_template_kwargs(serve):
    server = serve([ScriptedTurn(content="ok")] * 4, dialect="vllm")
    chat(server, chat_template_kwargs={"thinking": False})
    chat(server, chat_template_kwargs={"thinking": True, "reasoning_effort": "max"})
    chat(server, chat_template_kwargs={"thinking": True})
    chat(server, chat_template_kwargs={"reasoning_effort": "none"})
    assert server.think_modes == ["none", "max", "high", "none"]


def test_reasoning_is_only_sent_when_thinking_is_on(serve):
    server = serve([ScriptedTurn(reasoning="hmm", content="a")] * 2)
    off = chat(server, thinking={"type": "disabled"}).json()["choices"][0]["message"]
    on = chat(server).json()["choices"][0]["message"]
    assert "reasoning_content" not in off
    assert on["reasoning_content"] == "hmm"


# --- DeepSeek request checks ---------------------------------------------------------------------------


def test_tools_with_an_assistant_message_lacking_reasoning_content_get_deepseeks_400(serve):
    server = serve([ScriptedTurn(content="ok")])
    history = [*USER, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    response = chat(server, messages=history, tools=TOOLS)
    assert response.status_code == 400
    assert response.json() == REPLAY_ERROR
    assert chat(server).status_code == 200  # the error did not consume the turn


def test_empty_reasoning_content_string_passes_the_replay_check(serve):
    server = serve([ScriptedTurn(content="ok")])
    history = [*USER, {"role": "assistant", "content": "hello", "reasoning_content": ""}]
    assert chat(server, messages=history, tools=TOOLS).status_code == 200


def test_forced_tool_choice_in_thinking_mode_gets_400(serve):
    server = serve([ScriptedTurn(content="ok")])
    response = chat(server, tools=TOOLS, tool_choice="required")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Thinking mode does not support this tool_choice"


def test_forced_tool_choice_is_accepted_with_thinking_disabled(serve):
    server = serve([ScriptedTurn(content="ok")])
    choice = {"type": "function", "function": {"name": "read_file"}}
    assert chat(server, tools=TOOLS, tool_choice=choice, thinking={"type": "disabled"}).status_code == 200


def test_vllm_dialect_does_not_require_reasoning_replay(serve):
    server = serve([ScriptedTurn(content="ok")], dialect="vllm")
    history = [*USER, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    assert chat(server, messages=history, tools=TOOLS).status_code == 200


# --- streaming -----------------------------------------------------------------------------------------


def test_deepseek_stream_starts_with_a_keep_alive_comment_and_ends_with_done(serve):
    server = serve([ScriptedTurn(content="hello")])
    body = {"model": server.model, "messages": USER, "stream": True}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    assert raw.startswith(": keep-alive\n\n")
    assert raw.endswith("data: [DONE]\n\n")


async def test_openai_sdk_reassembles_a_deepseek_stream_with_tool_call_deltas_over_several_chunks(serve, sdk):
    server = serve([TOOL_TURN])
    stream = await sdk(server).chat.completions.create(model=server.model, messages=USER, stream=True)
    got = await collect(stream)
    assert got["reasoning"] == TOOL_TURN.reasoning
    assert got["content"] == TOOL_TURN.content
    [call] = got["calls"]
    assert (call["id"], call["name"]) == ("call_0", "read_file")
    assert json.loads(call["arguments"]) == {"path": "src/main.py"}
    assert call["pieces"] >= 2
    assert got["chunks"][-1].choices[0].finish_reason == "tool_calls"


async def test_deepseek_stream_carries_usage_with_cache_fields_on_the_last_chunk_only(serve, sdk):
    server = serve([TOOL_TURN])
    stream = await sdk(server).chat.completions.create(
        model=server.model, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = (await collect(stream))["chunks"]
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices and last.choices[0].finish_reason == "tool_calls"
    usage = last.usage.model_dump()
    assert usage["prompt_cache_hit_tokens"] + usage["prompt_cache_miss_tokens"] == usage["prompt_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == len(TOOL_TURN.reasoning) // 4


async def test_vllm_stream_uses_reasoning_field_and_a_separate_usage_chunk(serve, sdk):
    server = serve([TOOL_TURN], dialect="vllm")
    stream = await sdk(server).chat.completions.create(
        model=server.model,
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"chat_template_kwargs": {"thinking": True}},
    )
    got = await collect(stream)
    assert got["reasoning"] == TOOL_TURN.reasoning
    assert any("reasoning" in (c.choices[0].delta.model_extra or {}) for c in got["chunks"] if c.choices)
    last = got["chunks"][-1]
    assert last.choices == [] and last.usage.prompt_tokens > 0
    assert "prompt_cache_hit_tokens" not in (last.usage.model_extra or {})


def test_cache_hit_tokens_grow_as_the_conversation_prefix_extends(serve):
    server = serve([ScriptedTurn(content="ok")] * 3)
    messages = [{"role": "system", "content": "You are a careful assistant. " * 200}, *USER]
    hits = []
    for step in range(3):
        usage = chat(server, messages=messages).json()["usage"]
        hits.append(usage["prompt_cache_hit_tokens"])
        assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_cache_hit_tokens"]
        messages = [
            *messages,
            {"role": "assistant", "content": "x" * 800},
            {"role": "user", "content": f"{step}"},
        ]
    assert hits[0] == 0
    assert 0 < hits[1] < hits[2]
    assert all(hit % 64 == 0 for hit in hits)


# --- faults --------------------------------------------------------------------------------------------


async def test_429_fault_sends_retry_after_header_and_deepseeks_error_shape(serve, sdk):
    server = serve([Fault(429, retry_after=2)])
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk(server).chat.completions.create(model=server.model, messages=USER)
    assert caught.value.response.headers["retry-after"] == "2"
    error = caught.value.response.json()["error"]
    assert error["message"] == "Rate Limit Reached" and error["param"] is None


@pytest.mark.parametrize(("status", "message"), [(500, "Server Error"), (503, "Server Overloaded")])
def test_server_error_faults_answer_with_deepseeks_wording(serve, status, message):
    server = serve([Fault(status)])
    response = chat(server)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message


async def test_402_fault_reaches_the_sdk_as_insufficient_balance(serve, sdk):
    server = serve([Fault(402)])
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(server).chat.completions.create(model=server.model, messages=USER)
    assert caught.value.status_code == 402
    assert "Insufficient Balance" in str(caught.value)


def test_fault_consumes_its_script_entry(serve):
    server = serve([Fault(500), ScriptedTurn(content="after")])
    assert chat(server).status_code == 500
    assert chat(server).json()["choices"][0]["message"]["content"] == "after"
    assert [r.turn_index for r in server.requests] == [0, 1]


async def test_cut_stream_fails_the_client_and_the_retry_gets_the_whole_turn(serve, sdk):
    server = serve([Fault(cut_stream=True), TOOL_TURN])
    client = sdk(server)
    with pytest.raises(openai.APIConnectionError):
        stream = await client.chat.completions.create(model=server.model, messages=USER, stream=True)
        await collect(stream)
    stream = await client.chat.completions.create(model=server.model, messages=USER, stream=True)
    got = await collect(stream)
    assert got["content"] == TOOL_TURN.content
    assert json.loads(got["calls"][0]["arguments"]) == {"path": "src/main.py"}
    assert [r.status for r in server.requests] == [200, 200]


def test_cut_stream_sends_part_of_the_next_turn_without_done(serve):
    server = serve([Fault(cut_stream=True), ScriptedTurn(reasoning="r" * 30, content="c" * 30)])
    body = {"model": server.model, "messages": USER, "stream": True}
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=10) as response:
            for part in response.iter_raw():
                received += part
    assert b'"role":"assistant"' in received
    assert b"[DONE]" not in received


def test_drop_fault_resets_the_connection_without_an_answer(serve):
    server = serve([Fault(drop=True), ScriptedTurn(content="after")])
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        chat(server)
    assert chat(server).json()["choices"][0]["message"]["content"] == "after"
    assert [(r.status, r.turn_index) for r in server.requests] == [(0, 0), (200, 1)]


async def test_drop_fault_reaches_the_sdk_as_a_connection_error(serve, sdk):
    server = serve([Fault(drop=True)])
    with pytest.raises(openai.APIConnectionError):
        await sdk(server).chat.completions.create(model=server.model, messages=USER, stream=True)


@pytest.mark.timeout(30)
def test_stop_ends_a_request_held_by_a_long_delay(serve):
    asked = threading.Event()

    def script(request: RecordedRequest) -> ScriptedTurn:
        asked.set()
        return ScriptedTurn(content="late", delay_s=600)

    server = serve(script)
    errors: list[Exception] = []

    def call() -> None:
        try:
            chat(server)
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    asked.wait()
    server.stop()
    caller.join()
    assert len(errors) == 1  # the connection went away; the delay was not waited out


def test_delay_s_holds_the_answer_back(serve):
    server = serve([ScriptedTurn(content="late", delay_s=1.0)])
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/chat/completions", json={"messages": USER}, timeout=0.2)


# --- non-stream answers --------------------------------------------------------------------------------


def test_deepseek_non_stream_answer_has_leading_blank_lines_and_no_tool_calls_key(serve):
    server = serve([ScriptedTurn(reasoning="think", content="plain answer")])
    response = chat(server)
    assert response.content.startswith(b"\n\n{")
    body = response.json()
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "plain answer", "reasoning_content": "think"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert set(body["usage"]) >= {"prompt_cache_hit_tokens", "prompt_cache_miss_tokens", "total_tokens"}


def test_vllm_non_stream_answer_has_empty_tool_calls_list_and_reasoning_field(serve):
    server = serve([ScriptedTurn(reasoning="think", content="plain answer")], dialect="vllm")
    response = chat(server, chat_template_kwargs={"thinking": True})
    assert response.content.startswith(b"{")
    body = response.json()
    message = body["choices"][0]["message"]
    assert message["tool_calls"] == [] and message["reasoning"] == "think"
    assert "prompt_cache_hit_tokens" not in body["usage"]
    assert "cached_tokens" in body["usage"]["prompt_tokens_details"]


async def test_non_stream_tool_call_answer_has_null_content_through_the_sdk(serve, sdk):
    turn = ScriptedTurn(tool_calls=[ScriptedToolCall("read_file", '{"path": "a"}', id="call_x")])
    server = serve([turn])
    answer = await sdk(server).chat.completions.create(model=server.model, messages=USER)
    message = answer.choices[0].message
    assert message.content is None
    assert (
        message.tool_calls[0].id == "call_x" and message.tool_calls[0].function.arguments == '{"path": "a"}'
    )
    assert answer.choices[0].finish_reason == "tool_calls"


def test_turn_usage_overrides_computed_fields(serve):
    server = serve(
        [ScriptedTurn(content="ok", usage={"prompt_tokens": 1000, "prompt_cache_hit_tokens": 640})]
    )
    usage = chat(server).json()["usage"]
    assert usage["prompt_tokens"] == 1000 and usage["prompt_cache_miss_tokens"] == 360
    assert usage["prompt_tokens_details"] == {"cached_tokens": 640}


# --- the script ----------------------------------------------------------------------------------------


def test_exhausted_script_answers_400_naming_the_request(serve):
    server = serve([ScriptedTurn(content="only one")])
    chat(server)
    response = chat(server)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message == "scripted model server: the script has no turn left (request #2)"


def test_callable_script_is_called_with_the_recorded_request(serve):
    seen: list[RecordedRequest] = []

    def script(request: RecordedRequest) -> ScriptedTurn | Fault:
        seen.append(request)
        if request.think_mode == "none":
            return Fault(503)
        return ScriptedTurn(content=f"you said {request.body['messages'][-1]['content']}")

    server = serve(script)
    assert chat(server).json()["choices"][0]["message"]["content"] == "you said hi"
    assert chat(server, thinking={"type": "disabled"}).status_code == 503
    assert [r.think_mode for r in seen] == ["high", "none"]
    assert [r.status for r in server.requests] == [200, 503]


def test_dict_entries_in_a_list_script_become_turns_and_faults(serve):
    server = serve([{"fault": 429}, {"content": "ok", "tool_calls": [{"name": "read_file"}]}])
    assert chat(server).status_code == 429
    message = chat(server).json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "read_file", "arguments": "{}"}


def test_load_script_reads_turns_and_faults_from_yaml(tmp_path):
    path = tmp_path / "script.yaml"
    path.write_text(
        "- reasoning: look first\n"
        "  content: reading\n"
        "  tool_calls: [{name: read_file, arguments: {path: a.txt}}]\n"
        "- {fault: 429, retry_after: 1}\n"
        "- {fault: cut}\n"
        "- done\n"
    )
    script = load_script(path)
    assert script[0] == ScriptedTurn(
        reasoning="look first",
        content="reading",
        tool_calls=[ScriptedToolCall("read_file", {"path": "a.txt"})],
    )
    assert script[1] == Fault(status=429, retry_after=1)
    assert script[2] == Fault(cut_stream=True)
    assert script[3] == ScriptedTurn(content="done")


def test_load_script_reads_a_drop_fault(tmp_path):
    path = tmp_path / "script.yaml"
    path.write_text("- {fault: drop}\n- done\n")
    assert load_script(path) == [Fault(drop=True), ScriptedTurn(content="done")]


def test_load_script_reports_a_bad_entry_by_file_index_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"content": "ok"}, {"tool_calls": [{"name": "x", "arguments": 5}]}]))
    with pytest.raises(ConfigError) as caught:
        load_script(path)
    text = str(caught.value)
    assert str(path) in text and "entry 1" in text and "tool_calls[0].arguments" in text


# --- other endpoints and plumbing ------------------------------------------------------------------------


def test_models_endpoint_lists_the_served_model(serve):
    server = serve([])
    data = httpx.get(f"{server.url}/models", timeout=10).json()["data"]
    assert [m["id"] for m in data] == ["deepseek-v4-flash"]


def test_vllm_tokenize_counts_with_the_usage_estimate(serve):
    server = serve([ScriptedTurn(content="ok")], dialect="vllm", model="deepseek-ai/DeepSeek-V4-Flash")
    root = server.url.removesuffix("/v1")
    counted = httpx.post(
        f"{root}/tokenize", json={"model": server.model, "messages": USER}, timeout=10
    ).json()
    usage = chat(server).json()["usage"]
    assert counted["count"] == usage["prompt_tokens"] == len(counted["tokens"])
    assert counted["max_model_len"] == 1048576


def test_unknown_path_answers_404_json(serve):
    server = serve([])
    response = httpx.post(f"{server.url}/completions", json={}, timeout=10)
    assert response.status_code == 404
    assert "error" in response.json()


def test_model_string_names_dialect_url_and_model(serve):
    server = serve([], dialect="vllm", model="m1")
    assert server.model_string == f"vllm:http://127.0.0.1:{server.port}/v1#m1"


def test_one_keep_alive_connection_serves_several_requests():
    body = json.dumps({"messages": USER}).encode()
    request = (
        b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with ScriptedModelServer([ScriptedTurn(content="one"), ScriptedTurn(content="two")]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            with sock.makefile("rb") as stream:
                contents = []
                for _ in range(2):
                    sock.sendall(request)
                    assert stream.readline().startswith(b"HTTP/1.1 200")
                    headers = {}
                    while (line := stream.readline()) != b"\r\n":
                        name, _, value = line.decode().partition(":")
                        headers[name.lower()] = value.strip()
                    payload = json.loads(stream.read(int(headers["content-length"])))
                    contents.append(payload["choices"][0]["message"]["content"])
    assert contents == ["one", "two"]


async def test_async_context_manager_serves_from_an_async_test(sdk):
    async with ScriptedModelServer([ScriptedTurn(content="ok")], dialect="vllm") as server:
        answer = await sdk(server).chat.completions.create(model=server.model, messages=USER)
    assert answer.choices[0].message.content == "ok"


def test_command_line_serves_a_script_file_until_stopped(tmp_path):
    path = tmp_path / "script.yaml"
    path.write_text("- content: from the command line\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.testing", str(path), "--dialect", "vllm", "--model", "tiny"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url, model_string = process.stdout.readline().split()
        assert model_string == f"vllm:{url}#tiny"
        response = httpx.post(f"{url}/chat/completions", json={"messages": USER}, timeout=10)
        assert response.json()["choices"][0]["message"]["content"] == "from the command line"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
