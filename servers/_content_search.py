"""Regex search over file contents in a tree, grep-style: bytes in, bounded matches with line numbers out.

Speed comes from reading each file with one or two `os.read` calls through its directory's descriptor, a
single regex (or `bytes.find` for plain text) over the whole buffer, and touching lines only around a match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.servers._text_files import BINARY_PROBE
from agent.servers._tree_walk import TreeWalk, glob_regex

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FIRST_READ = 1 << 16
MAX_LINE_CHARS = 400
_REGEX_META = frozenset(".^$*+?{}[]\\|()")


@dataclass
class Match:
    path: str  # relative to the searched folder
    line: int
    text: str
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


@dataclass
class SearchOutcome:
    matches: list[Match] = field(default_factory=list)
    files_searched: int = 0
    files_matched: int = 0
    skipped_binary: int = 0
    skipped_large: int = 0
    truncated: bool = False


class Matcher:
    """Finds the lines of a buffer that hold a match, the fastest exact way the pattern allows.

    A case-sensitive plain string is found with `bytes.find`. An ASCII regex runs on the raw bytes of an
    ASCII file, where bytes and text semantics agree; anything else is decoded and matched as text, so
    `.`, `\\w` or case folding mean what they mean in Python's `re` on str.
    """

    def __init__(self, pattern: str, *, ignore_case: bool, fixed: bool):
        flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
        source = re.escape(pattern) if fixed else pattern
        # Raises re.error for a bad pattern; the caller reports it.
        self.text_regex = re.compile(source, flags)
        plain = fixed or not (_REGEX_META & set(pattern))
        self.literal = pattern.encode() if plain and not ignore_case else None
        self.bytes_regex = re.compile(source.encode(), flags) if source.isascii() else None

    def lines(self, data: bytes, limit: int) -> tuple[bytes | str, list[tuple[int, int, int]]]:
        """Up to `limit` (line number, start, end) spans of matching lines, in the returned haystack."""
        hay: Any
        # The haystack's type follows the pattern's (bytes for the fast paths, str otherwise): Any for mypy.
        search: Callable[..., re.Match[Any] | None] | None = None
        if self.literal is not None:
            hay, needle = data, self.literal
            first = data.find(needle)
        else:
            if self.bytes_regex is not None and data.isascii():
                hay, search = data, self.bytes_regex.search
            else:
                hay, search = data.decode("utf-8", "replace"), self.text_regex.search
            m = search(hay)
            first = -1 if m is None else m.start()
        if first < 0:
            return hay, []  # the common case, kept cheap
        newline = b"\n" if isinstance(hay, bytes) else "\n"
        found: list[tuple[int, int, int]] = []
        pos, line, counted, size = 0, 1, 0, len(hay)
        while len(found) < limit and pos <= size:
            if search is None:
                start = hay.find(needle, pos)
                if start < 0:
                    break
            else:
                m = search(hay, pos)
                if m is None:
                    break
                start = m.start()
            line_start = hay.rfind(newline, 0, start) + 1
            line_end = hay.find(newline, start)
            line_end = size if line_end < 0 else line_end
            line += hay.count(newline, counted, line_start)
            counted = line_start
            found.append((line, line_start, line_end))
            pos = line_end + 1
        return hay, found


def _clip(raw: bytes | str) -> str:
    text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).rstrip("\r")
    if len(text) > MAX_LINE_CHARS:
        return f"{text[:MAX_LINE_CHARS]}… [+{len(text) - MAX_LINE_CHARS} chars]"
    return text


class _TooLarge(Exception):
    pass


def _read(name: str, dir_fd: int, max_bytes: int) -> bytes | None:
    """The whole file, or None if it cannot be read; raises _TooLarge above max_bytes."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) < _FIRST_READ:
            return data
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise _TooLarge
        chunks = [data]
        while chunk := os.read(fd, max(size - len(data), _FIRST_READ)):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def search_tree(
    walk: TreeWalk,
    matcher: Matcher,
    *,
    glob: str | None = None,
    context: int = 0,
    max_matches: int = 200,
    max_file_bytes: int = 32 << 20,
    only: str | None = None,
) -> SearchOutcome:
    """Search every file the walk reaches; binary files (a NUL byte early on) and huge ones are skipped.

    A glob without '/' filters on the file name at any depth (`*.py`); with '/', on the path relative to
    the searched folder (`src/**/*.py`). `only` limits the search to the file of that name in the top.
    """
    outcome = SearchOutcome()
    name_filter = path_filter = None
    if glob:
        compiled = glob_regex(glob).match
        if "/" in glob.strip("/"):
            path_filter = compiled
        else:
            name_filter = compiled
    matches = outcome.matches
    find_lines = matcher.lines
    for folder in walk.folders():
        fd, rel = folder.fd, folder.rel
        for name in folder.files:
            if only is not None and name != only:
                continue
            if name_filter is not None and name_filter(name) is None:
                continue
            if path_filter is not None and path_filter(rel + name) is None:
                continue
            try:
                data = _read(name, fd, max_file_bytes)
            except _TooLarge:
                outcome.skipped_large += 1
                continue
            if data is None:
                continue
            outcome.files_searched += 1
            if data.find(b"\0", 0, BINARY_PROBE) >= 0:
                outcome.skipped_binary += 1
                continue
            room = max_matches - len(matches)
            hay, found = find_lines(data, room + 1)
            if not found:
                continue
            outcome.files_matched += 1
            if len(found) > room:
                found = found[:room]
                outcome.truncated = True
            all_lines = None
            if context:
                newline = b"\n" if isinstance(hay, bytes) else "\n"
                all_lines = hay.split(newline)  # type: ignore[arg-type]
                if hay.endswith(newline):  # type: ignore[arg-type]
                    all_lines.pop()  # the empty "line" after the final newline
            for line, start, end in found:
                match = Match(rel + name, line, _clip(hay[start:end]))
                if all_lines is not None:
                    match.before = [_clip(x) for x in all_lines[max(0, line - 1 - context) : line - 1]]
                    match.after = [_clip(x) for x in all_lines[line : line + context]]
                matches.append(match)
            if outcome.truncated:
                walk.stop.set()
                return outcome
    return outcome
