"""`EventStream`: the events of one run as they happen, from a task of its own so it can be left anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .errors import AgentError
from .events import Event
from .result import RunResult

EventSink = Callable[[Event], None]


class EventStream:
    """The events of one run as they happen; `result` is the `RunResult` once the run has finished.

    Best used as `async with agent.stream(prompt) as events: async for event in events: ...`: leaving the
    block, early or not, cancels a run still going and waits until its servers are closed (the trace ends
    with `stop_reason: cancelled`). Plain `async for` works too; after breaking out, `await events.aclose()`
    does the same, and a stream dropped unclosed is cancelled when it is garbage collected. The run's
    errors are raised where the events end.

    The run goes on in a task of its own, which owns everything the run opens: the stream can then be left
    from any task, or from none (garbage collection), without exiting a cancel scope in a foreign task.
    """

    def __init__(self, start: Callable[[EventSink], Awaitable[RunResult]]):
        self._start = start
        self._run: _StreamedRun | None = None
        self._receive: MemoryObjectReceiveStream[Event] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def result(self) -> RunResult | None:
        return self._run.result if self._run else None

    async def __aenter__(self) -> EventStream:
        self._begin()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        error = await self._close()
        if error is not None and exc_type is None:
            raise error

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        self._begin()
        assert self._receive is not None and self._run is not None
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            self._closed = True
            self._receive.close()
            await self._run.done.wait()
            error = self._run.take_error()
            if error is not None:
                raise error from None
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Cancel the run if it is still going and wait until it has closed everything (idempotent)."""
        error = await self._close()
        if error is not None:
            raise error

    def _begin(self) -> None:
        if self._run is not None:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise AgentError("Agent.stream needs the asyncio event loop (anyio's default backend)") from None
        send, self._receive = anyio.create_memory_object_stream[Event](math.inf)
        self._run = _StreamedRun()
        task = self._loop.create_task(self._run.produce(self._start, send), name="agent-stream")
        _STREAM_TASKS.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(_STREAM_TASKS.discard)

    async def _close(self) -> BaseException | None:
        """Cancel and wait for the run; its error, unless the run ended because of this cancellation."""
        self._closed = True
        run, receive = self._run, self._receive
        if run is None or receive is None:
            return None
        run.scope.cancel()
        with anyio.CancelScope(shield=True):  # the servers' own shutdown is bounded
            await run.done.wait()
        receive.close()
        return run.take_error()

    def __del__(self) -> None:
        run, receive, loop = self._run, self._receive, self._loop
        if run is None or receive is None or loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: its shutdown cancelled the run
            # Not here: a finalizer may run in the middle of anyio's own bookkeeping.
            loop.call_soon_threadsafe(_abandon, run, receive)


_STREAM_TASKS: set[asyncio.Task[None]] = set()


class _StreamedRun:
    """The task side of an `EventStream`: runs the agent, sends the events, records how it ended."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.result: RunResult | None = None
        self._error: BaseException | None = None

    async def produce(self, start: Callable[[EventSink], Awaitable[RunResult]],
                      send: MemoryObjectSendStream[Event]) -> None:
        def sink(event: Event) -> None:
            with contextlib.suppress(anyio.BrokenResourceError):  # nobody listens any more
                send.send_nowait(event)

        try:
            with self.scope, send:
                self.result = await start(sink)
        except Exception as exc:
            self._error = exc
        finally:
            self.done.set()

    def take_error(self) -> BaseException | None:
        error, self._error = self._error, None
        return error


def _abandon(run: _StreamedRun, receive: MemoryObjectReceiveStream[Event]) -> None:
    if not run.done.is_set():
        run.scope.cancel()
    receive.close()
