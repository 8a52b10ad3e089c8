"""Packing repositories into the context: a file tree and every file's text, within a token budget.

The output is deterministic (sorted walk, no timestamps), so runs on the same content share a prompt prefix.
Files that do not fit become outlines (signature lines) or are omitted, and are listed so the model can
read them with the files server.
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


def estimate_tokens(text: str, chars_per_token: float = 3.6) -> int:
    """A tokenizer-free estimate (DeepSeek V4 averages ~3.5-4 characters per token on code and English)."""
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


def _read_text(path: Path) -> str | None:
    """The file's text, or None for binary or undecodable files."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:BINARY_SNIFF]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


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
    for spec in specs:
        name = spec.name or spec.path.resolve().name
        if name in roots:
            raise ConfigError(f"context.repos: two repositories are named {name!r}; give one a `name`")
        roots[name] = spec.path.resolve()
        for rel, path in walk_repo(spec):
            text = _read_text(path)
            if text is None:
                continue  # binary
            files.append(PackedFile(repo=name, path=rel, tokens=count(text), size=len(text), text=text))

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
    text = _render(files, roots)
    return Pack(text=text, tokens=count(text), files=files, roots=roots)


def _cost(f: PackedFile, count: TokenCount) -> int:
    if f.status == "full":
        return f.tokens
    if f.status == "outline":
        return count(f.outline)
    return 0


def _render(files: list[PackedFile], roots: dict[str, Path]) -> str:
    parts = ["# Repository snapshot", ""]
    for name in roots:
        repo_files = [f for f in files if f.repo == name]
        parts.append(f"## {name}: file tree ({len(repo_files)} text files)")
        parts.append("")
        for f in repo_files:
            mark = "" if f.status == "full" else f"  [{f.status}]"
            parts.append(f"{f.path}{mark}")
        parts.append("")
    parts.append("## Files")
    parts.append("")
    for f in files:
        if f.status == "omitted":
            continue
        body = f.text if f.status == "full" else f.outline
        ticks = _fence(body)
        note = "" if f.status == "full" else " (outline: signature lines with line numbers; read the file for more)"
        parts.append(f"### {f.label}{note}")
        if body:
            parts += [ticks, body, ticks, ""]  # no concatenated copy of the file's text
        else:
            parts += ["(empty)", ""]
    left = [f for f in files if f.status != "full"]
    if left:
        parts.append("## Not included in full (read these with the file tools)")
        parts.append("")
        for f in left:
            parts.append(f"- {f.label} ({f.tokens:,} tokens): {f.status}")
        parts.append("")
    return "\n".join(parts)
