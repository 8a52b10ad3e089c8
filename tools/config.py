"""MCP server specs: the `mcpServers` entry shape, validation, and reading host config files.

Reads Claude Desktop / Claude Code (`.mcp.json`, key `mcpServers`) and VS Code (`mcp.json`, key `servers`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from agent.errors import ConfigError

Transport = Literal["stdio", "http", "sse"]

SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

CREDENTIAL_ENV = ("DEEPSEEK_API_KEY", "VLLM_API_KEY", "OPENAI_API_KEY", "AGENT_SERVE_TOKEN")
"""The model and serve credentials: they reach a stdio server only when its `env` names them."""


def server_environment(spec: ServerSpec, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a stdio server is started with.

    The MCP SDK's safe default (HOME, LOGNAME, PATH, SHELL, TERM, USER) plus the entry's `env`, as Claude Desktop
    and the SDK do; with `inherit_env` the whole of `environ` (this process's) instead of the safe default,
    minus the credentials in `CREDENTIAL_ENV`. Whatever `env` names is passed as given.
    """
    # Imported here: reading task files must not pay for importing the MCP SDK.
    from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS

    source = os.environ if environ is None else environ
    if spec.inherit_env:
        base = {k: v for k, v in source.items() if k not in CREDENTIAL_ENV}
    else:  # as the SDK's get_default_environment(), over `source`
        base = {k: source[k] for k in DEFAULT_INHERITED_ENV_VARS if k in source and not source[k].startswith("()")}
    return {**base, **spec.env}


class OAuthSettings(BaseModel, extra="forbid"):
    """OAuth 2.1 for a remote server (`oauth:` in its entry; `oauth: true` takes every default).

    With the default grant, `agent auth login NAME` runs the browser flow once (discovery, dynamic client
    registration or the pre-registered `client_id`, PKCE) and stores the tokens for this user; runs use and
    refresh them and never open a browser. `client_credentials` needs no login: runs fetch tokens themselves.
    """

    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    """`authorization_code` (a person logs in once with `agent auth login`) or `client_credentials` (a machine
    client: `client_id` and `client_secret` required, no login)."""
    client_id: str | None = None
    """A client registered with the authorization server beforehand; None: dynamic client registration (or
    `client_metadata_url`). `${VAR}` is expanded."""
    client_secret: str | None = None
    """The pre-registered client's secret, if it has one; use `${VAR}` rather than the secret itself."""
    scopes: list[str] | None = None
    """Scopes to ask for; None: those the server's 401 challenge or metadata names."""
    redirect_port: int | None = Field(default=None, ge=1, le=65535)
    """Loopback port of the login's redirect URI (`http://127.0.0.1:PORT/callback`); None: a free port. Set it
    when a pre-registered client's redirect URI names a port."""
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] | None = None
    """How a pre-registered client authenticates at the token endpoint; None: `client_secret_basic` with a
    secret, `none` without."""
    issuer: str | None = None
    """The authorization server that issued `client_id`/`client_secret` (client_credentials): credentials are only
    sent to that issuer."""
    client_metadata_url: str | None = None
    """An https URL of a Client ID Metadata Document, used as the client_id where the server supports it
    (instead of dynamic registration)."""

    @model_validator(mode="after")
    def _consistent(self) -> OAuthSettings:
        if self.grant == "client_credentials":
            missing = [f for f in ("client_id", "client_secret") if not getattr(self, f)]
            if missing:
                raise ValueError(f"grant 'client_credentials' needs {' and '.join(missing)}")
            for name in ("redirect_port", "client_metadata_url"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is for grant 'authorization_code', not 'client_credentials'")
            if self.token_endpoint_auth_method == "none":
                raise ValueError("grant 'client_credentials' authenticates with the secret: "
                                 "token_endpoint_auth_method must be client_secret_basic or client_secret_post")
        if self.client_secret and not self.client_id:
            raise ValueError("client_secret needs client_id")
        if self.token_endpoint_auth_method is not None and not self.client_id:
            raise ValueError("token_endpoint_auth_method is for a pre-registered client: give client_id too")
        if self.client_metadata_url is not None:
            url = urlsplit(self.client_metadata_url)
            if url.scheme != "https" or url.path in ("", "/"):
                raise ValueError("client_metadata_url must be an https URL with a path, got "
                                 f"{self.client_metadata_url!r}")
        if self.issuer is not None and urlsplit(self.issuer).scheme not in ("http", "https"):
            raise ValueError(f"issuer must be an http(s) URL, got {self.issuer!r}")
        if self.scopes is not None and any(not s or any(c.isspace() for c in s) for s in self.scopes):
            raise ValueError("scopes: each scope is one non-empty word")
        return self


class ServerSpec(BaseModel, extra="forbid"):
    """One MCP server: a Claude Desktop `mcpServers` entry plus this framework's options."""

    command: str | None = None
    """Executable that starts a stdio server (looked up on PATH)."""
    args: list[str] = Field(default_factory=list)
    """Arguments for `command`."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for the stdio child, on top of the MCP SDK's safe default environment (HOME,
    LOGNAME, PATH, SHELL, TERM, USER); a value may be `${VAR}` to pass one of this process's variables."""
    cwd: str | None = None
    """Working directory of the stdio child (default: this process's)."""
    url: str | None = None
    """Endpoint of a remote server (streamable HTTP, or SSE when the path ends with /sse)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """HTTP headers sent to a remote server (e.g. Authorization)."""
    oauth: OAuthSettings | None = None
    """OAuth 2.1 for a remote server (`true` for the defaults); tokens come from `agent auth login NAME`, or
    from the client credentials. Not together with an Authorization header."""
    type: Transport | None = None
    """Transport; inferred when absent: command -> stdio, url -> sse if the path ends with /sse else http."""
    required: bool = True
    """A required server that fails to start stops the run; an optional one is reported and skipped."""
    allow: list[str] | None = None
    """Tool names (fnmatch globs) to offer to the model; None offers all."""
    deny: list[str] = Field(default_factory=list)
    """Tool names (fnmatch globs) never offered; applied after `allow`."""
    startup_timeout: float = Field(default=60.0, gt=0)
    """Seconds allowed to connect and list tools."""
    tool_timeout: float | None = Field(default=None, gt=0)
    """Seconds allowed per tool call; None uses the hub's default."""
    inherit_env: bool = False
    """Opt in to passing this process's whole environment to a stdio child. Even then the model and serve
    credentials (`CREDENTIAL_ENV`) are withheld unless named in `env`."""
    max_restarts: int = Field(default=3, ge=0)
    """Times a server that exited (stdio) or dropped its connection (HTTP, SSE) is restarted or reconnected,
    with backoff, over the hub's lifetime; 0 never. A server that fails its first start is not retried."""
    protocol: Literal["auto", "legacy"] = "auto"
    """How the connection opens: `auto` probes with the 2026-07-28 `server/discover` and falls back to the
    `initialize` handshake; `legacy` goes straight to the handshake. A stdio server that dies on the probe
    (Python servers on mcp 1.x do) is restarted once with the handshake either way; `legacy` saves that start."""
    resource_tools: bool = True
    """Offer the model `list_resources`/`read_resource` (and `list_prompts`/`get_prompt`) for this server when it
    has resources (prompts). False keeps its resources and prompts for mentions and the SDK only, for a server
    whose own tools already read the same things (our files server)."""
    roots: list[str] | None = None
    """Directories offered as MCP roots (relative paths resolve against the server's cwd; `${WORKSPACE}` in a
    task file is the run's workspace). None (default): the hub's roots if it was given some, else none and
    the roots capability is not declared, as in Claude Desktop: the reference filesystem server *replaces*
    its directory arguments with a client's roots, so offering roots unasked would narrow it."""

    @field_validator("oauth", mode="before")
    @classmethod
    def _oauth_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @model_validator(mode="after")
    def _one_endpoint(self) -> ServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "give exactly one of 'command' (a stdio server) or 'url' (a remote server)"
                + (", not both" if self.command is not None else "")
            )
        if self.command is not None and self.type not in (None, "stdio"):
            raise ValueError(f"type {self.type!r} needs 'url', but 'command' was given")
        if self.url is not None:
            if self.type == "stdio":
                raise ValueError("type 'stdio' needs 'command', but 'url' was given")
            if urlsplit(self.url).scheme not in ("http", "https"):
                raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.command is not None and not self.command.strip():
            raise ValueError("'command' is empty")
        if self.oauth is not None:
            if self.url is None:
                raise ValueError("oauth is for remote servers ('url'); a stdio server gets credentials through 'env'")
            if any(k.lower() == "authorization" for k in self.headers):
                raise ValueError("give either an Authorization header or oauth, not both")
        return self

    @property
    def transport(self) -> Transport:
        """The effective transport."""
        if self.type is not None:
            return self.type
        if self.command is not None:
            return "stdio"
        path = urlsplit(self.url or "").path.rstrip("/")
        return "sse" if path.endswith("/sse") else "http"

    @property
    def target(self) -> str:
        """The command line or URL, for messages."""
        if self.command is not None:
            return " ".join([self.command, *self.args])
        return self.url or ""


def _describe_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_servers(data: Mapping[str, Any], *, where: str) -> dict[str, ServerSpec]:
    """Validate a mapping of server name -> entry; errors name `where`, the server and the field."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of server name to server entry, got {type(data).__name__}"
        )
    servers: dict[str, ServerSpec] = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not SERVER_NAME_RE.match(name):
            raise ConfigError(
                f"{where}: server name {name!r} is invalid: use letters, digits, '_' and '-' only"
            )
        if isinstance(entry, ServerSpec):
            servers[name] = entry
            continue
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: server {name!r}: expected an object, got {type(entry).__name__}")
        try:
            servers[name] = ServerSpec.model_validate(entry)
        except ValidationError as e:
            raise ConfigError(f"{where}: server {name!r}: {_describe_errors(e)}") from None
    return servers


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(text: str, *, where: str, environ: Mapping[str, str] | None = None,
                keep: frozenset[str] = frozenset()) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset variable without a default is an error.

    Names in `keep` are left as written (e.g. `${WORKSPACE}`, filled in later by the run).
    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in keep:
            return match.group(0)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{where}: environment variable {name} is not set (use ${{{name}:-default}})"
                )
            return default
        return value

    return _VAR_RE.sub(replace, text)


def _expand_entry(entry: Any, *, where: str) -> Any:
    if not isinstance(entry, Mapping):
        return entry
    out = dict(entry)
    for key in ("command", "url"):
        if isinstance(out.get(key), str):
            out[key] = expand_vars(out[key], where=f"{where}.{key}")
    if isinstance(out.get("args"), list):
        out["args"] = [
            expand_vars(a, where=f"{where}.args[{i}]") if isinstance(a, str) else a
            for i, a in enumerate(out["args"])
        ]
    return expand_secrets(out, where=where)


def expand_secrets(entry: Any, *, where: str, keep: frozenset[str] = frozenset()) -> Any:
    """`${VAR}` in an entry's `env`, `headers` and `oauth` client_id/client_secret values, taken from this process's
    environment: how a server is given a token the agent holds (`env: {GITHUB_TOKEN: ${GITHUB_TOKEN}}`) without
    inheriting everything."""
    if not isinstance(entry, Mapping):
        return entry
    out = dict(entry)
    for key in ("env", "headers"):
        if isinstance(out.get(key), Mapping):
            out[key] = {
                k: expand_vars(v, where=f"{where}.{key}.{k}", keep=keep) if isinstance(v, str) else v
                for k, v in out[key].items()
            }
    if isinstance(out.get("oauth"), Mapping):
        out["oauth"] = {
            k: expand_vars(v, where=f"{where}.oauth.{k}", keep=keep)
            if k in ("client_id", "client_secret") and isinstance(v, str) else v
            for k, v in out["oauth"].items()
        }
    return out


def load_mcp_config(path: str | os.PathLike[str]) -> dict[str, ServerSpec]:
    """Read a Claude Desktop / `.mcp.json` (`mcpServers`) or VS Code (`servers`) file, expanding ${VAR}."""
    where = str(path)
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{where}: cannot read MCP config: {e.strerror or e}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object with 'mcpServers' or 'servers'")
    if "mcpServers" in data:
        key = "mcpServers"
    elif "servers" in data:
        key = "servers"
    else:
        raise ConfigError(f"{where}: no 'mcpServers' (Claude Desktop, .mcp.json) or 'servers' (VS Code) key")
    section = data[key]
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: '{key}' must be an object of server name to server entry")
    # VS Code entries may carry keys we do not model (envFile, dev); reject them loudly rather than ignore.
    expanded = {name: _expand_entry(entry, where=f"{where}: {key}.{name}") for name, entry in section.items()}
    return parse_servers(expanded, where=where)
