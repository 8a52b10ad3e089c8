"""Walking a directory tree inside the roots: descriptor-based descent, .gitignore rules and glob patterns.

Symlinks are reported but never followed, and directories are opened one component at a time with
O_NOFOLLOW from a descriptor of the walk's top, so a walk cannot be led outside by a swapped directory.
"""

from __future__ import annotations

import operator
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_GITIGNORE_BYTES = 1 << 20
MAX_DEPTH = 200  # deeper folders are not entered (each level is a nested generator)
_by_name = operator.attrgetter("name")


class IgnoreFile:
    """The patterns of one .gitignore, matched against paths relative to its directory."""

    _ANY_DIR = "^(?:.+/)?"  # how pathspec starts the regex of a pattern that may match at any depth

    def __init__(self, text: str):
        import pathspec

        self._spec = pathspec.GitIgnoreSpec.from_lines(text.splitlines())
        self._by_name: re.Pattern[str] | None = None
        self._by_path: re.Pattern[str] | None = None
        self._fast = False
        patterns = [p for p in self._spec.patterns if p.include is not None and p.regex is not None]
        if not all(p.include for p in patterns):
            return  # `!` patterns make order matter: let pathspec decide pattern by pattern
        # Without negations a path is ignored as soon as any pattern matches, so all patterns can share
        # one alternation. Patterns without an inner '/' (`*.pyc`, `build/`) only look at the last name,
        # which is far cheaper than pathspec's `(?:.+/)?` prefix scanning the whole path.
        by_name, by_path = [], []
        for p in patterns:
            assert p.regex is not None  # filtered above
            regex = re.sub(r"\(\?P<\w+>", "(?:", p.regex.pattern)
            text_pattern = str(p.pattern).rstrip("/").removeprefix("**/")
            if "/" not in text_pattern and regex.startswith(self._ANY_DIR):
                by_name.append("^" + regex[len(self._ANY_DIR) :])
            else:
                by_path.append(regex)
        try:
            self._by_name = re.compile("|".join(f"(?:{r})" for r in by_name)) if by_name else None
            self._by_path = re.compile("|".join(f"(?:{r})" for r in by_path)) if by_path else None
        except re.error:
            return
        self._fast = True

    def decide(self, relpath: str, name: str) -> bool | None:
        """True: ignored; False: re-included by a `!` pattern; None: no pattern matches.

        `relpath` is relative to this file's directory and `name` is its last part; both end in '/' for
        a directory.
        """
        if self._fast:
            if self._by_name is not None and self._by_name.match(name):
                return True
            if self._by_path is not None and self._by_path.match(relpath):
                return True
            return None
        return self._spec.check_file(relpath).include


@dataclass(frozen=True)
class IgnoreRules:
    """The .gitignore files that apply below some directory, shallowest first, each with its base prefix."""

    files: tuple[tuple[str, IgnoreFile], ...] = ()

    def ignored(self, path: str, name: str) -> bool:
        """Whether `path` (relative to the walk's anchor) is ignored; `name` is its last part; dirs end in '/'."""
        for base, rules in reversed(self.files):
            if path.startswith(base):
                decision = rules.decide(path[len(base) :], name)
                if decision is not None:
                    return decision
        return False

    def with_file(self, base: str, text: str) -> IgnoreRules:
        return IgnoreRules((*self.files, (base, IgnoreFile(text))))


def _read_small(name: str, dir_fd: int) -> str | None:
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return os.read(fd, _MAX_GITIGNORE_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


@dataclass
class Folder:
    """One directory met by a walk: its descriptor (valid while the consumer handles it) and its entries."""

    fd: int
    rel: str  # relative to the walk's top, "" for the top itself, else ending in "/"
    depth: int  # 0 for the top
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # remove names to keep the walk out of them
    symlinks: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # FIFOs, sockets, devices


def open_below(top_fd: int, rel: str) -> int:
    """Open the directory `rel` (relative, '/'-separated) below `top_fd`, refusing symlinks at every step."""
    fd = os.dup(top_fd)
    try:
        for part in rel.split("/"):
            if part:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
    except OSError:
        os.close(fd)
        raise
    return fd


class TreeWalk:
    """A depth-first, name-ordered walk of the tree below one directory descriptor, which it owns.

    `anchor_rel` is the top's path relative to the directory whose .gitignore files count (the root it lies
    in), so that patterns such as `/build` anchored higher up still apply; `inherited` holds those files.
    """

    def __init__(
        self,
        top_fd: int,
        *,
        gitignore: bool = True,
        inherited: IgnoreRules | None = None,
        anchor_rel: str = "",
        max_depth: int | None = None,
        stop: threading.Event | None = None,
    ):
        self.top_fd = top_fd
        self.gitignore = gitignore
        self.inherited = inherited or IgnoreRules()
        self.anchor_prefix = anchor_rel.strip("/") + "/" if anchor_rel.strip("/") else ""
        self.max_depth = MAX_DEPTH if max_depth is None else min(max_depth, MAX_DEPTH)
        self.stop = stop or threading.Event()

    def __enter__(self) -> TreeWalk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the top descriptor, which the walk owns."""
        if self.top_fd >= 0:
            os.close(self.top_fd)
            self.top_fd = -1

    def list(self, fd: int, rel: str, depth: int, rules: IgnoreRules) -> tuple[Folder, IgnoreRules]:
        """Read one directory: its entries sorted by name, ignored ones and VCS folders left out."""
        with os.scandir(fd) as it:
            entries = sorted(it, key=_by_name)
        folder = Folder(fd=fd, rel=rel, depth=depth)
        if self.gitignore and any(e.name == ".gitignore" for e in entries):
            text = _read_small(".gitignore", fd)
            if text:
                rules = rules.with_file(self.anchor_prefix + rel, text)
        check = self.gitignore and bool(rules.files)
        prefix = self.anchor_prefix + rel
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if name in SKIPPED_DIRS or (check and rules.ignored(prefix + name + "/", name + "/")):
                        continue
                    folder.dirs.append(name)
                    continue
                if check and rules.ignored(prefix + name, name):
                    continue
                if entry.is_file(follow_symlinks=False):
                    folder.files.append(name)
                elif entry.is_symlink():
                    folder.symlinks.append(name)
                else:
                    folder.others.append(name)
            except OSError:
                continue  # vanished while we looked
        return folder, rules

    def folders(self) -> Iterator[Folder]:
        """Every directory of the tree, parents before children; prune by editing `folder.dirs`."""
        yield from self._descend(os.dup(self.top_fd), "", 0, self.inherited)

    def _descend(self, fd: int, rel: str, depth: int, rules: IgnoreRules) -> Iterator[Folder]:
        # Holds one descriptor per level, so open descriptors stay bounded by the depth of the tree.
        try:
            try:
                folder, rules = self.list(fd, rel, depth, rules)
            except OSError:
                return
            yield folder
            if depth >= self.max_depth:
                return
            for name in folder.dirs:
                if self.stop.is_set():
                    return
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                yield from self._descend(child, f"{rel}{name}/", depth + 1, rules)
        finally:
            os.close(fd)


def inherited_rules(anchor_fd: int, top_rel: str) -> IgnoreRules:
    """The .gitignore files of the anchor and of every directory between it and `top_rel` (exclusive)."""
    rules = IgnoreRules()
    parts = [p for p in top_rel.split("/") if p]
    fd = os.dup(anchor_fd)
    try:
        base = ""
        for index in range(len(parts) + 1):
            text = _read_small(".gitignore", fd)
            if text and index < len(parts):
                rules = rules.with_file(base, text)
            if index == len(parts):
                break
            child = os.open(parts[index], _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            base += parts[index] + "/"
    except OSError:
        pass
    finally:
        os.close(fd)
    return rules


# -- glob patterns ------------------------------------------------------------------------------------


def _expand_braces(pattern: str) -> list[str]:
    """`a.{py,pyi}` -> [`a.py`, `a.pyi`]; nested braces work, unbalanced ones stay literal."""
    depth, start = 0, -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner, options, level, last = pattern[start + 1 : i], [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        level += 1
                    elif c == "}":
                        level -= 1
                    elif c == "," and level == 0:
                        options.append(inner[last:j])
                        last = j + 1
                options.append(inner[last:])
                if len(options) == 1:
                    continue
                head, tail = pattern[:start], pattern[i + 1 :]
                return [x for option in options for x in _expand_braces(head + option + tail)]
    return [pattern]


def _segment_regex(segment: str) -> str:
    out, i = [], 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = segment[i + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob on '/'-separated relative paths: `*`, `?`, `[...]`, `{a,b}`, and `**` for any depth."""
    alternatives = []
    for expanded in _expand_braces(pattern.strip().lstrip("/") or "*"):
        parts = [p for p in expanded.split("/") if p]
        regex = ""
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "**":
                regex += ".*" if last else "(?:[^/]*/)*"
            else:
                regex += _segment_regex(part) + ("" if last else "/")
        alternatives.append(regex)
    return re.compile("(?:" + "|".join(alternatives) + r")\Z", re.DOTALL)


def glob_depth(pattern: str) -> int | None:
    """How many levels a glob can reach below its folder, or None when `**` makes it unbounded."""
    depths = []
    for expanded in _expand_braces(pattern.strip().lstrip("/") or "*"):
        parts = [p for p in expanded.split("/") if p]
        if "**" in parts:
            return None
        depths.append(len(parts))
    return max(depths) - 1 if depths else 0
