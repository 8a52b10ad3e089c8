"""The conversation and its context budget: an append-only message log, capped tool outputs saved in full,
repository snapshots with diffs after edits, and compaction when the window fills up.

Messages are never rewritten, so the prompt prefix stays byte-stable for providers' prefix caches and each
message is serialised exactly once. Compaction is the one explicit exception, and it is traced.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .repo import Pack, RepoSpec, pack_repos
from .tokens import make_counter

Render = Callable[[dict[str, Any]], bytes]
Summarise = Callable[[list[dict[str, Any]]], Awaitable[str]]

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
    keep_recent_messages: int = Field(12, ge=2, description="Messages kept verbatim at the end when compacting")
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
    """Characters per token, calibrated against the prompt sizes the server reports."""

    chars_per_token: float = 3.6

    def observe(self, chars: int, tokens: int) -> None:
        if chars > 2000 and tokens > 0:
            measured = chars / tokens
            self.chars_per_token = 0.7 * self.chars_per_token + 0.3 * measured

    def tokens(self, chars: int) -> int:
        return int(chars / self.chars_per_token)


@dataclass
class RepoTracker:
    """Files of the repository snapshot, to report edits as diffs instead of re-packing."""

    baseline: dict[Path, str] = field(default_factory=dict)
    stats: dict[Path, tuple[int, int]] = field(default_factory=dict)
    labels: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def from_pack(cls, pack: Pack) -> RepoTracker:
        tracker = cls()
        for f in pack.files:
            if f.status == "omitted":
                continue
            path = pack.roots[f.repo] / f.path
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
            after = "" if now is None else path.read_text(encoding="utf-8", errors="replace")
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


class ContextKeeper:
    """The context policy of one run: output caps, edit diffs, compaction. The loop calls its hooks."""

    def __init__(self, config: ContextConfig, outputs: OutputStore, *, tracker: RepoTracker | None = None):
        self.config = config
        self.outputs = outputs
        self.tracker = tracker
        self.estimate = TokenEstimate()
        self.compactions: list[Compaction] = []
        self._last_prompt_tokens = 0
        self._last_prompt_chars = 0
        self.head_messages = 2  # system + first user message: never compacted

    # -- sizes --------------------------------------------------------------------------------

    def tokens_now(self, conversation: Conversation) -> int:
        """The next prompt's size: the server's last count plus an estimate of what was appended since."""
        grown = max(conversation.wire_chars - self._last_prompt_chars, 0)
        if not self._last_prompt_tokens:
            return self.estimate.tokens(conversation.wire_chars)
        return self._last_prompt_tokens + self.estimate.tokens(grown)

    def observe_usage(self, conversation_chars: int, prompt_tokens: int) -> None:
        if prompt_tokens:
            self.estimate.observe(conversation_chars, prompt_tokens)
            self._last_prompt_tokens, self._last_prompt_chars = prompt_tokens, conversation_chars

    def status(self, conversation: Conversation) -> dict[str, Any]:
        used = self.tokens_now(conversation)
        window = self.config.window_tokens
        return {
            "tokens_used": used, "window_tokens": window, "tokens_left": max(window - used, 0),
            "compact_at_tokens": int(window * self.config.compact_at), "messages": len(conversation),
            "compactions": [{"removed_messages": c.removed_messages, "tokens_before": c.tokens_before,
                             "tokens_after": c.tokens_after} for c in self.compactions],
        }

    # -- hooks --------------------------------------------------------------------------------

    def observation(self, text: str) -> tuple[str, Path | None]:
        """Cap a tool result; the full text is saved and the model is told how to read the rest."""
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

    def needs_compaction(self, conversation: Conversation) -> bool:
        return self.tokens_now(conversation) > self.config.window_tokens * self.config.compact_at

    async def compact(self, conversation: Conversation, summarise: Summarise) -> Compaction | None:
        """Summarise the middle of the conversation once; head and recent messages stay verbatim."""
        messages = conversation.messages
        head = messages[: self.head_messages]
        start = max(len(messages) - self.config.keep_recent_messages, len(head))
        while start > len(head) and messages[start].get("role") == "tool":
            start -= 1  # never separate tool results from the assistant turn that asked for them
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
        record = Compaction(removed_messages=len(middle), tokens_before=before, tokens_after=after, summary=summary)
        self.compactions.append(record)
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
    return pack.text, RepoTracker.from_pack(pack)
