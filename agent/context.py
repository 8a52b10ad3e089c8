"""The conversation and its context budget: an append-only message log, capped tool outputs saved in full,
repository snapshots with diffs after edits, compaction when the window fills up, and truncation of whole turns
when the model asks for it (Toolathlon's manage_context).

Messages are never rewritten, so the prompt prefix stays byte-stable for providers' prefix caches and each
message is serialised exactly once. Compaction and truncation are the explicit exceptions, and both are traced.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import ContextOverflowError
from .repo import Pack, RepoSpec, decode_text, pack_repos
from .tokens import make_counter
from .usage import CHARS_PER_TOKEN, Usage

Render = Callable[[dict[str, Any]], bytes]
Summarise = Callable[[list[dict[str, Any]]], Awaitable[str]]
Cut = Callable[[str, str | None], tuple[str, Path | None]]
"""Another way to cut long tool results: (text, tool name) -> (what the model sees, the saved full text or None)."""

_CONTEXT_ERROR = re.compile(
    r"maximum context length|context length|context_length_exceeded|too many tokens|prompt is too long"
    r"|exceeds the (?:model's )?(?:maximum|max)", re.IGNORECASE,
)


def is_context_error(message: str) -> bool:
    """Whether an endpoint's 400 says the prompt does not fit the window."""
    return bool(_CONTEXT_ERROR.search(message))


class Conversation:
    """Append-only history; `wire` holds the rendered bytes of every message in order."""

    def __init__(self, render: Render, messages: Iterable[dict[str, Any]] = ()):
        self._render = render
        self.messages: list[dict[str, Any]] = []
        self.wire: list[bytes] = []
        self.wire_chars = 0
        for message in messages:
            self.append(message)

    def append(self, message: dict[str, Any]) -> None:
        rendered = self._render(message)
        self.messages.append(message)
        self.wire.append(rendered)
        self.wire_chars += len(rendered)

    def replace(self, messages: Iterable[dict[str, Any]]) -> None:
        """Compaction only: start again from `messages` (the prefix cache is lost once, on purpose)."""
        self.messages, self.wire, self.wire_chars = [], [], 0
        for message in messages:
            self.append(message)

    def __len__(self) -> int:
        return len(self.messages)


class ContextConfig(BaseModel):
    """How a run uses its context window (the `context:` section of a task file)."""

    model_config = ConfigDict(extra="forbid")

    window_tokens: int = Field(1_000_000, ge=1000, description="The model's context window (V4: 1M)")
    tool_output_cap_tokens: int = Field(
        25_000, ge=100, description="Longer tool results are cut; the full text is saved and can be paged"
    )
    compact_at: float = Field(0.75, gt=0, le=1, description="Compact when the prompt passes this share of the window")
    keep_recent_messages: int = Field(
        12, ge=2, description="Most messages kept verbatim at the end when compacting (fewer when they would not "
                              "fit in half of what the threshold leaves after the system prompt, task and tools)"
    )
    repos: list[RepoSpec] = Field(default_factory=list, description="Repositories packed into the first message")
    repo_budget_tokens: int = Field(400_000, ge=1000, description="Token budget of the repository snapshot")
    max_file_tokens: int = Field(60_000, ge=100, description="Files above this are packed as outlines")
    tokenizer: str | None = Field(
        None, description="How snapshot tokens are counted: a tokenizer.json path, 'server' (vLLM /tokenize), "
                          "or null for an estimate"
    )


class OutputStore:
    """Full tool outputs too long for the context, saved as files the model can page and search."""

    def __init__(self, folder: Path):
        self.folder = folder

    def save(self, text: str) -> tuple[str, Path]:
        output_id = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:12]
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{output_id}.txt"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8", errors="replace")
            tmp.replace(path)
        return output_id, path

    def path(self, output_id: str) -> Path | None:
        if not re.fullmatch(r"[0-9a-f]{12}", output_id or ""):
            return None
        path = self.folder / f"{output_id}.txt"
        return path if path.is_file() else None


@dataclass
class TokenEstimate:
    """Characters (bytes of the request body) per token, calibrated against the prompt sizes the server
    reports; `basis` says where the current figure comes from, for messages."""

    chars_per_token: float = CHARS_PER_TOKEN
    basis: str = f"a default of {CHARS_PER_TOKEN} characters per token"

    def observe(self, chars: int, tokens: int) -> None:
        if chars > 2000 and tokens > 0:
            measured = chars / tokens
            self.chars_per_token = 0.7 * self.chars_per_token + 0.3 * measured
            self.basis = "characters per token calibrated on the server's prompt counts"

    def tokens(self, chars: int) -> int:
        return int(chars / self.chars_per_token)


@dataclass
class RepoTracker:
    """Files of the repository snapshot, to report edits as diffs instead of re-packing."""

    baseline: dict[Path, str] = field(default_factory=dict)
    stats: dict[Path, tuple[int, int]] = field(default_factory=dict)
    labels: dict[Path, str] = field(default_factory=dict)
    measured: tuple[int, int] | None = None  # (request bytes, tokens) of the snapshot by a configured tokenizer

    @classmethod
    def from_pack(cls, pack: Pack) -> RepoTracker:
        tracker = cls()
        for f in pack.files:
            if f.status == "omitted" or f.source is None:
                continue
            path = f.source
            try:
                stat = path.stat()
            except OSError:
                continue
            tracker.baseline[path] = f.text
            tracker.stats[path] = (stat.st_mtime_ns, stat.st_size)
            tracker.labels[path] = f.label
        return tracker

    def changes(self) -> str:
        """Unified diffs of the files changed since the last check ('' when none)."""
        diffs: list[str] = []
        for path, before in self.baseline.items():
            try:
                stat = path.stat()
                now = (stat.st_mtime_ns, stat.st_size)
            except OSError:
                now = None
            if now == self.stats.get(path):
                continue
            label = self.labels[path]
            after = "" if now is None else _current_text(path)
            if after != before:
                diff = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                            fromfile=f"a/{label}", tofile="/dev/null" if now is None else f"b/{label}")
                diffs.append("".join(diff))
            self.baseline[path] = after
            if now is None:
                self.stats.pop(path, None)
            else:
                self.stats[path] = now
        return "\n".join(d if d.endswith("\n") else d + "\n" for d in diffs if d)


def _current_text(path: Path) -> str:
    """A packed file's text now, decoded the way packing decodes it."""
    try:
        decoded = decode_text(path.read_bytes())
    except OSError:
        return ""
    return decoded[0] if isinstance(decoded, tuple) else f"(not text any more: {decoded or 'binary'})\n"


SUMMARY_SYSTEM = (
    "You compress the middle of an agent's working session so it can continue in less context. Write a "
    "faithful, specific summary with these sections: Goals; Decisions and findings (with exact values, "
    "names, paths); Files touched (path: what changed); Open problems and next steps. Keep identifiers, "
    "numbers and error messages verbatim. Do not invent anything."
)


@dataclass
class Compaction:
    removed_messages: int
    tokens_before: int
    tokens_after: int
    summary: str


@dataclass
class TruncationRequest:
    """Turns the model asked to remove from its context (manage_context), applied before the next request."""

    method: str
    value: Any
    keep: Callable[[int], Iterable[int]]
    """Given the number of turns in the context then, the indices (from 0, oldest first) of the turns to keep."""
    preserve_system: bool = True
    at_turn: int = 0


@dataclass
class Truncation:
    """Turns removed from the context at the model's request; the full history keeps them."""

    at_turn: int
    method: str
    value: Any
    deleted_messages: int
    deleted_turns: int
    tokens_before: int
    tokens_after: int
    timestamp: str


class ContextKeeper:
    """The context policy of one run: output caps, edit diffs, compaction. The loop calls its hooks."""

    def __init__(self, config: ContextConfig, outputs: OutputStore, *, tracker: RepoTracker | None = None,
                 cut: Cut | None = None):
        self.config = config
        self.outputs = outputs
        self.cut = cut
        """Replaces the default cap of tool results (Toolathlon's overlong outputs), when set."""
        self.tracker = tracker
        self.estimate = TokenEstimate()
        if tracker is not None and tracker.measured and tracker.measured[1]:
            chars, tokens = tracker.measured
            self.estimate = TokenEstimate(chars / tokens, "characters per token of the tokenizer's count of the "
                                                          "repository snapshot")
        self.compactions: list[Compaction] = []
        self.truncations: list[Truncation] = []
        self.pending_truncation: TruncationRequest | None = None
        self.tools_chars = 0  # the serialised tool list: part of every prompt
        self._last_prompt_tokens = 0
        self._last_prompt_chars = 0
        self._compact_again_at = 0  # after a compaction that could not get under the threshold
        self.head_messages = 2  # system + first user message: never compacted

    # -- sizes --------------------------------------------------------------------------------

    @property
    def threshold(self) -> int:
        return int(self.config.window_tokens * self.config.compact_at)

    def set_tools(self, tools_json: bytes | None) -> None:
        self.tools_chars = len(tools_json or b"")

    def prompt_chars(self, conversation: Conversation) -> int:
        """Bytes of the next request that the server counts as prompt: messages and tool list."""
        return conversation.wire_chars + self.tools_chars

    def tokens_now(self, conversation: Conversation) -> int:
        """The next prompt's size: the server's last count plus an estimate of what changed since."""
        chars = self.prompt_chars(conversation)
        if not self._last_prompt_tokens:
            return self.estimate.tokens(chars)
        return max(self._last_prompt_tokens + self.estimate.tokens(chars - self._last_prompt_chars), 0)

    def observe_usage(self, prompt_chars: int, usage: Usage) -> None:
        """Calibrate on a prompt the server counted (estimated usage teaches nothing)."""
        if usage.prompt_tokens and not usage.estimated_requests:
            self.estimate.observe(prompt_chars, usage.prompt_tokens)
            self._last_prompt_tokens, self._last_prompt_chars = usage.prompt_tokens, prompt_chars

    def status(self, conversation: Conversation) -> dict[str, Any]:
        used = self.tokens_now(conversation)
        window = self.config.window_tokens
        return {
            "tokens_used": used, "window_tokens": window, "tokens_left": max(window - used, 0),
            "compact_at_tokens": self.threshold, "messages": len(conversation),
            "compactions": [{"removed_messages": c.removed_messages, "tokens_before": c.tokens_before,
                             "tokens_after": c.tokens_after} for c in self.compactions],
        }

    # -- hooks --------------------------------------------------------------------------------

    def observation(self, text: str, tool: str | None = None) -> tuple[str, Path | None]:
        """Cap a tool result; the full text is saved and the model is told how to read the rest."""
        if self.cut is not None:
            return self.cut(text, tool)
        cap = int(self.config.tool_output_cap_tokens * self.estimate.chars_per_token)
        if len(text) <= cap:
            return text, None
        output_id, path = self.outputs.save(text)
        head, tail = text[: cap * 3 // 4], text[-(cap // 4):]
        note = (f"\n\n[... output cut: {len(text):,} characters in all, {len(text) - len(head) - len(tail):,} "
                f"not shown. The full output is saved as output id {output_id} ({path}). Read it with "
                f"read_output(output_id=\"{output_id}\", offset=N) or search it with "
                f"search_output(output_id=\"{output_id}\", pattern=REGEX). ...]\n\n")
        return head + note + tail, path

    def edits(self) -> str | None:
        """A message with the diffs of packed files changed since the last step, if any."""
        if self.tracker is None:
            return None
        diff = self.tracker.changes()
        if not diff:
            return None
        text, _ = self.observation(diff)
        return f"Files of the repository snapshot changed since it was taken (diffs):\n```diff\n{text}```"

    def compaction_due(self, conversation: Conversation) -> str | None:
        """Why the conversation should be compacted before the next request, or None.

        Past the threshold, unless the last compaction could not get under it and the context has not yet grown
        half-way from there to the window; past the window, always.
        """
        tokens = self.tokens_now(conversation)
        if tokens > self.config.window_tokens:
            return "the next prompt would not fit the window"
        if tokens > self.threshold and tokens >= self._compact_again_at:
            return "the conversation passed the compaction threshold"
        return None

    def check_fits(self, conversation: Conversation) -> None:
        """Refuse, before sending, a prompt larger than the window."""
        tokens, window = self.tokens_now(conversation), self.config.window_tokens
        if tokens <= window:
            return
        fixed = self._fixed_tokens(conversation)
        raise ContextOverflowError(
            f"the next prompt needs about {tokens:,} tokens but the model's window is {window:,} "
            f"(context.window_tokens), so it was not sent. Counted as {self._counted_how()}. The system prompt, "
            f"task, repository snapshot and tool list alone take about {fixed:,} tokens and are never compacted"
            f"{'' if fixed > window else '; compaction could not make room either'}. Lower "
            f"context.repo_budget_tokens (now {self.config.repo_budget_tokens:,}) or narrow context.repos with "
            f"include/exclude, offer fewer tools, or lower context.tool_output_cap_tokens; if the model's window "
            f"is larger, raise context.window_tokens."
        )

    def _counted_how(self) -> str:
        if self._last_prompt_tokens:
            return f"the server's last prompt count plus an estimate of what was added since ({self.estimate.basis})"
        return f"an estimate ({self.estimate.basis}; the server has not counted this prompt)"

    def _fixed_tokens(self, conversation: Conversation) -> int:
        """The part compaction keeps whatever happens: head messages and tool list."""
        return self.estimate.tokens(sum(map(len, conversation.wire[: self.head_messages])) + self.tools_chars)

    def _tail_start(self, conversation: Conversation, budget: int) -> int:
        """Where the kept recent messages begin: at most keep_recent_messages and `budget` tokens, at least the
        last message, and never between tool results and the assistant turn that asked for them."""
        messages, wire, head = conversation.messages, conversation.wire, self.head_messages
        start, used = len(messages), 0
        while start > head and len(messages) - start < self.config.keep_recent_messages:
            size = self.estimate.tokens(len(wire[start - 1]))
            if used + size > budget and start < len(messages):
                break
            used, start = used + size, start - 1
        first = start
        while start < len(messages) and messages[start].get("role") == "tool":
            start += 1  # results whose call is summarised go with it
        if start == len(messages):  # ...unless that keeps nothing: then keep the whole last turn
            start = first
            while start > head and messages[start].get("role") == "tool":
                start -= 1
        return start

    async def compact(self, conversation: Conversation, summarise: Summarise) -> Compaction | None:
        """Summarise the middle of the conversation once; head and recent messages stay verbatim."""
        messages = conversation.messages
        head = messages[: self.head_messages]
        # The kept messages may fill half of what the threshold leaves after the parts never compacted.
        budget = max((self.threshold - self._fixed_tokens(conversation)) // 2, self.threshold // 8)
        start = self._tail_start(conversation, budget)
        middle, tail = messages[len(head):start], messages[start:]
        if not middle:
            return None
        before = self.tokens_now(conversation)
        summary = await summarise(middle)
        note = {"role": "user", "content": "Summary of the earlier part of this session (compacted to save context):"
                                           f"\n\n{summary}"}
        conversation.replace([*head, note, *tail])
        self._last_prompt_tokens = 0  # the server's count no longer applies
        after = self.tokens_now(conversation)
        # Still over the threshold: the next compaction waits until the context is half-way from here to the
        # window, so that it has something worth a summary call and a lost prefix cache to remove.
        window = self.config.window_tokens
        self._compact_again_at = after + (window - after) // 2 if after > self.threshold else 0
        record = Compaction(removed_messages=len(middle), tokens_before=before, tokens_after=after, summary=summary)
        self.compactions.append(record)
        return record


    # -- truncation at the model's request (manage_context) ---------------------------------------------------

    def turn_spans(self, conversation: Conversation) -> list[tuple[int, int]]:
        """(start, end) message indices of the turns after the head messages, oldest first. A turn is one
        assistant message with what follows it (tool results, user notes) up to the next assistant message;
        messages between the head and the first assistant message belong to the first turn."""
        spans: list[tuple[int, int]] = []
        messages, start = conversation.messages, self.head_messages
        seen_assistant = False
        for index in range(start, len(messages)):
            if messages[index].get("role") == "assistant":
                if seen_assistant:
                    spans.append((start, index))
                    start = index
                seen_assistant = True
        if start < len(messages):
            spans.append((start, len(messages)))
        return spans

    def apply_truncation(self, conversation: Conversation) -> Truncation | None:
        """Remove the turns a pending request drops; whole turns only, so every tool result keeps the assistant
        message that called it (and that message its reasoning), as the wire format requires."""
        request, self.pending_truncation = self.pending_truncation, None
        if request is None:
            return None
        spans = self.turn_spans(conversation)
        keep = {i for i in request.keep(len(spans)) if 0 <= i < len(spans)}
        if len(keep) >= len(spans):
            return None
        messages = conversation.messages
        kept = list(messages[: self.head_messages])
        deleted = 0
        for index, (start, end) in enumerate(spans):
            for message in messages[start:end]:
                if index in keep or (request.preserve_system and message.get("role") == "system"):
                    kept.append(message)
                else:
                    deleted += 1
        before = self.tokens_now(conversation)
        conversation.replace(kept)
        self._last_prompt_tokens = 0  # the server's count no longer applies
        record = Truncation(at_turn=request.at_turn, method=request.method, value=request.value,
                            deleted_messages=deleted, deleted_turns=len(spans) - len(keep), tokens_before=before,
                            tokens_after=self.tokens_now(conversation),
                            timestamp=dt.datetime.now().isoformat())
        self.truncations.append(record)
        return record


def transcript(messages: list[dict[str, Any]], limit_chars: int) -> str:
    """Messages as plain text for the summariser, each capped so the request fits."""
    per = max(limit_chars // max(len(messages), 1), 500)
    lines = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(part.get("text", "[image]") for part in content if isinstance(part, dict))
        text = content or ""
        for call in message.get("tool_calls") or ():
            fn = call.get("function", {})
            text += f"\n[calls {fn.get('name')} {fn.get('arguments')}]"
        if len(text) > per:
            text = text[: per // 2] + f" [... {len(text) - per:,} characters ...] " + text[-per // 2:]
        lines.append(f"## {role}\n{text}")
    return "\n\n".join(lines)


def snapshot(config: ContextConfig, *, base_url: str | None = None, model: str = "") -> tuple[str, RepoTracker | None]:
    """The repository snapshot text for the first message, and the tracker for later diffs."""
    if not config.repos:
        return "", None
    count = make_counter(config.tokenizer, base_url=base_url, model=model)
    pack = pack_repos(config.repos, budget_tokens=config.repo_budget_tokens, max_file_tokens=config.max_file_tokens,
                      count=count)
    tracker = RepoTracker.from_pack(pack)
    if config.tokenizer is not None:  # exact counts: they seed the estimate of the whole prompt
        tracker.measured = (len(json.dumps(pack.text, ensure_ascii=False).encode()), pack.tokens)
    return pack.text, tracker
