"""What the files tools answer: the models behind their output schemas, and grep-style text for searches."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WriteResult(BaseModel):
    path: str = Field(description="The file written, relative to the first root when inside it.")
    bytes_written: int = Field(description="Size of the new content in bytes (UTF-8).")
    created: bool = Field(description="True if the file did not exist before.")


class DirectoryResult(BaseModel):
    path: str = Field(description="The directory, relative to the first root when inside it.")
    created: bool = Field(description="False if it already existed.")


class Entry(BaseModel):
    name: str = Field(description="Entry name; directories end with '/'.")
    type: Literal["file", "directory", "symlink", "other"] = Field(
        description="Kind of entry (symlinks not followed)."
    )
    size: int | None = Field(
        description="Size in bytes for files and symlinks, null for directories or when not asked."
    )
    modified: str | None = Field(description="Last modification time, ISO 8601, null when not asked.")


class Listing(BaseModel):
    path: str = Field(description="The directory listed.")
    entries: list[Entry] = Field(description="Entries in the requested order.")
    total: int = Field(description="Number of entries in the directory.")
    truncated: bool = Field(description="True if only the first entries are included.")


class MoveResult(BaseModel):
    source: str = Field(description="Where the entry was.")
    destination: str = Field(description="Where it is now.")
    replaced: bool = Field(description="True if an existing destination was overwritten.")


class DeleteResult(BaseModel):
    path: str = Field(description="The entry deleted.")
    type: Literal["file", "directory", "symlink"] = Field(description="What it was.")


class GlobResult(BaseModel):
    pattern: str = Field(description="The glob searched for.")
    path: str = Field(description="The folder the pattern is relative to.")
    matches: list[str] = Field(
        description="Matching paths, usable as tool arguments; directories end with '/'."
    )
    truncated: bool = Field(description="True if the search stopped at max_results.")


class ContentMatch(BaseModel):
    path: str = Field(description="File holding the match, usable as a tool argument.")
    line: int = Field(description="Line number (1-based) of the line where the match starts.")
    text: str = Field(description="That line, cut at 400 characters.")
    before: list[str] = Field(default_factory=list, description="Context lines before it.")
    after: list[str] = Field(default_factory=list, description="Context lines after it.")


class SearchResult(BaseModel):
    pattern: str = Field(description="The pattern searched for.")
    path: str = Field(description="The folder or file searched.")
    matches: list[ContentMatch] = Field(description="Matching lines in path order, at most max_matches.")
    files_searched: int = Field(description="Text and binary files opened.")
    files_with_matches: int = Field(description="Files with at least one match.")
    skipped_binary: int = Field(
        description="Files skipped because they look binary (a NUL byte in the first 8 KB)."
    )
    skipped_large: int = Field(description="Files skipped because they are larger than 32 MB.")
    truncated: bool = Field(description="True if the search stopped at max_matches.")


class FileInfo(BaseModel):
    path: str = Field(description="The path as given, relative to the first root when inside it.")
    real_path: str = Field(description="Absolute path with every symlink resolved.")
    type: Literal["file", "directory", "other"] = Field(description="Kind of the (resolved) entry.")
    size: int = Field(description="Size in bytes.")
    modified: str = Field(description="Last content change, ISO 8601 with offset.")
    changed: str = Field(description="Last metadata change (ctime), ISO 8601.")
    accessed: str = Field(description="Last access, ISO 8601.")
    created: str | None = Field(description="Birth time where the platform reports it, else null.")
    permissions: str = Field(description="Permission bits as in ls, e.g. 'rw-r--r--'.")
    mode: str = Field(description="Permission bits in octal, e.g. '0644'.")
    is_symlink: bool = Field(description="True if the path itself is a symlink.")
    symlink_target: str | None = Field(description="The symlink's target as stored, if it is one.")


class RootsResult(BaseModel):
    roots: list[str] = Field(
        description="Absolute real paths this connection may use; relative paths start at the first."
    )
    source: Literal["command line", "client roots"] = Field(
        description="'client roots' when the client's roots narrowed the command-line roots."
    )


def grep_text(result: SearchResult, context: int, max_matches: int) -> str:
    """grep -rn style text: `path:line:text`, context lines as `path-line-text`, `--` between groups."""
    lines: list[str] = []
    if context:
        last_path, last_line = None, 0
        for m in result.matches:
            first = m.line - len(m.before)
            if m.path != last_path or first > last_line + 1:
                if lines:
                    lines.append("--")
                last_line = first - 1
            rows = [(m.line - len(m.before) + i, "-", t) for i, t in enumerate(m.before)]
            rows.append((m.line, ":", m.text))
            rows += [(m.line + 1 + i, "-", t) for i, t in enumerate(m.after)]
            for number, sep, text in rows:
                if number > last_line:
                    lines.append(f"{m.path}{sep}{number}{sep}{text}")
                    last_line = number
                elif sep == ":" and lines:
                    # Shown earlier as another match's context: mark it as a match now.
                    target = f"{m.path}-{number}-{text}"
                    for i in range(len(lines) - 1, -1, -1):
                        if lines[i] == target:
                            lines[i] = f"{m.path}:{number}:{text}"
                            break
            last_path = m.path
    else:
        lines = [f"{m.path}:{m.line}:{m.text}" for m in result.matches]
    skipped = []
    if result.skipped_binary:
        skipped.append(f"{result.skipped_binary} binary")
    if result.skipped_large:
        skipped.append(f"{result.skipped_large} over 32 MB")
    summary = (
        f"[{len(result.matches)} matching lines in {result.files_with_matches} files; "
        f"searched {result.files_searched} files"
        + (f", skipped {', '.join(skipped)}" if skipped else "")
        + "]"
    )
    if not result.matches:
        summary = f"no matches for {result.pattern!r} in {result.path} " + summary
    lines.append(summary)
    if result.truncated:
        lines.append(f"[stopped at max_matches={max_matches}; narrow the pattern, path or glob]")
    return "\n".join(lines)
