"""The conversation: an append-only message log kept with each message's wire bytes.

Messages are never rewritten, so the prompt prefix stays byte-stable for providers' prefix caches and
each message is serialised exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Render = Callable[[dict[str, Any]], bytes]


class Conversation:
    """Append-only history; `wire` holds the rendered bytes of every message in order."""

    def __init__(self, render: Render, messages: Iterable[dict[str, Any]] = ()):
        self._render = render
        self.messages: list[dict[str, Any]] = []
        self.wire: list[bytes] = []
        for message in messages:
            self.append(message)

    def append(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.wire.append(self._render(message))

    def __len__(self) -> int:
        return len(self.messages)
