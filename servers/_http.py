"""Streamable HTTP for our MCP servers and `agent serve`: where to listen, and a bearer token off loopback.

A server that runs commands or touches files must not answer the network unauthenticated: binding an address
that is not loopback needs a token (`--token` or `$AGENT_SERVE_TOKEN`), which every request must then carry as
`Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken

# The MCP SDK is imported where it is used: `--help` and option parsing stay fast.
TOKEN_ENV = "AGENT_SERVE_TOKEN"
DEFAULT_HOST = "127.0.0.1"


def parse_host_port(value: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[IPV6]:PORT`; the host defaults to 127.0.0.1. ValueError names what was given."""
    host, port = DEFAULT_HOST, value
    if value.startswith("["):
        host, _, port = value[1:].partition("]:")
    elif ":" in value:
        host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"--http: expected PORT or HOST:PORT (e.g. 127.0.0.1:8000), got {value!r}")
    return host, int(port)


def host_port_argument(value: str) -> tuple[str, int]:
    """`parse_host_port` as an argparse `type`."""
    try:
        return parse_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--http: ")) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_of(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve an address other machines can reach without a token (ValueError says how to fix it)."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"--http: refusing to serve on {host}, which is not a loopback address, without a bearer token; "
            f"set {TOKEN_ENV} (or --token), or bind 127.0.0.1"
        )


class StaticTokenVerifier:
    """Accepts one bearer token (compared in constant time); the SDK's auth middleware refuses the rest."""

    def __init__(self, token: str, client_id: str = "agent"):
        self._token = token.encode()
        self._client_id = client_id

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id=self._client_id, scopes=[])
        return None


def bearer_auth(token: str | None, issuer_url: str | None = None) -> dict[str, Any]:
    """`MCPServer(...)` keyword arguments that require `token` on every HTTP request; {} without a token."""
    if not token:
        return {}
    from mcp.server.auth.settings import AuthSettings
    from pydantic import AnyHttpUrl

    return {
        "token_verifier": StaticTokenVerifier(token),
        "auth": AuthSettings(issuer_url=AnyHttpUrl(issuer_url or url_of(DEFAULT_HOST, 80)), resource_server_url=None),
    }
