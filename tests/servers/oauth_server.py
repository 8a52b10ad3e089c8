"""An OAuth 2.1 authorization server and the MCP server it protects, on one port (tests/test_oauth.py).

`oauth_server.py PORT [--ttl S] [--scope S ...] [--client ID:SECRET]`: protected-resource metadata (RFC 9728),
authorization-server metadata (RFC 8414), dynamic client registration (RFC 7591), an authorize endpoint that
approves at once (PKCE S256 required; redirects with code, state and iss), a token endpoint (authorization_code
with PKCE check, refresh_token with rotation, client_credentials for the --client), and `/mcp` accepting only
its own unexpired tokens. `GET /_log` lists what happened; `POST /_revoke` invalidates every access token.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import uvicorn
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--ttl", type=int, default=3600, help="access token lifetime in seconds")
parser.add_argument("--scope", action="append", default=[], help="scopes the server requires")
parser.add_argument("--client", help="a pre-registered confidential client ID:SECRET")
args = parser.parse_args()

BASE = f"http://127.0.0.1:{args.port}"
RESOURCE = f"{BASE}/mcp"
clients: dict[str, dict[str, Any]] = {}
codes: dict[str, dict[str, Any]] = {}
access: dict[str, dict[str, Any]] = {}
refresh: dict[str, dict[str, Any]] = {}
log: list[dict[str, Any]] = []
if args.client:
    cid, secret = args.client.split(":", 1)
    clients[cid] = {"client_id": cid, "client_secret": secret, "redirect_uris": None, "preregistered": True}


class Verifier(TokenVerifier):
    async def verify_token(self, token: str) -> AccessToken | None:
        record = access.get(token)
        if record is None or record["expires_at"] < time.time():
            log.append({"event": "rejected", "token": token[:8]})
            return None
        return AccessToken(token=token, client_id=record["client_id"], scopes=record["scopes"], resource=RESOURCE,
                           expires_at=int(record["expires_at"]))


mcp = MCPServer("oauth-protected", token_verifier=Verifier(), auth=AuthSettings(
    issuer_url=AnyHttpUrl(BASE), resource_server_url=AnyHttpUrl(RESOURCE), required_scopes=args.scope or None,
    validate_token_resource=True))


@mcp.tool()
def whoami() -> str:
    """The client id and scopes of the token this call came with."""
    token = get_access_token()
    return f"{token.client_id} {' '.join(token.scopes)}" if token else "anonymous"


def _issue(client_id: str, scopes: list[str], *, with_refresh: bool) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    access[token] = {"client_id": client_id, "scopes": scopes, "expires_at": time.time() + args.ttl}
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": args.ttl,
                            "scope": " ".join(scopes)}
    if with_refresh:
        rt = secrets.token_urlsafe(24)
        refresh[rt] = {"client_id": client_id, "scopes": scopes}
        body["refresh_token"] = rt
    return body


def _error(code: str, text: str, status: int = 400) -> JSONResponse:
    log.append({"event": "error", "error": code, "text": text})
    return JSONResponse({"error": code, "error_description": text}, status_code=status)


@mcp.custom_route("/.well-known/oauth-authorization-server", methods=["GET"])
async def metadata(request: Request) -> Response:
    log.append({"event": "as-metadata"})
    return JSONResponse({
        "issuer": f"{BASE}/", "authorization_endpoint": f"{BASE}/authorize", "token_endpoint": f"{BASE}/token",
        "registration_endpoint": f"{BASE}/register", "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"], "scopes_supported": args.scope,
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": True,
    })


@mcp.custom_route("/register", methods=["POST"])
async def register(request: Request) -> Response:
    body = await request.json()
    cid = f"dcr-{secrets.token_hex(4)}"
    clients[cid] = {"client_id": cid, "redirect_uris": body.get("redirect_uris"), "preregistered": False}
    log.append({"event": "register", "client_id": cid, "redirect_uris": body.get("redirect_uris"),
                "scope": body.get("scope")})
    return JSONResponse({**body, "client_id": cid, "client_id_issued_at": int(time.time()),
                         "token_endpoint_auth_method": "none"}, status_code=201)


@mcp.custom_route("/authorize", methods=["GET"])
async def authorize(request: Request) -> Response:
    q = dict(request.query_params)
    client = clients.get(q.get("client_id", ""))
    log.append({"event": "authorize", **{k: q.get(k) for k in ("client_id", "scope", "resource", "redirect_uri",
                                                                 "code_challenge_method")}})
    if client is None:
        return _error("invalid_client", "unknown client_id")
    if client["redirect_uris"] is not None and q.get("redirect_uri") not in client["redirect_uris"]:
        return _error("invalid_request", "redirect_uri not registered")
    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        return _error("invalid_request", "PKCE S256 required")
    code = secrets.token_urlsafe(16)
    codes[code] = {"client_id": client["client_id"], "challenge": q["code_challenge"],
                   "redirect_uri": q.get("redirect_uri"), "scopes": (q.get("scope") or "").split()}
    query = urlencode({"code": code, "state": q.get("state", ""), "iss": f"{BASE}/"})
    return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        cid, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return cid, secret
    return form.get("client_id"), form.get("client_secret")


@mcp.custom_route("/token", methods=["POST"])
async def token(request: Request) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    grant = form.get("grant_type")
    cid, secret = _client_auth(request, form)
    log.append({"event": "token", "grant_type": grant, "client_id": cid, "scope": form.get("scope"),
                "resource": form.get("resource"), "has_verifier": "code_verifier" in form})
    client = clients.get(cid or "")
    if client is None:
        return _error("invalid_client", "unknown client", 401)
    if client.get("client_secret") is not None and secret != client["client_secret"]:
        return _error("invalid_client", "bad client secret", 401)
    if grant == "authorization_code":
        record = codes.pop(form.get("code", ""), None)
        if record is None or record["client_id"] != cid:
            return _error("invalid_grant", "unknown code")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if challenge != record["challenge"]:
            return _error("invalid_grant", "PKCE verification failed")
        if form.get("redirect_uri") != record["redirect_uri"]:
            return _error("invalid_grant", "redirect_uri mismatch")
        return JSONResponse(_issue(record["client_id"], record["scopes"], with_refresh=True))
    if grant == "refresh_token":
        record = refresh.pop(form.get("refresh_token", ""), None)
        if record is None or record["client_id"] != cid:
            return _error("invalid_grant", "unknown refresh token")
        return JSONResponse(_issue(record["client_id"], record["scopes"], with_refresh=True))
    if grant == "client_credentials":
        if not client["preregistered"]:
            return _error("unauthorized_client", "client_credentials is for the pre-registered client")
        return JSONResponse(_issue(client["client_id"], (form.get("scope") or "").split(), with_refresh=False))
    return _error("unsupported_grant_type", f"grant {grant!r}")


@mcp.custom_route("/_log", methods=["GET"])
async def show_log(request: Request) -> Response:
    return JSONResponse(log)


@mcp.custom_route("/_revoke", methods=["POST"])
async def revoke(request: Request) -> Response:
    access.clear()
    return JSONResponse({"revoked": True})


if __name__ == "__main__":
    uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=args.port, log_level="warning")
