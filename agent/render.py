"""Live rendering of run events for a terminal: progress on stderr, reasoning dimmed."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from .events import (
    ElicitationAnswered,
    ErrorEvent,
    Event,
    ModelDelta,
    ModelResponse,
    ModelRetry,
    RunFinished,
    RunStarted,
    SamplingAnswered,
    ServerLog,
    ServerNotice,
    ServerProgress,
    ThinkChosen,
    ToolCallStarted,
    ToolResult,
)
from .usage import ModeStats, Usage


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def usage_line(usage: Usage, cost: float, *, requests: bool = False) -> str:
    """Tokens and cost; estimated figures (the server sent no usage) carry a ~ and say so."""
    about = "~" if usage.estimated_requests else ""
    cached = f" ({usage.cache_hit_tokens / usage.prompt_tokens:.0%} cached)" if usage.prompt_tokens else ""
    count = ""
    if requests:
        failed = f" ({usage.failed_requests:,} failed)" if usage.failed_requests else ""
        count = f"{usage.requests:,} request{'' if usage.requests == 1 else 's'}{failed}, "
    line = (f"{count}{about}{usage.prompt_tokens:,} prompt tokens{cached}, {about}{usage.completion_tokens:,} "
            f"completion ({about}{usage.reasoning_tokens:,} reasoning), {about}${cost:.6f}")
    return f"{line} · {usage.note}" if usage.note else line


def think_line(stats: dict[str, ModeStats], *, estimated: bool = False) -> str:
    about = "~" if estimated else ""
    return " · ".join(f"{mode} {s.steps} steps ({about}{s.reasoning_tokens:,} reasoning tokens, {s.seconds:.1f}s)"
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
            for name, reason in event.failed_servers.items():
                detail = reason.replace("\n", "\n    ")
                self._line(self._style(f"  ✗ optional server {name!r} did not start; the run goes on without it:\n"
                                       f"    {detail}", "33"))
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
        elif isinstance(event, ServerNotice):
            self._line(self._style(f"  ! {event.message}", "33"))
        elif isinstance(event, ServerProgress):
            total = f"/{event.total:g}" if event.total is not None else ""
            message = f" {_short(event.message)}" if event.message else ""
            self._line(self._style(f"  … {event.tool} {event.progress:g}{total}{message}", "2"))
        elif isinstance(event, ServerLog):
            data = event.data if isinstance(event.data, str) else json.dumps(event.data, ensure_ascii=False)
            where = f"{event.server}" + (f"/{event.logger}" if event.logger else "")
            code = "31" if event.level in ("error", "critical", "alert", "emergency") else \
                "33" if event.level == "warning" else "2"
            self._line(self._style(f"  [{where} {event.level}] {_short(data, 300)}", code))
        elif isinstance(event, ElicitationAnswered):
            reason = f": {event.reason}" if event.reason else ""
            by = f" by {event.answered_by}" if event.answered_by not in ("nobody", "") else ""
            done = {"accept": "answered", "decline": "declined", "cancel": "cancelled"}[event.action]
            self._line(self._style(f"  ? {event.server} asked for input: {done}{by}{reason}", "36"))
        elif isinstance(event, SamplingAnswered):
            if event.ok:
                self._line(self._style(f"  ⚙ {event.server} sampled {event.model}: {_short(event.content, 120)} · "
                                       f"{usage_line(event.usage, event.cost)}", "2"))
            else:
                self._line(self._style(f"  ⚙ sampling request from {event.server} refused: {event.error}", "33"))
        elif isinstance(event, RunFinished):
            ok = event.stop_reason in ("answer", "claim_done")
            head = self._style("✔" if ok else "■", "32" if ok else "33")
            self._line(f"{head} {event.stop_reason} · {event.steps} steps, {event.tool_calls} tool calls, "
                       f"{event.duration_s:.1f}s")
            self._line(self._style(f"  {usage_line(event.usage, event.cost, requests=True)}", "2"))
            if event.think:
                estimated = bool(event.usage.estimated_requests)
                self._line(self._style(f"  think: {think_line(event.think, estimated=estimated)}", "2"))


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments
