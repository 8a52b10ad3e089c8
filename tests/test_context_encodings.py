"""Packed repositories with names and text that are not UTF-8: shown escaped, decoded with a stated fallback.

A name that is not UTF-8 is shown the way the files server shows it, so the model can pass it back as a path:
`name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")`, i.e. b"caf\\xe9.py" is shown as
the text `caf\\xe9.py`, with a literal backslash.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from agent.testing import ScriptedModelServer, ScriptedTurn
from tests.test_cli_run import run_cli

SHOWN_FILE = "caf\\xe9.py"  # the text caf, backslash, x, e, 9, .py
SHOWN_FOLDER = "d\\xe9j\\xe0"


def make_hostile_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    base = os.fsencode(root)
    with open(base + b"/caf\xe9.py", "wb") as handle:
        handle.write(b"CAFE = 1\n")
    os.mkdir(base + b"/d\xe9j\xe0")
    with open(base + b"/d\xe9j\xe0/inner.py", "wb") as handle:
        handle.write(b"INNER = 2\n")
    (root / "latin.py").write_bytes("# Café crème, naïve\nNAME = 'José'\n".encode("latin-1"))
    (root / "blob.dat").write_bytes(bytes(range(1, 32)) * 40 + b"\xff\xfe")  # no NUL, not UTF-8, not text
    (root / "plain.py").write_text("PLAIN = 3\n")
    return root


def test_agent_pack_shows_non_utf8_names_escaped_and_writes_the_snapshot(tmp_path):
    repo = make_hostile_repo(tmp_path / "repo")
    out = tmp_path / "snapshot.md"
    proc = run_cli("pack", str(repo), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert f"### repo/{SHOWN_FILE}" in text and "CAFE = 1" in text
    assert f"### repo/{SHOWN_FOLDER}/inner.py" in text and "INNER = 2" in text
    assert f"\n{SHOWN_FILE}\n" in text  # the file tree


def test_agent_pack_decodes_latin1_text_with_a_stated_fallback(tmp_path):
    repo = make_hostile_repo(tmp_path / "repo")
    out = tmp_path / "snapshot.md"
    proc = run_cli("pack", str(repo), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "# Café crème, naïve\nNAME = 'José'" in text
    assert "### repo/latin.py (not UTF-8: decoded as cp1252)" in text
    assert "latin.py  [decoded as cp1252]" in text  # marked in the tree too
    assert "decoded as cp1252 (not UTF-8): repo/latin.py" in proc.stdout


def test_agent_pack_lists_a_non_utf8_binary_looking_file_as_skipped_with_the_reason(tmp_path):
    repo = make_hostile_repo(tmp_path / "repo")
    out = tmp_path / "snapshot.md"
    proc = run_cli("pack", str(repo), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "- repo/blob.dat: skipped: not UTF-8 and looks binary" in text
    assert "skipped  repo/blob.dat: not UTF-8 and looks binary" in proc.stdout


def test_agent_pack_prints_escaped_names_in_its_breakdown(tmp_path):
    repo = make_hostile_repo(tmp_path / "repo")
    proc = run_cli("pack", str(repo), "--budget", "1000", "--depth", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"repo/{SHOWN_FOLDER}" in proc.stdout


def test_a_run_with_a_packed_repository_of_non_utf8_names_and_text_completes(tmp_path):
    make_hostile_repo(tmp_path / "repo")
    with ScriptedModelServer([ScriptedTurn(content="seen")]) as server:
        task = tmp_path / "task.yaml"
        task.write_text(yaml.safe_dump({"prompt": "Describe the repository.", "model": server.model_string,
                                        "context": {"repos": [{"path": "repo"}]}}))
        proc = run_cli("run", str(task), "--trace", str(tmp_path / "trace.jsonl"), cwd=tmp_path)
        first_user = server.requests[0].body["messages"][1]["content"] if server.requests else ""
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "seen"
    assert f"### repo/{SHOWN_FILE}" in first_user and "CAFE = 1" in first_user
    assert "NAME = 'José'" in first_user and "decoded as cp1252" in first_user
