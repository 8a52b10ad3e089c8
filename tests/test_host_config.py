"""`agent config mcp`: host entries printed, and merged into existing host files with a backup."""

from __future__ import annotations

import json

from tests.test_cli_run import run_cli


def test_prints_claude_desktop_entries_with_absolute_paths(tmp_path):
    proc = run_cli("config", "mcp", "--client", "claude-desktop", "--root", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    servers = json.loads(proc.stdout)["mcpServers"]
    assert set(servers) == {"agent-files", "agent-shell", "agent-web", "deepseek-agent"}
    files = servers["agent-files"]
    assert files["command"].startswith("/") and files["args"][-3:] == ["server", "files", str(tmp_path.resolve())]
    assert servers["deepseek-agent"]["args"][-3:] == ["serve", "--workspace", str(tmp_path.resolve())]


def test_vscode_uses_servers_with_a_type(tmp_path):
    proc = run_cli("config", "mcp", "--client", "vscode", "--servers", "web", cwd=tmp_path)
    document = json.loads(proc.stdout)
    assert list(document) == ["servers"] and list(document["servers"]) == ["agent-web"]
    entry = document["servers"]["agent-web"]
    assert entry["type"] == "stdio" and entry["args"][-2:] == ["server", "web"]


def test_install_merges_keeps_other_entries_and_writes_a_backup(tmp_path):
    path = tmp_path / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": {"mine": {"command": "x"}}, "other": 1}))
    proc = run_cli("config", "mcp", "--client", "claude-code", "--servers", "files", "--install", "--path", str(path),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(path.read_text())
    assert merged["other"] == 1 and merged["mcpServers"]["mine"] == {"command": "x"}
    assert "agent-files" in merged["mcpServers"]
    backups = list(tmp_path.glob(".mcp.json.bak-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["mcpServers"] == {"mine": {"command": "x"}}


def test_install_refuses_a_broken_file_and_leaves_it_alone(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text("{not json")
    proc = run_cli("config", "mcp", "--client", "cursor", "--install", "--path", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    assert path.read_text() == "{not json"


def test_unknown_server_name_is_a_clear_error(tmp_path):
    proc = run_cli("config", "mcp", "--client", "cursor", "--servers", "files,ftp", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown server 'ftp'" in proc.stderr
