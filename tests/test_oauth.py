"""OAuth 2.1 for HTTP MCP servers, against a real authorization server and the MCP server it protects
(tests/servers/oauth_server.py, a subprocess on a loopback port): discovery, dynamic registration, PKCE, scopes,
stored tokens, refresh, client credentials, the headless failure and `agent auth` through the installed script."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from conftest import free_port, running_command

from agent.errors import ConfigError, ToolServerError
from agent.tools import oauth
from agent.tools.config import ServerSpec, load_mcp_config, parse_servers
from agent.tools.hub import ToolHub

SERVER = Path(__file__).parent / "servers" / "oauth_server.py"
AGENT = Path(sys.executable).parent / "agent"


@pytest.fixture
def token_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tokens"
    monkeypatch.setenv(oauth.TOKEN_DIR_ENV, str(folder))
    return folder


def _server(*args: str) -> Iterator[str]:
    port = free_port()
    with running_command([sys.executable, str(SERVER), str(port), *args], port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def base() -> Iterator[str]:
    yield from _server("--scope", "notes:read")


@pytest.fixture
def short_lived() -> Iterator[str]:
    yield from _server("--scope", "notes:read", "--ttl", "1")


@pytest.fixture
def machine() -> Iterator[str]:
    yield from _server("--client", "robot:s3cret")


def _log(base: str) -> list[dict[str, Any]]:
    return httpx2.get(f"{base}/_log").json()


async def _follow(url: str) -> None:
    """The person in front of the browser: approve (the test server approves at once) and follow the redirect."""
    async with httpx2.AsyncClient(follow_redirects=True) as http:
        response = await http.get(url)
        assert response.status_code == 200, response.text


async def _whoami(spec: ServerSpec) -> str:
    async with ToolHub({"notes": spec}) as hub:
        outcome = await hub.call("notes__whoami", {})
        assert not outcome.is_error, outcome.text
        return outcome.text


def _spec(base: str, **oauth_settings: Any) -> ServerSpec:
    return ServerSpec.model_validate({"url": f"{base}/mcp", "oauth": oauth_settings or True})


# -- configuration ----------------------------------------------------------------------------------------


def test_oauth_true_takes_the_defaults() -> None:
    spec = ServerSpec.model_validate({"url": "http://127.0.0.1:1/mcp", "oauth": True})
    assert spec.oauth is not None and spec.oauth.grant == "authorization_code" and spec.oauth.client_id is None


@pytest.mark.parametrize(("entry", "message"), [
    ({"command": "x", "oauth": True}, "oauth is for remote servers"),
    ({"url": "http://h/mcp", "oauth": True, "headers": {"Authorization": "Bearer t"}}, "not both"),
    ({"url": "http://h/mcp", "oauth": {"grant": "client_credentials"}}, "needs client_id and client_secret"),
    ({"url": "http://h/mcp", "oauth": {"client_secret": "s"}}, "client_secret needs client_id"),
    ({"url": "http://h/mcp", "oauth": {"client_metadata_url": "http://x/c.json"}}, "https URL with a path"),
    ({"url": "http://h/mcp", "oauth": {"scope": "a"}}, "oauth.scope: unknown field"),
])
def test_bad_oauth_settings_name_the_server_and_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="server 'notes'") as info:
        parse_servers({"notes": entry}, where="task.yaml")
    assert message in str(info.value)


def test_client_secret_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTES_SECRET", "from-env")
    path = tmp_path / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": {"notes": {"url": "http://h/mcp", "oauth": {
        "grant": "client_credentials", "client_id": "robot", "client_secret": "${NOTES_SECRET}"}}}}))
    spec = load_mcp_config(path)["notes"]
    assert spec.oauth is not None and spec.oauth.client_secret == "from-env"


def test_bearer_headers_still_work_without_oauth() -> None:
    spec = ServerSpec.model_validate({"url": "http://h/mcp", "headers": {"Authorization": "Bearer t"}})
    assert spec.oauth is None and oauth.connection_auth("notes", spec) is None


# -- token storage --------------------------------------------------------------------------------------------


def test_token_file_is_private_and_written_whole(token_dir: Path) -> None:
    from mcp.shared.auth import OAuthToken

    storage = oauth.FileTokenStorage("http://127.0.0.1:9/mcp")
    anyio.run(storage.set_tokens, OAuthToken(access_token="a", expires_in=60, refresh_token="r"))
    assert stat.S_IMODE(storage.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(storage.path.parent.stat().st_mode) == 0o700
    assert storage.path.parent == token_dir and [p.name for p in token_dir.iterdir()] == [storage.path.name]
    data = json.loads(storage.path.read_text())
    assert data["tokens"]["refresh_token"] == "r" and abs(data["expires_at"] - (time.time() + 60)) < 5
    assert oauth.token_path("http://127.0.0.1:9/other") != storage.path  # one file per server URL


# -- the flows, against the real servers -------------------------------------------------------------------


def test_a_run_without_a_login_fails_to_start_naming_agent_auth_login(base: str, token_dir: Path) -> None:
    with pytest.raises(ToolServerError) as info:
        anyio.run(_whoami, _spec(base))
    text = str(info.value)
    assert "needs an OAuth login" in text and "`agent auth login notes`" in text
    assert not any(e["event"] in ("register", "authorize") for e in _log(base))  # nothing registered, no browser


def test_login_discovers_registers_with_pkce_and_the_run_uses_the_stored_tokens(base: str, token_dir: Path) -> None:
    spec = _spec(base)
    result = anyio.run(lambda: oauth.login("notes", spec, browser=_follow))
    assert result.tools == 1 and result.scope == "notes:read"
    events = _log(base)
    kinds = [e["event"] for e in events]
    assert "as-metadata" in kinds and kinds.count("register") == 1
    authorize = next(e for e in events if e["event"] == "authorize")
    assert authorize["code_challenge_method"] == "S256" and authorize["scope"] == "notes:read"
    assert authorize["resource"] == f"{base}/mcp" and authorize["redirect_uri"].startswith("http://127.0.0.1:")
    token = next(e for e in events if e["event"] == "token")
    assert token["grant_type"] == "authorization_code" and token["has_verifier"]
    # A later run (a new hub): the stored tokens, no new registration or authorization.
    assert anyio.run(_whoami, spec).endswith("notes:read")
    assert [e["event"] for e in _log(base)].count("authorize") == 1


def test_configured_scopes_are_asked_for(base: str, token_dir: Path) -> None:
    spec = _spec(base, scopes=["notes:read", "notes:extra"])
    anyio.run(lambda: oauth.login("notes", spec, browser=_follow))
    authorize = next(e for e in _log(base) if e["event"] == "authorize")
    assert authorize["scope"] == "notes:read notes:extra"


def test_an_expired_access_token_is_refreshed_by_the_run(short_lived: str, token_dir: Path) -> None:
    spec = _spec(short_lived)
    anyio.run(lambda: oauth.login("notes", spec, browser=_follow))
    before = json.loads(oauth.token_path(spec.url or "").read_text())["tokens"]
    time.sleep(1.5)
    assert anyio.run(_whoami, spec).endswith("notes:read")
    grants = [e["grant_type"] for e in _log(short_lived) if e["event"] == "token"]
    assert grants == ["authorization_code", "refresh_token"]
    after = json.loads(oauth.token_path(spec.url or "").read_text())["tokens"]
    assert after["access_token"] != before["access_token"]  # the refreshed tokens were stored


def test_a_refused_token_is_refreshed_once_then_login_is_asked_for(base: str, token_dir: Path) -> None:
    spec = _spec(base)
    anyio.run(lambda: oauth.login("notes", spec, browser=_follow))
    httpx2.post(f"{base}/_revoke")  # the access token dies early; the refresh token still works
    assert anyio.run(_whoami, spec).endswith("notes:read")
    storage = oauth.FileTokenStorage(spec.url or "")
    data = storage.read()
    data["tokens"]["refresh_token"] = "forgotten"
    storage.write(data)
    httpx2.post(f"{base}/_revoke")
    with pytest.raises(ToolServerError, match="stored refresh token was refused.*agent auth login notes"):
        anyio.run(_whoami, spec)


def test_client_credentials_need_no_login(machine: str, token_dir: Path) -> None:
    spec = _spec(machine, grant="client_credentials", client_id="robot", client_secret="s3cret")
    assert anyio.run(_whoami, spec).startswith("robot")
    token = next(e for e in _log(machine) if e["event"] == "token")
    assert token["grant_type"] == "client_credentials" and token["client_id"] == "robot"
    assert oauth.token_path(spec.url or "").exists()


def test_a_pre_registered_client_logs_in_without_registration(machine: str, token_dir: Path) -> None:
    spec = _spec(machine, client_id="robot", client_secret="s3cret", redirect_port=free_port())
    anyio.run(lambda: oauth.login("notes", spec, browser=_follow))
    events = _log(machine)
    assert not any(e["event"] == "register" for e in events)
    assert next(e for e in events if e["event"] == "authorize")["redirect_uri"] == \
        f"http://127.0.0.1:{spec.oauth.redirect_port}/callback"  # type: ignore[union-attr]
    assert anyio.run(_whoami, spec).startswith("robot")


# -- `agent auth` through the installed script ---------------------------------------------------------------


def _agent_env(token_dir: Path) -> dict[str, str]:
    return {**os.environ, oauth.TOKEN_DIR_ENV: str(token_dir), "BROWSER": "true"}


def test_agent_auth_login_status_logout(base: str, token_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / ".mcp.json"
    config.write_text(json.dumps({"mcpServers": {"notes": {"url": f"{base}/mcp", "oauth": True}}}))
    env = _agent_env(token_dir)
    proc = subprocess.Popen([str(AGENT), "auth", "login", "notes", "--config", str(config), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.strip().startswith("http"):
                url = line.strip()
                break
        assert url.startswith(f"{base}/authorize?"), url
        anyio.run(_follow, url)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "logged in to 'notes'" in out and "1 tools" in out
    assert stat.S_IMODE(oauth.token_path(f"{base}/mcp").stat().st_mode) == 0o600

    status = subprocess.run([str(AGENT), "auth", "status"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert status.returncode == 0 and "notes:" in status.stdout and "logged in" in status.stdout, status.stderr
    logout = subprocess.run([str(AGENT), "auth", "logout", "notes"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert logout.returncode == 0 and "removed" in logout.stdout
    assert not oauth.token_path(f"{base}/mcp").exists()
    status = subprocess.run([str(AGENT), "auth", "status"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "not logged in: run `agent auth login notes`" in status.stdout


def test_agent_auth_login_of_a_server_without_oauth_says_what_to_add(tmp_path: Path, token_dir: Path) -> None:
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"plain": {"url": "http://127.0.0.1:1/mcp"}}}))
    done = subprocess.run([str(AGENT), "auth", "login", "plain", "--config", str(config)], capture_output=True,
                          text=True, env=_agent_env(token_dir))
    assert done.returncode == 2 and "has no `oauth` setting" in done.stderr
