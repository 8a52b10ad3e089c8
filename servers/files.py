"""The files MCP server: read, write, edit, list and search files, confined to the allowed roots.

Run alone: `agent server files ROOT [ROOT ...] [--alias /data=ROOT] [--http HOST:PORT]` (stdio by default). Tools that
return file content, diffs or trees answer in plain text; tools that return facts about files also
return structured content with an output schema. Work that grows with file or tree size runs in a
worker thread, so one big search does not stall other calls.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import functools
import inspect
import logging
import os
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    TextContent,
    ToolAnnotations,
)
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from agent.servers._byte_names import show, show_all
from agent.servers._client_log import ClientLog, PerConnection
from agent.servers._content_search import Matcher
from agent.servers._file_results import (
    ContentMatch,
    DeleteResult,
    DirectoryResult,
    Entry,
    FileInfo,
    GlobResult,
    Listing,
    MoveResult,
    RootsResult,
    SearchResult,
    WriteResult,
    grep_text,
)
from agent.servers._file_views import find_glob, render_tree, search
from agent.servers._http import TOKEN_ENV, bearer_auth, check_exposure, host_port_argument, url_of
from agent.servers._path_guard import PathError, PathGuard, PathRefused, os_error
from agent.servers._text_files import TextFileError, apply_edits, looks_binary, read_window, unified_diff
from agent.version import package_version

DEFAULT_MAX_READ_CHARS = 256 * 1024
DEFAULT_MAX_MEDIA_BYTES = 10 * 1024 * 1024
MAX_EDIT_BYTES = 16 * 1024 * 1024
MAX_LIST_ENTRIES = 2000

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class AliasedGuard(PathGuard):
    """A guard whose roots also answer to other absolute paths: with `/data` aliasing a root, `/data/x` is the
    root's `x`, and paths below that root are shown as `/data/...` (benchmarks' prompts name `/data/<file>`
    while each run works on its own copy)."""

    aliases: tuple[tuple[str, str], ...] = ()  # (alias, real root), longest alias first

    def _join(self, path: str) -> str:
        for alias, root in self.aliases:
            if path == alias or path.startswith(alias + "/"):
                return root + path[len(alias):]
        return super()._join(path)

    def display(self, real: str) -> str:
        for alias, root in self.aliases:
            if real == root:
                return alias
            if real.startswith(root.rstrip(os.sep) + os.sep):
                return alias.rstrip("/") + real[len(root.rstrip(os.sep)):]
        return super().display(real)

    def _refuse_outside(self, path: str, absolute: str, real: str) -> PathRefused:
        refusal = super()._refuse_outside(path, absolute, real)
        text = str(refusal)
        for alias, root in self.aliases:  # name the roots as the client knows them
            text = text.replace(root, alias)
        return PathRefused(text)


def root_names(guard: PathGuard) -> list[str]:
    """The allowed roots as the client should name them: an aliased root by its alias."""
    aliases = dict((root, alias) for alias, root in getattr(guard, "aliases", ()))
    return [aliases.get(root, root) for root in guard.roots]


def parse_aliases(values: Sequence[str], roots: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`ALIAS[=ROOT]` arguments (default ROOT: the first root) as (alias, real root) pairs; ValueError when an
    alias is not an absolute path or its root is not one of `roots` (real paths)."""
    pairs = []
    for value in values:
        alias, _, target = value.partition("=")
        alias = alias.rstrip("/")
        if not alias.startswith("/") or alias == "":
            raise ValueError(f"--alias {value!r}: the alias must be an absolute path such as /data")
        root = os.path.realpath(os.path.expanduser(target)) if target else (roots[0] if roots else "")
        if root not in roots:
            raise ValueError(f"--alias {value!r}: {target or root!r} is not one of the roots")
        pairs.append((alias, root))
    return tuple(sorted(pairs, key=lambda pair: len(pair[0]), reverse=True))


def _result(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=model.model_dump(mode="json")
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _join(base: str, rel: str) -> str:
    return rel if base == "." else f"{base.rstrip('/')}/{rel}"


# -- tool registration ----------------------------------------------------------------------------------

_READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def _tool(title: str, annotations: ToolAnnotations, *, structured: bool) -> Callable[[T], T]:
    """Mark a FileTools method as a tool; build_server registers every marked method."""

    def mark(fn: T) -> T:
        fn.__mcp_tool__ = (title, annotations.model_copy(update={"title": title}), structured)  # type: ignore[attr-defined]
        return fn

    return mark


def _shown(result: T) -> T:
    """A tool's answer with undecodable bytes of file names escaped as \\xNN, so JSON can carry it."""
    if isinstance(result, str):
        return show(result)  # type: ignore[return-value]
    if isinstance(result, CallToolResult):
        content = [
            block.model_copy(update={"text": show(block.text)}) if isinstance(block, TextContent) else block
            for block in result.content
        ]
        return result.model_copy(
            update={"content": content, "structured_content": show_all(result.structured_content)}
        )
    return result


def _reported(log: ClientLog, name: str, method: Callable[..., Any], *, writes: bool) -> Callable[..., Any]:
    """The tool `method`, its answer made safe for JSON and its failures sent to the client's log.

    Refused paths are warnings, failed changes errors, other failures (a missing file, say) info.
    """

    @functools.wraps(method)
    async def run(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        try:
            return _shown(await method(*args, **kwargs))
        except ToolError as err:
            message = show(str(err))
            err.args = (message,)
            if isinstance(err, PathRefused):
                await log.warning(ctx, f"{name} refused: {message}")
            elif writes:
                await log.error(ctx, f"{name} failed: {message}")
            else:
                await log.info(ctx, f"{name} failed: {message}")
            raise
        except Exception as err:  # the client only sees "Error executing tool"; its log says a little more
            await log.error(ctx, f"{name} failed unexpectedly: {type(err).__name__}")
            raise

    return run


async def _in_thread(work: Callable[[threading.Event], T]) -> T:
    """Run blocking file work in a worker thread; on cancellation the work sees `stop` set and winds down."""
    stop = threading.Event()
    try:
        return await anyio.to_thread.run_sync(work, stop, abandon_on_cancel=True)
    finally:
        stop.set()


PathArg = Annotated[
    str,
    Field(description="File path: absolute, or relative to the first allowed root (see list_allowed_roots)."),
]
FolderArg = Annotated[
    str,
    Field(
        description="Directory path: absolute, or relative to the first allowed root. Default: the first root."
    ),
]


class EditSpec(BaseModel):
    old_text: str = Field(
        description="Exact text to replace, including indentation and line breaks; must be non-empty."
    )
    new_text: str = Field(description="Text to put in its place (may be empty to delete).")
    replace_all: bool = Field(
        default=False, description="Replace every occurrence; otherwise old_text must occur exactly once."
    )


class FileTools:
    """The tools, bound to the command-line roots; a session's client roots may narrow them."""

    def __init__(
        self,
        guard: PathGuard,
        *,
        client_roots: str,
        max_read_chars: int,
        max_media_bytes: int,
        log: ClientLog,
    ):
        self.guard = guard
        self.log = log
        self.client_roots = client_roots
        self.max_read_chars = max_read_chars
        self.max_media_bytes = max_media_bytes
        self._session_guards: PerConnection[PathGuard] = PerConnection()

    # -- roots ---------------------------------------------------------------------------------------------

    async def _guard(self, ctx: Context) -> PathGuard:
        """The guard for this call: the command-line roots, narrowed by the client's roots where it has some.

        Roots can only be asked for on handshake-era connections (protocol up to 2025-11-25) whose client
        declared the capability; on 2026-07-28 the server has no way to ask, so the command line rules. A
        client that lists no roots at all (the MCP Inspector does) keeps the command line too, as the
        reference filesystem server does: an empty list never narrows to nothing.
        """
        if self.client_roots == "ignore":
            return self.guard
        try:
            version = ctx.protocol_version
            capabilities = ctx.client_capabilities
            session = ctx.session
        except (AttributeError, LookupError, ValueError):
            return self.guard
        if version not in HANDSHAKE_PROTOCOL_VERSIONS or capabilities is None or capabilities.roots is None:
            return self.guard
        cached = self._session_guards.get(session)
        if cached is not None:
            return cached
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # roots are deprecated in 2026-07-28, still fine before it
                listed = await session.list_roots()
        except Exception:
            guard = self.guard  # a client that declares roots but cannot list them keeps the command line
        else:
            uris = [str(root.uri) for root in listed.roots]
            guard = self._narrow(uris) if uris else self.guard
            if not uris:
                await self.log.info(ctx, "the client lists no roots: the command-line roots stay allowed")
            elif guard.roots != self.guard.roots:
                shown = ", ".join(root_names(guard)) or "none"
                await self.log.info(ctx, f"the client's roots narrow the allowed roots to: {shown}")
        self._session_guards.set(session, guard)
        return guard

    def _narrow(self, uris: list[str]) -> PathGuard:
        """Roots inside both the command line's and the client's: a client can narrow, never widen."""
        from urllib.parse import unquote, urlparse

        narrowed: list[str] = []
        for uri in uris:
            parsed = urlparse(uri)
            if parsed.scheme != "file":
                continue
            real = os.path.realpath(unquote(parsed.path, errors="surrogateescape"))  # names are bytes
            if self.guard.contains(real) and os.path.isdir(real):
                narrowed.append(real)
            else:
                prefix = real.rstrip(os.sep) + os.sep
                narrowed.extend(root for root in self.guard.roots if root.startswith(prefix))
        return dataclasses.replace(self.guard, roots=tuple(dict.fromkeys(narrowed)))

    async def forget_roots(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        """Server middleware: drop a session's cached roots when the client says they changed."""
        if getattr(ctx, "method", None) == "notifications/roots/list_changed":
            self._session_guards.forget(getattr(ctx, "session", None))
        return await call_next(ctx)

    # -- reading ---------------------------------------------------------------------------------------------

    async def read_resource(self, path: str, ctx: Context) -> str:
        """The resource template `file:///{+path}`: a text file below the roots, whole, confined as the tools are
        (hosts and `@files:file:///...` mentions read files this way)."""
        guard = await self._guard(ctx)
        shown = "/" + path

        def read(stop: threading.Event) -> str:
            real = guard.resolve(shown)
            fd, st = guard.open_file(real, shown)
            try:
                data = _read_all(fd, self.max_read_chars)
            except OSError as err:
                raise os_error(err, shown) from None
            finally:
                os.close(fd)
            if looks_binary(data[:8192]):
                raise PathError(f"binary file ({_human(st.st_size)}): {shown}; read it with read_media_file")
            if len(data) > self.max_read_chars:
                raise PathError(f"{shown} is larger than {self.max_read_chars // 1024} KB; read it in parts with "
                                "read_file (offset, limit)")
            return data.decode("utf-8", errors="replace")

        try:
            return await _in_thread(read)
        except PathError as err:  # its text reaches the client (any other exception is masked by the SDK)
            raise ResourceError(str(err)) from None

    @_tool("Read text file", _READ_ONLY, structured=False)
    async def read_file(
        self,
        path: PathArg,
        ctx: Context,
        offset: Annotated[
            int | None,
            Field(ge=1, description="First line to show, 1-based. Use with limit to page through a file."),
        ] = None,
        limit: Annotated[
            int | None, Field(ge=1, description="Number of lines to show, starting at offset.")
        ] = None,
        head: Annotated[int | None, Field(ge=1, description="Show only the first N lines.")] = None,
        tail: Annotated[int | None, Field(ge=1, description="Show only the last N lines.")] = None,
    ) -> str:
        """Read a text file and return its lines numbered like `cat -n` (line number, a tab, then the line).

        Choose at most one way to narrow it: offset/limit (a window of lines), head (the first N lines) or
        tail (the last N lines). Output stops at about {max_read_kb} KB; a note then says which offset continues.
        Lines longer than 4000 characters are cut. Binary files are refused: use read_media_file for images
        and audio, get_file_info for size and type.
        """
        if sum(x is not None for x in (head, tail)) + (offset is not None or limit is not None) > 1:
            raise ToolError("choose one of offset/limit, head or tail")
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        if head is not None:
            offset, limit = 1, head
        return await _in_thread(
            lambda stop: self._read_text(guard, real, path, offset or 1, limit, tail, self.max_read_chars)
        )

    def _read_text(
        self,
        guard: PathGuard,
        real: str,
        shown: str,
        offset: int,
        limit: int | None,
        tail: int | None,
        budget: int,
    ) -> str:
        fd, st = guard.open_file(real, shown)
        try:
            window = read_window(fd, offset=offset, limit=limit, tail=tail, max_bytes=budget)
        except TextFileError:
            raise PathError(
                f"binary file ({_human(st.st_size)}): {shown}; use read_media_file for images and audio, "
                "or get_file_info for its size and type"
            ) from None
        except OSError as err:
            raise os_error(err, shown) from None
        finally:
            os.close(fd)
        if window.total == 0:
            return f"[empty file: {shown}]"
        notes = []
        if window.first == 0:
            notes.append(f"[no lines shown: the file has {window.total} lines, offset was {offset}]")
        elif window.capped:
            notes.append(
                f"[output cut at about {budget // 1024} KB after line {window.last} of {window.total}; "
                f"call read_file with offset={window.last + 1} to continue]"
            )
        elif window.first > 1 or window.last < window.total:
            notes.append(f"[lines {window.first}-{window.last} of {window.total}]")
        if window.lossy:
            notes.append("[the file is not valid UTF-8: undecodable bytes are shown as U+FFFD]")
        return window.text + "\n".join(notes)

    @_tool("Read several text files", _READ_ONLY, structured=False)
    async def read_multiple_files(
        self,
        paths: Annotated[
            list[str],
            Field(
                min_length=1,
                max_length=100,
                description="Files to read (1 to 100), absolute or relative to the first root.",
            ),
        ],
        ctx: Context,
    ) -> str:
        """Read several text files at once, each under a `==> path <==` header with numbered lines.

        A file that cannot be read shows its error under its header and the others are still read. The
        whole answer stays within about {max_read_kb} KB, shared between the files; a note says when one was cut.
        """
        guard = await self._guard(ctx)

        def work(stop: threading.Event) -> str:
            parts, left = [], self.max_read_chars
            share = max(16 * 1024, self.max_read_chars // len(paths))
            for path in paths:
                if stop.is_set():
                    break
                if left <= 0:
                    parts.append(
                        f"==> {path} <==\n[not read: the output budget is spent; read it on its own]\n"
                    )
                    continue
                try:
                    text = self._read_text(guard, guard.resolve(path), path, 1, None, None, min(share, left))
                except PathError as err:
                    text = f"error: {err}"
                left -= len(text)
                parts.append(f"==> {path} <==\n{text.rstrip()}\n")
            return "\n".join(parts)

        return await _in_thread(work)

    @_tool("Read image, audio or binary file", _READ_ONLY, structured=False)
    async def read_media_file(self, path: PathArg, ctx: Context) -> CallToolResult:
        """Return an image as image content or an audio file as audio content (base64, with its MIME type).

        Any other file comes back as an embedded resource blob with a one-line description. Files above
        {max_media} are refused. For text, read_file is cheaper.
        """
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        data = await _in_thread(lambda stop: self._read_media(guard, real, path))
        mime = _media_type(real, data)
        encoded = base64.b64encode(data).decode("ascii")
        shown = guard.display(real)
        blocks: list[ContentBlock]
        if mime.startswith("image/"):
            blocks = [ImageContent(type="image", data=encoded, mime_type=mime)]
        elif mime.startswith("audio/"):
            blocks = [AudioContent(type="audio", data=encoded, mime_type=mime)]
        else:
            blocks = [
                EmbeddedResource(
                    type="resource",
                    resource=BlobResourceContents(uri=Path(real).as_uri(), mime_type=mime, blob=encoded),
                )
            ]
        blocks.append(TextContent(type="text", text=f"{shown}: {mime}, {_human(len(data))}"))
        return CallToolResult(content=blocks)

    def _read_media(self, guard: PathGuard, real: str, shown: str) -> bytes:
        fd, st = guard.open_file(real, shown)
        try:
            if st.st_size > self.max_media_bytes:
                raise PathError(
                    f"file too large for read_media_file: {_human(st.st_size)} "
                    f"(the limit is {_human(self.max_media_bytes)}): {shown}"
                )
            return _read_all(fd, self.max_media_bytes)
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------------------------

    @_tool(
        "Write file",
        ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
        structured=True,
    )
    async def write_file(
        self,
        path: PathArg,
        content: Annotated[str, Field(description="The complete new content, written as UTF-8.")],
        ctx: Context,
        create_parents: Annotated[
            bool, Field(description="Create missing parent directories first (like mkdir -p).")
        ] = False,
    ) -> Annotated[CallToolResult, WriteResult]:
        """Create a file or replace its whole content, atomically (readers see the old or the new file).

        An existing file keeps its permissions. Prefer edit_file for changing part of a file. Fails if the
        parent directory is missing unless create_parents is true.
        """
        guard = await self._guard(ctx)
        real = guard.resolve(path, must_exist=False)
        data = content.encode("utf-8")
        created = await _in_thread(lambda stop: guard.write_atomic(real, data, create_parents=create_parents))
        shown = guard.display(real)
        verb = "Created" if created else "Overwrote"
        return _result(
            WriteResult(path=shown, bytes_written=len(data), created=created),
            f"{verb} {shown} ({len(data)} bytes)",
        )

    @_tool(
        "Edit file",
        ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
        structured=False,
    )
    async def edit_file(
        self,
        path: PathArg,
        edits: Annotated[
            list[EditSpec],
            Field(
                min_length=1, description="Replacements applied in order, each to the result of the previous."
            ),
        ],
        ctx: Context,
        dry_run: Annotated[bool, Field(description="Only show the diff; write nothing.")] = False,
    ) -> str:
        """Replace exact text in a file and return a unified diff of the change.

        Each old_text must occur exactly once (or set replace_all); otherwise the error says how many times
        it was found. Edits apply all-or-nothing: if any fails, the file is left untouched. CRLF files keep
        their line endings. dry_run shows the diff without writing.
        """
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        specs = [(e.old_text, e.new_text, e.replace_all) for e in edits]
        return await _in_thread(lambda stop: self._edit(guard, real, path, specs, dry_run))

    def _edit(
        self, guard: PathGuard, real: str, shown: str, specs: list[tuple[str, str, bool]], dry_run: bool
    ) -> str:
        fd, st = guard.open_file(real, shown)
        try:
            if st.st_size > MAX_EDIT_BYTES:
                raise PathError(
                    f"file too large to edit: {_human(st.st_size)} (the limit is {_human(MAX_EDIT_BYTES)})"
                )
            raw = _read_all(fd, MAX_EDIT_BYTES)
        finally:
            os.close(fd)
        if looks_binary(raw):
            raise PathError(f"binary file, not edited: {shown}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PathError(f"not valid UTF-8 (byte {err.start}), not edited: {shown}") from None
        crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
        if crlf:
            text = text.replace("\r\n", "\n")
            specs = [
                (old.replace("\r\n", "\n"), new.replace("\r\n", "\n"), every) for old, new, every in specs
            ]
        try:
            outcome = apply_edits(text, specs)
        except TextFileError as err:
            raise PathError(f"{err} (file {shown} left unchanged)") from None
        name = guard.display(real)
        diff = unified_diff(text, outcome.new_text, name, self.max_read_chars)
        summary = f"{len(specs)} edit(s), {outcome.replacements} replacement(s) in {name}"
        if dry_run:
            return f"[dry run: nothing written; {summary}]\n{diff}"
        new = outcome.new_text.replace("\n", "\r\n") if crlf else outcome.new_text
        guard.write_atomic(real, new.encode("utf-8"))
        return f"[applied {summary}]\n{diff}"

    @_tool(
        "Create directory",
        ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
        structured=True,
    )
    async def create_directory(
        self, path: FolderArg, ctx: Context
    ) -> Annotated[CallToolResult, DirectoryResult]:
        """Create a directory and any missing parents (mkdir -p). Succeeds if it already exists."""
        guard = await self._guard(ctx)
        real = guard.resolve(path, must_exist=False)
        existed = await _in_thread(lambda stop: _make_directory(guard, real, path))
        shown = guard.display(real)
        text = f"Directory {shown} already exists" if existed else f"Created directory {shown}"
        return _result(DirectoryResult(path=shown, created=not existed), text)

    @_tool(
        "Move or rename",
        ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
        structured=True,
    )
    async def move_file(
        self,
        source: Annotated[
            str, Field(description="File or directory to move (a symlink is moved itself, not its target).")
        ],
        destination: Annotated[
            str, Field(description="New path, including the new name (not a folder to move into).")
        ],
        ctx: Context,
        overwrite: Annotated[bool, Field(description="Replace an existing destination file.")] = False,
    ) -> Annotated[CallToolResult, MoveResult]:
        """Move or rename a file or directory; both paths must be inside the allowed roots.

        Refuses to replace an existing destination unless overwrite is true, and never replaces a
        directory with a file.
        """
        guard = await self._guard(ctx)
        src = guard.locate(source)
        dst = guard.locate(destination)
        replaced = await _in_thread(lambda stop: guard.move(src, dst, overwrite=overwrite))
        a, b = guard.display(src), guard.display(dst)
        return _result(MoveResult(source=a, destination=b, replaced=replaced), f"Moved {a} -> {b}")

    @_tool(
        "Delete file or directory",
        ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
        structured=True,
    )
    async def delete_file(
        self,
        path: PathArg,
        ctx: Context,
        recursive: Annotated[
            bool, Field(description="Required to delete a directory; deletes everything inside it too.")
        ] = False,
    ) -> Annotated[CallToolResult, DeleteResult]:
        """Delete a file or a symlink (the link, not its target); a directory only with recursive=true.

        Cannot be undone. Refuses to delete an allowed root.
        """
        guard = await self._guard(ctx)
        real = guard.locate(path)
        kind = await _in_thread(lambda stop: guard.remove(real, recursive=recursive))
        shown = guard.display(real)
        return _result(DeleteResult(path=shown, type=kind), f"Deleted {kind} {shown}")

    # -- listing and searching --------------------------------------------------------------------------------

    @_tool("List directory", _READ_ONLY, structured=True)
    async def list_directory(
        self,
        ctx: Context,
        path: FolderArg = ".",
        sizes: Annotated[bool, Field(description="Include file sizes and modification times.")] = True,
        sort_by: Annotated[
            Literal["name", "size", "modified"],
            Field(
                description="Order: by name (directories first), by size or by modification time (largest/newest first)."
            ),
        ] = "name",
    ) -> Annotated[CallToolResult, Listing]:
        """List the entries of one directory with their type ([DIR], [FILE], [LINK]) and size.

        Hidden files are included; symlinks are shown, not followed. At most 2000 entries are returned.
        For a recursive view use directory_tree; to find files by name use glob_search.
        """
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        listing = await _in_thread(
            lambda stop: self._list(guard, real, path, sizes or sort_by != "name", sort_by)
        )
        lines = [f"{guard.display(real)}/  ({listing.total} entries)"]
        for entry in listing.entries:
            label = {"directory": "[DIR] ", "file": "[FILE]", "symlink": "[LINK]", "other": "[OTHER]"}[
                entry.type
            ]
            extra = (
                f"  {_human(entry.size)}"
                if sizes and entry.size is not None and entry.type != "directory"
                else ""
            )
            if sort_by == "modified" and entry.modified:
                extra += f"  {entry.modified}"
            lines.append(f"{label} {entry.name}{extra}")
        if listing.truncated:
            lines.append(
                f"[only the first {len(listing.entries)} of {listing.total} entries; use glob_search to narrow]"
            )
        if not sizes:
            listing = listing.model_copy(
                update={
                    "entries": [
                        e.model_copy(update={"size": None, "modified": None}) for e in listing.entries
                    ]
                }
            )
        return _result(listing, "\n".join(lines))

    def _list(self, guard: PathGuard, real: str, shown: str, want_stat: bool, sort_by: str) -> Listing:
        try:
            fd = guard.open_dir(real)
        except OSError as err:
            raise os_error(err, shown) from None
        rows: list[tuple[str, str, os.stat_result | None]] = []  # name, kind, lstat
        try:
            with os.scandir(fd) as it:
                for item in it:
                    try:
                        if item.is_symlink():
                            kind = "symlink"
                        elif item.is_dir(follow_symlinks=False):
                            kind = "directory"
                        elif item.is_file(follow_symlinks=False):
                            kind = "file"
                        else:
                            kind = "other"
                        rows.append(
                            (item.name, kind, item.stat(follow_symlinks=False) if want_stat else None)
                        )
                    except OSError:
                        continue  # vanished while we looked
        finally:
            os.close(fd)
        if sort_by == "size":
            rows.sort(key=lambda r: (-(r[2].st_size if r[2] and r[1] != "directory" else 0), r[0]))
        elif sort_by == "modified":
            rows.sort(key=lambda r: -(r[2].st_mtime if r[2] else 0))
        else:
            rows.sort(key=lambda r: (r[1] != "directory", r[0]))
        entries = [
            Entry(
                name=name + ("/" if kind == "directory" else ""),
                type=kind,
                size=None if st is None or kind == "directory" else st.st_size,
                modified=None if st is None else _iso(st.st_mtime),
            )
            for name, kind, st in rows[:MAX_LIST_ENTRIES]
        ]
        return Listing(
            path=guard.display(real), entries=entries, total=len(rows), truncated=len(rows) > MAX_LIST_ENTRIES
        )

    @_tool("Directory tree", _READ_ONLY, structured=False)
    async def directory_tree(
        self,
        ctx: Context,
        path: FolderArg = ".",
        max_depth: Annotated[
            int, Field(ge=1, le=50, description="How many levels to expand below path.")
        ] = 3,
        max_entries: Annotated[
            int,
            Field(
                ge=1, le=10000, description="Stop after this many entries (shallow levels are listed first)."
            ),
        ] = 500,
        respect_gitignore: Annotated[
            bool, Field(description="Leave out what .gitignore files exclude.")
        ] = True,
        exclude: Annotated[
            list[str],
            Field(
                description="Globs to leave out: without '/' they match names at any depth (e.g. '*.log'), with '/' paths."
            ),
        ] = [],  # noqa: B006 - pydantic copies defaults
    ) -> str:
        """Show the tree below a directory as indented text (directories first, then files, by name).

        Skips .git (and .hg, .svn) and, by default, whatever .gitignore excludes. Levels are filled
        breadth-first until max_entries, so a cut tree still shows the top levels; notes say what was cut.
        """
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        return await _in_thread(
            lambda stop: render_tree(
                guard, real, path, max_depth, max_entries, respect_gitignore, exclude, stop
            )
        )

    @_tool("Find files by glob", _READ_ONLY, structured=True)
    async def glob_search(
        self,
        pattern: Annotated[
            str,
            Field(
                description="Glob relative to path: '*' and '?' stay within a name, '**' spans folders, "
                "'{a,b}' alternatives, '[abc]' sets. E.g. '**/*.py', 'src/**/test_*.{py,ts}', '*.md' (top level only)."
            ),
        ],
        ctx: Context,
        path: FolderArg = ".",
        respect_gitignore: Annotated[
            bool, Field(description="Leave out what .gitignore files exclude.")
        ] = True,
        max_results: Annotated[int, Field(ge=1, le=10000, description="Stop after this many matches.")] = 500,
    ) -> Annotated[CallToolResult, GlobResult]:
        """Find files and directories whose path relative to `path` matches a glob pattern.

        Skips .git and, by default, .gitignored paths. Symlinks are matched by name but not followed.
        Results come in folder order (a folder's files before its subfolders), directories with a trailing '/'.
        """
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        found, truncated = await _in_thread(
            lambda stop: find_glob(guard, real, path, pattern, respect_gitignore, max_results, stop)
        )
        base = guard.display(real)
        matches = [_join(base, rel) for rel in found]
        text = "\n".join(matches) if matches else f"no matches for {pattern!r} in {base}"
        if truncated:
            text += f"\n[stopped at max_results={max_results}; narrow the pattern or path]"
        return _result(GlobResult(pattern=pattern, path=base, matches=matches, truncated=truncated), text)

    @_tool("Search file contents", _READ_ONLY, structured=True)
    async def search_content(
        self,
        pattern: Annotated[
            str,
            Field(
                description="Python regular expression searched line by line (e.g. 'def \\w+_test', 'TODO|FIXME'). "
                "Set fixed_strings for plain text."
            ),
        ],
        ctx: Context,
        path: Annotated[
            str, Field(description="Folder (searched recursively) or single file. Default: the first root.")
        ] = ".",
        glob: Annotated[
            str | None,
            Field(
                description="Only files matching this glob: without '/' it matches names ('*.py'), with '/' relative paths ('src/**/*.ts')."
            ),
        ] = None,
        case_insensitive: Annotated[bool, Field(description="Ignore case.")] = False,
        fixed_strings: Annotated[
            bool, Field(description="Treat pattern as plain text, not a regex.")
        ] = False,
        context_lines: Annotated[
            int, Field(ge=0, le=10, description="Lines of context before and after each match.")
        ] = 0,
        max_matches: Annotated[
            int, Field(ge=1, le=5000, description="Stop after this many matching lines.")
        ] = 200,
        respect_gitignore: Annotated[bool, Field(description="Skip what .gitignore files exclude.")] = True,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Search file contents for a regex (grep -rn style): answers `path:line:text` lines.

        Skips .git, binary files (a NUL byte in the first 8 KB), files over 32 MB and, by default,
        .gitignored paths; symlinks are not followed. Lines are cut at 400 characters.
        """
        try:
            matcher = Matcher(pattern, ignore_case=case_insensitive, fixed=fixed_strings)
        except Exception as err:  # re.error, or a pattern too large to compile
            raise PathError(
                f"invalid regular expression {pattern!r}: {err} (set fixed_strings=true for plain text)"
            ) from None
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        outcome = await _in_thread(
            lambda stop: search(
                guard, real, path, matcher, glob, context_lines, max_matches, respect_gitignore, stop
            )
        )
        base = guard.display(real)
        result = SearchResult(
            pattern=pattern,
            path=base,
            matches=[
                ContentMatch(
                    path=_join(base, m.path) if m.path else base,
                    line=m.line,
                    text=m.text,
                    before=m.before,
                    after=m.after,
                )
                for m in outcome.matches
            ],
            files_searched=outcome.files_searched,
            files_with_matches=outcome.files_matched,
            skipped_binary=outcome.skipped_binary,
            skipped_large=outcome.skipped_large,
            truncated=outcome.truncated,
        )
        return _result(result, grep_text(result, context_lines, max_matches))

    # -- facts ----------------------------------------------------------------------------------------------

    @_tool("File info", _READ_ONLY, structured=True)
    async def get_file_info(self, path: PathArg, ctx: Context) -> Annotated[CallToolResult, FileInfo]:
        """Size, type, modification/change/access (and birth, where known) times, permissions and symlink facts."""
        guard = await self._guard(ctx)
        real = guard.resolve(path)
        entry = guard.locate(path)
        link = guard.lstat_entry(entry, path)
        is_link = stat.S_ISLNK(link.st_mode)
        st = guard.lstat_entry(real, path)
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        birth = getattr(st, "st_birthtime", None)
        info = FileInfo(
            path=guard.display(entry),
            real_path=real,
            type=kind,
            size=st.st_size,
            modified=_iso(st.st_mtime),
            changed=_iso(st.st_ctime),
            accessed=_iso(st.st_atime),
            created=_iso(birth) if birth else None,
            permissions=stat.filemode(st.st_mode)[1:],
            mode=f"{stat.S_IMODE(st.st_mode):04o}",
            is_symlink=is_link,
            symlink_target=_readlink(entry) if is_link else None,
        )
        lines = [f"{key}: {value}" for key, value in info.model_dump().items() if value is not None]
        return _result(info, "\n".join(lines))

    @_tool("List allowed roots", _READ_ONLY, structured=True)
    async def list_allowed_roots(self, ctx: Context) -> Annotated[CallToolResult, RootsResult]:
        """List the directories this server may touch. Relative paths in other tools start at the first one."""
        guard = await self._guard(ctx)
        source = "command line" if guard is self.guard else "client roots"
        if not guard.roots:
            text = (
                "No allowed roots: the client's roots do not overlap the server's, so every path is refused."
            )
        else:
            names = root_names(guard)
            text = "\n".join(names) + f"\n[from the {source}; relative paths start at {names[0]}]"
        return _result(RootsResult(roots=root_names(guard), source=source), text)


def _make_directory(guard: PathGuard, real: str, shown: str) -> bool:
    """mkdir -p through the guard; returns whether the directory existed already."""
    existed = os.path.isdir(real)
    if not existed and os.path.lexists(real):
        raise PathError(f"exists and is not a directory: {shown}")
    try:
        os.close(guard.open_dir(real, create=True))
    except OSError as err:
        raise os_error(err, shown) from None
    return existed


def _readlink(entry: str) -> str | None:
    try:
        return os.readlink(entry)
    except OSError:
        return None


def _read_all(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size <= limit and (chunk := os.read(fd, 1 << 20)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"%PDF-", "application/pdf"),
)


def _media_type(real: str, data: bytes) -> str:
    """MIME type from the file's first bytes where they are telling, else from its extension."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if data[8:12] == b"WEBP" else "audio/wav"
    import mimetypes

    guessed, _ = mimetypes.guess_type(real, strict=False)
    return guessed or "application/octet-stream"


# -- server and command line ------------------------------------------------------------------------------


def build_server(
    roots: Sequence[Path | str],
    *,
    client_roots: Literal["narrow", "ignore"] = "narrow",
    max_read_chars: int = DEFAULT_MAX_READ_CHARS,
    max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
    name: str = "files",
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
    auth: Mapping[str, Any] | None = None,
    aliases: Sequence[str] = (),
) -> MCPServer:
    """An MCPServer whose tools may only touch files below `roots` (made absolute and real).

    `aliases`: `ALIAS[=ROOT]` (e.g. `/data=/tmp/run-1`): paths under ALIAS resolve below ROOT (default: the
    first root), and paths below ROOT are shown under ALIAS.

    client_roots="narrow" lets a client that offers roots (handshake-era protocols) shrink the allowed
    set to the roots both sides name; "ignore" keeps the command line only. Raises ValueError if no root
    is a usable directory. `auth`: MCPServer's auth arguments (agent.servers._http.bearer_auth) for HTTP.
    """
    guard, problems = PathGuard.from_arguments(roots)
    if not guard.roots:
        raise ValueError("no usable root directory: " + "; ".join(problems or ["none given"]))
    if aliases:
        guard = AliasedGuard(guard.roots, parse_aliases(aliases, guard.roots))
    for problem in problems:
        logging.getLogger(__name__).warning("files server: %s", problem)
    log = ClientLog(name)
    tools = FileTools(
        guard,
        client_roots=client_roots,
        max_read_chars=max_read_chars,
        max_media_bytes=max_media_bytes,
        log=log,
    )
    server = MCPServer(
        name,
        title="Files",
        version=package_version(),
        instructions=show(
            "Read, write, edit, list and search files below these roots: "
            + ", ".join(root_names(guard))
            + f". Relative paths start at {root_names(guard)[0]}. Prefer edit_file over write_file for changes, "
            "search_content and glob_search over reading whole trees. File names that are not valid UTF-8 "
            "are shown with \\xNN escapes for their odd bytes; pass them back as shown."
        ),
        log_level=log_level,
        **(auth or {}),
    )
    log.install(server)
    for attr, member in vars(FileTools).items():  # in definition order
        spec = getattr(member, "__mcp_tool__", None)
        if spec is not None:
            title, annotations, structured = spec
            limits = {"max_read_kb": max_read_chars // 1024, "max_media": _human(max_media_bytes)}
            server.add_tool(
                _reported(log, attr, getattr(tools, attr), writes=not annotations.read_only_hint),
                title=title,
                description=inspect.cleandoc(member.__doc__ or "").format(**limits),
                annotations=annotations,
                structured_output=None if structured else False,
            )
    server.resource("file:///{+path}", name="file", title="File", mime_type="text/plain",
                    description=f"A text file below the roots, whole (at most {max_read_chars // 1024} KB): file:// "
                    "and its absolute path.")(tools.read_resource)
    server.middleware.append(tools.forget_roots)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agent server files",
        description="MCP server for files below the given roots (stdio unless --http).",
    )
    parser.add_argument(
        "roots",
        nargs="+",
        metavar="ROOT",
        help="directory the tools may use (relative paths start at the first)",
    )
    parser.add_argument(
        "--http", type=host_port_argument, metavar="HOST:PORT", help="serve streamable HTTP at http://HOST:PORT/mcp"
    )
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' over HTTP (default: ${TOKEN_ENV}); "
                        "needed to serve an address that is not loopback")
    parser.add_argument(
        "--client-roots",
        choices=["narrow", "ignore"],
        default="narrow",
        help="narrow: a client's roots (when it offers them) shrink the allowed set; ignore: command line only",
    )
    parser.add_argument(
        "--max-read-kb", type=int, default=DEFAULT_MAX_READ_CHARS // 1024, help="output cap of the read tools"
    )
    parser.add_argument(
        "--max-media-mb",
        type=int,
        default=DEFAULT_MAX_MEDIA_BYTES // (1024 * 1024),
        help="size cap of read_media_file",
    )
    parser.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="PATH[=ROOT]",
        help="let the absolute PATH name ROOT (default: the first root), and show paths below ROOT under PATH; "
        "e.g. --alias /data=WORKSPACE for tasks that name /data/<file> (repeatable)",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        if args.http:
            check_exposure(args.http[0], token)
        server = build_server(
            args.roots,
            client_roots=args.client_roots,
            max_read_chars=max(1, args.max_read_kb) * 1024,
            max_media_bytes=max(1, args.max_media_mb) * 1024 * 1024,
            log_level=args.log_level,
            auth=bearer_auth(token, url_of(*args.http)) if args.http else None,
            aliases=args.alias,
        )
    except ValueError as err:
        print(f"files server: {err}", file=sys.stderr)
        return 2
    try:
        if args.http:
            host, port = args.http
            server.run(transport="streamable-http", host=host, port=port)
        else:
            from agent.servers._stdio_pipes import serve_stdio

            anyio.run(serve_stdio, server)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
