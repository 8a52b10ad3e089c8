"""A run's full history, turn by turn, kept from its events, and the queries Toolathlon's history tools answer.

Every turn stays here, also those that compaction or `manage_context` removed from the model's context; turn 0
is the task, turn N the N-th step. Answers keep the shape (keys, paging, previews) of Toolathlon's
`utils/aux_tools/history_tools.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .events import Event, ModelResponse, RunStarted, ToolResult

INITIAL_INPUT = "initial_input"
MESSAGE = "message_output_item"
TOOL_CALL = "tool_call_item"
TOOL_OUTPUT = "tool_call_output_item"

_KEPT_SEARCHES = 10
_KEPT_TURN_SEARCHES = 20


@dataclass(frozen=True)
class HistoryItem:
    """One thing said or done in a turn; `kind` uses Toolathlon's item type names."""

    turn: int
    kind: str
    timestamp: str
    text: str = ""
    """The message, the task, or the tool's output."""
    role: str = ""
    tool: str = ""
    arguments: str = ""
    """A tool call's arguments, as the model sent them (JSON text)."""

    @property
    def speaker(self) -> str:
        if self.kind == MESSAGE:
            return self.role or "unknown"
        return {INITIAL_INPUT: "user", TOOL_CALL: "assistant", TOOL_OUTPUT: "tool"}.get(self.kind, "unknown")

    def searchable(self) -> str:
        if self.kind == MESSAGE:
            return f"[{self.speaker}] {self.text}"
        if self.kind == TOOL_CALL:
            return f"[Tool: {self.tool}] {self.arguments}"
        return self.text

    def pretty_arguments(self) -> str:
        try:
            return json.dumps(json.loads(self.arguments), ensure_ascii=False, indent=2)
        except ValueError:
            return self.arguments


def shorten(text: str, max_length: int = 1000, keep: int = 500) -> str:
    """Head and tail of a long text, with the number of characters left out between them."""
    if len(text) <= max_length or len(text) <= keep * 2:
        return text
    return f"{text[:keep]}\n... [{len(text) - keep * 2} characters omitted] ...\n{text[-keep:]}"


def _around(text: str, start: int, end: int, size: int) -> str:
    """The match with about `size` characters around it, widened to whitespace, the match in **bold**."""
    low, high = max(0, start - size // 2), min(len(text), end + size // 2)
    while low > 0 and text[low] not in " \n\t":
        low -= 1
    while high < len(text) and text[high] not in " \n\t":
        high += 1
    shown = f"{text[low:start]}**{text[start:end]}**{text[end:high]}" if end > start else text[low:high]
    return ("..." if low > 0 else "") + shown.strip() + ("..." if high < len(text) else "")


def _keyword_preview(text: str, keywords: list[str], size: int = 50) -> str:
    lowered = text.lower()
    found = [(pos, k) for k in keywords if (pos := lowered.find(k.lower())) != -1]
    if not found:
        return text[:100] + "..." if len(text) > 100 else text
    pos, keyword = min(found)
    low, high = max(0, pos - size), min(len(text), pos + len(keyword) + size)
    return ("..." if low > 0 else "") + text[low:high] + ("..." if high < len(text) else "")


def _duration(start: str, end: str) -> str:
    try:
        seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return "unknown"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} hours {minutes} minutes"
    if minutes:
        return f"{minutes} minutes {secs} seconds"
    return f"{secs} seconds"


def _pages(total: int, per_page: int) -> int:
    return (total + per_page - 1) // per_page


class RunHistory:
    """Records a run's events (it is an event sink) and answers the history tools' questions."""

    def __init__(self) -> None:
        self.items: list[HistoryItem] = []
        self._open_turn = 1
        """The turn in progress: history tools run inside it and see the turns before it (as in Toolathlon,
        which saves a turn once it is over)."""
        self.started_at = dt.datetime.now().isoformat()
        self._searches: dict[str, dict[str, Any]] = {}
        self._turn_searches: dict[str, dict[str, Any]] = {}

    # -- recording ------------------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        stamp = dt.datetime.fromtimestamp(event.t).isoformat()
        if isinstance(event, RunStarted):
            self.started_at = stamp
            self.items.append(HistoryItem(0, INITIAL_INPUT, stamp, text=event.prompt, role="user"))
        elif isinstance(event, ModelResponse):
            self._open_turn = event.step
            if event.content:
                self.items.append(HistoryItem(event.step, MESSAGE, stamp, text=event.content, role="assistant"))
            for call in event.tool_calls:
                self.items.append(HistoryItem(event.step, TOOL_CALL, stamp, tool=call.name, arguments=call.arguments))
        elif isinstance(event, ToolResult):
            self.items.append(HistoryItem(event.step, TOOL_OUTPUT, stamp, text=event.content, tool=event.tool))

    def done(self) -> list[HistoryItem]:
        """The items of the turns that are over."""
        return [item for item in self.items if item.turn < self._open_turn]

    def turns(self) -> dict[int, list[HistoryItem]]:
        grouped: dict[int, list[HistoryItem]] = {}
        for item in self.done():
            grouped.setdefault(item.turn, []).append(item)
        return grouped

    # -- search_history -------------------------------------------------------------------------------------

    def search(self, keywords: list[str], *, use_regex: bool | None = None, page: int = 1, per_page: int = 10,
               search_id: str | None = None) -> dict[str, Any]:
        """Items matching all keywords (case-insensitive substrings, or regular expressions), paged."""
        warning = None
        cached = self._searches.get(search_id) if search_id else None
        if cached is not None:
            if keywords and keywords != cached["keywords"]:
                warning = (f"Provided keywords '{keywords}' ignored, using cached search conditions "
                           f"'{cached['keywords']}'")
            elif use_regex is not None and use_regex != cached["use_regex"]:
                warning = "Provided use_regex setting ignored, using cached setting"
            keywords, regex, per_page = cached["keywords"], cached["use_regex"], cached["per_page"]
        else:
            search_id = f"search_{uuid.uuid4().hex[:8]}"
            regex = bool(use_regex)
            if not keywords:
                return {"status": "error", "message": "Please provide keywords for search"}
        assert search_id is not None
        matches: list[tuple[HistoryItem, str]] = []
        if regex:
            patterns = []
            for keyword in keywords:
                try:
                    patterns.append(re.compile(keyword, re.IGNORECASE | re.MULTILINE))
                except re.error:
                    return {"status": "error", "message": f"Invalid regex pattern: {keyword}"}
            for item in self.done():
                text = item.searchable()
                if text and all(p.search(text) for p in patterns):
                    first = patterns[0].search(text)
                    assert first is not None
                    preview = _around(text, first.start(), first.end(), 250)
                    matches.append((item, preview[:500] + "..." if len(preview) > 500 else preview))
        else:
            lowered = [k.lower() for k in keywords]
            for item in self.done():
                text = item.searchable()
                if text and all(k in text.lower() for k in lowered):
                    matches.append((item, _keyword_preview(text, keywords)))
        now = dt.datetime.now().isoformat()
        self._searches[search_id] = {"keywords": keywords, "use_regex": regex, "per_page": per_page,
                                     "total_matches": len(matches), "last_updated": now}
        while len(self._searches) > _KEPT_SEARCHES:
            del self._searches[next(iter(self._searches))]
        skip = (page - 1) * per_page
        total_pages = _pages(len(matches), per_page)
        return {
            "search_id": search_id, "keywords": keywords, "use_regex": regex, "total_matches": len(matches),
            "total_pages": total_pages, "current_page": page, "per_page": per_page, "has_more": page < total_pages,
            "results": [{"turn": item.turn, "timestamp": item.timestamp, "role": item.speaker, "preview": preview,
                         "item_type": item.kind} for item, preview in matches[skip:skip + per_page]],
            "warning": warning,
            "search_info": {"is_cached_search": True, "last_updated": now,
                            "search_type": "regex" if regex else "keyword"},
        }

    # -- view_history_turn ----------------------------------------------------------------------------------

    def view_turn(self, turn: int, *, context_turns: int = 2, truncate: bool = True) -> dict[str, Any]:
        """A turn's items in full (or head and tail), with the turns around it."""
        turns = self.turns()
        if turn not in turns:
            return {"status": "not_found", "message": f"No records found for turn {turn}"}
        low, high = max(0, turn - context_turns), turn + context_turns
        records = []
        for number in sorted(t for t in turns if low <= t <= high):
            for item in turns[number]:
                record: dict[str, Any] = {"turn": item.turn, "timestamp": item.timestamp,
                                          "is_target": item.turn == turn}
                if item.kind == INITIAL_INPUT:
                    record.update(type="Initial Input", content=shorten(item.text) if truncate else item.text,
                                  original_length=len(item.text))
                elif item.kind == MESSAGE:
                    record.update(type="Message", role=item.speaker,
                                  content=shorten(item.text) if truncate else item.text, original_length=len(item.text))
                elif item.kind == TOOL_CALL:
                    arguments = item.pretty_arguments()
                    record.update(type="Tool Call", tool_name=item.tool,
                                  arguments=shorten(arguments) if truncate else arguments,
                                  original_length=len(arguments))
                else:
                    record.update(type="Tool Output", tool_name=item.tool,
                                  output=shorten(item.text) if truncate else item.text, original_length=len(item.text))
                records.append(record)
        return {"status": "success", "target_turn": turn, "context_range": f"Displaying turn {low} to {high}",
                "truncated": truncate, "records": records}

    # -- search_in_turn -------------------------------------------------------------------------------------

    def search_in_turn(self, turn: int | None, pattern: str | None, *, page: int = 1, per_page: int | None = None,
                       search_id: str | None = None, jump_to: str | int | None = None) -> dict[str, Any]:
        """Every match of a regular expression (plain text if it is not one) inside one turn, paged; a search id
        pages on with the page size it was made with unless another is given."""
        warning = None
        cached = self._turn_searches.get(search_id) if search_id else None
        per_page = max(1, min(per_page or (cached["per_page"] if cached else 10), 20))
        if cached is not None:
            if turn is not None and turn != cached["turn"]:
                warning = f"Provided turn '{turn}' ignored, using cached turn '{cached['turn']}'"
            elif pattern and pattern != cached["pattern"]:
                warning = f"Provided pattern '{pattern}' ignored, using cached search pattern '{cached['pattern']}'"
            turn, pattern, matches = cached["turn"], cached["pattern"], cached["matches"]
            last = max(1, _pages(len(matches), per_page))
            if jump_to == "first":
                page = 1
            elif jump_to == "last":
                page = last
            elif jump_to == "next":
                page = cached["current_page"] + 1
            elif jump_to == "prev":
                page = max(1, cached["current_page"] - 1)
            elif isinstance(jump_to, int) and not isinstance(jump_to, bool):
                page = jump_to
        else:
            if turn is None:
                return {"status": "error", "message": "Please provide the turn number"}
            if not pattern:
                return {"status": "error", "message": "Please provide the search pattern"}
            items = self.turns().get(turn)
            if not items:
                return {"status": "not_found", "message": f"No records found for turn {turn}"}
            matches = []
            for item in items:
                text, label = self._turn_text(item)
                for start, end in _find(text, pattern):
                    matches.append({"record_type": label, "position": f"Character {start}-{end}",
                                    "match_text": text[start:end], "context": _around(text, start, end, 500),
                                    "item_type": item.kind})
            search_id = f"turn_search_{uuid.uuid4().hex[:8]}"
            cached = {"turn": turn, "pattern": pattern, "matches": matches, "current_page": page, "per_page": per_page}
            self._turn_searches[search_id] = cached
            while len(self._turn_searches) > _KEPT_TURN_SEARCHES:
                del self._turn_searches[next(iter(self._turn_searches))]
        total = len(matches)
        total_pages = max(1, _pages(total, per_page))
        page = max(1, min(page, total_pages))
        cached["current_page"] = page
        start = (page - 1) * per_page
        shown = matches[start:start + per_page]
        return {
            "status": "success", "search_id": search_id, "turn": turn, "pattern": pattern, "total_matches": total,
            "warning": warning,
            "pagination": {"current_page": page, "total_pages": total_pages, "per_page": per_page,
                           "has_next": page < total_pages, "has_prev": page > 1,
                           "showing": f"{start + 1}-{start + len(shown)}" if shown else "0-0"},
            "matches": shown,
            "navigation_hint": "Use jump_to parameter to navigate: 'first', 'last', 'next', 'prev' or specific "
                               "page number",
        }

    @staticmethod
    def _turn_text(item: HistoryItem) -> tuple[str, str]:
        if item.kind == INITIAL_INPUT:
            return item.text, "Initial Input"
        if item.kind == MESSAGE:
            return item.text, f"Message ({item.speaker})"
        if item.kind == TOOL_CALL:
            return f"Tool: {item.tool}\nArguments: {item.arguments}", "Tool Call"
        return item.text, "Tool Output"

    # -- browse_history -------------------------------------------------------------------------------------

    def browse(self, *, start_turn: int = 0, end_turn: int | None = None, limit: int = 20,
               direction: str = "forward", truncate: bool = True) -> dict[str, Any]:
        """Turns in order (or newest first), each as short previews of its items."""
        turns = self.turns()
        numbers = sorted(t for t in turns if t >= 0)
        if not numbers:
            return {"status": "empty", "message": "No history records"}
        end = numbers[-1] if end_turn is None else end_turn
        selected = [t for t in numbers if start_turn <= t <= end]
        if direction == "backward":
            selected.reverse()
        selected = selected[:max(1, limit)]
        results = []
        for number in selected:
            entries: list[dict[str, Any]] = []
            for item in turns[number]:
                if item.kind == INITIAL_INPUT:
                    text = shorten(item.text) if truncate else item.text
                    entries.append({"type": "initial_input", "content": text[:200] + "..." if len(text) > 200 else text,
                                    "original_length": len(item.text)})
                elif item.kind == MESSAGE:
                    text = shorten(item.text) if truncate else item.text
                    entries.append({"role": item.speaker, "content": text[:200] + "..." if len(text) > 200 else text,
                                    "original_length": len(item.text), "truncated": truncate and len(item.text) > 1000})
                elif item.kind == TOOL_CALL:
                    entries.append({"type": "tool_call", "tool": item.tool})
                else:
                    text = shorten(item.text, 500, 250) if truncate else item.text
                    entries.append({"type": "tool_output", "preview": text[:100] + "..." if len(text) > 100 else text,
                                    "original_length": len(item.text), "truncated": truncate and len(item.text) > 500})
            results.append({"turn": number, "timestamp": turns[number][0].timestamp, "messages": entries})
        forward = direction != "backward"
        return {
            "status": "success", "direction": direction, "truncated": truncate,
            "turn_range": {"start": selected[0] if selected else start_turn, "end": selected[-1] if selected else end,
                           "total_returned": len(selected)},
            "navigation": {
                "has_more_forward": end < numbers[-1] if forward else start_turn > numbers[0],
                "has_more_backward": start_turn > numbers[0] if forward else end < numbers[-1],
                "total_turns_available": len(numbers), "first_turn": numbers[0], "last_turn": numbers[-1],
            },
            "results": results,
        }

    # -- history_stats --------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts of records, turns, roles and item types, and the time range."""
        items = self.done()
        if not items:
            return {"total_records": 0, "total_turns": 0, "date_range": None}
        stamps = sorted(item.timestamp for item in items)
        return {
            "total_records": len(items),
            "total_turns": len({item.turn for item in items}),
            "roles_distribution": dict(Counter(item.speaker for item in items)),
            "item_types_distribution": dict(Counter(item.kind for item in items)),
            "date_range": {"start": stamps[0], "end": stamps[-1], "duration": _duration(stamps[0], stamps[-1])},
        }


def _find(text: str, pattern: str) -> list[tuple[int, int]]:
    """Spans of a case-insensitive regular expression in `text`; a pattern that is not one is searched as text."""
    try:
        return [(m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE | re.MULTILINE)]
    except re.error:
        lowered, needle = text.lower(), pattern.lower()
        spans, pos = [], lowered.find(needle)
        while pos != -1:
            spans.append((pos, pos + len(needle)))
            pos = lowered.find(needle, pos + 1)
        return spans
