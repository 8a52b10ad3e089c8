"""Packing repositories into the context: a file tree and every file's text, within a token budget.

The output is deterministic (sorted walk, no timestamps), so runs on the same content share a prompt prefix.
Files that do not fit become outlines (signature lines) or are omitted, and are listed so the model can
read them with the files server. Names that are not UTF-8 are shown escaped (see `shown_name`); text that is
not UTF-8 is decoded with a fallback the snapshot names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigError
from .usage import CHARS_PER_TOKEN

TokenCount = Callable[[str], int]

DEFAULT_EXCLUDES = (
    # vendored, generated and cache folders
    "node_modules/", "vendor/", "third_party/", "dist/", "build/", ".venv/", "venv/", "env/", "__pycache__/",
    ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".tox/", ".nox/", "target/", ".next/", "coverage/",
    ".idea/", ".vscode/", "*.egg-info/", ".agent/", "runs/",
    # lockfiles and minified or generated files
    "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Cargo.lock", "uv.lock", "Pipfile.lock",
    "composer.lock", "Gemfile.lock", "go.sum", "*.min.js", "*.min.css", "*.map", "*_pb2.py", "*.pyc",
)
BINARY_SNIFF = 8192
_OUTLINE = re.compile(
    r"(?m)^[ \t]*(?:(?:export\s+)?(?:async\s+)?(?:def|class|function|fn|func|interface|struct|enum|trait|impl|type"
    r"|module|public|private|protected|static)\b|#{1,6}\s|@\w).*$"
)


_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\b\x1b")


def shown_name(name: str) -> str:
    """A file name as the model sees it: bytes that are not UTF-8 (surrogate-escaped by the OS layer) become
    `\\xNN` text, the convention of the files server, which maps such a shown name back to the file.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def decode_text(data: bytes) -> tuple[str, str] | str:
    """(text, encoding) of a file's bytes: UTF-8 when valid, else cp1252, else latin-1 (which maps every
    byte); or, for data that is not text, the reason ("" for plain binaries, skipped without a word).
    """
    head = data[:BINARY_SNIFF]
    if b"\0" in head:
        return ""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    controls = sum(1 for byte in head if byte < 32 and byte not in _TEXT_CONTROLS)
    if controls > len(head) // 50:
        return f"not UTF-8 and looks binary ({controls} control bytes in the first {len(head):,} bytes)"
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:  # cp1252 leaves five bytes undefined
        return data.decode("latin-1"), "latin-1"


def estimate_tokens(text: str, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """A tokenizer-free estimate."""
    return int(len(text) / chars_per_token) + 1 if text else 0


class RepoSpec(BaseModel):
    """One repository (or folder) to pack."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    name: str | None = Field(None, description="Label in the snapshot; default: the folder name")
    include: list[str] = Field(default_factory=list, description="gitignore-style globs; if given, only these")
    exclude: list[str] = Field(default_factory=list, description="gitignore-style globs to leave out")
    default_excludes: bool = Field(True, description="Skip vendored/generated folders and lockfiles")


@dataclass
class PackedFile:
    repo: str
    path: str
    tokens: int
    size: int
    status: Literal["full", "outline", "omitted"] = "full"
    text: str = field(default="", repr=False)
    outline: str = field(default="", repr=False)
    encoding: str = "utf-8"  # what the text was decoded with (a fallback when the file is not UTF-8)
    source: Path | None = None  # the file on disk (`path` is its shown name)

    @property
    def label(self) -> str:
        return f"{self.repo}/{self.path}"


@dataclass
class Pack:
    """The snapshot text plus what went into it."""

    text: str
    tokens: int
    files: list[PackedFile]
    roots: dict[str, Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, reason) of files that are not text

    @property
    def left_out(self) -> list[PackedFile]:
        return [f for f in self.files if f.status != "full"]

    def tokens_by_folder(self, depth: int = 1) -> dict[str, int]:
        totals: dict[str, int] = {}
        for f in self.files:
            parts = f.path.split("/")
            folder = "/".join([f.repo, *parts[:depth]]) if len(parts) > depth else f"{f.repo}/(top level)"
            totals[folder] = totals.get(folder, 0) + f.tokens
        return dict(sorted(totals.items(), key=lambda item: -item[1]))


class _Ignore:
    """gitignore rules of one folder, applied to paths relative to it."""

    def __init__(self, base: str, lines: Iterable[str]):
        from pathspec import GitIgnoreSpec

        self.base = base
        self.spec = GitIgnoreSpec.from_lines(lines)

    def matches(self, rel: str, is_dir: bool) -> bool:
        local = rel[len(self.base) + 1:] if self.base else rel
        return self.spec.match_file(local + ("/" if is_dir else ""))


def walk_repo(spec: RepoSpec) -> list[tuple[str, Path]]:
    """(relative path, absolute path) of every file to consider, sorted, honouring .gitignore files."""
    from pathspec import GitIgnoreSpec

    root = spec.path.resolve()
    if not root.is_dir():
        raise ConfigError(f"context.repos: {spec.path} is not a folder")
    extra = GitIgnoreSpec.from_lines([*(DEFAULT_EXCLUDES if spec.default_excludes else ()), *spec.exclude])
    include = GitIgnoreSpec.from_lines(spec.include) if spec.include else None
    found: list[tuple[str, Path]] = []

    def visit(folder: Path, rel: str, rules: list[_Ignore]) -> None:
        gitignore = folder / ".gitignore"
        if gitignore.is_file():
            rules = [*rules, _Ignore(rel, gitignore.read_text(encoding="utf-8", errors="replace").splitlines())]
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name == ".git":
                continue
            child = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if extra.match_file(child + ("/" if is_dir else "")):
                continue
            if any(rule.matches(child, is_dir) for rule in rules):
                continue
            if is_dir:
                visit(Path(entry.path), child, rules)
            elif entry.is_file(follow_symlinks=False):
                if include is None or include.match_file(child):
                    found.append((child, Path(entry.path)))

    visit(root, "", [])
    return found


def outline(text: str) -> str:
    """Signature-like lines (def/class/function/headings...) with their line numbers."""
    lines = []
    number, position = 1, 0
    for match in _OUTLINE.finditer(text):
        number += text.count("\n", position, match.start())
        position = match.start()
        lines.append(f"{number}: {match.group().rstrip()}")
    return "\n".join(lines)


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return ticks


def pack_repos(
    specs: list[RepoSpec],
    *,
    budget_tokens: int,
    max_file_tokens: int = 60_000,
    count: TokenCount = estimate_tokens,
) -> Pack:
    """Pack repositories within `budget_tokens`.

    Fallback when they do not fit: files above `max_file_tokens` become outlines; then, largest first, files
    are demoted to outlines until the budget holds; then the largest outlines are omitted. Everything not
    included in full is listed at the end.
    """
    roots: dict[str, Path] = {}
    files: list[PackedFile] = []
    skipped: list[tuple[str, str]] = []
    for spec in specs:
        name = shown_name(spec.name or spec.path.resolve().name)
        if name in roots:
            raise ConfigError(f"context.repos: two repositories are named {name!r}; give one a `name`")
        roots[name] = spec.path.resolve()
        for rel, path in walk_repo(spec):
            shown = shown_name(rel)
            try:
                decoded = decode_text(path.read_bytes())
            except OSError as exc:
                decoded = f"unreadable ({exc.strerror or exc})"
            if isinstance(decoded, str):
                if decoded:
                    skipped.append((f"{name}/{shown}", decoded))
                continue
            text, encoding = decoded
            files.append(PackedFile(repo=name, path=shown, tokens=count(text), size=len(text), text=text,
                                    encoding=encoding, source=path))

    for f in files:
        if f.tokens > max_file_tokens:
            f.status, f.outline = "outline", outline(f.text)
    costs = {id(f): _cost(f, count) for f in files}
    used = sum(costs.values()) + 40 * len(files)  # plus headers and tree lines

    def demote(f: PackedFile, status: Literal["outline", "omitted"]) -> None:
        nonlocal used
        f.status = status
        if status == "outline":
            f.outline = outline(f.text)
        new = _cost(f, count)
        used += new - costs[id(f)]
        costs[id(f)] = new

    for f in sorted((f for f in files if f.status == "full"), key=lambda f: (-f.tokens, f.label)):
        if used <= budget_tokens:
            break
        demote(f, "outline")
    for f in sorted((f for f in files if f.status == "outline"), key=lambda f: (-costs[id(f)], f.label)):
        if used <= budget_tokens:
            break
        demote(f, "omitted")
    text = _render(files, roots, skipped)
    return Pack(text=text, tokens=count(text), files=files, roots=roots, skipped=skipped)


def _cost(f: PackedFile, count: TokenCount) -> int:
    if f.status == "full":
        return f.tokens
    if f.status == "outline":
        return count(f.outline)
    return 0


def _render(files: list[PackedFile], roots: dict[str, Path], skipped: list[tuple[str, str]]) -> str:
    parts = ["# Repository snapshot", ""]
    for name in roots:
        repo_files = [f for f in files if f.repo == name]
        parts.append(f"## {name}: file tree ({len(repo_files)} text files)")
        parts.append("")
        for f in repo_files:
            marks = [*([f"decoded as {f.encoding}"] if f.encoding != "utf-8" else []),
                     *([f.status] if f.status != "full" else [])]
            parts.append(f"{f.path}  [{', '.join(marks)}]" if marks else f.path)
        parts.append("")
    parts.append("## Files")
    parts.append("")
    for f in files:
        if f.status == "omitted":
            continue
        body = f.text if f.status == "full" else f.outline
        ticks = _fence(body)
        note = "" if f.status == "full" else " (outline: signature lines with line numbers; read the file for more)"
        if f.encoding != "utf-8":
            note = f" (not UTF-8: decoded as {f.encoding})" + note
        parts.append(f"### {f.label}{note}")
        if body:
            parts += [ticks, body, ticks, ""]  # no concatenated copy of the file's text
        else:
            parts += ["(empty)", ""]
    left = [f for f in files if f.status != "full"]
    if left or skipped:
        parts.append("## Not included in full (read these with the file tools)")
        parts.append("")
        for f in left:
            parts.append(f"- {f.label} ({f.tokens:,} tokens): {f.status}")
        for label, reason in skipped:
            parts.append(f"- {label}: skipped: {reason}")
        parts.append("")
    return "\n".join(parts)
