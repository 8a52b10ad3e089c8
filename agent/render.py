"""Live rendering of run events for a terminal: progress on stderr, reasoning dimmed."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from .events import (
    ErrorEvent,
    Event,
    ModelDelta,
    ModelResponse,
    ModelRetry,
    RunFinished,
    RunStarted,
    ThinkChosen,
    ToolCallStarted,
    ToolResult,
)
from .usage import ModeStats, Usage


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def usage_line(usage: Usage, cost: float) -> str:
    cached = f" ({usage.cache_hit_tokens / usage.prompt_tokens:.0%} cached)" if usage.prompt_tokens else ""
    return (f"{usage.prompt_tokens:,} prompt tokens{cached}, {usage.completion_tokens:,} completion "
            f"({usage.reasoning_tokens:,} reasoning), ${cost:.6f}")


def think_line(stats: dict[str, ModeStats]) -> str:
    return " · ".join(f"{mode} {s.steps} steps ({s.reasoning_tokens:,} reasoning tokens, {s.seconds:.1f}s)"
                      for mode, s in sorted(stats.items()))


class ConsoleRenderer:
    """Writes one event at a time; streamed reasoning and content appear as they arrive."""

    def __init__(self, out: TextIO | None = None, *, color: bool | None = None, show_reasoning: bool = True):
        self.out = out or sys.stderr
        self.color = self.out.isatty() if color is None else color
        self.show_reasoning = show_reasoning
        self._streaming: str | None = None

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _line(self, text: str) -> None:
        self._end_stream()
        self.out.write(text + "\n")
        self.out.flush()

    def _end_stream(self) -> None:
        if self._streaming is not None:
            self.out.write("\n")
            self._streaming = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            tools = ", ".join(event.tools) or "none"
            self._line(self._style(f"▶ run {event.run_id} · {event.model} · think {event.think}", "1"))
            self._line(self._style(f"  tools: {_short(tools, 300)}", "2"))
        elif isinstance(event, ThinkChosen):
            self._line(self._style(f"── step {event.step} · think {event.mode} ({event.reason})", "36"))
        elif isinstance(event, ModelDelta):
            if event.kind == "reasoning" and not self.show_reasoning:
                return
            if self._streaming != event.kind:
                self._end_stream()
                self._streaming = event.kind
                self.out.write("  ")
            text = event.text.replace("\n", "\n  ")
            self.out.write(self._style(text, "2") if event.kind == "reasoning" else text)
            self.out.flush()
        elif isinstance(event, ModelRetry):
            self._line(self._style(f"  ↻ retry {event.attempt} in {event.delay_s:.1f}s: {_short(event.error)}", "33"))
        elif isinstance(event, ModelResponse):
            self._end_stream()
            if event.usage.requests:
                self._line(self._style(f"  · {usage_line(event.usage, event.cost)}, {event.duration_s:.2f}s", "2"))
        elif isinstance(event, ToolCallStarted):
            self._line(f"  → {event.tool} {_short(_compact(event.arguments), 200)}")
        elif isinstance(event, ToolResult):
            mark = self._style("✗", "31") if event.is_error else self._style("←", "32")
            self._line(f"  {mark} {event.tool} {event.duration_s * 1000:.0f} ms: {_short(event.content)}")
        elif isinstance(event, ErrorEvent):
            self._line(self._style(f"✗ {event.kind}: {event.message}", "31"))
        elif isinstance(event, RunFinished):
            ok = event.stop_reason in ("answer", "claim_done")
            head = self._style("✔" if ok else "■", "32" if ok else "33")
            self._line(f"{head} {event.stop_reason} · {event.steps} steps, {event.tool_calls} tool calls, "
                       f"{event.duration_s:.1f}s")
            self._line(self._style(f"  {usage_line(event.usage, event.cost)}", "2"))
            if event.think:
                self._line(self._style(f"  think: {think_line(event.think)}", "2"))


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments
