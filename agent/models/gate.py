"""Admission of model requests: a `RequestGate` shared by every client in a process, or by a whole cluster, caps
requests per endpoint and spreads a 429's backoff to all of them. `ChatModel.complete` asks the current gate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable


@runtime_checkable
class RequestGate(Protocol):
    """Admission per endpoint (`BASE_URL#MODEL`): `acquire` before each HTTP request waits for a free slot, a
    rate token and the end of any shared backoff; `release` after it, with the backoff a 429 asked for."""

    async def acquire(self, endpoint: str) -> None: ...

    async def release(self, endpoint: str, *, backoff_s: float | None = None) -> None: ...


_current: ContextVar[RequestGate | None] = ContextVar("agent_request_gate", default=None)


@contextmanager
def request_gate(gate: RequestGate | None) -> Iterator[None]:
    """Model requests made inside (tasks started inside included) go through `gate`."""
    token = _current.set(gate)
    try:
        yield
    finally:
        _current.reset(token)


def current_gate() -> RequestGate | None:
    return _current.get()
