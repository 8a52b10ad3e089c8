"""One chat-completions client for every profile: request bodies, streaming, retries, typed errors.

The hot path sends a body that the caller built from pre-serialised messages through the OpenAI
client's low-level `post` (keeping its auth, timeouts and error types) instead of `create`, whose
per-call transform walks the whole request and grows with the history.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import anyio
import openai
from openai import AsyncOpenAI, AsyncStream

from ..errors import (
    BadRequestError,
    ConfigError,
    InsufficientBalanceError,
    ModelAPIError,
    ModelAuthError,
    ModelError,
    ModelUnavailableError,
)
from ..think import ThinkMode
from ..usage import Usage
from .base import AssistantTurn, DeltaFn, RetryFn, ToolCall, dumps, render_message
from .config import ModelConfig
from .gate import current_gate
from .profiles import PROFILES, Price, Profile, deepseek_peak

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class StreamCut(Exception):
    """The stream ended before a finish_reason: the whole request is retried."""


class ChatModel:
    """A model endpoint: renders messages for its profile, sends turns, retries, prices usage."""

    def __init__(self, config: ModelConfig, *, http_client: Any | None = None):
        self.config = config
        base = PROFILES[config.profile]
        overrides: dict[str, dict[str, Any]] = {mode: params for mode, params in config.think_params.items()}
        self.profile: Profile = replace(base, think_overrides=overrides) if overrides else base
        self.model = config.model
        key = config.resolved_api_key()
        if key is None and config.needs_key():
            raise ConfigError(
                f"model {config.label()}: {config.key_env()} is not set; export your DeepSeek API key "
                f"(or point the model at a vLLM server: vllm:http://HOST:8000/v1#MODEL)"
            )
        timeout = openai.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._client = AsyncOpenAI(
            api_key=key or "not-needed",
            base_url=config.resolved_base_url(),
            timeout=timeout,
            max_retries=0,  # retries are ours: backoff with jitter, Retry-After, cut streams, events
            default_headers=config.headers or None,
            http_client=http_client,
        )
        self._price: Price | None = config.prices or self.profile.prices.get(self.model)
        self._fixed: dict[str, Any] = {}
        for name in ("temperature", "top_p", "max_tokens", "user_id"):
            if getattr(config, name) is not None:
                self._fixed[name] = getattr(config, name)
        self._fixed.update(config.extra_body)

    @property
    def label(self) -> str:
        """The model string of this endpoint, with the model name the server resolved."""
        return self.config.model_copy(update={"model": self.model}).label()

    @property
    def base_url(self) -> str | None:
        """The endpoint's base URL (a vLLM server's also answers /tokenize)."""
        return self.config.resolved_base_url()

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> ChatModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- request bodies ---------------------------------------------------------------------

    def render(self, message: dict[str, Any], *, with_tools: bool) -> bytes:
        """Serialise one canonical history message for this profile (done once per message)."""
        return render_message(self.profile, message, with_tools=with_tools)

    def request_body(
        self,
        messages: Sequence[bytes],
        *,
        tools_json: bytes | None,
        mode: ThinkMode,
        tool_choice: Any = None,
    ) -> bytes:
        """The request body, assembled from pre-serialised parts: cost grows only with the byte count."""
        self.profile.check_tool_choice(mode, tool_choice)
        head: dict[str, Any] = {"model": self.model}
        if self.config.stream:
            head["stream"] = True
            head["stream_options"] = {"include_usage": True}
        head.update(self.profile.think_params(mode))
        head.update(self._fixed)
        if tool_choice is not None and tools_json:
            head["tool_choice"] = tool_choice
        parts = [dumps(head)[:-1]]
        if tools_json:
            parts.append(b',"tools":' + tools_json)
        parts.append(b',"messages":[')
        parts.append(b",".join(messages))
        parts.append(b"]}")
        return b"".join(parts)

    # -- sending ----------------------------------------------------------------------------

    async def resolve_model(self) -> str:
        """vLLM may leave the model out of the model string: ask the server which one it serves."""
        if not self.model:
            try:
                listing: Any = await self._client.get("/models", cast_to=object)
                self.model = listing["data"][0]["id"]
            except Exception as exc:
                raise ModelError(
                    f"model {self.config.label()}: no model name given and the server's /models did not "
                    f"name one ({exc}); add it after '#', e.g. vllm:http://host:8000/v1#deepseek-ai/DeepSeek-V4-Flash"
                ) from None
            self._price = self.config.prices or self.profile.prices.get(self.model)
        return self.model

    async def complete(
        self, body: bytes, *, on_delta: DeltaFn | None = None, on_retry: RetryFn | None = None
    ) -> AssistantTurn:
        """Send one request; retry what retrying can fix; raise typed errors for the rest."""
        attempt = 0
        gate = current_gate()  # a process- or cluster-wide admission per endpoint (agent.models.gate)
        endpoint = f"{self.base_url}#{self.model}"
        while True:
            started = time.perf_counter()
            if gate is not None:
                await gate.acquire(endpoint)
            backoff: float | None = None
            try:
                turn = await (self._stream(body, on_delta) if self.config.stream else self._once(body))
                turn.duration_s = time.perf_counter() - started
                return turn
            except Exception as exc:
                retryable, hint, message = self._classify(exc)
                if not retryable:
                    raise
                attempt += 1
                if attempt > self.config.max_retries:
                    raise ModelUnavailableError(
                        f"{self.config.label()}: gave up after {attempt} attempts; last error: {message}"
                    ) from exc
                delay = min(self.config.retry_max_s, self.config.retry_base_s * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                if hint is not None:
                    delay = min(max(hint, 0.0), self.config.retry_max_s)
                if isinstance(exc, openai.APIStatusError) and exc.status_code == 429:
                    backoff = delay  # every client behind the gate waits too
            finally:
                if gate is not None:
                    with anyio.CancelScope(shield=True):
                        await gate.release(endpoint, backoff_s=backoff)
            if on_retry is not None:
                await on_retry(attempt, message, delay)
            await anyio.sleep(delay)

    def _classify(self, exc: Exception) -> tuple[bool, float | None, str]:
        """(retry?, server-requested delay, message); non-retryable HTTP errors are re-raised typed."""
        if isinstance(exc, StreamCut):
            return True, None, str(exc)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _server_message(exc)
            if status in _RETRY_STATUS or status >= 500:
                return True, _retry_after(exc.response), f"HTTP {status}: {detail}"
            raise _typed_error(status, detail, self.config) from None
        if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
            return True, None, f"{type(exc).__name__}: {exc}"
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return True, None, f"stream error: {exc}"
        return False, None, str(exc)

    async def _stream(self, body: bytes, on_delta: DeltaFn | None) -> AssistantTurn:
        stream = await self._client.post(
            "/chat/completions", cast_to=object, content=body, stream=True, stream_cls=AsyncStream[object]
        )
        reasoning: list[str] = []
        content: list[str] = []
        calls: dict[int, list[Any]] = {}
        finish: str | None = None
        usage_raw: dict[str, Any] | None = None
        model = self.model
        keys = self.profile.reasoning_read_keys
        async with stream:
            async for chunk in stream:
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("usage"):
                    usage_raw = chunk["usage"]
                model = chunk.get("model") or model
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    for key in keys:
                        piece = delta.get(key)
                        if piece:
                            reasoning.append(piece)
                            if on_delta:
                                on_delta("reasoning", piece)
                            break
                    piece = delta.get("content")
                    if piece:
                        content.append(piece)
                        if on_delta:
                            on_delta("content", piece)
                    for tc in delta.get("tool_calls") or ():
                        slot = calls.setdefault(tc.get("index", len(calls)), ["", "", []])
                        if tc.get("id"):
                            slot[0] = tc["id"]
                        fn = tc.get("function") or {}
                        if fn.get("name"):
                            slot[1] += fn["name"]
                        if fn.get("arguments"):
                            slot[2].append(fn["arguments"])
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        if finish is None:
            raise StreamCut("the stream ended before the turn finished")
        tool_calls = [
            ToolCall(id=slot[0] or f"call_{index}", name=slot[1], arguments="".join(slot[2]))
            for index, slot in sorted(calls.items())
        ]
        turn = AssistantTurn(
            content="".join(content), reasoning="".join(reasoning), tool_calls=tool_calls, finish_reason=finish,
            model=model,
        )
        turn.usage = self._usage(usage_raw, body, turn)
        return turn

    async def _once(self, body: bytes) -> AssistantTurn:
        data = await self._client.post("/chat/completions", cast_to=object, content=body)
        if not isinstance(data, dict) or not data.get("choices"):
            raise StreamCut(f"the response carried no choices: {str(data)[:200]}")
        choice = data["choices"][0]
        message = choice.get("message") or {}
        reasoning = next((message[k] for k in self.profile.reasoning_read_keys if message.get(k)), "")
        tool_calls = [
            ToolCall(
                id=tc.get("id") or f"call_{i}",
                name=(tc.get("function") or {}).get("name", ""),
                arguments=(tc.get("function") or {}).get("arguments") or "",
            )
            for i, tc in enumerate(message.get("tool_calls") or ())  # vLLM sends [] for none
        ]
        turn = AssistantTurn(
            content=message.get("content") or "", reasoning=reasoning, tool_calls=tool_calls,
            finish_reason=choice.get("finish_reason"), model=data.get("model") or self.model,
        )
        turn.usage = self._usage(data.get("usage"), body, turn)
        return turn

    def _usage(self, raw: dict[str, Any] | None, body: bytes, turn: AssistantTurn) -> Usage:
        """The server's usage; when it sent none (llama.cpp streams), an estimate marked as one, never 0."""
        if raw:
            return self.profile.usage(raw)
        calls = sum(len(c.name) + len(c.arguments) for c in turn.tool_calls)
        return Usage.estimate(prompt_chars=len(body), reasoning_chars=len(turn.reasoning),
                              completion_chars=len(turn.content) + len(turn.reasoning) + calls)

    # -- money --------------------------------------------------------------------------------

    def cost(self, usage: Usage, when: dt.datetime | None = None) -> float:
        if self._price is None:
            return 0.0
        peak = self.profile.peak_hours and deepseek_peak(when or dt.datetime.now(dt.UTC))
        return self._price.cost(usage, peak=peak)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    try:
        text = exc.response.text
    except Exception:
        text = ""
    return text.strip()[:500] or exc.message


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    if ms := headers.get("retry-after-ms"):
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed is None:
            return None
        return max((parsed - dt.datetime.now(parsed.tzinfo or dt.UTC)).total_seconds(), 0.0)


def _typed_error(status: int, detail: str, config: ModelConfig) -> ModelAPIError:
    where = config.label()
    if status == 401:
        env = config.key_env()
        return ModelAuthError(
            f"{where}: authentication failed (HTTP 401): {detail}. Check the API key{f' in {env}' if env else ''}.",
            status=status,
            body=detail,
        )
    if status == 402:
        return InsufficientBalanceError(
            f"{where}: insufficient balance (HTTP 402): {detail}. Top up the account, then run again.",
            status=status,
            body=detail,
        )
    if status in (400, 422):
        return BadRequestError(f"{where}: the request was refused (HTTP {status}): {detail}", status=status, body=detail)
    return ModelAPIError(f"{where}: HTTP {status}: {detail}", status=status, body=detail)
