"""Test doubles for the model side: a scripted OpenAI-compatible HTTP server and in-process fake models.

`ScriptedModelServer` answers chat completions from a script of turns and faults over real HTTP (uvicorn and
starlette) in DeepSeek's or vLLM's dialect; `FakeModel` and `FunctionModel` answer the agent loop in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import http
import inspect
import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from .errors import (
    BadRequestError,
    ConfigError,
    InsufficientBalanceError,
    ModelAPIError,
    ModelAuthError,
    ModelError,
    ModelUnavailableError,
)
from .models.base import AssistantTurn, DeltaFn, RetryFn, ToolCall, dumps, render_message
from .models.profiles import PROFILES, Price, Profile
from .think import ThinkMode
from .usage import Usage

__all__ = [
    "Fault",
    "FakeModel",
    "FunctionModel",
    "ModelCall",
    "ModelFunction",
    "RecordedRequest",
    "Script",
    "ScriptExhausted",
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
    id: str | None = None  # None: numbered "call_<n>"


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
    """An HTTP error in DeepSeek's error shape, or a broken connection.

    `cut_stream` answers 200, sends the first part of the next turn, then closes the TCP connection without
    the end of the body (no `[DONE]`); the Fault entry is consumed but the turn is not, so the retry gets
    that turn in full. `drop` closes the connection (a TCP reset) without answering at all.
    """

    status: int | None = None  # None and no cut or drop: 500
    retry_after: float | None = None  # seconds, sent as the Retry-After header
    message: str | None = None  # None: DeepSeek's wording for the status
    cut_stream: bool = False
    drop: bool = False

    @property
    def broken(self) -> bool:
        """The fault breaks the connection instead of answering with an HTTP error."""
        return self.cut_stream or self.drop


@dataclass
class RecordedRequest:
    """One HTTP request the server received and what it answered.

    `think_mode` is how the server's dialect reads the body ("none", "high" or "max"); `status` is 0 for a
    dropped connection; `turn_index` is the index of the script entry that answered (for a broken
    connection, the Fault's), None for errors and non-chat paths.
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
        if kind == "drop":
            return Fault(drop=True, retry_after=retry_after, message=message)
        if isinstance(kind, str) and kind.isdigit():
            kind = int(kind)
        if not isinstance(kind, int) or isinstance(kind, bool) or not 400 <= kind <= 599:
            raise _fail(where, index, "fault", "an HTTP status 400-599, 'cut' or 'drop'", kind)
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
    bare string: the content); a fault is `{fault: 429, retry_after: 1, message: ...}`, `{fault: cut}` or
    `{fault: drop}`.
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


# --- what both doubles share: dialects, request checks, usage -----------------------------------------


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


def _deepseek_refusal(body: dict, mode: str) -> str | None:
    """DeepSeek's 400 for a request it refuses: earlier reasoning not sent back with tools, or a forced
    tool_choice while thinking."""
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


def _prompt_tokens(body: dict) -> int:
    chars = len(json.dumps(body.get("messages", []))) + len(json.dumps(body.get("tools", [])))
    return max(1, chars // 4)


def _completion_tokens(turn: ScriptedTurn, reasoning: str, arguments: list[str]) -> int:
    return (len(turn.content) + len(reasoning) + sum(map(len, arguments))) // 4 + 1


def _arguments(turn: ScriptedTurn) -> list[str]:
    return [
        c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments, ensure_ascii=False)
        for c in turn.tool_calls
    ]


class _PrefixCache:
    """A prefix cache as DeepSeek's reports it: hits are the longest prefix shared with an earlier request,
    counted in 64-token units."""

    def __init__(self) -> None:
        self._prefixes: list[str] = []  # sorted serialized message lists of earlier requests

    def hit_tokens(self, messages: list, prompt_tokens: int) -> int:
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


def _usage_fields(
    dialect: str, prompt: int, hit: int, completion: int, reasoning: int, override: dict | None
) -> dict[str, Any]:
    """The `usage` object of a response in the dialect, with a turn's overrides applied."""
    deepseek = dialect == "deepseek"
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


class _Cursor:
    """Walks a list script: each request takes the next entry; a cut also names the turn it streams part of."""

    def __init__(self, script: Sequence[ScriptedTurn | Fault | dict | str], where: str):
        self.entries = [_entry_from_dict(e, where, i) for i, e in enumerate(script)]
        self.position = 0

    def next(self) -> tuple[ScriptedTurn | Fault | None, int | None, ScriptedTurn | None]:
        """(entry, its index, the turn a cut streams part of); entry None when the script is exhausted."""
        if self.position >= len(self.entries):
            return None, None, None
        index = self.position
        entry = self.entries[index]
        self.position += 1
        partial = None
        if isinstance(entry, Fault) and entry.cut_stream and self.position < len(self.entries):
            nxt = self.entries[self.position]
            partial = nxt if isinstance(nxt, ScriptedTurn) else None
        return entry, index, partial


# --- the HTTP server ----------------------------------------------------------------------------------

_TRANSPORT = "agent.testing.transport"  # ASGI scope key: the connection's transport, for faults that break it
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


def _error_body(status: int, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    code = "invalid_request_error" if status in (400, 402, 422) else kind
    return _dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


class _Connection(H11Protocol):
    """uvicorn's HTTP/1.1 connection, handing the app its transport so that faults break it for real."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app

        async def with_transport(scope: Any, receive: Any, send: Any) -> None:
            scope[_TRANSPORT] = self.transport
            await app(scope, receive, send)

        self.app = with_transport


async def _break(scope: Scope, receive: Receive, *, reset: bool) -> None:
    """Close the connection under the response (a TCP reset with `reset`), then wait until uvicorn sees it."""
    transport: asyncio.Transport = scope[_TRANSPORT]
    if reset:
        transport.abort()
    else:
        transport.close()  # what was sent still reaches the client, then the connection ends
    while (await receive())["type"] != "http.disconnect":
        pass


async def _hold(receive: Receive, seconds: float) -> None:
    """Wait `seconds`, or less when the client goes away or the server stops."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass


class _Reply(Response):
    """A 200 answer sent part by part; when streaming, each part (an SSE event) is its own HTTP chunk.

    `cut` sends about half of it, never its end, and closes the connection: a stream dropped mid-answer.
    """

    def __init__(self, parts: list[bytes], *, stream: bool, cut: bool = False):
        self.status_code = 200
        self.background = None
        self.parts = parts
        self.stream = stream
        self.cut = cut
        if stream:
            self.media_type = "text/event-stream"
            self.init_headers({"Cache-Control": "no-cache"})
        else:
            self.media_type = "application/json"
            self.body = b"".join(parts)
            self.init_headers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.stream:
            # keep-alive (if any) and about half of the events; never the finish event or [DONE]
            for part in self.parts[: max(1, len(self.parts) // 2)] if self.cut else self.parts:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            if not self.cut:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            body = self.body[: len(self.body) - max(1, len(self.body) // 2)] if self.cut else self.body
            await send({"type": "http.response.body", "body": body, "more_body": self.cut})
        if self.cut:
            await _break(scope, receive, reset=False)


class _Drop(Response):
    """No answer at all: the connection is reset."""

    def __init__(self) -> None:
        self.status_code = 0
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _break(scope, receive, reset=True)


class _Answer:
    """What a chat request resolved to; built synchronously so script consumption is atomic."""

    __slots__ = ("status", "message", "index", "turn", "cut", "drop", "retry_after", "call_ids")

    def __init__(self, status: int, message: str = "", index: int | None = None):
        self.status = status
        self.message = message
        self.index = index  # the script entry that answered
        self.turn: ScriptedTurn | None = None
        self.cut = False
        self.drop = False
        self.retry_after: float | None = None
        self.call_ids: list[str] = []


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, bound here so that start() raises bind errors itself."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class ScriptedModelServer:
    """An HTTP server on a background thread that answers chat completions from a script.

    Use it as `with ScriptedModelServer(script) as server:` (or `async with`), point a client at
    `server.url` (or our model string `server.model_string`) and inspect `server.requests` afterwards.
    It serves `/v1/chat/completions` (streamed or not), `/v1/models` and, in the vLLM dialect, `/tokenize`.
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
            self._cursor: _Cursor | None = None
            self._callable: Callable[[RecordedRequest], ScriptedTurn | Fault] | None = script
        else:
            self._cursor = _Cursor(script, "script")
            self._callable = None
        self.dialect = dialect
        self.model = model
        self.keepalive = keepalive  # DeepSeek's blank lines and `: keep-alive` comments
        self.check_reasoning = check_reasoning  # DeepSeek's 400s for requests it refuses
        self.send_usage = send_usage  # False: no usage anywhere, as llama.cpp's streams
        self.host = host
        self._port = port
        self._bound_port: int | None = None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._calls_made = 0  # callable-script turns answered
        self._chat_count = 0
        self._tool_call_counter = 0
        self._cache = _PrefixCache()
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
        """Bind and serve on a daemon thread; returns once the server accepts connections."""
        if self._thread is not None and self._thread.is_alive():
            return self
        sock = _listen(self.host, self._port)
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, args=(sock,), name="scripted-model-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error
        self._bound_port = sock.getsockname()[1]
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

    # -- the thread --

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        finally:
            loop.close()
            self._loop = None
            sock.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stop_event = asyncio.Event()
        state = ServerState()
        try:
            # No logging config of uvicorn's own: it would reconfigure the host process's loggers.
            config = Config(self._app(), lifespan="off", proxy_headers=False, log_config=None,
                            timeout_keep_alive=3600)
            config.load()
            listener = await asyncio.get_running_loop().create_server(
                lambda: _Connection(config=config, server_state=state, app_state={}), sock=sock
            )
        except BaseException as exc:  # reported by start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            listener.close()
            for connection in list(state.connections):
                connection.transport.abort()  # requests in flight see the disconnect and end
            await asyncio.sleep(0)  # let the aborted transports report connection_lost
            if state.tasks:
                _, stuck = await asyncio.wait(list(state.tasks), timeout=5)
                for task in stuck:  # a script callable that never returns
                    task.cancel()
            await listener.wait_closed()

    def _app(self) -> Starlette:
        routes = [Route(path, self._chat, methods=["POST"]) for path in _CHAT_PATHS]
        routes += [Route(path, self._models, methods=["GET"]) for path in ("/v1/models", "/models")]
        if self.dialect == "vllm":
            routes += [Route(path, self._tokenize, methods=["POST"]) for path in ("/tokenize", "/v1/tokenize")]
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        routes.append(Route("/{path:path}", self._not_found, methods=methods))
        return Starlette(routes=routes, exception_handlers={ClientDisconnect: _gone, Exception: _bug})

    # -- endpoints --

    def _record(self, rec: RecordedRequest, status: int, turn_index: int | None = None) -> None:
        rec.status = status
        rec.turn_index = turn_index
        with self._lock:
            self._requests.append(rec)

    async def _read(self, request: Request) -> tuple[RecordedRequest, str | None]:
        """The request as recorded, and why its body is unusable (None when it is a JSON object)."""
        raw = await request.body()
        body: Any = {}
        problem = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                problem = f"Failed to parse the request body as JSON: {exc}"
        if not isinstance(body, dict):
            problem = problem or "The request body must be a JSON object"
            body = {}
        headers = {name.lower(): value for name, value in request.headers.items()}
        rec = RecordedRequest(
            request.url.path, body, headers, body.get("stream") is True, think_mode_of(body, self.dialect)
        )
        return rec, problem

    def _error(
        self,
        rec: RecordedRequest,
        status: int,
        message: str,
        retry_after: float | None = None,
        turn_index: int | None = None,
    ) -> Response:
        self._record(rec, status, turn_index)
        headers = None
        if retry_after is not None:
            seconds = str(int(retry_after)) if retry_after == int(retry_after) else str(retry_after)
            headers = {"Retry-After": seconds}
        return Response(_error_body(status, message), status, headers, media_type="application/json")

    async def _not_found(self, request: Request) -> Response:
        rec, _ = await self._read(request)
        return self._error(rec, 404, f"Not Found: {request.method} {rec.path}")

    async def _models(self, request: Request) -> Response:
        rec, _ = await self._read(request)
        card: dict[str, Any] = {
            "id": self.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": self.dialect,
        }
        if self.dialect == "vllm":
            card["max_model_len"] = MAX_MODEL_LEN
        self._record(rec, 200)
        return Response(_dumps({"object": "list", "data": [card]}), media_type="application/json")

    async def _tokenize(self, request: Request) -> Response:
        rec, problem = await self._read(request)
        if problem:
            return self._error(rec, 400, problem)
        body = rec.body
        if isinstance(body.get("messages"), list):
            count = _prompt_tokens(body)
        else:
            count = max(1, len(str(body.get("prompt", ""))) // 4)
        self._record(rec, 200)
        payload = {"count": count, "tokens": list(range(count)), "max_model_len": MAX_MODEL_LEN}
        return Response(_dumps(payload), media_type="application/json")

    async def _chat(self, request: Request) -> Response:
        rec, problem = await self._read(request)
        if problem:
            return self._error(rec, 400, problem)
        answer = self._resolve(rec)
        if answer.drop:
            self._record(rec, 0, answer.index)
            return _Drop()
        if answer.status != 200:
            return self._error(rec, answer.status, answer.message, answer.retry_after, answer.index)
        turn = answer.turn
        assert turn is not None
        body = rec.body
        thinking = rec.think_mode != "none"
        reasoning = turn.reasoning if thinking else ""
        arguments = _arguments(turn)
        prompt_tokens = _prompt_tokens(body)
        hit = self._cache.hit_tokens(body["messages"], prompt_tokens)
        completion = _completion_tokens(turn, reasoning, arguments)
        usage = _usage_fields(self.dialect, prompt_tokens, hit, completion, len(reasoning) // 4, turn.usage)
        self._record(rec, 200, answer.index)
        if turn.delay_s > 0:
            await _hold(request.receive, turn.delay_s)
        finish = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
        if rec.stream:
            parts = self._events(turn, thinking, reasoning, arguments, answer.call_ids, finish, usage, body)
        else:
            parts = [self._message(turn, thinking, reasoning, arguments, answer.call_ids, finish, usage)]
        return _Reply(parts, stream=rec.stream, cut=answer.cut)

    # -- chat completions --

    def _next_entry(self, rec: RecordedRequest) -> tuple[Any, int | None, ScriptedTurn | None]:
        """(entry, its index, the turn a cut streams part of); entry None when the script is exhausted."""
        if self._callable is not None:
            index = self._calls_made
            entry = self._callable(rec)
            self._calls_made += 1
            if isinstance(entry, dict | str):
                entry = _entry_from_dict(entry, "script callable", index)
            return entry, index, None
        assert self._cursor is not None
        return self._cursor.next()

    def _resolve(self, rec: RecordedRequest) -> _Answer:
        body = rec.body
        if not isinstance(body.get("messages"), list):
            return _Answer(422, "Invalid Parameters: `messages` must be a list of messages")
        if self.check_reasoning and self.dialect == "deepseek":
            problem = _deepseek_refusal(body, rec.think_mode)
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
        if isinstance(entry, Fault) and not entry.broken:
            status = entry.status or 500
            message = entry.message or _DEFAULT_MESSAGES.get(status) or _reason(status)
            answer = _Answer(status, message, index)
            answer.retry_after = entry.retry_after
            return answer
        answer = _Answer(200, index=index)
        if isinstance(entry, Fault) and entry.drop:
            answer.drop = True
            return answer
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

    def _message(
        self,
        turn: ScriptedTurn,
        thinking: bool,
        reasoning: str,
        arguments: list[str],
        call_ids: list[str],
        finish: str,
        usage: dict,
    ) -> bytes:
        """A non-streamed chat.completion body."""
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
            message["tool_calls"] = calls  # vLLM sends [] for none
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
        return data

    def _events(
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
        """Each SSE event of a streamed answer, from the keep-alive comment (if any) to `[DONE]`."""
        deepseek = self.dialect == "deepseek"
        rkey = "reasoning_content" if deepseek else "reasoning"
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True and self.send_usage
        rid = f"chatcmpl-scripted-{next(self._ids)}"
        created = int(time.time())
        fingerprint = "fp_scripted" if deepseek else None
        out: list[bytes] = []
        if deepseek and self.keepalive:
            out.append(b": keep-alive\n\n")

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
            out.append(b"data: " + _dumps(chunk).encode() + b"\n\n")

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
            # DeepSeek puts usage on the finishing chunk itself
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
                out.append(b"data: " + _dumps(final).encode() + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return out


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _gone(request: Request, exc: Exception) -> Response:
    """The client left while sending its request: nobody is there to answer."""
    return Response(status_code=499)


async def _bug(request: Request, exc: Exception) -> Response:
    """A server bug reaches the test as an answer, not a hang (uvicorn logs the traceback)."""
    return Response(_error_body(500, f"scripted model server bug: {exc!r}"), 500, media_type="application/json")


# --- in-process models --------------------------------------------------------------------------------


class ScriptExhausted(ModelError):
    """A FakeModel was called once more than its script has turns."""


@dataclass(frozen=True)
class ModelCall:
    """One request as an in-process model receives it: the decoded wire messages, tools and think mode."""

    messages: list[dict[str, Any]]
    """The messages as sent (assistant turns carry the profile's reasoning key when it is sent back)."""
    tools: list[dict[str, Any]]
    """The OpenAI function tools offered ([] when none)."""
    mode: ThinkMode
    """The think mode, as the profile's endpoint reads it from the body."""
    tool_choice: Any
    body: dict[str, Any]
    """The whole decoded request body."""
    index: int
    """0 for the model's first call; retries count as calls."""

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools if isinstance(t.get("function"), dict)]

    @property
    def last_message(self) -> dict[str, Any]:
        return self.messages[-1] if self.messages else {}

    @property
    def tool_results(self) -> list[str]:
        """The contents of the tool messages since the last assistant turn, in order."""
        results: list[str] = []
        for message in reversed(self.messages):
            if message.get("role") == "assistant":
                break
            if message.get("role") == "tool":
                results.insert(0, message.get("content") or "")
        return results


_FakeAnswer = ScriptedTurn | Fault | str
ModelFunction = Callable[[ModelCall], _FakeAnswer | Awaitable[_FakeAnswer]]
"""What a FunctionModel calls for each request: a turn (or its content), a Fault, sync or async."""

_RETRIED = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}  # as ChatModel retries them


class FunctionModel:
    """A `ModelClient` answered in-process by `fn(call: ModelCall)`: the real agent loop, no HTTP at all.

    `fn` returns a ScriptedTurn (or a str: the content), or a Fault, which is retried as the HTTP client
    would (429/5xx and broken connections go through `on_retry` and `fn` is called again; other statuses
    raise the client's typed errors); anything `fn` raises reaches the loop. Sync or async. The model
    records its `calls`, streams the reasoning and content through `on_delta`, and reports usage as the
    scripted server does (estimated from the request's size unless the turn gives `usage`); cost is 0
    unless a `price` is given. `profile` decides how think modes and reasoning travel ("deepseek" or "vllm").
    """

    def __init__(
        self,
        fn: ModelFunction,
        *,
        profile: Literal["deepseek", "vllm"] = "deepseek",
        model: str = "deepseek-v4-flash",
        price: Price | None = None,
        check_reasoning: bool = True,
        max_retries: int = 6,
    ):
        if profile not in ("deepseek", "vllm"):
            raise ConfigError(f"profile: expected 'deepseek' or 'vllm', got {profile!r}")
        self._fn = fn
        self.profile: Profile = PROFILES[profile]
        self.model = model
        self.price = price
        self.check_reasoning = check_reasoning  # DeepSeek's 400s for requests it refuses
        self.max_retries = max_retries
        self.calls: list[ModelCall] = []
        self._dialect = profile
        self._cache = _PrefixCache()
        self._tool_call_counter = 0

    @property
    def label(self) -> str:
        return f"{type(self).__name__}:{self.model}"

    @property
    def base_url(self) -> str | None:
        return None  # no server, no /tokenize

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def resolve_model(self) -> str:
        return self.model

    def render(self, message: dict[str, Any], *, with_tools: bool) -> bytes:
        """As ChatModel renders it: earlier reasoning goes back under the profile's key when it must."""
        return render_message(self.profile, message, with_tools=with_tools)

    def request_body(
        self, messages: Sequence[bytes], *, tools_json: bytes | None, mode: ThinkMode, tool_choice: Any = None
    ) -> bytes:
        self.profile.check_tool_choice(mode, tool_choice)
        head: dict[str, Any] = {"model": self.model, **self.profile.think_params(mode)}
        if tool_choice is not None and tools_json:
            head["tool_choice"] = tool_choice
        parts = [dumps(head)[:-1]]
        if tools_json:
            parts.append(b',"tools":' + tools_json)
        parts += [b',"messages":[', b",".join(messages), b"]}"]
        return b"".join(parts)

    async def complete(
        self, body: bytes, *, on_delta: DeltaFn | None = None, on_retry: RetryFn | None = None
    ) -> AssistantTurn:
        started = time.perf_counter()
        request = json.loads(body)
        mode = ThinkMode(think_mode_of(request, self._dialect))
        attempt = 0
        while True:
            call = ModelCall(
                messages=request.get("messages", []), tools=request.get("tools") or [], mode=mode,
                tool_choice=request.get("tool_choice"), body=request, index=len(self.calls),
            )
            self.calls.append(call)
            if self.check_reasoning and self._dialect == "deepseek":
                problem = _deepseek_refusal(request, mode.value)
                if problem:
                    raise BadRequestError(f"{self.label}: the request was refused (HTTP 400): {problem}",
                                          status=400, body=problem)
            answer = await self._answer(call)
            if isinstance(answer, str):
                answer = ScriptedTurn(content=answer)
            if isinstance(answer, ScriptedTurn):
                break
            if not isinstance(answer, Fault):
                raise TypeError(f"{self.label}: expected a ScriptedTurn, a str or a Fault, got {answer!r}")
            message = self._fault(answer)
            attempt += 1
            if attempt > self.max_retries:
                raise ModelUnavailableError(f"{self.label}: gave up after {attempt} attempts; last error: {message}")
            if on_retry is not None:
                await on_retry(attempt, message, answer.retry_after or 0.0)
        turn = await self._turn(answer, call, on_delta)
        turn.duration_s = time.perf_counter() - started
        return turn

    def cost(self, usage: Usage) -> float:
        return self.price.cost(usage) if self.price is not None else 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.profile.name} {self.model} calls={len(self.calls)}>"

    # -- answering --

    async def _answer(self, call: ModelCall) -> _FakeAnswer:
        answer = self._fn(call)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

    def _fault(self, fault: Fault) -> str:
        """The retry message for a fault the HTTP client would retry; the client's typed error otherwise."""
        if fault.cut_stream:
            return "the stream ended before the turn finished"
        if fault.drop:
            return "APIConnectionError: Connection error."
        status = fault.status or 500
        detail = fault.message or _DEFAULT_MESSAGES.get(status) or _reason(status)
        if status in _RETRIED or status >= 500:
            return f"HTTP {status}: {detail}"
        where = self.label
        if status == 401:
            raise ModelAuthError(f"{where}: authentication failed (HTTP 401): {detail}", status=status, body=detail)
        if status == 402:
            raise InsufficientBalanceError(f"{where}: insufficient balance (HTTP 402): {detail}", status=status,
                                           body=detail)
        if status in (400, 422):
            raise BadRequestError(f"{where}: the request was refused (HTTP {status}): {detail}", status=status,
                                  body=detail)
        raise ModelAPIError(f"{where}: HTTP {status}: {detail}", status=status, body=detail)

    async def _turn(self, scripted: ScriptedTurn, call: ModelCall, on_delta: DeltaFn | None) -> AssistantTurn:
        thinking = call.mode is not ThinkMode.none
        reasoning = scripted.reasoning if thinking else ""
        arguments = _arguments(scripted)
        prompt = _prompt_tokens(call.body)
        hit = self._cache.hit_tokens(call.messages, prompt)
        completion = _completion_tokens(scripted, reasoning, arguments)
        raw = _usage_fields(self._dialect, prompt, hit, completion, len(reasoning) // 4, scripted.usage)
        calls = []
        for c, args in zip(scripted.tool_calls, arguments, strict=True):
            call_id = c.id
            if call_id is None:  # numbered as the scripted server numbers them
                call_id = f"call_{self._tool_call_counter}"
                self._tool_call_counter += 1
            calls.append(ToolCall(id=call_id, name=c.name, arguments=args))
        if scripted.delay_s > 0:
            await anyio.sleep(scripted.delay_s)
        if on_delta is not None:
            for piece in _split(reasoning):
                on_delta("reasoning", piece)
            for piece in _split(scripted.content):
                on_delta("content", piece)
        return AssistantTurn(
            content=scripted.content,
            reasoning=reasoning,
            tool_calls=calls,
            finish_reason=scripted.finish_reason or ("tool_calls" if calls else "stop"),
            usage=self.profile.usage(raw),
            model=self.model,
        )


class FakeModel(FunctionModel):
    """A `ModelClient` that replays a script in-process: each call takes the next entry.

    Entries are what a ScriptedModelServer script holds (ScriptedTurn, Fault, a mapping or a bare string);
    a call past the end raises `ScriptExhausted`, which ends an agent run with that error.
    """

    def __init__(
        self,
        script: Sequence[ScriptedTurn | Fault | dict | str],
        *,
        profile: Literal["deepseek", "vllm"] = "deepseek",
        model: str = "deepseek-v4-flash",
        price: Price | None = None,
        check_reasoning: bool = True,
        max_retries: int = 6,
    ):
        self._cursor = _Cursor(script, "FakeModel script")
        super().__init__(self._replay, profile=profile, model=model, price=price,
                         check_reasoning=check_reasoning, max_retries=max_retries)

    @property
    def remaining(self) -> int:
        """Script entries not yet replayed."""
        return len(self._cursor.entries) - self._cursor.position

    def _replay(self, call: ModelCall) -> _FakeAnswer:
        entry, _, _ = self._cursor.next()
        if entry is None:
            last = call.last_message
            raise ScriptExhausted(
                f"{self.label}: the script has no turn left for model call #{call.index + 1} (it holds "
                f"{len(self._cursor.entries)} entries); the last message was {last.get('role')}: "
                f"{str(last.get('content'))[:200]!r}. Add turns to the script, or end the run sooner."
            )
        return entry


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
