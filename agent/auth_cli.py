"""`agent auth login|logout|status`: the one-time OAuth login for HTTP MCP servers, and the tokens it stored."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio

from agent.tools.config import ServerSpec

from .errors import AgentError, ConfigError
from .interrupts import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, error_exit

DEFAULT_CONFIG = Path(".mcp.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent auth",
        description="OAuth for HTTP MCP servers whose entry has `oauth`. `login` runs the browser flow once "
        "(it prints the URL, opens a browser where there is one, and takes the answer on a loopback port) and "
        "stores the tokens for this user; runs then use and refresh them and never open a browser. SERVER is a "
        "server name in --config: a task file (YAML) or an MCP config (.mcp.json, Claude Desktop, VS Code); "
        "default ./.mcp.json.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    login = sub.add_parser("login", help="log in to a server once and store its tokens")
    login.add_argument("server", help="the server's name in the config")
    login.add_argument("--config", type=Path, help="task file or MCP config that defines the server")
    login.add_argument("--no-browser", action="store_true", help="only print the URL to open (e.g. over SSH)")
    login.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the login (default 300)")
    logout = sub.add_parser("logout", help="forget a server's stored tokens and client registration")
    logout.add_argument("server")
    logout.add_argument("--config", type=Path)
    status = sub.add_parser("status", help="list the config's OAuth servers and what is stored for each")
    status.add_argument("--config", type=Path)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.action == "login":
            return _login(args)
        if args.action == "logout":
            return _logout(args)
        return _status(args)
    except AgentError as exc:
        return error_exit(exc)
    except KeyboardInterrupt:
        print("agent: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _servers(config: Path | None) -> tuple[dict[str, ServerSpec], str]:
    from agent.tools.config import load_mcp_config

    path = config or DEFAULT_CONFIG
    if config is None and not path.exists():
        raise ConfigError("no --config given and no ./.mcp.json here: name the task file or MCP config that "
                          "defines the server with --config FILE")
    if path.suffix in (".yaml", ".yml"):
        from .task import load_task

        return load_task(path, prompt_required=False).all_servers(), str(path)
    return load_mcp_config(path), str(path)


def _server(args: argparse.Namespace) -> ServerSpec:
    servers, where = _servers(args.config)
    spec = servers.get(args.server)
    if spec is None:
        names = ", ".join(sorted(servers)) or "none"
        raise ConfigError(f"{where}: no server named {args.server!r} (servers there: {names})")
    if spec.oauth is None:
        raise ConfigError(f"{where}: server {args.server!r} has no `oauth` setting; add `\"oauth\": true` (or an "
                          "oauth object) to its entry to log in with OAuth")
    return spec


def _login(args: argparse.Namespace) -> int:
    from agent.tools import oauth

    spec = _server(args)

    def announce(url: str) -> None:
        print(f"Open this URL in a browser to log in to {args.server!r}:\n  {url}", flush=True)
        if not args.no_browser:
            print("(opening your browser; if nothing opens, use the URL above)", flush=True)

    async def printed_only(url: str) -> None:
        announce(url)

    browser = printed_only if args.no_browser else oauth.system_browser(announce)
    try:
        result = anyio.run(lambda: oauth.login(args.server, spec, browser=browser, timeout=args.timeout))
    except TimeoutError:
        print(f"agent: no login completed within {args.timeout:g} s", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AgentError:
        raise
    except Exception as exc:
        from agent.tools.supervisor import describe_error

        print(f"agent: login to {args.server!r} failed: {describe_error(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    scope = f", scope {result.scope}" if result.scope else ""
    print(f"logged in to {args.server!r} ({result.server_url}): {result.tools} tools{scope}; "
          f"tokens stored in {result.token_file}")
    return EXIT_OK


def _logout(args: argparse.Namespace) -> int:
    from agent.tools.oauth import FileTokenStorage

    spec = _server(args)
    removed = FileTokenStorage(spec.url or "").clear()
    print(f"{'removed the stored tokens of' if removed else 'nothing stored for'} {args.server!r} ({spec.url})")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from agent.tools import oauth

    servers, where = _servers(args.config)
    shown = {name: spec for name, spec in servers.items() if spec.oauth is not None}
    if not shown:
        print(f"{where}: no server has an `oauth` setting")
        return EXIT_OK
    for name, spec in shown.items():
        assert spec.oauth is not None
        info = oauth.status(spec)
        if spec.oauth.grant == "client_credentials":
            state = "client credentials (no login needed)"
        elif not info["stored"]:
            state = f"not logged in: run `agent auth login {name}`"
        else:
            expires = info["expires_at"]
            left = "" if expires is None else (
                ", access token expired" if expires < time.time() else f", access token valid {expires - time.time():.0f} s")
            state = "logged in" + left + (", refreshable" if info["refreshable"] else "")
        print(f"{name}: {spec.url}: {state}" + (f" (scope {info['scope']})" if info.get("scope") else ""))
    return EXIT_OK
