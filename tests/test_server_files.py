"""The files MCP server as a real subprocess, driven by mcp.Client over stdio and streamable HTTP.

Each server runs once per module and is shared through a blocking portal; every test works in a folder of
its own under the server's root. Next to the root lie `outside/` and `root2/` (a sibling sharing the root's
name as a prefix): the attack table checks that no path reaches them and that they stay unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from conftest import free_port, running_server
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, ListRootsResult, Root

from agent.servers._path_guard import PathError, PathGuard

REPO = Path(__file__).resolve().parent.parent
SECRET = "TOP SECRET, must never be read or changed\n"
TOOLS = {
    "read_file",
    "read_multiple_files",
    "read_media_file",
    "write_file",
    "edit_file",
    "create_directory",
    "list_directory",
    "directory_tree",
    "move_file",
    "delete_file",
    "glob_search",
    "search_content",
    "get_file_info",
    "list_allowed_roots",
}
# A 1x1 transparent PNG.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass
class Connection:
    portal: anyio.from_thread.BlockingPortal
    client: Client
    base: Path  # holds root/, outside/ and root2/

    @property
    def root(self) -> Path:
        return self.base / "root"


def make_base(base: Path) -> Path:
    (base / "root").mkdir()
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text(SECRET)
    (base / "root2").mkdir()
    (base / "root2" / "secret2.txt").write_text(SECRET)
    return base


def stdio_params(root: Path, *options: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "agent.servers.files", str(root), *options], cwd=str(REPO)
    )


@contextlib.contextmanager
def connected(target: Any, base: Path, **client_options: Any) -> Iterator[Connection]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(target, **client_options)) as client,
    ):
        yield Connection(portal, client, base)


@pytest.fixture(scope="module", params=["stdio", "http"])
def connection(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Connection]:
    base = make_base(tmp_path_factory.mktemp(f"files-{request.param}"))
    if request.param == "stdio":
        with connected(stdio_params(base / "root"), base) as conn:
            yield conn
    else:
        port = free_port()
        args = ["-m", "agent.servers.files", str(base / "root"), "--http", f"127.0.0.1:{port}"]
        with running_server(args, port), connected(f"http://127.0.0.1:{port}/mcp", base) as conn:
            yield conn


@dataclass
class Files:
    """A shared connection plus a folder of this test's own, `name` relative to the root."""

    conn: Connection
    folder: Path
    name: str

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        return self.conn.portal.call(self.conn.client.call_tool, tool, arguments)

    def ok(self, tool: str, **arguments: Any) -> CallToolResult:
        result = self.call(tool, **arguments)
        assert not result.is_error, text_of(result)
        return result

    def error(self, tool: str, **arguments: Any) -> str:
        result = self.call(tool, **arguments)
        assert result.is_error, text_of(result)
        return text_of(result)

    def rel(self, *parts: str) -> str:
        return "/".join([self.name, *parts])


@pytest.fixture
def files(connection: Connection) -> Files:
    name = f"t-{uuid.uuid4().hex[:8]}"
    (connection.root / name).mkdir()
    return Files(connection, connection.root / name, name)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


# --- tool list ----------------------------------------------------------------------------------------------


EXPECTED_HINTS = {  # tool: (read_only, destructive, idempotent)
    "read_file": (True, False, True),
    "read_multiple_files": (True, False, True),
    "read_media_file": (True, False, True),
    "write_file": (False, True, True),
    "edit_file": (False, True, False),
    "create_directory": (False, False, True),
    "list_directory": (True, False, True),
    "directory_tree": (True, False, True),
    "move_file": (False, True, False),
    "delete_file": (False, True, True),
    "glob_search": (True, False, True),
    "search_content": (True, False, True),
    "get_file_info": (True, False, True),
    "list_allowed_roots": (True, False, True),
}
STRUCTURED = {
    "write_file",
    "create_directory",
    "list_directory",
    "move_file",
    "delete_file",
    "glob_search",
    "search_content",
    "get_file_info",
    "list_allowed_roots",
}


def test_tools_are_the_declared_set_with_titles_and_descriptions(files: Files) -> None:
    tools = files.conn.portal.call(files.conn.client.list_tools).tools
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.title and tool.description and len(tool.description) > 40, tool.name


def test_every_parameter_is_described(files: Files) -> None:
    for tool in files.conn.portal.call(files.conn.client.list_tools).tools:
        for name, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name}"
    edit = next(
        t for t in files.conn.portal.call(files.conn.client.list_tools).tools if t.name == "edit_file"
    )
    edit_spec = edit.input_schema["$defs"]["EditSpec"]["properties"]
    assert all(field.get("description") for field in edit_spec.values())


def test_annotations_match_what_each_tool_does(files: Files) -> None:
    for tool in files.conn.portal.call(files.conn.client.list_tools).tools:
        hints = tool.annotations
        expected = EXPECTED_HINTS[tool.name]
        assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == expected, tool.name
        assert hints.open_world_hint is False, tool.name


def test_structured_tools_declare_output_schemas_and_text_tools_do_not(files: Files) -> None:
    for tool in files.conn.portal.call(files.conn.client.list_tools).tools:
        if tool.name in STRUCTURED:
            assert tool.output_schema and tool.output_schema.get("properties"), tool.name
        else:
            assert tool.output_schema is None, tool.name


def test_required_parameters(files: Files) -> None:
    tools = {t.name: t for t in files.conn.portal.call(files.conn.client.list_tools).tools}
    assert tools["read_file"].input_schema["required"] == ["path"]
    assert set(tools["edit_file"].input_schema["required"]) == {"path", "edits"}
    assert set(tools["move_file"].input_schema["required"]) == {"source", "destination"}
    assert tools["search_content"].input_schema["required"] == ["pattern"]
    assert "required" not in tools["list_allowed_roots"].input_schema


# --- reading ------------------------------------------------------------------------------------------------


def test_read_file_numbers_lines_like_cat_n(files: Files) -> None:
    (files.folder / "a.txt").write_text("alpha\nbeta\ngamma\n")
    text = text_of(files.ok("read_file", path=files.rel("a.txt")))
    assert text.splitlines() == ["     1\talpha", "     2\tbeta", "     3\tgamma"]


def test_read_file_accepts_absolute_paths_inside_the_root(files: Files) -> None:
    (files.folder / "a.txt").write_text("alpha\n")
    assert "1\talpha" in text_of(files.ok("read_file", path=str(files.folder / "a.txt")))


def test_read_file_pages_with_offset_and_limit(files: Files) -> None:
    (files.folder / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    text = text_of(files.ok("read_file", path=files.rel("a.txt"), offset=10, limit=3))
    assert text.splitlines()[:3] == ["    10\tline 10", "    11\tline 11", "    12\tline 12"]
    assert "[lines 10-12 of 100]" in text


def test_read_file_head_and_tail(files: Files) -> None:
    (files.folder / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 51)))
    head = text_of(files.ok("read_file", path=files.rel("a.txt"), head=2))
    assert head.splitlines()[:2] == ["     1\tline 1", "     2\tline 2"]
    tail = text_of(files.ok("read_file", path=files.rel("a.txt"), tail=2))
    assert tail.splitlines()[:2] == ["    49\tline 49", "    50\tline 50"]


def test_read_file_refuses_two_ways_of_narrowing(files: Files) -> None:
    (files.folder / "a.txt").write_text("x\n")
    assert "choose one of" in files.error("read_file", path=files.rel("a.txt"), head=1, tail=1)


def test_read_file_caps_big_files_and_says_how_to_continue(files: Files) -> None:
    (files.folder / "big.txt").write_text("".join(f"{i:08d} " + "x" * 90 + "\n" for i in range(10_000)))
    text = text_of(files.ok("read_file", path=files.rel("big.txt")))
    assert len(text.encode()) < 300 * 1024
    note = text.splitlines()[-1]
    assert "output cut" in note and "of 10000" in note
    offset = int(note.split("offset=")[1].split()[0])
    following = text_of(files.ok("read_file", path=files.rel("big.txt"), offset=offset, limit=1))
    assert following.startswith(f"{offset:6d}\t{offset - 1:08d}")


def test_read_file_cuts_very_long_lines(files: Files) -> None:
    (files.folder / "min.js").write_text("a" * 100_000 + "\nshort\n")
    text = text_of(files.ok("read_file", path=files.rel("min.js")))
    assert "line cut: 96000 more bytes" in text and "     2\tshort" in text


def test_read_file_refuses_binary_files(files: Files) -> None:
    (files.folder / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    assert "binary file" in files.error("read_file", path=files.rel("blob.bin"))


def test_read_file_marks_invalid_utf8(files: Files) -> None:
    (files.folder / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    text = text_of(files.ok("read_file", path=files.rel("latin1.txt")))
    assert "caf\ufffd" in text and "not valid UTF-8" in text


def test_read_file_of_an_empty_file_says_so(files: Files) -> None:
    (files.folder / "empty.txt").write_text("")
    assert "empty file" in text_of(files.ok("read_file", path=files.rel("empty.txt")))


def test_read_file_errors_name_the_problem(files: Files) -> None:
    assert "no such file or directory" in files.error("read_file", path=files.rel("missing.txt"))
    assert "is a directory" in files.error("read_file", path=files.name)


def test_read_file_refuses_a_fifo_without_hanging(files: Files) -> None:
    os.mkfifo(files.folder / "pipe")
    assert "not a regular file" in files.error("read_file", path=files.rel("pipe"))


def test_read_multiple_files_reports_failures_per_file(files: Files) -> None:
    (files.folder / "a.txt").write_text("alpha\n")
    (files.folder / "b.txt").write_text("beta\n")
    text = text_of(
        files.ok("read_multiple_files", paths=[files.rel("a.txt"), files.rel("nope.txt"), files.rel("b.txt")])
    )
    assert f"==> {files.rel('a.txt')} <==\n     1\talpha" in text
    assert f"==> {files.rel('nope.txt')} <==\nerror: no such file or directory" in text
    assert f"==> {files.rel('b.txt')} <==\n     1\tbeta" in text


def test_read_multiple_files_needs_at_least_one_path(files: Files) -> None:
    assert "at least 1 item" in files.error("read_multiple_files", paths=[])


def test_read_media_file_returns_images_as_image_content(files: Files) -> None:
    (files.folder / "dot.png").write_bytes(TINY_PNG)
    result = files.ok("read_media_file", path=files.rel("dot.png"))
    image = result.content[0]
    assert image.type == "image" and image.mime_type == "image/png"
    assert base64.b64decode(image.data) == TINY_PNG


def test_read_media_file_returns_audio_as_audio_content(files: Files) -> None:
    wav = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(24) + b"data" + bytes(4)
    (files.folder / "beep.wav").write_bytes(wav)
    audio = files.ok("read_media_file", path=files.rel("beep.wav")).content[0]
    assert audio.type == "audio" and audio.mime_type == "audio/wav"


def test_read_media_file_returns_other_binaries_as_described_resources(files: Files) -> None:
    (files.folder / "doc.pdf").write_bytes(b"%PDF-1.4\n" + bytes(100))
    result = files.ok("read_media_file", path=files.rel("doc.pdf"))
    resource = result.content[0]
    assert resource.type == "resource" and resource.resource.mime_type == "application/pdf"
    assert resource.resource.uri.startswith("file://")
    assert "application/pdf" in text_of(result)


def test_read_media_file_refuses_files_over_the_cap(files: Files) -> None:
    with open(files.folder / "huge.png", "wb") as f:
        f.truncate(11 * 1024 * 1024)  # sparse: cheap to make
    assert "too large for read_media_file" in files.error("read_media_file", path=files.rel("huge.png"))


# --- writing ------------------------------------------------------------------------------------------------


def test_write_file_creates_and_reports_bytes(files: Files) -> None:
    result = files.ok("write_file", path=files.rel("new.txt"), content="héllo\n")
    assert result.structured_content == {"path": files.rel("new.txt"), "bytes_written": 7, "created": True}
    assert (files.folder / "new.txt").read_text() == "héllo\n"


def test_write_file_overwrites_atomically_and_keeps_the_mode(files: Files) -> None:
    target = files.folder / "run.sh"
    target.write_text("old\n")
    target.chmod(0o750)
    result = files.ok("write_file", path=files.rel("run.sh"), content="new\n")
    assert result.structured_content["created"] is False
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o750
    assert sorted(p.name for p in files.folder.iterdir()) == ["run.sh"]  # no temp file left


def test_write_file_needs_create_parents_for_missing_folders(files: Files) -> None:
    assert "create_parents" in files.error("write_file", path=files.rel("a", "b", "c.txt"), content="x")
    files.ok("write_file", path=files.rel("a", "b", "c.txt"), content="x", create_parents=True)
    assert (files.folder / "a" / "b" / "c.txt").read_text() == "x"


def test_write_file_refuses_a_directory(files: Files) -> None:
    (files.folder / "d").mkdir()
    assert "is a directory" in files.error("write_file", path=files.rel("d"), content="x")


def test_write_file_through_an_inside_symlink_changes_the_target(files: Files) -> None:
    (files.folder / "real.txt").write_text("old\n")
    (files.folder / "alias.txt").symlink_to("real.txt")
    files.ok("write_file", path=files.rel("alias.txt"), content="new\n")
    assert (files.folder / "alias.txt").is_symlink() and (files.folder / "real.txt").read_text() == "new\n"


def test_edit_file_replaces_a_unique_match_and_returns_a_diff(files: Files) -> None:
    (files.folder / "a.py").write_text("def f():\n    return 1\n")
    text = text_of(
        files.ok(
            "edit_file", path=files.rel("a.py"), edits=[{"old_text": "return 1", "new_text": "return 2"}]
        )
    )
    assert "-    return 1\n+    return 2" in text and "+++ b/" in text
    assert (files.folder / "a.py").read_text() == "def f():\n    return 2\n"


def test_edit_file_says_how_many_times_an_ambiguous_text_occurs(files: Files) -> None:
    (files.folder / "a.txt").write_text("x = 1\nx = 1\nx = 1\n")
    message = files.error(
        "edit_file", path=files.rel("a.txt"), edits=[{"old_text": "x = 1", "new_text": "x = 2"}]
    )
    assert "found 3 times" in message and "replace_all" in message
    files.ok(
        "edit_file",
        path=files.rel("a.txt"),
        edits=[{"old_text": "x = 1", "new_text": "x = 2", "replace_all": True}],
    )
    assert (files.folder / "a.txt").read_text() == "x = 2\nx = 2\nx = 2\n"


def test_edit_file_missing_text_hints_at_whitespace_differences(files: Files) -> None:
    (files.folder / "a.py").write_text("if x:\n        y()\n")
    message = files.error(
        "edit_file", path=files.rel("a.py"), edits=[{"old_text": "if x:\n    y()", "new_text": "z"}]
    )
    assert "not found" in message and "line 1" in message


def test_edit_file_is_all_or_nothing(files: Files) -> None:
    (files.folder / "a.txt").write_text("one\ntwo\n")
    message = files.error(
        "edit_file",
        path=files.rel("a.txt"),
        edits=[{"old_text": "one", "new_text": "1"}, {"old_text": "three", "new_text": "3"}],
    )
    assert "edit 2 of 2" in message and "unchanged" in message
    assert (files.folder / "a.txt").read_text() == "one\ntwo\n"


def test_edit_file_dry_run_writes_nothing(files: Files) -> None:
    (files.folder / "a.txt").write_text("one\n")
    text = text_of(
        files.ok(
            "edit_file", path=files.rel("a.txt"), edits=[{"old_text": "one", "new_text": "1"}], dry_run=True
        )
    )
    assert "dry run" in text and "-one\n+1" in text
    assert (files.folder / "a.txt").read_text() == "one\n"


def test_edit_file_keeps_crlf_line_endings(files: Files) -> None:
    (files.folder / "win.txt").write_bytes(b"first\r\nsecond\r\n")
    files.ok(
        "edit_file", path=files.rel("win.txt"), edits=[{"old_text": "first\nsecond", "new_text": "1st\n2nd"}]
    )
    assert (files.folder / "win.txt").read_bytes() == b"1st\r\n2nd\r\n"


def test_edit_file_refuses_edits_that_change_nothing(files: Files) -> None:
    (files.folder / "a.txt").write_text("one\n")
    assert "change nothing" in files.error(
        "edit_file", path=files.rel("a.txt"), edits=[{"old_text": "one", "new_text": "one"}]
    )


def test_create_directory_makes_parents_and_is_idempotent(files: Files) -> None:
    first = files.ok("create_directory", path=files.rel("a", "b", "c"))
    assert first.structured_content == {"path": files.rel("a", "b", "c"), "created": True}
    again = files.ok("create_directory", path=files.rel("a", "b", "c"))
    assert again.structured_content["created"] is False
    (files.folder / "file").write_text("x")
    assert "not a directory" in files.error("create_directory", path=files.rel("file"))


def test_move_file_renames_and_refuses_to_overwrite(files: Files) -> None:
    (files.folder / "a.txt").write_text("a")
    (files.folder / "b.txt").write_text("b")
    assert "already exists" in files.error(
        "move_file", source=files.rel("a.txt"), destination=files.rel("b.txt")
    )
    result = files.ok("move_file", source=files.rel("a.txt"), destination=files.rel("c.txt"))
    assert result.structured_content == {
        "source": files.rel("a.txt"),
        "destination": files.rel("c.txt"),
        "replaced": False,
    }
    assert not (files.folder / "a.txt").exists() and (files.folder / "c.txt").read_text() == "a"
    replaced = files.ok(
        "move_file", source=files.rel("c.txt"), destination=files.rel("b.txt"), overwrite=True
    )
    assert replaced.structured_content["replaced"] is True and (files.folder / "b.txt").read_text() == "a"


def test_move_file_moves_directories_and_reports_missing_sources(files: Files) -> None:
    (files.folder / "d").mkdir()
    (files.folder / "d" / "x.txt").write_text("x")
    files.ok("move_file", source=files.rel("d"), destination=files.rel("e"))
    assert (files.folder / "e" / "x.txt").read_text() == "x"
    assert "no such file" in files.error("move_file", source=files.rel("nope"), destination=files.rel("z"))


def test_delete_file_needs_recursive_for_directories(files: Files) -> None:
    (files.folder / "f.txt").write_text("x")
    (files.folder / "d").mkdir()
    (files.folder / "d" / "x.txt").write_text("x")
    (files.folder / "empty").mkdir()
    assert files.ok("delete_file", path=files.rel("f.txt")).structured_content["type"] == "file"
    assert "recursive=true" in files.error("delete_file", path=files.rel("d"))
    assert "recursive=true" in files.error("delete_file", path=files.rel("empty"))
    assert (
        files.ok("delete_file", path=files.rel("empty"), recursive=True).structured_content["type"]
        == "directory"
    )
    assert (
        files.ok("delete_file", path=files.rel("d"), recursive=True).structured_content["type"] == "directory"
    )
    assert sorted(files.folder.iterdir()) == []
    assert "no such file" in files.error("delete_file", path=files.rel("gone"))


def test_delete_file_removes_a_symlink_not_its_target(files: Files) -> None:
    (files.folder / "real.txt").write_text("keep")
    (files.folder / "link").symlink_to("real.txt")
    assert files.ok("delete_file", path=files.rel("link")).structured_content["type"] == "symlink"
    assert (files.folder / "real.txt").read_text() == "keep"


# --- listing and searching ------------------------------------------------------------------------------------


def test_list_directory_shows_types_and_sizes_directories_first(files: Files) -> None:
    (files.folder / "b.txt").write_text("12345")
    (files.folder / "a").mkdir()
    (files.folder / "c").symlink_to("b.txt")
    result = files.ok("list_directory", path=files.name)
    entries = result.structured_content["entries"]
    assert [(e["name"], e["type"]) for e in entries] == [
        ("a/", "directory"),
        ("b.txt", "file"),
        ("c", "symlink"),
    ]
    assert entries[1]["size"] == 5
    assert "[DIR]  a/" in text_of(result) and "[FILE] b.txt  5 B" in text_of(result)


def test_list_directory_sorts_by_size(files: Files) -> None:
    (files.folder / "small").write_text("1")
    (files.folder / "large").write_text("1" * 100)
    entries = files.ok("list_directory", path=files.name, sort_by="size").structured_content["entries"]
    assert [e["name"] for e in entries] == ["large", "small"]


def test_list_directory_errors(files: Files) -> None:
    (files.folder / "f").write_text("x")
    assert "not a directory" in files.error("list_directory", path=files.rel("f"))
    assert "no such file" in files.error("list_directory", path=files.rel("nope"))


def make_project(folder: Path) -> None:
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / ".gitignore").write_text("*.log\nbuild/\n")
    (folder / "build").mkdir()
    (folder / "build" / "out.py").write_text("needle = 1\n")
    (folder / "src" / "pkg").mkdir(parents=True)
    (folder / "src" / "main.py").write_text("import os\nneedle = 2\nprint(needle)\n")
    (folder / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'NEEDLE'\n")
    (folder / "src" / "pkg" / "types.pyi").write_text("x: int\n")
    (folder / "debug.log").write_text("needle in a log\n")
    (folder / "README.md").write_text("# needle\n")
    (folder / "data.bin").write_bytes(b"\x00needle\x00")


def test_directory_tree_honours_gitignore_and_skips_git(files: Files) -> None:
    make_project(files.folder)
    text = text_of(files.ok("directory_tree", path=files.name))
    assert "src/" in text and "util.py" in text and "README.md" in text
    assert ".git/" not in text and "build" not in text and "debug.log" not in text
    everything = text_of(files.ok("directory_tree", path=files.name, respect_gitignore=False))
    assert "build/" in everything and "debug.log" in everything and ".git/" not in everything


def test_directory_tree_notes_depth_and_entry_cuts(files: Files) -> None:
    make_project(files.folder)
    shallow = text_of(files.ok("directory_tree", path=files.name, max_depth=1))
    assert "util.py" not in shallow and "not expanded" in shallow
    cut = text_of(files.ok("directory_tree", path=files.name, max_entries=2))
    assert "cut at max_entries=2" in cut and "more entries" in cut
    excluded = text_of(files.ok("directory_tree", path=files.name, exclude=["*.md", "src/pkg"]))
    assert "README.md" not in excluded and "util.py" not in excluded and "main.py" in excluded


def test_glob_search_matches_recursively_with_double_star(files: Files) -> None:
    make_project(files.folder)
    result = files.ok("glob_search", pattern="**/*.py", path=files.name)
    assert result.structured_content["matches"] == [
        files.rel("src", "main.py"),
        files.rel("src", "pkg", "util.py"),
    ]
    braces = files.ok("glob_search", pattern="src/**/*.{py,pyi}", path=files.name).structured_content[
        "matches"
    ]
    assert files.rel("src", "pkg", "types.pyi") in braces and len(braces) == 3
    top = files.ok("glob_search", pattern="*.md", path=files.name).structured_content["matches"]
    assert top == [files.rel("README.md")]


def test_glob_search_gitignore_and_result_cap(files: Files) -> None:
    make_project(files.folder)
    ignored = files.ok("glob_search", pattern="**/*.log", path=files.name).structured_content["matches"]
    assert ignored == []
    unignored = files.ok("glob_search", pattern="**/*.log", path=files.name, respect_gitignore=False)
    assert unignored.structured_content["matches"] == [files.rel("debug.log")]
    capped = files.ok("glob_search", pattern="**", path=files.name, max_results=2).structured_content
    assert capped["truncated"] is True and len(capped["matches"]) == 2


def test_search_content_reports_path_and_line(files: Files) -> None:
    make_project(files.folder)
    result = files.ok("search_content", pattern=r"needle\b", path=files.name)
    found = {(m["path"], m["line"]) for m in result.structured_content["matches"]}
    assert found == {
        (files.rel("src", "main.py"), 2),
        (files.rel("src", "main.py"), 3),
        (files.rel("README.md"), 1),
    }
    assert f"{files.rel('src', 'main.py')}:2:needle = 2" in text_of(result)
    assert result.structured_content["skipped_binary"] == 1  # data.bin; build/ and debug.log are ignored


def test_search_content_options(files: Files) -> None:
    make_project(files.folder)
    insensitive = files.ok(
        "search_content", pattern="NEEDLE", path=files.name, case_insensitive=True, glob="*.py"
    )
    assert {m["path"] for m in insensitive.structured_content["matches"]} == {
        files.rel("src", "main.py"),
        files.rel("src", "pkg", "util.py"),
    }
    context = files.ok("search_content", pattern="import os", path=files.name, context_lines=1)
    assert context.structured_content["matches"][0]["after"] == ["needle = 2"]
    assert f"{files.rel('src', 'main.py')}-2-needle = 2" in text_of(context)
    capped = files.ok("search_content", pattern="needle", path=files.name, max_matches=1)
    assert capped.structured_content["truncated"] is True and "max_matches=1" in text_of(capped)
    fixed = files.ok("search_content", pattern="print(", path=files.name, fixed_strings=True)
    assert [m["line"] for m in fixed.structured_content["matches"]] == [3]
    everything = files.ok("search_content", pattern="needle", path=files.name, respect_gitignore=False)
    paths = {m["path"] for m in everything.structured_content["matches"]}
    assert files.rel("build", "out.py") in paths and files.rel("debug.log") in paths


def test_search_content_searches_a_single_file(files: Files) -> None:
    make_project(files.folder)
    result = files.ok("search_content", pattern="needle", path=files.rel("src", "main.py"))
    assert [(m["path"], m["line"]) for m in result.structured_content["matches"]] == [
        (files.rel("src", "main.py"), 2),
        (files.rel("src", "main.py"), 3),
    ]


def test_search_content_uses_unicode_semantics_on_non_ascii_text(files: Files) -> None:
    (files.folder / "u.txt").write_text("naïve café\nplain\n")
    result = files.ok("search_content", pattern=r"caf\w\b", path=files.name)
    assert [m["line"] for m in result.structured_content["matches"]] == [1]
    one_char = files.ok("search_content", pattern=r"na.ve", path=files.name)
    assert len(one_char.structured_content["matches"]) == 1


def test_search_content_rejects_bad_regexes_with_advice(files: Files) -> None:
    message = files.error("search_content", pattern="(unclosed", path=files.name)
    assert "invalid regular expression" in message and "fixed_strings" in message


def test_get_file_info_reports_type_size_times_and_symlinks(files: Files) -> None:
    (files.folder / "a.txt").write_text("12345")
    (files.folder / "a.txt").chmod(0o640)
    (files.folder / "link").symlink_to("a.txt")
    info = files.ok("get_file_info", path=files.rel("a.txt")).structured_content
    assert info["type"] == "file" and info["size"] == 5 and info["mode"] == "0640"
    assert info["permissions"] == "rw-r-----" and info["is_symlink"] is False and "T" in info["modified"]
    link = files.ok("get_file_info", path=files.rel("link")).structured_content
    assert link["is_symlink"] is True and link["symlink_target"] == "a.txt"
    assert link["real_path"] == str((files.folder / "a.txt").resolve())
    assert files.ok("get_file_info", path=files.name).structured_content["type"] == "directory"
    assert "no such file" in files.error("get_file_info", path=files.rel("nope"))


def test_list_allowed_roots_names_the_command_line_root(files: Files) -> None:
    result = files.ok("list_allowed_roots")
    assert result.structured_content == {"roots": [str(files.conn.root.resolve())], "source": "command line"}


def test_relative_paths_start_at_the_first_root(files: Files) -> None:
    files.ok("write_file", path=files.rel("rel.txt"), content="x")
    assert (files.conn.root / files.name / "rel.txt").exists()


# --- attack table ----------------------------------------------------------------------------------------------


def _setup_links(files: Files) -> None:
    """Plant the traps every attack may use: links out of the root, loops, a dangling link, a sibling link."""
    base, folder = files.conn.base, files.folder
    (folder / "mine.txt").write_text("mine\n")
    (folder / "to_secret").symlink_to(base / "outside" / "secret.txt")
    (folder / "to_outside").symlink_to(base / "outside")
    (folder / "rel_out").symlink_to("../../outside/secret.txt")
    (folder / "dangling").symlink_to(base / "outside" / "planted.txt")
    (folder / "loop_a").symlink_to("loop_b")
    (folder / "loop_b").symlink_to("loop_a")
    (folder / "self").symlink_to("self")
    (folder / "to_sibling").symlink_to(base / "root2")
    (folder / "sub").mkdir()


# (id, tool, arguments with {n} = the test folder and {base} = the folder holding root/outside/root2, reason)
ATTACKS: list[tuple[str, str, dict[str, Any], str]] = [
    ("dotdot-from-root", "read_file", {"path": "../outside/secret.txt"}, "outside the allowed roots"),
    (
        "dotdot-from-folder",
        "read_file",
        {"path": "{n}/../../outside/secret.txt"},
        "outside the allowed roots",
    ),
    (
        "dotdot-chain-to-etc",
        "read_file",
        {"path": "../../../../../../../../../etc/passwd"},
        "outside the allowed roots",
    ),
    (
        "dotdot-through-missing-dir",
        "write_file",
        {"path": "{n}/nope/../../../outside/x.txt", "content": "x"},
        "outside the allowed roots",
    ),
    (
        "dot-segments",
        "read_file",
        {"path": "{n}/./.././../outside/./secret.txt"},
        "outside the allowed roots",
    ),
    ("absolute-etc-passwd", "read_file", {"path": "/etc/passwd"}, "outside the allowed roots"),
    ("double-slash-absolute", "read_file", {"path": "//etc//passwd"}, "outside the allowed roots"),
    ("absolute-outside", "read_file", {"path": "{base}/outside/secret.txt"}, "outside the allowed roots"),
    ("home-tilde", "read_file", {"path": "~/.bashrc"}, "outside the allowed roots"),
    ("symlink-to-file", "read_file", {"path": "{n}/to_secret"}, "symlink target outside"),
    ("relative-symlink-out", "read_file", {"path": "{n}/rel_out"}, "symlink target outside"),
    ("symlinked-parent-read", "read_file", {"path": "{n}/to_outside/secret.txt"}, "symlink target outside"),
    (
        "symlinked-parent-write",
        "write_file",
        {"path": "{n}/to_outside/new.txt", "content": "x"},
        "symlink target outside",
    ),
    (
        "write-through-symlink",
        "write_file",
        {"path": "{n}/to_secret", "content": "pwned"},
        "symlink target outside",
    ),
    (
        "write-through-dangling-symlink",
        "write_file",
        {"path": "{n}/dangling", "content": "pwned"},
        "symlink target outside",
    ),
    (
        "edit-through-symlink",
        "edit_file",
        {"path": "{n}/to_secret", "edits": [{"old_text": "TOP", "new_text": "NOT"}]},
        "symlink target outside",
    ),
    ("media-through-symlink", "read_media_file", {"path": "{n}/to_secret"}, "symlink target outside"),
    ("symlink-loop-read", "read_file", {"path": "{n}/loop_a"}, "symlink loop"),
    ("symlink-loop-write", "write_file", {"path": "{n}/loop_a", "content": "x"}, "symlink loop"),
    ("symlink-self-loop", "get_file_info", {"path": "{n}/self"}, "symlink loop"),
    ("nul-byte-read", "read_file", {"path": "{n}/mine.txt\x00../../outside/secret.txt"}, "NUL byte"),
    ("nul-byte-write", "write_file", {"path": "{n}/x\x00y", "content": "x"}, "NUL byte"),
    ("very-long-path", "read_file", {"path": "a/" * 2100}, "path too long"),
    ("very-long-name", "write_file", {"path": "{n}/" + "x" * 300, "content": "x"}, "file name too long"),
    ("case-trick-outside", "read_file", {"path": "../OUTSIDE/secret.txt"}, "outside the allowed roots"),
    ("case-trick-root", "read_file", {"path": "{BASE}/ROOT/{n}/mine.txt"}, "outside the allowed roots"),
    ("fullwidth-solidus", "read_file", {"path": "..\uff0foutside\uff0fsecret.txt"}, "no such file"),
    ("two-dot-leader", "read_file", {"path": "\u2025/outside/secret.txt"}, "no such file"),
    ("one-dot-leaders", "read_file", {"path": "\u2024\u2024/outside/secret.txt"}, "no such file"),
    ("backslashes", "read_file", {"path": "..\\outside\\secret.txt"}, "no such file"),
    ("file-url", "read_file", {"path": "file:///etc/passwd"}, "no such file"),
    (
        "sibling-prefix-absolute",
        "read_file",
        {"path": "{base}/root2/secret2.txt"},
        "outside the allowed roots",
    ),
    ("sibling-prefix-relative", "read_file", {"path": "../root2/secret2.txt"}, "outside the allowed roots"),
    ("sibling-prefix-symlink", "list_directory", {"path": "{n}/to_sibling"}, "symlink target outside"),
    (
        "move-source-outside",
        "move_file",
        {"source": "../outside/secret.txt", "destination": "{n}/stolen.txt"},
        "outside the allowed roots",
    ),
    (
        "move-destination-outside",
        "move_file",
        {"source": "{n}/mine.txt", "destination": "../outside/dropped.txt"},
        "outside the allowed roots",
    ),
    (
        "move-into-symlinked-dir",
        "move_file",
        {"source": "{n}/mine.txt", "destination": "{n}/to_outside/dropped.txt"},
        "symlink target outside",
    ),
    ("move-over-the-root", "move_file", {"source": "{n}/mine.txt", "destination": "."}, "allowed root"),
    ("delete-outside", "delete_file", {"path": "../outside/secret.txt"}, "outside the allowed roots"),
    (
        "delete-through-symlinked-dir",
        "delete_file",
        {"path": "{n}/to_outside/secret.txt"},
        "symlink target outside",
    ),
    (
        "delete-the-root",
        "delete_file",
        {"path": ".", "recursive": True},
        "refusing to delete an allowed root",
    ),
    (
        "delete-the-root-absolute",
        "delete_file",
        {"path": "{base}/root", "recursive": True},
        "refusing to delete an allowed root",
    ),
    ("mkdir-outside", "create_directory", {"path": "../outside/newdir"}, "outside the allowed roots"),
    (
        "mkdir-through-symlinked-dir",
        "create_directory",
        {"path": "{n}/to_outside/newdir"},
        "symlink target outside",
    ),
    ("list-outside", "list_directory", {"path": ".."}, "outside the allowed roots"),
    ("tree-of-filesystem-root", "directory_tree", {"path": "/"}, "outside the allowed roots"),
    (
        "search-outside",
        "search_content",
        {"pattern": "SECRET", "path": "../outside"},
        "outside the allowed roots",
    ),
    (
        "search-through-symlinked-dir",
        "search_content",
        {"pattern": "SECRET", "path": "{n}/to_outside"},
        "symlink target outside",
    ),
    ("glob-outside", "glob_search", {"pattern": "*", "path": "{base}"}, "outside the allowed roots"),
    ("glob-pattern-escapes", "glob_search", {"pattern": "../../outside/*", "path": "{n}"}, "cannot leave"),
    ("info-outside", "get_file_info", {"path": "/etc/passwd"}, "outside the allowed roots"),
]


def _fill(value: Any, files: Files) -> Any:
    if isinstance(value, str):
        base = str(files.conn.base)
        return value.replace("{n}", files.name).replace("{base}", base).replace("{BASE}", base.upper())
    if isinstance(value, list):
        return [_fill(v, files) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, files) for k, v in value.items()}
    return value


def snapshot(base: Path) -> dict[str, bytes]:
    """Every file outside the root (outside/ and root2/), by path, with its content."""
    return {
        str(p.relative_to(base)): p.read_bytes()
        for folder in ("outside", "root2")
        for p in sorted((base / folder).rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("tool", "arguments", "reason"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_attack_is_refused_with_its_reason(
    files: Files, tool: str, arguments: dict[str, Any], reason: str
) -> None:
    _setup_links(files)
    before = snapshot(files.conn.base)
    message = files.error(tool, **_fill(arguments, files))
    assert reason in message
    assert snapshot(files.conn.base) == before
    assert (files.conn.base / "outside" / "secret.txt").read_text() == SECRET
    assert not (files.conn.base / "outside" / "planted.txt").exists()
    assert (files.folder / "mine.txt").read_text() == "mine\n"
    assert files.conn.root.is_dir()


def test_attack_table_is_large_enough() -> None:
    assert len(ATTACKS) >= 30


def test_read_multiple_files_refuses_outside_paths_one_by_one(files: Files) -> None:
    (files.folder / "ok.txt").write_text("fine\n")
    text = text_of(files.ok("read_multiple_files", paths=["../outside/secret.txt", files.rel("ok.txt")]))
    assert "outside the allowed roots" in text and "1\tfine" in text and "TOP SECRET" not in text


def test_unicode_look_alike_names_stay_inside_the_root(files: Files) -> None:
    name = files.rel("..\uff0fescape.txt")
    files.ok("write_file", path=name, content="inside")
    assert (files.folder / "..\uff0fescape.txt").read_text() == "inside"
    assert snapshot(files.conn.base) == {
        "outside/secret.txt": SECRET.encode(),
        "root2/secret2.txt": SECRET.encode(),
    }


def test_searches_do_not_follow_symlinks_out_of_the_root(files: Files) -> None:
    _setup_links(files)
    found = files.ok("search_content", pattern="SECRET", path=files.name, respect_gitignore=False)
    assert found.structured_content["matches"] == []
    tree = text_of(files.ok("directory_tree", path=files.name))
    assert "to_outside -> " in tree and "to_outside/" not in tree  # listed as a link, never opened


@pytest.mark.parametrize("tool", ["read_file", "write_file", "edit_file", "read_media_file", "get_file_info"])
def test_a_file_swapped_for_a_symlink_between_calls_is_refused(files: Files, tool: str) -> None:
    target = files.folder / "swap.txt"
    target.write_text("TOP line\n")
    files.ok("read_file", path=files.rel("swap.txt"))  # validated and read while it was a plain file
    target.unlink()
    target.symlink_to(files.conn.base / "outside" / "secret.txt")
    arguments: dict[str, Any] = {"path": files.rel("swap.txt")}
    if tool == "write_file":
        arguments["content"] = "pwned"
    if tool == "edit_file":
        arguments["edits"] = [{"old_text": "TOP", "new_text": "NOT"}]
    assert "symlink target outside" in files.error(tool, **arguments)
    assert (files.conn.base / "outside" / "secret.txt").read_text() == SECRET


# --- the guard's race safety, in process (a swap inside one call cannot be timed from outside) ---------------


@pytest.fixture
def guarded(tmp_path: Path) -> tuple[PathGuard, Path]:
    base = make_base(tmp_path)
    guard, problems = PathGuard.from_arguments([base / "root"])
    assert not problems
    return guard, base


def test_guard_open_refuses_a_symlink_planted_after_the_check(guarded: tuple[PathGuard, Path]) -> None:
    guard, base = guarded
    (base / "root" / "f.txt").write_text("fine")
    real = guard.resolve("f.txt")
    (base / "root" / "f.txt").unlink()
    (base / "root" / "f.txt").symlink_to(base / "outside" / "secret.txt")
    with pytest.raises(PathError, match="changed into a symlink"):
        guard.open_file(real, "f.txt")


def test_guard_open_refuses_a_parent_swapped_for_a_symlink(guarded: tuple[PathGuard, Path]) -> None:
    guard, base = guarded
    (base / "root" / "d").mkdir()
    (base / "root" / "d" / "secret.txt").write_text("inside")
    real = guard.resolve("d/secret.txt")
    (base / "root" / "d" / "secret.txt").unlink()
    (base / "root" / "d").rmdir()
    (base / "root" / "d").symlink_to(base / "outside")
    with pytest.raises(PathError, match="symlink"):
        guard.open_file(real, "d/secret.txt")
    with pytest.raises(PathError, match="symlink"):
        guard.write_atomic(real, b"pwned")
    assert (base / "outside" / "secret.txt").read_text() == SECRET


def test_guard_write_replaces_a_planted_symlink_instead_of_following_it(
    guarded: tuple[PathGuard, Path],
) -> None:
    guard, base = guarded
    real = guard.resolve("new.txt", must_exist=False)
    (base / "root" / "new.txt").symlink_to(base / "outside" / "secret.txt")  # planted after the check
    assert guard.write_atomic(real, b"mine") is False
    assert (
        not (base / "root" / "new.txt").is_symlink() and (base / "root" / "new.txt").read_bytes() == b"mine"
    )
    assert (base / "outside" / "secret.txt").read_text() == SECRET


def test_guard_boundaries(guarded: tuple[PathGuard, Path]) -> None:
    guard, base = guarded
    root = str((base / "root").resolve())
    assert guard.contains(root) and guard.contains(root + "/x")
    assert not guard.contains(root + "2") and not guard.contains(root + "2/secret2.txt")
    assert guard.display(root + "/a/b") == "a/b" and guard.display(root) == "."


def test_read_window_agrees_with_splitting_the_file(tmp_path: Path) -> None:
    import random

    from agent.servers._text_files import read_window

    rnd = random.Random(7)
    for _ in range(200):
        lines = [b"x" * rnd.choice([0, 3, 20_000, 70_000]) for _ in range(rnd.randrange(0, 30))]
        content = b"\n".join(lines) + (b"\n" if lines and rnd.random() < 0.5 else b"")
        (tmp_path / "f").write_bytes(content)
        expected = (
            content.split(b"\n")[:-1] if content.endswith(b"\n") else content.split(b"\n") if content else []
        )
        offset, limit, tail = rnd.randrange(1, 35), rnd.choice([None, 1, 5]), rnd.choice([None, 1, 4])
        fd = os.open(tmp_path / "f", os.O_RDONLY)
        try:
            window = read_window(fd, offset=offset, limit=limit, tail=tail, max_bytes=1 << 20)
        finally:
            os.close(fd)
        if tail is not None:
            offset, limit = max(1, len(expected) - tail + 1), tail
        wanted = list(range(offset, len(expected) + 1))[: limit or None]
        assert [int(row.split("\t")[0]) for row in window.text.splitlines()] == wanted
        assert window.total == len(expected)


def test_gitignore_fast_path_agrees_with_pathspec() -> None:
    import pathspec

    from agent.servers._tree_walk import IgnoreFile

    patterns = [
        "*.pyc",
        "build/",
        "/dist",
        "node_modules",
        "docs/**/*.tmp",
        "**/cache/x",
        "a?c",
        "[Tt]emp*",
        "logs/*.log",
    ]
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    fast = IgnoreFile("\n".join(patterns))
    paths = [
        "m.pyc",
        "a/b/m.pyc",
        "build/",
        "src/build/",
        "build",
        "dist",
        "dist/",
        "src/dist",
        "node_modules/",
        "x/node_modules",
        "docs/a/b/z.tmp",
        "docs/z.tmp",
        "z.tmp",
        "q/cache/x",
        "cache/x",
        "abc",
        "d/abc",
        "Temp1",
        "x/temporary",
        "logs/a.log",
        "x/logs/a.log",
        "keep.py",
    ]
    for path in paths:
        name = path.rstrip("/").rsplit("/", 1)[-1] + ("/" if path.endswith("/") else "")
        assert bool(fast.decide(path, name)) == bool(spec.check_file(path).include), path


# --- names that are not valid UTF-8 ----------------------------------------------------------------------------

CAFE = b"caf\xe9.txt"  # a Latin-1 name: not valid UTF-8
CAFE_SHOWN = "caf\\xe9.txt"  # how the tools show it: the odd byte as a literal \xNN


def byte_path(folder: Path, *names: bytes) -> bytes:
    return os.path.join(os.fsencode(folder), *names)


def make_byte_file(folder: Path, *names: bytes, content: bytes = b"bonjour\n") -> bytes:
    path = byte_path(folder, *names)
    with open(path, "wb") as file:
        file.write(content)
    return path


def test_list_directory_shows_non_utf8_names_escaped(files: Files) -> None:
    make_byte_file(files.folder, CAFE)
    result = files.ok("list_directory", path=files.name)
    assert [entry["name"] for entry in result.structured_content["entries"]] == [CAFE_SHOWN]
    assert f"[FILE] {CAFE_SHOWN}  8 B" in text_of(result)


def test_read_tools_take_escaped_names_back(files: Files) -> None:
    make_byte_file(files.folder, CAFE)
    shown = files.rel(CAFE_SHOWN)
    assert "1\tbonjour" in text_of(files.ok("read_file", path=shown))
    assert f"==> {shown} <==\n     1\tbonjour" in text_of(files.ok("read_multiple_files", paths=[shown]))
    info = files.ok("get_file_info", path=shown).structured_content
    assert info["path"] == shown and info["size"] == 8
    assert info["real_path"] == os.path.join(str(files.folder.resolve()), CAFE_SHOWN)
    assert "text/plain" in text_of(files.ok("read_media_file", path=shown))


def test_write_and_edit_take_escaped_names_back(files: Files) -> None:
    on_disk = make_byte_file(files.folder, CAFE)
    shown = files.rel(CAFE_SHOWN)
    written = files.ok("write_file", path=shown, content="salut\n")
    assert written.structured_content == {"path": shown, "bytes_written": 6, "created": False}
    edited = text_of(files.ok("edit_file", path=shown, edits=[{"old_text": "salut", "new_text": "ciao"}]))
    assert f"+++ {shown}" in edited or shown in edited.splitlines()[0]
    with open(on_disk, "rb") as file:
        assert file.read() == b"ciao\n"
    assert os.listdir(os.fsencode(files.folder)) == [CAFE]


def test_move_and_delete_take_escaped_names_back(files: Files) -> None:
    make_byte_file(files.folder, CAFE)
    moved = files.ok("move_file", source=files.rel(CAFE_SHOWN), destination=files.rel("d\\xfc.txt"))
    assert moved.structured_content["destination"] == files.rel("d\\xfc.txt")
    assert os.listdir(os.fsencode(files.folder)) == [b"d\xfc.txt"]
    files.ok("delete_file", path=files.rel("d\\xfc.txt"))
    assert os.listdir(os.fsencode(files.folder)) == []


def test_tree_glob_and_search_show_escaped_names_that_work_as_paths(files: Files) -> None:
    os.mkdir(byte_path(files.folder, b"r\xe9sum\xe9"))
    make_byte_file(files.folder, b"r\xe9sum\xe9", CAFE, content=b"needle\n")
    inner = files.rel("r\\xe9sum\\xe9", CAFE_SHOWN)
    tree = text_of(files.ok("directory_tree", path=files.name))
    assert "r\\xe9sum\\xe9/" in tree and CAFE_SHOWN in tree
    assert files.ok("glob_search", pattern="**/*.txt", path=files.name).structured_content["matches"] == [inner]
    found = files.ok("search_content", pattern="needle", path=files.name)
    assert [m["path"] for m in found.structured_content["matches"]] == [inner]
    assert f"{inner}:1:needle" in text_of(found)
    assert "1\tneedle" in text_of(files.ok("read_file", path=inner))
    assert files.ok("list_directory", path=files.rel("r\\xe9sum\\xe9")).structured_content["total"] == 1


def test_a_name_that_exists_as_given_wins_over_reading_its_escapes(files: Files) -> None:
    (files.folder / CAFE_SHOWN).write_text("literal backslash\n")
    make_byte_file(files.folder, CAFE, content=b"odd byte\n")
    assert "literal backslash" in text_of(files.ok("read_file", path=files.rel(CAFE_SHOWN)))


def test_a_symlink_to_a_non_utf8_name_shows_its_target_escaped(files: Files) -> None:
    make_byte_file(files.folder, CAFE)
    os.symlink(CAFE, byte_path(files.folder, b"link"))
    info = files.ok("get_file_info", path=files.rel("link")).structured_content
    assert info["symlink_target"] == CAFE_SHOWN and info["real_path"].endswith(CAFE_SHOWN)
    assert f"link -> {CAFE_SHOWN}" in text_of(files.ok("directory_tree", path=files.name))


def test_errors_about_non_utf8_names_show_them_escaped(files: Files) -> None:
    os.mkdir(byte_path(files.folder, CAFE))
    assert f"is a directory: {files.rel(CAFE_SHOWN)}" in files.error("read_file", path=files.rel(CAFE_SHOWN))
    target = make_byte_file(files.conn.base / "outside", files.name.encode() + b"-" + CAFE)
    os.symlink(target, byte_path(files.folder, b"escape"))
    refused = files.error("read_file", path=files.rel("escape"))
    assert "symlink target outside the allowed roots" in refused
    assert f"outside/{files.name}-{CAFE_SHOWN}" in refused


def test_search_content_reads_latin1_content_with_a_stated_fallback(files: Files) -> None:
    (files.folder / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))
    found = files.ok("search_content", pattern="caf", path=files.name)
    assert [m["text"] for m in found.structured_content["matches"]] == ["caf\ufffd cr\ufffdme"]
    read = text_of(files.ok("read_file", path=files.rel("latin1.txt")))
    assert "caf\ufffd" in read and "not valid UTF-8: undecodable bytes are shown as U+FFFD" in read


def test_a_root_whose_own_name_is_not_utf8_is_served(tmp_path: Path) -> None:
    root = byte_path(tmp_path, b"r\xe9")
    os.mkdir(root)
    make_byte_file(Path(os.fsdecode(root)), b"a.txt")
    shown_root = os.path.join(str(tmp_path.resolve()), "r\\xe9")
    with connected(stdio_params(Path(os.fsdecode(root))), tmp_path) as conn:
        roots = conn.portal.call(conn.client.call_tool, "list_allowed_roots", {})
        assert roots.structured_content["roots"] == [shown_root]
        assert shown_root in (conn.client.instructions or "")
        listed = conn.portal.call(conn.client.call_tool, "list_directory", {"path": shown_root})
        assert not listed.is_error and listed.structured_content["entries"][0]["name"] == "a.txt"
        read = conn.portal.call(conn.client.call_tool, "read_file", {"path": f"{shown_root}/a.txt"})
        assert "1\tbonjour" in text_of(read)


# --- client roots and the command line ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The roots capability is deprecated")  # roots are the point here
def test_client_roots_narrow_the_command_line_roots_on_handshake_connections(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    (base / "root" / "inner").mkdir()
    (base / "root" / "top.txt").write_text("top\n")

    offered = [(base / "root" / "inner").as_uri(), "file:///etc"]

    async def roots(_ctx: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=uri) for uri in offered])

    with connected(stdio_params(base / "root"), base, mode="legacy", list_roots_callback=roots) as conn:
        listed = conn.portal.call(conn.client.call_tool, "list_allowed_roots", {})
        assert listed.structured_content == {
            "roots": [str((base / "root" / "inner").resolve())],
            "source": "client roots",
        }
        refused = conn.portal.call(
            conn.client.call_tool, "read_file", {"path": str(base / "root" / "top.txt")}
        )
        assert refused.is_error and "outside the allowed roots" in text_of(refused)
        written = conn.portal.call(conn.client.call_tool, "write_file", {"path": "x.txt", "content": "x"})
        assert not written.is_error and (base / "root" / "inner" / "x.txt").exists()

        offered[:] = [tmp_path.as_uri()]  # wider than the command line: narrows back to the root itself
        conn.portal.call(conn.client.session.send_roots_list_changed)
        for _ in range(50):
            listed = conn.portal.call(conn.client.call_tool, "list_allowed_roots", {})
            if listed.structured_content["roots"] != [str((base / "root" / "inner").resolve())]:
                break
            time.sleep(0.02)
        assert listed.structured_content == {
            "roots": [str((base / "root").resolve())],
            "source": "client roots",
        }


@pytest.mark.filterwarnings("ignore:The roots capability is deprecated")
def test_a_client_that_lists_no_roots_keeps_the_command_line_roots(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    (base / "root" / "a.txt").write_text("alpha\n")

    async def no_roots(_ctx: Any) -> ListRootsResult:
        return ListRootsResult(roots=[])  # what the MCP Inspector 2.x answers

    with connected(stdio_params(base / "root"), base, mode="legacy", list_roots_callback=no_roots) as conn:
        listed = conn.portal.call(conn.client.call_tool, "list_allowed_roots", {})
        assert listed.structured_content == {"roots": [str((base / "root").resolve())], "source": "command line"}
        read = conn.portal.call(conn.client.call_tool, "read_file", {"path": "a.txt"})
        assert not read.is_error and "1\talpha" in text_of(read)


@pytest.mark.filterwarnings("ignore:The roots capability is deprecated")
def test_client_roots_are_asked_for_once_per_connection(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    asked: list[int] = []

    async def roots(_ctx: Any) -> ListRootsResult:
        asked.append(1)
        return ListRootsResult(roots=[Root(uri=(base / "root").as_uri())])

    with connected(stdio_params(base / "root"), base, mode="legacy", list_roots_callback=roots) as conn:
        for _ in range(3):
            conn.portal.call(conn.client.call_tool, "list_allowed_roots", {})
    assert len(asked) == 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.servers.files", *args], cwd=REPO, capture_output=True, text=True, timeout=30
    )


def test_cli_refuses_to_start_without_a_usable_root(tmp_path: Path) -> None:
    done = run_cli(str(tmp_path / "missing"))
    assert done.returncode == 2 and "no usable root directory" in done.stderr


def test_cli_help_lists_the_options() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for option in ("--http", "--client-roots", "--max-read-kb", "--max-media-mb"):
        assert option in done.stdout


def test_build_server_and_main_are_importable_without_starting_anything(tmp_path: Path) -> None:
    from agent.servers.files import build_server, main

    server = build_server([tmp_path])
    tools = anyio.run(server.list_tools)
    assert {tool.name for tool in tools} == TOOLS
    assert callable(main)
