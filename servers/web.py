"""The web MCP server: a `fetch` tool that reads pages as Markdown or text, and `search` when a backend is set.

Run alone: `agent server web [--allow-host HOST ...] [--search-backend searxng|brave] [--http HOST:PORT]`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from agent.servers._client_log import ClientLog
from agent.servers._http import TOKEN_ENV, bearer_auth, check_exposure, host_port_argument, url_of
from agent.servers._web_fetch import AddressPolicy, FetchedResponse, Fetcher, FetchError, RefusedAddressError
from agent.servers._web_search import (
    BRAVE_URL,
    BraveBackend,
    SearchBackend,
    SearchError,
    SearchResults,
    SearxngBackend,
    format_results,
)
from agent.version import package_version

DEFAULT_USER_AGENT = f"Mozilla/5.0 (compatible; deepseek-mcp-agent-web/{package_version()}; +MCP fetch tool)"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_LENGTH = 20_000
PAGE_CACHE_SIZE = 16
PAGE_CACHE_TTL = 300.0  # seconds a converted page is kept for reading on with start_index

READ_ONLY_OPEN_WORLD = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)


@dataclass
class Page:
    """A fetched and converted page, kept so that paging through it reads one consistent text."""

    url: str
    final_url: str
    media_type: str
    cut_at: int | None  # the byte limit the body was cut at, if it was
    title: str | None
    text: str


class PageCache:
    """The last few pages read, for a short while, keyed by (url, raw)."""

    def __init__(self, size: int = PAGE_CACHE_SIZE, ttl: float = PAGE_CACHE_TTL) -> None:
        self.size, self.ttl = size, ttl
        self._pages: OrderedDict[tuple[str, bool], tuple[float, Page]] = OrderedDict()

    def get(self, key: tuple[str, bool]) -> Page | None:
        entry = self._pages.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._pages.pop(key, None)
            return None
        self._pages.move_to_end(key)
        return entry[1]

    def put(self, key: tuple[str, bool], page: Page) -> None:
        self._pages[key] = (time.monotonic() + self.ttl, page)
        self._pages.move_to_end(key)
        while len(self._pages) > self.size:
            self._pages.popitem(last=False)


def render(page: Page, start_index: int, max_length: int) -> str:
    """The header (title, URL, notes) and one slice of the page's text, saying how to read on."""
    total = len(page.text)
    if start_index > 0 and start_index >= total:
        raise ToolError(
            f"start_index {start_index} is past the end of {page.url}, which has {total} characters."
        )
    end = min(total, start_index + max_length)
    lines = []
    if page.title:
        lines.append(f"Title: {page.title}")
    url_line = f"URL: {page.final_url}"
    if page.final_url != page.url:
        url_line += f" (redirected from {page.url})"
    lines.append(url_line)
    lines.append(f"Content-Type: {page.media_type or 'unknown'}")
    if page.cut_at is not None:
        lines.append(
            f"Note: the response was larger than {page.cut_at} bytes and was cut there; the text is incomplete."
        )
    if start_index > 0 or end < total:
        lines.append(f"Showing characters {start_index}-{end} of {total}.")
    text = page.text[start_index:end] if total else "(The response was empty.)"
    out = "\n".join(lines) + "\n\n" + text
    if end < total:
        out += (
            f"\n\n[Content truncated at character {end} of {total}. "
            f"Call fetch with start_index={end} to get the next part.]"
        )
    return out


def build_server(
    *,
    allow_hosts: list[str] | tuple[str, ...] = (),
    allow_private: bool = False,
    search_backend: str | None = None,
    searxng_url: str | None = None,
    brave_api_key: str | None = None,
    brave_url: str = BRAVE_URL,
    user_agent: str = DEFAULT_USER_AGENT,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    auth: Mapping[str, Any] | None = None,
) -> MCPServer:
    """The web server with `fetch`, and `search` when a backend is configured. Raises ValueError on bad options.

    `auth`: MCPServer's auth arguments (agent.servers._http.bearer_auth) for HTTP.
    """
    if timeout <= 0 or max_bytes <= 0:
        raise ValueError("--timeout and --max-bytes must be positive")
    fetcher = Fetcher(
        AddressPolicy(allow_hosts, allow_private=allow_private),
        user_agent=user_agent,
        timeout=timeout,
        max_bytes=max_bytes,
    )
    backend = _search_backend(search_backend, searxng_url, brave_api_key, brave_url, user_agent, timeout)
    instructions = "Read web pages with fetch (HTML comes back as Markdown of the main content)."
    if backend is not None:
        instructions += " Find pages with search, then read them with fetch."
    server = MCPServer("web", version=package_version(), instructions=instructions, **(auth or {}))
    log = ClientLog("web")
    log.install(server)
    cache = PageCache()

    async def fetch(
        url: Annotated[str, Field(description="The http or https URL to read.", min_length=1)],
        ctx: Context,
        max_length: Annotated[
            int,
            Field(description="The most characters of content to return in this call.", ge=1, le=1_000_000),
        ] = DEFAULT_MAX_LENGTH,
        start_index: Annotated[
            int,
            Field(
                description="Character offset to start from: use the value a truncated answer names to read on.",
                ge=0,
            ),
        ] = 0,
        raw: Annotated[
            bool,
            Field(
                description="Return HTML source or JSON as sent instead of converting it (PDFs are always text)."
            ),
        ] = False,
    ) -> str:
        """Fetch a URL from the internet and return its content as text.

        HTML pages come back as Markdown of their main content (title first, links kept), JSON pretty-printed,
        text as is and PDFs as text. Long content is returned in parts: a truncated answer ends with the
        start_index to ask for next.
        """
        key = (url, raw)
        page = cache.get(key) if start_index > 0 else None
        if page is None:
            try:
                page = await _read_page(fetcher, url, raw)
            except _Refused as exc:
                await log.warning(ctx, f"fetch refused: {exc}")
                raise
            except ToolError as exc:
                await log.error(ctx, f"fetch failed: {exc}")
                raise
            cache.put(key, page)
        return render(page, start_index, max_length)

    server.add_tool(
        fetch, title="Fetch a web page", annotations=READ_ONLY_OPEN_WORLD, structured_output=False
    )

    if backend is not None:

        async def search(
            query: Annotated[str, Field(description="What to search the web for.", min_length=1)],
            ctx: Context,
            max_results: Annotated[int, Field(description="The most results to return.", ge=1, le=20)] = 10,
            page: Annotated[int, Field(description="Page of results, from 1.", ge=1, le=10)] = 1,
        ) -> Annotated[CallToolResult, SearchResults]:
            """Search the web; returns a numbered list of results (title, URL, snippet). Read one with fetch."""
            try:
                hits = await backend.search(query, max_results, page)
            except SearchError as exc:
                await log.error(ctx, f"search failed: {exc}")
                raise ToolError(str(exc)) from None
            results = SearchResults(query=query, backend=backend.name, page=page, results=hits)
            return CallToolResult(
                content=[TextContent(type="text", text=format_results(results))],
                structured_content=results.model_dump(mode="json"),
            )

        server.add_tool(
            search,
            title="Search the web",
            annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=True),
        )
    return server


class _Refused(ToolError):
    """A fetch the address policy refused (a private, loopback or special address)."""


async def _read_page(fetcher: Fetcher, url: str, raw: bool) -> Page:
    from agent.servers._web_convert import UnsupportedContentError, convert, kind_of

    try:
        response: FetchedResponse = await fetcher.get(url)
    except RefusedAddressError as exc:
        raise _Refused(str(exc)) from None
    except FetchError as exc:
        raise ToolError(str(exc)) from None
    if response.cut and kind_of(response.media_type, response.body) == "pdf":
        raise ToolError(
            f"The PDF at {response.final_url} is larger than the server's limit of {fetcher.max_bytes} bytes "
            "(--max-bytes); a PDF cannot be read in part."
        )
    work = functools.partial(
        convert, response.body, response.media_type, response.charset, response.final_url, raw=raw
    )
    try:
        converted = await anyio.to_thread.run_sync(work)  # big pages take a while: keep the server responsive
    except UnsupportedContentError as exc:
        raise ToolError(str(exc)) from None
    return Page(
        url=url,
        final_url=response.final_url,
        media_type=response.media_type,
        cut_at=fetcher.max_bytes if response.cut else None,
        title=converted.title,
        text=converted.text,
    )


def _search_backend(
    name: str | None,
    searxng_url: str | None,
    brave_api_key: str | None,
    brave_url: str,
    user_agent: str,
    timeout: float,
) -> SearchBackend | None:
    if name is None and searxng_url:
        name = "searxng"
    if name is None:
        return None
    if name == "searxng":
        if not searxng_url or not searxng_url.startswith(("http://", "https://")):
            raise ValueError("--search-backend searxng needs --searxng-url http(s)://HOST[:PORT]")
        return SearxngBackend(searxng_url, user_agent=user_agent, timeout=timeout)
    if name == "brave":
        if not brave_api_key:
            raise ValueError("--search-backend brave needs the BRAVE_API_KEY environment variable")
        return BraveBackend(brave_api_key, endpoint=brave_url, user_agent=user_agent, timeout=timeout)
    raise ValueError(f"unknown search backend {name!r}; use searxng or brave")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent server web", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name, IP or CIDR that fetch may reach even though it is private (repeatable)",
    )
    parser.add_argument(
        "--allow-private",
        action="store_true",
        help="let fetch reach private, loopback and link-local addresses",
    )
    parser.add_argument("--search-backend", choices=["searxng", "brave"], help="register the search tool")
    parser.add_argument(
        "--searxng-url", metavar="URL", help="base URL of a SearXNG instance (JSON format on)"
    )
    parser.add_argument(
        "--brave-url",
        default=BRAVE_URL,
        metavar="URL",
        help="Brave Search API endpoint (key from BRAVE_API_KEY)",
    )
    parser.add_argument("--http", type=host_port_argument, metavar="HOST:PORT",
                        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' over HTTP (default: ${TOKEN_ENV}); "
                        "needed to serve an address that is not loopback")
    parser.add_argument("--user-agent", default=DEFAULT_USER_AGENT, help="User-Agent header for requests")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S", help="seconds per fetch"
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help="bytes read from one response at most",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the web server on stdio, or on streamable HTTP with --http. Bad options exit with status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    http: tuple[str, int] | None = args.http
    try:
        if http is not None:
            check_exposure(http[0], token)
        server = build_server(
            allow_hosts=args.allow_host,
            allow_private=args.allow_private,
            search_backend=args.search_backend,
            searxng_url=args.searxng_url,
            brave_api_key=os.environ.get("BRAVE_API_KEY"),
            brave_url=args.brave_url,
            user_agent=args.user_agent,
            timeout=args.timeout,
            max_bytes=args.max_bytes,
            auth=bearer_auth(token, url_of(*http)) if http is not None else None,
        )
    except ValueError as exc:
        parser.error(str(exc))
    # httpx logs each request with the checked IP in place of the host name: more confusing than useful.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if http is None:
        server.run()
    else:
        server.run(transport="streamable-http", host=http[0], port=http[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
