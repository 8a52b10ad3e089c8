"""A scripted OpenAI-compatible model server (DeepSeek or vLLM dialect) for tests and demos.

It answers chat completions from a script of turns and faults, over real HTTP, and records every request.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import http
import itertools
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "Fault",
    "RecordedRequest",
    "Script",
    "ScriptedModelServer",
    "ScriptedToolCall",
    "ScriptedTurn",
    "load_script",
    "main",
    "think_mode_of",
]

REASONING_REPLAY_MESSAGE = "The reasoning_content in the thinking mode must be passed back to the API."
TOOL_CHOICE_MESSAGE = "Thinking mode does not support this tool_choice"
MAX_MODEL_LEN = 1048576

# DeepSeek's wording for each status (https://api-docs.deepseek.com/quick_start/error_codes).
_DEFAULT_MESSAGES = {
    400: "Invalid Format",
    401: "Authentication Fails, Your api key: ****abcd is invalid",
    402: "Insufficient Balance",
    422: "Invalid Parameters",
    429: "Rate Limit Reached",
    500: "Server Error",
    503: "Server Overloaded",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "unknown_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_overloaded",
}


@dataclass
class ScriptedToolCall:
    """One tool call the scripted model makes; `arguments` may be a str to send malformed JSON on purpose."""

    name: str
    arguments: dict | str = field(default_factory=dict)
    id: str | None = None  # None: the server numbers it "call_<n>"


@dataclass
class ScriptedTurn:
    """One assistant answer. `usage` overrides any of the computed usage fields (flat or nested keys)."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    finish_reason: str | None = None  # None: "tool_calls" when there are calls, else "stop"
    usage: dict | None = None
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        self.tool_calls = [
            ScriptedToolCall(**call) if isinstance(call, dict) else call for call in self.tool_calls
        ]


@dataclass
class Fault:
    """An HTTP error in DeepSeek's error shape, or (`cut_stream`) a connection dropped mid-answer.

    A cut answers 200, streams the first chunks of the next turn, then drops the TCP connection without
    `[DONE]`; the Fault entry is consumed but the turn is not, so the retry gets that turn in full.
    """

    status: int | None = None  # None and no cut: 500
    retry_after: float | None = None  # seconds, sent as the Retry-After header
    message: str | None = None  # None: DeepSeek's wording for the status
    cut_stream: bool = False


@dataclass
class RecordedRequest:
    """One HTTP request the server received and what it answered.

    `think_mode` is how the server's dialect reads the body ("none", "high" or "max"); `turn_index` is the
    index of the script entry that answered (for a cut stream, the Fault's), None for errors and non-chat paths.
    """

    path: str
    body: dict
    headers: dict[str, str]
    stream: bool
    think_mode: str
    status: int = 0
    turn_index: int | None = None


Script = Sequence[ScriptedTurn | Fault | dict] | Callable[[RecordedRequest], ScriptedTurn | Fault]


# --- script parsing -----------------------------------------------------------------------------------

_TURN_FIELDS = {"content", "reasoning", "tool_calls", "finish_reason", "usage", "delay_s"}
_FAULT_FIELDS = {"fault", "retry_after", "message"}


def _fail(where: str, index: int, fld: str, expected: str, got: Any) -> ConfigError:
    return ConfigError(f"{where}: entry {index}: field '{fld}': expected {expected}, got {got!r}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _entry_from_dict(entry: Any, where: str, index: int) -> ScriptedTurn | Fault:
    if isinstance(entry, ScriptedTurn | Fault):
        return entry
    if isinstance(entry, str):
        return ScriptedTurn(content=entry)
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where}: entry {index}: expected a mapping (a turn or a fault) or a string, got {entry!r}"
        )
    if "fault" in entry:
        unknown = set(entry) - _FAULT_FIELDS
        if unknown:
            name = sorted(unknown)[0]
            raise _fail(where, index, name, f"one of {sorted(_FAULT_FIELDS)} in a fault entry", name)
        kind = entry["fault"]
        retry_after = entry.get("retry_after")
        message = entry.get("message")
        if retry_after is not None and not _number(retry_after):
            raise _fail(where, index, "retry_after", "a number of seconds >= 0", retry_after)
        if message is not None and not isinstance(message, str):
            raise _fail(where, index, "message", "a string", message)
        if kind in ("cut", "cut_stream"):
            return Fault(cut_stream=True, retry_after=retry_after, message=message)
        if isinstance(kind, str) and kind.isdigit():
            kind = int(kind)
        if not isinstance(kind, int) or isinstance(kind, bool) or not 400 <= kind <= 599:
            raise _fail(where, index, "fault", "an HTTP status 400-599 or 'cut'", kind)
        return Fault(status=kind, retry_after=retry_after, message=message)

    unknown = set(entry) - _TURN_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise _fail(where, index, name, f"one of {sorted(_TURN_FIELDS | {'fault'})}", name)
    for name in ("content", "reasoning"):
        if not isinstance(entry.get(name, ""), str):
            raise _fail(where, index, name, "a string", entry[name])
    finish = entry.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise _fail(where, index, "finish_reason", "a string", finish)
    usage = entry.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise _fail(where, index, "usage", "a mapping of usage fields", usage)
    delay = entry.get("delay_s", 0.0)
    if not _number(delay):
        raise _fail(where, index, "delay_s", "a number of seconds >= 0", delay)
    raw_calls = entry.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise _fail(where, index, "tool_calls", "a list", raw_calls)
    calls = []
    for k, call in enumerate(raw_calls):
        prefix = f"tool_calls[{k}]"
        if not isinstance(call, dict):
            raise _fail(where, index, prefix, "a mapping with name and arguments", call)
        extra = set(call) - {"name", "arguments", "id"}
        if extra:
            name = sorted(extra)[0]
            raise _fail(where, index, f"{prefix}.{name}", "one of ['arguments', 'id', 'name']", name)
        if not isinstance(call.get("name"), str) or not call["name"]:
            raise _fail(where, index, f"{prefix}.name", "a non-empty string", call.get("name"))
        arguments = call.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict | str):
            raise _fail(where, index, f"{prefix}.arguments", "a mapping or a JSON string", arguments)
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise _fail(where, index, f"{prefix}.id", "a string", call_id)
        calls.append(ScriptedToolCall(name=call["name"], arguments=arguments, id=call_id))
    return ScriptedTurn(
        content=entry.get("content", ""),
        reasoning=entry.get("reasoning", ""),
        tool_calls=calls,
        finish_reason=finish,
        usage=usage,
        delay_s=float(delay),
    )


def load_script(path: str | Path) -> list[ScriptedTurn | Fault]:
    """Read a script from a YAML or JSON file holding a list of entries.

    A turn is `{reasoning, content, tool_calls: [{name, arguments, id}], finish_reason, usage, delay_s}` (or a
    bare string: the content); a fault is `{fault: 429, retry_after: 1, message: ...}` or `{fault: cut}`.
    Raises ConfigError naming the file, the entry index and the field.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the script: {exc}") from None
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON: {exc}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of turns and faults, got {type(data).__name__}")
    return [_entry_from_dict(entry, str(path), i) for i, entry in enumerate(data)]


# --- wire helpers -------------------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _split(text: str, parts: int = 3) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // min(parts, len(text)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a.startswith(b[:n]):
        return n
    # Binary search comparing only the unknown middle part, so the total copying stays O(n).
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.startswith(b[lo:mid], lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _response(
    status: int, body: bytes, *, content_type: str = "application/json", extra: dict[str, str] | None = None
) -> bytes:
    head = f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    if extra:
        head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
    return (head + "\r\n").encode("latin-1") + body


def _error_body(status: int, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    code = "invalid_request_error" if status in (400, 402, 422) else kind
    return _dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def think_mode_of(body: dict, dialect: str) -> str:
    """How a DeepSeek API ("deepseek") or a vLLM server ("vllm") reads the think mode of a request body."""
    if dialect == "deepseek":
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") == "disabled":
            return "none"
        return "max" if body.get("reasoning_effort") == "max" else "high"
    kwargs = body.get("chat_template_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    thinking = kwargs.get("thinking", kwargs.get("enable_thinking"))
    effort = kwargs.get("reasoning_effort", body.get("reasoning_effort"))
    if thinking is False or effort == "none":
        return "none"
    return "max" if effort == "max" else "high"


class _Answer:
    """What a chat request resolved to; built synchronously so script consumption is atomic."""

    __slots__ = ("status", "message", "index", "turn", "cut", "retry_after", "call_ids")

    def __init__(self, status: int, message: str = "", index: int | None = None):
        self.status = status
        self.message = message
        self.index = index  # the script entry that answered
        self.turn: ScriptedTurn | None = None
        self.cut = False
        self.retry_after: float | None = None
        self.call_ids: list[str] = []


# --- the server ---------------------------------------------------------------------------------------


class ScriptedModelServer:
    """An HTTP server on a background thread that answers chat completions from a script.

    Use it as `with ScriptedModelServer(script) as server:` (or `async with`), point a client at
    `server.url` (or our model string `server.model_string`) and inspect `server.requests` afterwards.
    """

    def __init__(
        self,
        script: Script,
        *,
        dialect: Literal["deepseek", "vllm"] = "deepseek",
        model: str = "deepseek-v4-flash",
        keepalive: bool = True,
        check_reasoning: bool = True,
        send_usage: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if dialect not in ("deepseek", "vllm"):
            raise ConfigError(f"dialect: expected 'deepseek' or 'vllm', got {dialect!r}")
        if callable(script):
            self._script: list[ScriptedTurn | Fault] | None = None
            self._callable: Callable[[RecordedRequest], ScriptedTurn | Fault] | None = script
        else:
            self._script = [_entry_from_dict(e, "script", i) for i, e in enumerate(script)]
            self._callable = None
        self.dialect = dialect
        self.model = model
        self.keepalive = keepalive
        self.check_reasoning = check_reasoning
        self.send_usage = send_usage  # False: no usage anywhere, as llama.cpp's streams
        self.host = host
        self._port = port
        self._bound_port: int | None = None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._position = 0  # next script entry
        self._calls_made = 0  # callable-script turns answered
        self._chat_count = 0
        self._tool_call_counter = 0
        self._prefixes: list[str] = []  # sorted serialized message lists of earlier successful requests
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # -- public surface --

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("ScriptedModelServer is not running: call start() first")
        return self._bound_port

    @property
    def url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_string(self) -> str:
        """`PROFILE:BASE_URL#MODEL`, as our model strings spell an endpoint."""
        return f"{self.dialect}:{self.url}#{self.model}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def think_modes(self) -> list[str]:
        """The think mode of each chat-completions request, in order."""
        return [r.think_mode for r in self.requests if r.path.endswith("chat/completions")]

    def start(self) -> ScriptedModelServer:
        """Bind and serve on a daemon thread; returns once the port is bound."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name="scripted-model-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then join the thread."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout=10)
        self._thread = None
        self._bound_port = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ScriptedModelServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = self.url if self._bound_port is not None else "not running"
        return f"<ScriptedModelServer {self.dialect} {where}>"

    # -- thread and connections --

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        tasks: set[asyncio.Task] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None  # start_server runs each callback coroutine in a task of its own
            tasks.add(task)
            try:
                await self._connection(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except asyncio.CancelledError:
                # Only stop() cancels; ending normally keeps 3.11's stream callback from logging it.
                pass
            finally:
                tasks.discard(task)
                writer.close()

        try:
            server = await asyncio.start_server(on_connect, self.host, self._port, limit=1 << 20)
        except BaseException as exc:  # report bind failures to start()
            self._start_error = exc
            self._ready.set()
            return
        self._bound_port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError:
                writer.write(_response(431, _error_body(431, "request headers too large")))
                return
            lines = head[:-4].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                writer.write(_response(400, _error_body(400, "malformed request line")))
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                writer.write(_response(411, _error_body(411, "chunked request bodies are not supported")))
                return
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                writer.write(_response(400, _error_body(400, "bad Content-Length")))
                return
            raw = await reader.readexactly(length) if length > 0 else b""
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            try:
                reusable = await self._dispatch(method, target.split("?", 1)[0], headers, raw, writer)
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a server bug must reach the test as an answer, not a hang
                traceback.print_exc()
                writer.write(_response(500, _error_body(500, f"scripted model server bug: {exc!r}")))
                return
            if not reusable:
                return
            if not keep:
                return

    # -- request routing --

    def _record(self, rec: RecordedRequest, status: int, turn_index: int | None = None) -> None:
        rec.status = status
        rec.turn_index = turn_index
        with self._lock:
            self._requests.append(rec)

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must not be reused."""
        body: Any = {}
        bad_json = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                bad_json = f"Failed to parse the request body as JSON: {exc}"
        if not isinstance(body, dict):
            bad_json = bad_json or "The request body must be a JSON object"
            body = {}
        stream = body.get("stream") is True
        rec = RecordedRequest(path, body, headers, stream, think_mode_of(body, self.dialect))
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            if bad_json:
                return self._send_error(writer, rec, 400, bad_json)
            return await self._chat(rec, writer)
        if method == "GET" and path in ("/v1/models", "/models"):
            card: dict[str, Any] = {
                "id": self.model,
                "object": "model",
                "created": int(time.time()),
                "owned_by": self.dialect,
            }
            if self.dialect == "vllm":
                card["max_model_len"] = MAX_MODEL_LEN
            self._record(rec, 200)
            writer.write(_response(200, _dumps({"object": "list", "data": [card]}).encode()))
            return True
        if self.dialect == "vllm" and method == "POST" and path in ("/tokenize", "/v1/tokenize"):
            if bad_json:
                return self._send_error(writer, rec, 400, bad_json)
            if isinstance(body.get("messages"), list):
                count = self._prompt_tokens(body)
            else:
                count = max(1, len(str(body.get("prompt", ""))) // 4)
            self._record(rec, 200)
            payload = {"count": count, "tokens": list(range(count)), "max_model_len": MAX_MODEL_LEN}
            writer.write(_response(200, _dumps(payload).encode()))
            return True
        return self._send_error(writer, rec, 404, f"Not Found: {method} {path}")

    def _send_error(
        self,
        writer: asyncio.StreamWriter,
        rec: RecordedRequest,
        status: int,
        message: str,
        retry_after: float | None = None,
        turn_index: int | None = None,
    ) -> bool:
        self._record(rec, status, turn_index)
        extra = None
        if retry_after is not None:
            extra = {
                "Retry-After": str(int(retry_after)) if retry_after == int(retry_after) else str(retry_after)
            }
        writer.write(_response(status, _error_body(status, message), extra=extra))
        return True

    # -- chat completions --

    def _check(self, body: dict, mode: str) -> str | None:
        if not (self.check_reasoning and self.dialect == "deepseek"):
            return None
        if body.get("tools"):
            for message in body.get("messages", []):
                if (
                    isinstance(message, dict)
                    and message.get("role") == "assistant"
                    and not isinstance(message.get("reasoning_content"), str)
                ):
                    return REASONING_REPLAY_MESSAGE
        choice = body.get("tool_choice")
        if mode != "none" and choice is not None and choice not in ("auto", "none"):
            return TOOL_CHOICE_MESSAGE
        return None

    @staticmethod
    def _prompt_tokens(body: dict) -> int:
        chars = len(json.dumps(body.get("messages", []))) + len(json.dumps(body.get("tools", [])))
        return max(1, chars // 4)

    def _cache_hit_tokens(self, messages: list, prompt_tokens: int) -> int:
        serialized = json.dumps(messages, separators=(",", ":"))
        prefixes = self._prefixes
        # In sorted order the longest common prefix is shared with a neighbour of the insertion point.
        at = bisect.bisect_left(prefixes, serialized)
        best = 0
        if at < len(prefixes):
            best = _common_prefix_len(serialized, prefixes[at])
        # An earlier request that is a prefix of this one can never beat it: drop it, so a linear
        # conversation keeps one string instead of all of them.
        while at > 0 and serialized.startswith(prefixes[at - 1]):
            best = max(best, len(prefixes[at - 1]))
            del prefixes[at - 1]
            at -= 1
        if at > 0:
            best = max(best, _common_prefix_len(serialized, prefixes[at - 1]))
        if at >= len(prefixes) or prefixes[at] != serialized:
            prefixes.insert(at, serialized)
        return min(prompt_tokens, best // 4 // 64 * 64)

    def _next_entry(self, rec: RecordedRequest) -> tuple[Any, int | None, ScriptedTurn | None]:
        """(entry, its index, the turn a cut streams part of); entry None when the script is exhausted."""
        if self._callable is not None:
            index = self._calls_made
            entry = self._callable(rec)
            self._calls_made += 1
            if isinstance(entry, dict | str):
                entry = _entry_from_dict(entry, "script callable", index)
            return entry, index, None
        script = self._script
        assert script is not None
        if self._position >= len(script):
            return None, None, None
        index = self._position
        entry = script[index]
        self._position += 1
        partial = None
        if isinstance(entry, Fault) and entry.cut_stream:
            nxt = script[self._position] if self._position < len(script) else None
            partial = nxt if isinstance(nxt, ScriptedTurn) else None
        return entry, index, partial

    def _resolve(self, rec: RecordedRequest) -> _Answer:
        body = rec.body
        if not isinstance(body.get("messages"), list):
            return _Answer(422, "Invalid Parameters: `messages` must be a list of messages")
        problem = self._check(body, rec.think_mode)
        if problem:
            return _Answer(400, problem)
        self._chat_count += 1
        try:
            entry, index, partial = self._next_entry(rec)
        except Exception as exc:  # a broken callable must fail the test, not hang it
            return _Answer(400, f"scripted model server: the script raised {exc!r}")
        if entry is None:
            return _Answer(
                400, f"scripted model server: the script has no turn left (request #{self._chat_count})"
            )
        if isinstance(entry, Fault) and not entry.cut_stream:
            status = entry.status or 500
            answer = _Answer(status, entry.message or _DEFAULT_MESSAGES.get(status, _reason(status)), index)
            answer.retry_after = entry.retry_after
            return answer
        answer = _Answer(200, index=index)
        if isinstance(entry, Fault):
            answer.cut = True
            entry = partial or ScriptedTurn(content="(the connection drops here)")
        if not isinstance(entry, ScriptedTurn):
            return _Answer(
                400, f"scripted model server: the script returned {entry!r}, not a turn or a Fault"
            )
        answer.turn = entry
        base = self._tool_call_counter
        answer.call_ids = [c.id or f"call_{base + k}" for k, c in enumerate(entry.tool_calls)]
        if not answer.cut:  # a cut turn is served again, with the same ids
            self._tool_call_counter += sum(1 for c in entry.tool_calls if c.id is None)
        return answer

    async def _chat(self, rec: RecordedRequest, writer: asyncio.StreamWriter) -> bool:
        answer = self._resolve(rec)
        if answer.status != 200:
            return self._send_error(
                writer, rec, answer.status, answer.message, answer.retry_after, answer.index
            )
        turn = answer.turn
        assert turn is not None
        body = rec.body
        thinking = rec.think_mode != "none"
        reasoning = turn.reasoning if thinking else ""
        arguments = [
            c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments, ensure_ascii=False)
            for c in turn.tool_calls
        ]
        prompt_tokens = self._prompt_tokens(body)
        hit = self._cache_hit_tokens(body["messages"], prompt_tokens)
        completion = (len(turn.content) + len(reasoning) + sum(map(len, arguments))) // 4 + 1
        usage = self._usage(prompt_tokens, hit, completion, len(reasoning) // 4, turn.usage)
        self._record(rec, 200, answer.index)
        if turn.delay_s > 0:
            await asyncio.sleep(turn.delay_s)
        finish = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
        data: list[bytes] | bytes
        if rec.stream:
            data = self._stream_bytes(
                turn, thinking, reasoning, arguments, answer.call_ids, finish, usage, body
            )
        else:
            data = self._plain_bytes(turn, thinking, reasoning, arguments, answer.call_ids, finish, usage)
        if answer.cut:
            await self._cut(writer, data, rec.stream)
            return False
        writer.write(b"".join(data) if isinstance(data, list) else data)
        await writer.drain()
        return True

    async def _cut(self, writer: asyncio.StreamWriter, data: list[bytes] | bytes, stream: bool) -> None:
        if stream:
            assert isinstance(data, list)
            # headers, keep-alive (if any) and about half of the events; never the terminator
            sent = b"".join(data[: max(2, (len(data) - 1) // 2)])
        else:
            assert isinstance(data, bytes)
            sent = data[: len(data) - max(1, (len(data) - data.index(b"\r\n\r\n")) // 2)]
        writer.write(sent)
        await writer.drain()
        await asyncio.sleep(0.01)  # let the client read the partial answer before the drop
        writer.transport.abort()

    def _usage(self, prompt: int, hit: int, completion: int, reasoning: int, override: dict | None) -> dict:
        deepseek = self.dialect == "deepseek"
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if deepseek:
            usage["prompt_cache_hit_tokens"] = hit
            usage["prompt_cache_miss_tokens"] = prompt - hit
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        usage["prompt_tokens_details"] = {"cached_tokens": hit}
        if not override:
            return usage
        given = dict(override)
        # flat conveniences for the nested fields
        if "reasoning_tokens" in given:
            usage["completion_tokens_details"] = {"reasoning_tokens": given.pop("reasoning_tokens")}
        if "cached_tokens" in given:
            cached = given.pop("cached_tokens")
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
            if deepseek:
                given.setdefault("prompt_cache_hit_tokens", cached)
        usage.update(given)
        if "total_tokens" not in given:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if deepseek:
            if "prompt_cache_hit_tokens" in given and "prompt_tokens_details" not in given:
                usage["prompt_tokens_details"] = {"cached_tokens": usage["prompt_cache_hit_tokens"]}
            if "prompt_cache_miss_tokens" not in given:
                usage["prompt_cache_miss_tokens"] = usage["prompt_tokens"] - usage["prompt_cache_hit_tokens"]
        return usage

    def _plain_bytes(
        self,
        turn: ScriptedTurn,
        thinking: bool,
        reasoning: str,
        arguments: list[str],
        call_ids: list[str],
        finish: str,
        usage: dict,
    ) -> bytes:
        deepseek = self.dialect == "deepseek"
        calls = [
            {"id": cid, "type": "function", "function": {"name": c.name, "arguments": args}}
            for c, cid, args in zip(turn.tool_calls, call_ids, arguments, strict=True)
        ]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.content or (None if calls else ""),
        }
        if deepseek:
            if thinking:
                message["reasoning_content"] = reasoning
            if calls:
                message["tool_calls"] = calls
        else:
            message["reasoning"] = reasoning or None
            message["tool_calls"] = calls
        payload = {
            "id": f"chatcmpl-scripted-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
            "system_fingerprint": "fp_scripted" if deepseek else None,
        }
        if not self.send_usage:
            del payload["usage"]
        data = _dumps(payload).encode()
        if deepseek and self.keepalive:
            data = b"\n\n" + data  # DeepSeek pads with blank lines while the request waits
        return _response(200, data)

    def _stream_bytes(
        self,
        turn: ScriptedTurn,
        thinking: bool,
        reasoning: str,
        arguments: list[str],
        call_ids: list[str],
        finish: str,
        usage: dict,
        body: dict,
    ) -> list[bytes]:
        """The HTTP head and each SSE event as its own HTTP chunk, ending with the terminating chunk."""
        deepseek = self.dialect == "deepseek"
        rkey = "reasoning_content" if deepseek else "reasoning"
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True and self.send_usage
        rid = f"chatcmpl-scripted-{next(self._ids)}"
        created = int(time.time())
        fingerprint = "fp_scripted" if deepseek else None
        out = [_SSE_HEAD]
        if deepseek and self.keepalive:
            out.append(_chunk(b": keep-alive\n\n"))

        def event(delta: dict, finish_reason: str | None = None, final_usage: dict | None = None) -> None:
            chunk: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if (deepseek and self.send_usage) or include_usage:
                chunk["usage"] = final_usage
            out.append(_chunk(b"data: " + _dumps(chunk).encode() + b"\n\n"))

        if thinking:
            event({"role": "assistant", "content": None, rkey: ""})
        else:
            event({"role": "assistant", "content": ""})
        for piece in _split(reasoning):
            event({"content": None, rkey: piece})
        for piece in _split(turn.content):
            event({"content": piece, rkey: None})
        for i, (call, cid, args) in enumerate(zip(turn.tool_calls, call_ids, arguments, strict=True)):
            head = {
                "index": i,
                "id": cid,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            event({"tool_calls": [head]})
            for piece in _split(args, 3 if len(args) > 2 else 2):
                event({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        if deepseek:
            event({"content": ""}, finish, usage if include_usage else None)
        else:
            event({"content": ""}, finish)
            if include_usage:
                final = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage,
                }
                out.append(_chunk(b"data: " + _dumps(final).encode() + b"\n\n"))
        out.append(_chunk(b"data: [DONE]\n\n"))
        out.append(b"0\r\n\r\n")
        return out


# --- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.testing SCRIPT [--dialect deepseek|vllm] [--model NAME] [--port N]`."""
    parser = argparse.ArgumentParser(
        prog="python -m agent.testing",
        description="Serve a scripted OpenAI-compatible model (DeepSeek or vLLM dialect) until Ctrl-C.",
    )
    parser.add_argument("script", help="YAML or JSON list of turns and faults")
    parser.add_argument("--dialect", choices=["deepseek", "vllm"], default="deepseek")
    parser.add_argument("--model", default="deepseek-v4-flash")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        script = load_script(args.script)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = ScriptedModelServer(
        script, dialect=args.dialect, model=args.model, host=args.host, port=args.port
    )
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"{server.url} {server.model_string}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
