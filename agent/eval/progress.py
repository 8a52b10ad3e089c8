"""A suite's live progress: one status line redrawn on a terminal, a line per finished run otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .jobs import RunRecord
from .report import NOT_GRADED_STOPS


class Progress:
    """One status line (runs done, passes, tokens, cost, elapsed, running), redrawn on a terminal; a line
    per finished run otherwise."""

    def __init__(self, total: int, out: TextIO | None = None, *, quiet: bool = False, done: int = 0):
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.total, self.done, self.passed, self.tokens, self.cost = total, done, 0, 0, 0.0
        self.not_graded = 0
        self.quiet = quiet
        self.running = 0
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        graded = self.done - self.not_graded
        rate = f" ({self.passed / graded:.0%})" if graded else ""
        ungraded = f" · {self.not_graded} not graded" if self.not_graded else ""
        width = 20
        filled = int(width * self.done / self.total) if self.total else width
        bar = "█" * filled + "░" * (width - filled)
        return (f"{bar} {self.done}/{self.total} runs · pass {self.passed}{rate}{ungraded} · {self.tokens:,} tokens · "
                f"${self.cost:.4f} · {elapsed // 60}:{elapsed % 60:02d} · {self.running} running")

    def started_run(self) -> None:
        self.running += 1
        self._draw()

    def finished(self, record: RunRecord) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.passed += record.passed
        ungraded = record.stop_reason in NOT_GRADED_STOPS
        self.not_graded += ungraded
        self.tokens += record.usage.total_tokens
        self.cost += record.cost + record.judge_cost
        if not self.quiet:
            mark = "PASS" if record.passed else "NOT GRADED" if ungraded else "FAIL"
            why = f" — {record.failure.splitlines()[0][:140]}" if record.failure else ""
            text = f"{mark} {record.task} r{record.repeat} · {record.steps} steps · {record.wall_s:.1f}s{why}"
            self._write(text, newline=True)
        self._draw()

    def _draw(self) -> None:
        if self.tty:
            self._write(self.line(), newline=False)

    def _write(self, text: str, *, newline: bool) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + text + ("\n" if newline else ""))
        elif newline:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + self.line() + "\n")
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()
