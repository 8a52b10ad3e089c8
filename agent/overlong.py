"""Toolathlon's overlong tool outputs: results over `BENCH_MAX_SINGLE_TURN_RETURN_CHARS` (100,000) characters are
cut to that many with a note, the full text saved as `<workspace>/.overlong_tool_outputs/<id>.json`, and read back
by regex search or by pages, each with a session to navigate (texts as in Toolathlon's overlong_tool_manager.py).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

OVERLONG_DIR = ".overlong_tool_outputs"
LIMIT_VARIABLE = "BENCH_MAX_SINGLE_TURN_RETURN_CHARS"
DEFAULT_LIMIT = 100_000
SEARCH_PAGE_SIZE = 10
MAX_SEARCH_PAGE_SIZE = 50
CONTEXT_SIZE = 1000
VIEW_PAGE_SIZE = 10_000
MAX_VIEW_PAGE_SIZE = 100_000
ACTIONS = ("next_page", "prev_page", "jump_to_page", "first_page", "last_page")

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # shortuuid's: no 0/O, 1/I/l
_ID = re.compile(f"[{_ALPHABET}]{{1,64}}")
_RULE = "=" * 80


def overlong_limit() -> int:
    """Characters a tool result may have before it is cut: `$BENCH_MAX_SINGLE_TURN_RETURN_CHARS`, else 100,000."""
    try:
        value = int(os.environ.get(LIMIT_VARIABLE, DEFAULT_LIMIT))
    except ValueError:
        return DEFAULT_LIMIT
    return value if value > 0 else DEFAULT_LIMIT


def short_id() -> str:
    """A 22-character id in shortuuid's alphabet."""
    number, digits = uuid.uuid4().int, []
    for _ in range(22):
        number, digit = divmod(number, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    return "".join(digits)


class OverlongOutputs:
    """One run's overlong outputs: the cut (a `ContextKeeper` cut), the saved files, and the reading sessions."""

    def __init__(self, folder: Path, *, limit: int | None = None, exempt: Collection[str] = ()):
        self.folder = folder
        self.limit = limit if limit is not None else overlong_limit()
        self.exempt = frozenset(exempt)
        """Tools whose results are never cut (the readers themselves: their pages are bounded already)."""
        self._searches: dict[str, dict[str, Any]] = {}
        self._views: dict[str, dict[str, Any]] = {}

    # -- the cut ----------------------------------------------------------------------------------------------

    def __call__(self, text: str, tool: str | None = None) -> tuple[str, Path | None]:
        if len(text) <= self.limit or tool in self.exempt:
            return text, None
        output_id = short_id()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{output_id}.json"
        path.write_text(text, encoding="utf-8", errors="replace")
        note = (f" ...\n\n(The output of the tool call (shortuuid identifier: {output_id}) is too long! Only the first "
                f"{self.limit} characters are shown here. The original output length is {len(text)} characters. The "
                f"full output has been saved to the file {path}. Please check this file carefully, as it may be very "
                "long!)")
        return text[: self.limit] + note, path

    def _read(self, output_id: str) -> str | None:
        if not _ID.fullmatch(output_id):
            return None
        path = self.folder / f"{output_id}.json"
        if not path.is_file():
            return None
        os.utime(path)  # Toolathlon's cleaner goes by last access
        return path.read_text(encoding="utf-8", errors="replace")

    # -- search ------------------------------------------------------------------------------------------------

    def search(self, output_id: str, pattern: str, *, page_size: int = SEARCH_PAGE_SIZE,
               context_size: int = CONTEXT_SIZE) -> str:
        """The first page of a regex search (case-insensitive, `.` matches newlines), with a session id."""
        output_id, pattern = output_id.strip(), pattern.strip()
        if not output_id:
            return "Error: shortuuid parameter is required"
        if not pattern:
            return "Error: pattern parameter is required"
        if not 1 <= page_size <= MAX_SEARCH_PAGE_SIZE:
            return f"Error: page_size must be between 1 and {MAX_SEARCH_PAGE_SIZE}"
        context_size = max(100, min(context_size, 5000))
        content = self._read(output_id)
        if content is None:
            return f"Error: No overlong tool output found for shortuuid: {output_id}"
        try:
            regex = re.compile(pattern, re.IGNORECASE | re.MULTILINE | re.DOTALL)
        except re.error as exc:
            return f"Error: Invalid regex pattern: {exc}"
        half = context_size // 2
        matches = [{
            "text": m.group(0), "start": m.start(), "end": m.end(), "line": content.count("\n", 0, m.start()) + 1,
            "before": content[max(0, m.start() - half):m.start()], "after": content[m.end():m.end() + half],
        } for m in regex.finditer(content)]
        if not matches:
            return f"No matches found for pattern '{pattern}' in shortuuid: {output_id}\nFile size: {len(content)} characters"
        session_id = uuid.uuid4().hex[:8]
        self._searches[session_id] = {"id": output_id, "pattern": pattern, "matches": matches, "page_size": page_size,
                                      "context_size": context_size, "length": len(content), "page": 1}
        return (self._search_page(session_id, 1) + f"Use search_session_id '{session_id}' with search_navigate tool "
                "for pagination\nAvailable commands: next_page, prev_page, jump_to_page, first_page, last_page")

    def search_navigate(self, session_id: str, action: str = "next_page", target_page: int | None = None) -> str:
        session_id = session_id.strip()
        if not session_id:
            return "Error: search_session_id parameter is required"
        session = self._searches.get(session_id)
        if session is None:
            return f"Error: Invalid or expired search session ID: {session_id}"
        pages = _pages(len(session["matches"]), session["page_size"])
        page = _navigate(action, session["page"], pages, target_page)
        if isinstance(page, str):
            return page
        session["page"] = page
        return (self._search_page(session_id, page) + f"Available navigation: {_moves(page, pages)}\n"
                f"Use search_session_id '{session_id}' to continue navigation")

    def _search_page(self, session_id: str, page: int) -> str:
        session = self._searches[session_id]
        matches, size = session["matches"], session["page_size"]
        first = (page - 1) * size
        lines = [f"Search Results in {session['id']} (Page {page}/{_pages(len(matches), size)})\n",
                 f"Pattern: '{session['pattern']}' | Total matches: {len(matches)} | File size: {session['length']} "
                 "chars\n", f"Search Session ID: {session_id}\n", _RULE + "\n\n"]
        for number, match in enumerate(matches[first:first + size], start=first + 1):
            shown = f"{match['before']}>>>{match['text']}<<<{match['after']}"
            if len(shown) > session["context_size"] * 2:
                shown = shown[: session["context_size"] * 2] + "...[truncated]"
            lines.append(f"Match {number} (Line ~{match['line']}, Pos {match['start']}-{match['end']}):\n"
                         f"{'-' * 60}\n{shown}\n\n")
        return "".join(lines)

    # -- view --------------------------------------------------------------------------------------------------

    def view(self, output_id: str, *, page_size: int = VIEW_PAGE_SIZE) -> str:
        """The first page of the saved output, with a session id to page on."""
        output_id = output_id.strip()
        if not output_id:
            return "Error: shortuuid parameter is required"
        if not 1 <= page_size <= MAX_VIEW_PAGE_SIZE:
            return f"Error: page_size must be between 1 and {MAX_VIEW_PAGE_SIZE}"
        content = self._read(output_id)
        if content is None:
            return f"Error: No overlong tool output found for shortuuid: {output_id}"
        session_id = uuid.uuid4().hex[:8]
        self._views[session_id] = {"id": output_id, "length": len(content), "page_size": page_size, "page": 1}
        text = self._view_page(session_id, content, 1)
        pages, end = _pages(len(content), page_size), min(page_size, len(content))
        if end < len(content):
            return (text + f"\n\n[Page 1 of {pages} - {len(content) - end} more characters available]\n"
                    f"Use view_session_id '{session_id}' with view_navigate tool for pagination\n"
                    "Available commands: next_page, prev_page, jump_to_page, first_page, last_page")
        return text + f"\n\n[End of file - {len(content)} characters total]"

    def view_navigate(self, session_id: str, action: str = "next_page", target_page: int | None = None) -> str:
        session_id = session_id.strip()
        if not session_id:
            return "Error: view_session_id parameter is required"
        session = self._views.get(session_id)
        if session is None:
            return f"Error: Invalid or expired view session ID: {session_id}"
        pages = _pages(session["length"], session["page_size"])
        page = _navigate(action, session["page"], pages, target_page)
        if isinstance(page, str):
            return page
        session["page"] = page
        content = self._read(session["id"])
        if content is None:
            return f"Error reading file for shortuuid {session['id']}: it is gone"
        text = self._view_page(session_id, content, page)
        end = min(page * session["page_size"], len(content))
        more = (f"[Page {page} of {pages} - {len(content) - end} more characters available]" if end < len(content)
                else f"[End of file reached - {len(content)} characters total]")
        return (f"{text}\n\n{more}\nAvailable navigation: {_moves(page, pages)}\n"
                f"Use view_session_id '{session_id}' to continue navigation")

    def _view_page(self, session_id: str, content: str, page: int) -> str:
        session = self._views[session_id]
        size = session["page_size"]
        start, end = (page - 1) * size, min(page * size, len(content))
        return (f"Viewing {session['id']} (Page {page}/{_pages(len(content), size)})\n"
                f"Characters {start}-{end} of {len(content)} | Lines ~{content.count(chr(10), 0, start) + 1}-"
                f"{content.count(chr(10), 0, end) + 1}\nView Session ID: {session_id}\n{_RULE}\n\n{content[start:end]}")


def _pages(total: int, size: int) -> int:
    return max(1, (total + size - 1) // size)


def _navigate(action: str, page: int, pages: int, target: int | None) -> int | str:
    """The page an action leads to, or the error text."""
    action = (action or "next_page").strip().lower()
    if action == "next_page":
        return min(page + 1, pages)
    if action == "prev_page":
        return max(page - 1, 1)
    if action == "first_page":
        return 1
    if action == "last_page":
        return pages
    if action == "jump_to_page":
        if target is None:
            return "Error: target_page parameter is required for jump_to_page action"
        if not 1 <= target <= pages:
            return f"Error: target_page {target} must be between 1 and {pages}"
        return target
    return f"Error: Invalid action '{action}'. Valid actions: {', '.join(ACTIONS)}"


def _moves(page: int, pages: int) -> str:
    return ", ".join([*(["prev_page"] if page > 1 else []), *(["next_page"] if page < pages else []),
                      "first_page", "last_page", "jump_to_page"])
