"""The terminal a person answers on (approvals, servers' questions): whether stdin is one, one line at a time
without blocking the event loop, and one question at a time across every asker of a run."""

from __future__ import annotations

import os
from typing import TextIO

import anyio
from anyio.lowlevel import RunVar

_lock: RunVar[anyio.Lock] = RunVar("agent_terminal_lock")


def terminal_fd(stdin: TextIO) -> int | None:
    """The file descriptor of `stdin` when it is a terminal; None for a pipe, a file or no stdin at all."""
    try:
        fd = stdin.fileno()
        return fd if os.isatty(fd) else None
    except (AttributeError, OSError, ValueError):
        return None


def terminal_lock() -> anyio.Lock:
    """One question on the terminal at a time (an approval and a server's form would interleave their
    prompts); one lock per event loop."""
    try:
        return _lock.get()
    except LookupError:
        lock = anyio.Lock()
        _lock.set(lock)
        return lock


async def read_line(fd: int) -> str | None:
    """One line from `fd`, byte by byte so nothing past it is consumed; None at end of input."""
    data = bytearray()
    while True:
        await anyio.wait_readable(fd)
        try:
            byte = os.read(fd, 1)
        except OSError:  # EIO: the terminal hung up
            byte = b""
        if not byte:
            return data.decode(errors="replace") if data else None
        if byte == b"\n":
            return data.decode(errors="replace")
        data += byte
