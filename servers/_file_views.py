"""Answers built from walking a confined tree: the directory tree text, glob matches and content search."""

from __future__ import annotations

import os
import threading
from collections import deque

from agent.servers._content_search import Matcher, SearchOutcome, search_tree
from agent.servers._path_guard import PathError, PathGuard, os_error
from agent.servers._tree_walk import (
    IgnoreRules,
    TreeWalk,
    glob_depth,
    glob_regex,
    inherited_rules,
    open_below,
)


def _walk(
    guard: PathGuard,
    real: str,
    shown: str,
    *,
    gitignore: bool,
    stop: threading.Event,
    max_depth: int | None = None,
) -> TreeWalk:
    """A TreeWalk of the directory `real`, with the .gitignore files between its root and it already loaded."""
    root = guard.root_of(real) or real
    anchor_rel = os.path.relpath(real, root).replace(os.sep, "/")
    anchor_rel = "" if anchor_rel == "." else anchor_rel
    inherited = IgnoreRules()
    try:
        if gitignore and anchor_rel:
            anchor_fd = guard.open_dir(root)
            try:
                inherited = inherited_rules(anchor_fd, anchor_rel)
            finally:
                os.close(anchor_fd)
        top_fd = guard.open_dir(real)
    except OSError as err:
        raise os_error(err, shown) from None
    return TreeWalk(
        top_fd,
        gitignore=gitignore,
        inherited=inherited,
        anchor_rel=anchor_rel,
        max_depth=max_depth,
        stop=stop,
    )


def _matches_any(filters: list, name: str, rel: str) -> bool:
    return any(match(rel if with_slash else name) for with_slash, match in filters)


def render_tree(
    guard: PathGuard,
    real: str,
    shown: str,
    max_depth: int,
    max_entries: int,
    gitignore: bool,
    exclude: list[str],
    stop: threading.Event,
) -> str:
    """The tree below `real` as indented text, filled breadth-first so a cut keeps the upper levels."""
    walk = _walk(guard, real, shown, gitignore=gitignore, stop=stop)
    filters = [("/" in p.strip("/"), glob_regex(p).match) for p in exclude if p.strip()]
    children: dict[str, list[tuple[str, str]]] = {}  # folder rel -> [(name, kind)], kind in dir/file/link
    hidden: dict[str, int] = {}
    links: dict[str, str] = {}
    queue: deque[tuple[str, int, IgnoreRules]] = deque([("", 0, walk.inherited)])
    shown_count = dirs_count = files_count = 0
    depth_cut = budget_cut = False
    with walk:
        while queue and not stop.is_set():
            rel, depth, rules = queue.popleft()
            try:
                fd = open_below(walk.top_fd, rel)
            except OSError:
                continue
            try:
                folder, sub_rules = walk.list(fd, rel, depth, rules)
                items = [(n, "dir") for n in folder.dirs] + [
                    (n, "file") for n in folder.files + folder.others
                ]
                for n in folder.symlinks:
                    items.append((n, "link"))
                    try:
                        links[rel + n] = os.readlink(n, dir_fd=fd)
                    except OSError:
                        links[rel + n] = "?"
            finally:
                os.close(fd)
            items = [(n, k) for n, k in items if not (filters and _matches_any(filters, n, rel + n))]
            items.sort(key=lambda item: (item[1] != "dir", item[0]))
            room = max_entries - shown_count
            if len(items) > room:
                hidden[rel] = len(items) - room
                items = items[:room]
                budget_cut = True
            children[rel] = items
            shown_count += len(items)
            for name, kind in items:
                if kind == "dir":
                    dirs_count += 1
                    if depth + 1 < max_depth:
                        queue.append((f"{rel}{name}/", depth + 1, sub_rules))
                    else:
                        depth_cut = True
                else:
                    files_count += 1
            if budget_cut:
                break
    unexpanded = {rel for rel, _, _ in queue}

    lines = [guard.display(real).rstrip("/") + "/"]

    def draw(rel: str, indent: str) -> None:
        items = children.get(rel, [])
        more = hidden.get(rel, 0)
        for index, (name, kind) in enumerate(items):
            last = index == len(items) - 1 and not more
            branch = "└── " if last else "├── "
            if kind == "dir":
                sub = f"{rel}{name}/"
                lines.append(f"{indent}{branch}{name}/" + (" …" if sub in unexpanded else ""))
                draw(sub, indent + ("    " if last else "│   "))
            elif kind == "link":
                lines.append(f"{indent}{branch}{name} -> {links.get(rel + name, '?')}")
            else:
                lines.append(f"{indent}{branch}{name}")
        if more:
            lines.append(f"{indent}└── … {more} more entries")

    draw("", "")
    lines.append(f"[{dirs_count} directories, {files_count} files shown]")
    if budget_cut:
        lines.append(
            f"[cut at max_entries={max_entries}: folders marked … were not opened; narrow path or raise max_entries]"
        )
    if depth_cut:
        lines.append(f"[folders at depth {max_depth} are not expanded; raise max_depth or list them]")
    return "\n".join(lines)


def find_glob(
    guard: PathGuard,
    real: str,
    shown: str,
    pattern: str,
    gitignore: bool,
    max_results: int,
    stop: threading.Event,
) -> tuple[list[str], bool]:
    """Paths below `real` (relative to it) matching the glob, and whether max_results cut the list."""
    pattern = pattern.strip()
    if not pattern:
        raise PathError("empty glob pattern; use e.g. '**/*.py'")
    parts = pattern.split("/")
    if pattern.startswith("/") or ".." in parts:
        raise PathError(
            f"glob patterns are relative to `path` and cannot leave it: {pattern!r}; pass the folder as path"
        )
    # Literal leading folders ('src/pkg/**/*.py') start the walk there instead of at the top.
    lead: list[str] = []
    while len(parts) > 1 and not any(c in parts[0] for c in "*?[]{}") and parts[0] not in ("", ".", ".."):
        lead.append(parts.pop(0))
    start = real
    if lead:
        start = guard.resolve(os.path.join(real, *lead), must_exist=False)
        if not os.path.isdir(start):
            return [], False
    prefix = "".join(f"{p}/" for p in lead)
    rest = "/".join(parts)
    regex = glob_regex(rest).match
    found: list[str] = []
    with _walk(guard, start, shown, gitignore=gitignore, stop=stop, max_depth=glob_depth(rest)) as walk:
        for folder in walk.folders():
            for name in folder.files + folder.symlinks + folder.others:
                if regex(folder.rel + name):
                    found.append(prefix + folder.rel + name)
            for name in folder.dirs:
                if regex(folder.rel + name):
                    found.append(f"{prefix}{folder.rel}{name}/")
            if len(found) > max_results:
                stop.set()
                return found[:max_results], True
    return found, False


def search(
    guard: PathGuard,
    real: str,
    shown: str,
    matcher: Matcher,
    glob: str | None,
    context: int,
    max_matches: int,
    gitignore: bool,
    stop: threading.Event,
) -> SearchOutcome:
    """search_tree over the folder `real`, or over just that file when it is one."""
    if os.path.isdir(real):
        with _walk(guard, real, shown, gitignore=gitignore, stop=stop) as walk:
            return search_tree(walk, matcher, glob=glob, context=context, max_matches=max_matches)
    parent, name = os.path.split(real)
    with _walk(guard, parent, shown, gitignore=False, stop=stop, max_depth=0) as walk:
        outcome = search_tree(walk, matcher, context=context, max_matches=max_matches, only=name)
    for match in outcome.matches:
        match.path = ""  # the searched path itself
    return outcome
