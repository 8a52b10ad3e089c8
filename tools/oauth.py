"""OAuth 2.1 for HTTP MCP servers: per-user token files, the `httpx2.Auth` a connection uses, and the one-time login.

Runs are headless: they use and refresh stored tokens (or fetch client-credentials tokens) and never open a
browser; a server that needs a person to log in fails to start, naming `agent auth login NAME`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import warnings
import webbrowser
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import httpx2
from mcp.client.auth import OAuthClientProvider, OAuthFlowError
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.auth.utils import union_scopes
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl, ValidationError

from agent.errors import ConfigError, ToolServerError
from agent.tools.config import OAuthSettings, ServerSpec

TOKEN_DIR_ENV = "AGENT_OAUTH_DIR"
"""Overrides where token files live (default: the platformdirs user data dir of `deepseek-agent`, `oauth/`)."""
CLIENT_NAME = "deepseek-agent"
LOGIN_TIMEOUT = 300.0
_CALLBACK_PATH = "/callback"


class LoginRequired(ToolServerError):
    """A server needs an interactive OAuth login, which a run never does: `agent auth login NAME` does it once."""


def token_dir() -> Path:
    """The folder of this user's token files."""
    configured = os.environ.get(TOKEN_DIR_ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return platformdirs.user_data_path("deepseek-agent", appauthor=False) / "oauth"


def token_path(server_url: str) -> Path:
    """One file per server URL: a readable host-and-port prefix, then a hash of the whole URL."""
    parts = urlsplit(server_url)
    label = re.sub(r"[^A-Za-z0-9.-]+", "_", parts.netloc or "server").strip("_") or "server"
    digest = hashlib.sha256(server_url.encode()).hexdigest()[:16]
    return token_dir() / f"{label}-{digest}.json"


class FileTokenStorage:
    """The SDK's `TokenStorage` on disk: one JSON file (mode 0600, folder 0700), replaced atomically on each write.

    Keeps the absolute expiry beside the tokens, so a later run knows a stored access token has expired and
    refreshes it before use instead of meeting a 401.
    """

    def __init__(self, server_url: str, path: Path | None = None) -> None:
        self.server_url = server_url
        self.path = path or token_path(server_url)

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot read the stored OAuth tokens ({exc}); delete the file and run "
                              "`agent auth login` again") from None
        return data if isinstance(data, dict) else {}

    def write(self, data: dict[str, Any]) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        data = {**data, "server_url": self.server_url, "updated_at": time.time()}
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> bool:
        """Forget this server's tokens and client registration; True if there was a file."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def drop_tokens(self) -> None:
        data = self.read()
        if data.pop("tokens", None) is not None:
            data.pop("expires_at", None)
            self.write(data)

    @property
    def expires_at(self) -> float | None:
        value = self.read().get("expires_at")
        return float(value) if isinstance(value, int | float) else None

    # -- the SDK's TokenStorage protocol --

    async def get_tokens(self) -> OAuthToken | None:
        raw = self.read().get("tokens")
        try:
            return OAuthToken.model_validate(raw) if raw else None
        except ValidationError:
            return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        data = self.read()
        data["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        data["expires_at"] = time.time() + int(tokens.expires_in) if tokens.expires_in is not None else None
        self.write(data)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        raw = self.read().get("client_info")
        try:
            return OAuthClientInformationFull.model_validate(raw) if raw else None
        except ValidationError:
            return None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        data = self.read()
        data["client_info"] = client_info.model_dump(mode="json", exclude_none=True)
        self.write(data)


# -- the auth a connection uses --------------------------------------------------------------------------------


Browser = Callable[[str], Awaitable[None]]
"""Shows the authorization URL to the person logging in (prints it, opens a browser, or, in tests, follows it)."""


class _AuthorizationCodeAuth(OAuthClientProvider):
    """The SDK's authorization-code provider, with the stored expiry, a pre-registered client, and headless mode.

    Headless (no `browser`): where the SDK would start an authorization, it first tries the stored refresh token
    once, and otherwise raises `LoginRequired` naming the command that logs in.
    """

    def __init__(self, name: str, spec: ServerSpec, storage: FileTokenStorage, *,
                 redirect_uri: str, browser: Browser | None,
                 callback: Callable[[], Awaitable[AuthorizationCodeResult]] | None) -> None:
        settings = spec.oauth or OAuthSettings()
        fixed = _preregistered_client(settings, redirect_uri)
        metadata = OAuthClientMetadata(
            client_name=CLIENT_NAME, redirect_uris=[AnyUrl(redirect_uri)],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            scope=" ".join(settings.scopes) if settings.scopes else None,
            token_endpoint_auth_method=fixed.token_endpoint_auth_method if fixed else "none",
        )
        super().__init__(spec.url or "", metadata, storage, redirect_handler=browser or self._login_required,
                         callback_handler=callback or self._no_callback,
                         client_metadata_url=settings.client_metadata_url)
        self._name = name
        self._storage = storage
        self._fixed_client = fixed
        self._headless = browser is None
        self._refresh_tried = False
        self._refreshing: OAuthToken | None = None
        self._had_tokens = False
        self._scopes = " ".join(settings.scopes) if settings.scopes else None

    async def _initialize(self) -> None:
        await super()._initialize()
        if self._fixed_client is not None:
            self.context.client_info = self._fixed_client
        elif self._headless and self.context.client_info is None:
            # Not registered yet: a run would register a client only to find it cannot log in. This stand-in
            # (never stored) skips the registration; the authorization step then raises LoginRequired.
            self.context.client_info = OAuthClientInformationFull(client_id="agent-auth-login-needed")
        self._had_tokens = self.context.current_tokens is not None
        # The SDK only knows the expiry of tokens it obtained itself; stored ones carry theirs.
        self.context.token_expiry_time = self._storage.expires_at

    async def _perform_authorization(self) -> httpx2.Request:
        if self._headless:
            tokens = self.context.current_tokens
            if tokens and tokens.refresh_token and self.context.client_info and not self._refresh_tried:
                # A 401 for a token we thought valid (revoked, clock skew): a refresh may still do.
                self._refresh_tried = True
                self._refreshing = tokens
                return await self._refresh_token()
            await self._login_required("")
        if self._scopes:
            # The SDK asks for the scopes the server's challenge or metadata names; configured ones are added.
            self.context.client_metadata.scope = union_scopes(self.context.client_metadata.scope, self._scopes)
        return await super()._perform_authorization()

    async def _handle_token_response(self, response: httpx2.Response) -> None:
        prior, self._refreshing = self._refreshing, None
        if prior is not None and response.status_code not in (200, 201):
            self._storage.drop_tokens()
            raise LoginRequired(_login_message(self._name, self.context.server_url, "its stored refresh token was "
                                               f"refused (HTTP {response.status_code})"))
        await super()._handle_token_response(response)
        tokens = self.context.current_tokens
        if prior is not None and tokens is not None and tokens.refresh_token is None and prior.refresh_token:
            tokens.refresh_token = prior.refresh_token  # the server does not rotate refresh tokens
            await self._storage.set_tokens(tokens)

    async def _login_required(self, url: str) -> None:
        why = ("its stored tokens were refused and could not be refreshed" if self._had_tokens
               else "no tokens are stored for it")
        raise LoginRequired(_login_message(self._name, self.context.server_url, why))

    @staticmethod
    async def _no_callback() -> AuthorizationCodeResult:
        raise OAuthFlowError("no authorization callback in this mode")


class _ClientCredentialsAuth(ClientCredentialsOAuthProvider):
    """The SDK's client-credentials provider, keeping tokens (and their expiry) in the token file."""

    def __init__(self, spec: ServerSpec, storage: FileTokenStorage) -> None:
        settings = spec.oauth
        assert settings is not None and settings.client_id and settings.client_secret
        method = settings.token_endpoint_auth_method or "client_secret_basic"
        with warnings.catch_warnings():
            # Without `issuer` the SDK warns that the server picks where the secret goes; the config docs say so.
            warnings.simplefilter("ignore")
            super().__init__(spec.url or "", storage, settings.client_id, settings.client_secret,
                             token_endpoint_auth_method=method,  # type: ignore[arg-type]
                             scope=" ".join(settings.scopes) if settings.scopes else None, issuer=settings.issuer)
        self._storage = storage

    async def _initialize(self) -> None:
        await super()._initialize()
        self.context.token_expiry_time = self._storage.expires_at


def _preregistered_client(settings: OAuthSettings, redirect_uri: str | None) -> OAuthClientInformationFull | None:
    if not settings.client_id:
        return None
    method = settings.token_endpoint_auth_method or ("client_secret_basic" if settings.client_secret else "none")
    return OAuthClientInformationFull(
        client_id=settings.client_id, client_secret=settings.client_secret, token_endpoint_auth_method=method,
        redirect_uris=[AnyUrl(redirect_uri)] if redirect_uri else None,
        grant_types=["authorization_code", "refresh_token"],
    )


def _login_message(name: str, url: str, why: str) -> str:
    return (f"MCP server {name!r} ({url}) needs an OAuth login: {why}. Runs never open a browser: run "
            f"`agent auth login {name}` once (add `--config FILE` naming the task or MCP config file that defines "
            "it, unless that is ./.mcp.json), then start the run again.")


class _QuietLoginRequired(logging.Filter):
    """The SDK logs every OAuth flow error with a traceback; a missing login is reported once, as a message."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, LoginRequired)


_QUIET = _QuietLoginRequired()


def connection_auth(name: str, spec: ServerSpec) -> httpx2.Auth | None:
    """The `auth=` for a run's connection to `spec` (None without `oauth`): stored tokens, refreshed as needed."""
    if spec.oauth is None or spec.url is None:
        return None
    logger = logging.getLogger("mcp.client.auth.oauth2")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
    storage = FileTokenStorage(spec.url)
    if spec.oauth.grant == "client_credentials":
        return _ClientCredentialsAuth(spec, storage)
    return _AuthorizationCodeAuth(name, spec, storage, redirect_uri=_stored_redirect_uri(spec, storage),
                                  browser=None, callback=None)


def _stored_redirect_uri(spec: ServerSpec, storage: FileTokenStorage) -> str:
    """The redirect URI the login registered (token requests repeat it); the configured port's before any login."""
    info = storage.read().get("client_info") or {}
    uris = info.get("redirect_uris") if isinstance(info, dict) else None
    if isinstance(uris, list) and uris and isinstance(uris[0], str):
        return uris[0]
    port = spec.oauth.redirect_port if spec.oauth and spec.oauth.redirect_port else 0
    return f"http://127.0.0.1:{port or 1}{_CALLBACK_PATH}"


# -- the one-time login ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    server_url: str
    token_file: Path
    tools: int
    scope: str | None
    expires_at: float | None


def system_browser(announce: Callable[[str], None]) -> Browser:
    """Print the URL, and open it in the user's browser where there is one."""

    async def show(url: str) -> None:
        announce(url)
        try:
            await anyio.to_thread.run_sync(webbrowser.open, url)
        except Exception:
            pass  # the printed URL is enough

    return show


async def login(name: str, spec: ServerSpec, *, browser: Browser, timeout: float = LOGIN_TIMEOUT) -> LoginResult:
    """Log in to `spec` once: discovery, registration (or the pre-registered client), the browser step with PKCE and
    a loopback redirect, then a real MCP connection that lists the tools with the new tokens, which are stored."""
    if spec.oauth is None or spec.url is None:
        raise ConfigError(f"server {name!r} has no `oauth` setting: nothing to log in to (an Authorization header, "
                          "if it has one, is sent as given)")
    storage = FileTokenStorage(spec.url)
    storage.drop_tokens()
    if spec.oauth.grant == "client_credentials":
        tools = await _list_tools(spec, _ClientCredentialsAuth(spec, storage))
        return _result(spec.url, storage, tools)
    async with _LoopbackRedirect(spec.oauth.redirect_port or 0) as redirect:
        registered = await storage.get_client_info()
        if registered is not None and not spec.oauth.client_id and not registered.client_id.startswith("https://"):
            uris = [str(u) for u in registered.redirect_uris or []]
            if redirect.uri not in uris:  # registered for another port: register again
                data = storage.read()
                data.pop("client_info", None)
                storage.write(data)
        auth = _AuthorizationCodeAuth(name, spec, storage, redirect_uri=redirect.uri, browser=browser,
                                      callback=redirect.result)
        with anyio.fail_after(timeout):
            tools = await _list_tools(spec, auth)
    return _result(spec.url, storage, tools)


def _result(url: str, storage: FileTokenStorage, tools: int) -> LoginResult:
    data = storage.read()
    tokens = data.get("tokens") or {}
    return LoginResult(server_url=url, token_file=storage.path, tools=tools, scope=tokens.get("scope"),
                       expires_at=storage.expires_at)


async def _list_tools(spec: ServerSpec, auth: httpx2.Auth) -> int:
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    assert spec.url is not None
    mode = "legacy" if spec.protocol == "legacy" else "auto"
    async with httpx2.AsyncClient(auth=auth, headers=spec.headers or None,
                                  timeout=httpx2.Timeout(30.0, read=300.0)) as http:
        transport = (sse_client(spec.url, headers=spec.headers or None, auth=auth) if spec.transport == "sse"
                     else streamable_http_client(spec.url, http_client=http))
        async with Client(transport, mode=mode, cache=None) as client:
            page = await client.list_tools()
            return len(page.tools)


class _LoopbackRedirect:
    """A one-request HTTP listener on 127.0.0.1 that receives the authorization response (RFC 8252 loopback)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.uri = ""
        self._result: AuthorizationCodeResult | None = None
        self._error: str | None = None
        self._arrived = anyio.Event()

    async def __aenter__(self) -> _LoopbackRedirect:
        try:
            self._listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on 127.0.0.1:{self.port} for the login's redirect ({exc.strerror or exc}); "
                              "free the port or set oauth.redirect_port to another") from None
        port = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        self.uri = f"http://127.0.0.1:{port}{_CALLBACK_PATH}"
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._listener.serve, self._handle)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        await self._listener.aclose()

    async def result(self) -> AuthorizationCodeResult:
        await self._arrived.wait()
        if self._result is None:
            raise OAuthFlowError(f"the authorization server refused the login: {self._error}")
        return self._result

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(30):
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = await stream.receive(4096)
                        if not chunk:
                            break
                        head += chunk
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            target = urlsplit(parts[1]) if len(parts) >= 2 else urlsplit("")
            if target.path != _CALLBACK_PATH or self._arrived.is_set():
                await _respond(stream, 404, "Not the login callback.")
                return
            query = {k: v[0] for k, v in parse_qs(target.query).items()}
            if "error" in query:
                self._error = " ".join(filter(None, [query["error"], query.get("error_description")]))
                await _respond(stream, 400, f"Login failed: {self._error}. You can close this window.")
            elif "code" in query:
                self._result = AuthorizationCodeResult(code=query["code"], state=query.get("state"),
                                                       iss=query.get("iss"))
                await _respond(stream, 200, "Logged in: you can close this window and go back to the terminal.")
            else:
                await _respond(stream, 400, "No authorization code in this request.")
                return
            self._arrived.set()


async def _respond(stream: anyio.abc.SocketStream, status: int, text: str) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    body = f"<!doctype html><title>agent auth login</title><p>{text}</p>\n".encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        await stream.send(head + body)
    except (anyio.BrokenResourceError, OSError):
        pass


def status(spec: ServerSpec) -> dict[str, Any]:
    """What is stored for a server: whether tokens exist, their scope and expiry, the client id."""
    if spec.url is None:
        return {"stored": False}
    storage = FileTokenStorage(spec.url)
    data = storage.read()
    tokens = data.get("tokens") or {}
    client = data.get("client_info") or {}
    return {"stored": bool(tokens), "token_file": str(storage.path), "scope": tokens.get("scope"),
            "expires_at": data.get("expires_at"), "refreshable": bool(tokens.get("refresh_token")),
            "client_id": client.get("client_id")}
