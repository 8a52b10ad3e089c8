"""How the CLI commands end: exit codes, SIGTERM taking Ctrl-C's path, and errors reported in one line."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import AgentError, ConfigError, ToolServerError

EXIT_OK, EXIT_UNFINISHED, EXIT_BAD_INPUT = 0, 1, 2
"""A run that finished (answer, claim_done); one that a limit or an error stopped; bad input."""
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[Callable[[], bool]]:
    """While inside, SIGTERM takes Ctrl-C's path; yields a function saying whether SIGTERM came.

    The signal is handed to the SIGINT handler in place (inside `anyio.run`, asyncio's: the main task is
    cancelled, so the run's cleanup closes servers and containers and the trace ends with `cancelled`,
    then KeyboardInterrupt is raised); the caller exits with EXIT_TERMINATED instead of EXIT_INTERRUPTED.
    """
    received = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received = True
        handler = signal.getsignal(signal.SIGINT)
        # Where SIGINT is ignored (a background job of a script), SIGTERM still interrupts.
        (handler if callable(handler) else signal.default_int_handler)(signal.SIGINT, frame)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield lambda: received
    finally:
        signal.signal(signal.SIGTERM, previous)


def error_exit(exc: AgentError) -> int:
    """Say `agent: error: ...` on stderr; the exit code: bad input (a task file, a model string, a server that
    would not start) is EXIT_BAD_INPUT, any other failure EXIT_UNFINISHED."""
    print(f"agent: error: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT if isinstance(exc, (ConfigError, ToolServerError)) else EXIT_UNFINISHED
