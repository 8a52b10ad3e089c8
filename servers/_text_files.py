"""Text files as the files server shows and changes them: numbered line windows and exact-match edits with diffs."""

from __future__ import annotations

import os
from dataclasses import dataclass

BINARY_PROBE = 8192
MAX_LINE_CHARS = 4000
_CHUNK = 1 << 16


class TextFileError(Exception):
    """The file cannot be shown or edited as text; the message says why."""


@dataclass
class Window:
    """What read_file shows: numbered lines and notes on what was left out."""

    text: str
    first: int  # number of the first line shown (1-based); 0 when nothing was shown
    last: int
    total: int  # lines in the file
    capped: bool  # the byte cap stopped the output early
    lossy: bool  # bytes that are not UTF-8 were replaced


def looks_binary(head: bytes) -> bool:
    return b"\0" in head[:BINARY_PROBE]


class _Lines:
    """Line reader over a descriptor that never holds more than `max_line` bytes of one line in memory."""

    def __init__(self, fd: int, max_line: int):
        self.fd, self.max_line = fd, max_line
        self.buffer, self.pos = b"", 0  # unread bytes are buffer[pos:]
        self.eof = False

    def _fill(self) -> bool:
        chunk = os.read(self.fd, _CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buffer, self.pos = self.buffer[self.pos :] + chunk, 0
        return True

    def next(self) -> tuple[bytes, int] | None:
        """The next line without its newline, and how many of its bytes were dropped; None at the end."""
        while True:
            cut = self.buffer.find(b"\n", self.pos)
            if cut >= 0:
                line, self.pos = self.buffer[self.pos : cut], cut + 1
                return line, 0
            if len(self.buffer) - self.pos > self.max_line:
                return self._long_line()
            if not self._fill():
                if self.pos < len(self.buffer):
                    line, self.pos = self.buffer[self.pos :], len(self.buffer)
                    return line, 0
                return None

    def _long_line(self) -> tuple[bytes, int]:
        kept = self.buffer[self.pos : self.pos + self.max_line]
        dropped = len(self.buffer) - self.pos - self.max_line
        self.buffer, self.pos = b"", 0
        while self._fill():
            cut = self.buffer.find(b"\n")
            if cut >= 0:
                dropped += cut
                self.pos = cut + 1
                break
            dropped += len(self.buffer)
            self.buffer = b""
        return kept, dropped

    def skip(self, count: int) -> int:
        """Pass over up to `count` lines by counting newlines chunk by chunk; returns how many it passed."""
        skipped = 0
        while skipped < count:
            newlines = self.buffer.count(b"\n", self.pos)
            if skipped + newlines >= count:
                for _ in range(count - skipped):
                    self.pos = self.buffer.find(b"\n", self.pos) + 1
                return count
            skipped += newlines
            if newlines:
                self.pos = self.buffer.rfind(b"\n") + 1
            elif len(self.buffer) - self.pos > self.max_line:
                # Inside a huge line only its end matters; one byte stays to show a line is open.
                self.buffer, self.pos = self.buffer[-1:], 0
            if not self._fill():
                if self.pos < len(self.buffer):  # a last line without newline
                    skipped += 1
                    self.pos = len(self.buffer)
                return skipped
        return skipped

    def count_rest(self) -> int:
        """Lines left (a last line without newline counts), reading in chunks."""
        count = self.buffer.count(b"\n", self.pos)
        tail = self.buffer[-1:] if self.pos < len(self.buffer) else b""
        while not self.eof:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                break
            count += chunk.count(b"\n")
            tail = chunk[-1:]
        return count + (1 if tail and tail != b"\n" else 0)


def _show(number: int, raw: bytes, dropped: int) -> tuple[str, bool]:
    text = raw.decode("utf-8", "replace")
    lossy = "\ufffd" in text and b"\xef\xbf\xbd" not in raw
    text = text.rstrip("\r")
    if len(text) > MAX_LINE_CHARS or dropped:
        kept = text[:MAX_LINE_CHARS]
        text = f"{kept}… [line cut: {len(raw) + dropped - len(kept.encode())} more bytes]"
    return f"{number:6d}\t{text}\n", lossy


def read_window(
    fd: int, *, offset: int = 1, limit: int | None = None, tail: int | None = None, max_bytes: int
) -> Window:
    """Lines offset..offset+limit-1 (or the last `tail` lines) of the file open on `fd`, `cat -n` style.

    Stops before the output passes `max_bytes` characters; the caller turns `capped` into a note on how to go on.
    """
    head = os.pread(fd, BINARY_PROBE, 0)
    if looks_binary(head):
        raise TextFileError("binary file")
    if tail is not None:
        total = _Lines(fd, MAX_LINE_CHARS * 4).count_rest()
        os.lseek(fd, 0, os.SEEK_SET)
        offset, limit = max(1, total - tail + 1), tail
    reader = _Lines(fd, MAX_LINE_CHARS * 4)
    parts: list[str] = []
    size, first, last = 0, 0, 0
    capped = lossy = False
    number = reader.skip(offset - 1)
    while True:
        item = reader.next()
        if item is None:
            return Window("".join(parts), first, last, number, capped, lossy)
        number += 1
        if limit is not None and number >= offset + limit:
            break
        shown, bad = _show(number, *item)
        if size + len(shown) > max_bytes and parts:
            capped = True
            break
        parts.append(shown)
        size += len(shown)
        lossy |= bad
        first, last = first or number, number
        if size > max_bytes:  # only possible for a first line longer than the cap: shown, then stop
            capped = True
            break
    # Lines read so far plus the ones after them, so the note can say "of N".
    return Window("".join(parts), first, last, number + reader.count_rest(), capped, lossy)


# -- edits ----------------------------------------------------------------------------------------------


@dataclass
class EditOutcome:
    new_text: str
    replacements: int


def _near_miss(text: str, old: str) -> str:
    """A hint when `old` is absent but would match with different indentation or trailing spaces."""
    wanted = [line.strip() for line in old.strip("\n").split("\n")]
    lines = text.split("\n")
    if not wanted or not wanted[0]:
        return ""
    for index in range(len(lines) - len(wanted) + 1):
        if all(lines[index + k].strip() == wanted[k] for k in range(len(wanted))):
            return (
                f"; text matching except for whitespace starts at line {index + 1}: copy it exactly "
                "(read_file shows a tab after the line number, the line's own indentation follows it)"
            )
    return ""


def apply_edits(text: str, edits: list[tuple[str, str, bool]]) -> EditOutcome:
    """Apply (old, new, replace_all) edits in order; each old text must match exactly once unless replace_all.

    Raises TextFileError naming the edit that failed; nothing is applied then.
    """
    replacements = 0
    for number, (old, new, replace_all) in enumerate(edits, start=1):
        label = f"edit {number} of {len(edits)}"
        if old == "":
            raise TextFileError(f"{label}: old_text is empty; give the exact text to replace")
        if old == new:
            raise TextFileError(f"{label}: old_text and new_text are the same, so it would change nothing")
        count = text.count(old)
        if count == 0:
            raise TextFileError(f"{label}: old_text not found{_near_miss(text, old)}")
        if count > 1 and not replace_all:
            raise TextFileError(
                f"{label}: old_text found {count} times; include more surrounding lines to make it unique, "
                "or set replace_all=true to replace every occurrence"
            )
        text = text.replace(old, new)
        replacements += count
    return EditOutcome(text, replacements)


def unified_diff(before: str, after: str, name: str, max_chars: int) -> str:
    import difflib

    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{name}", f"b/{name}", n=3
    )
    out: list[str] = []
    size = 0
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        if size + len(line) > max_chars:
            out.append(f"[diff cut at {max_chars} characters]\n")
            break
        out.append(line)
        size += len(line)
    return "".join(out)
