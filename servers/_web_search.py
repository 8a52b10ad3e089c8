"""Web search backends for the web server: a SearXNG instance's JSON API and the Brave Search API.

The backend's endpoint is operator configuration, not model input, so it is not subject to the fetch
tool's address policy (a SearXNG on localhost is the usual set-up).
"""

from __future__ import annotations

import html
import re
from typing import Any, Protocol

from pydantic import BaseModel, Field

BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"


class SearchError(Exception):
    """The search backend failed; the message says which and why."""


class SearchHit(BaseModel):
    title: str = Field(description="Title of the page")
    url: str = Field(description="Address of the page; read it with the fetch tool")
    snippet: str = Field(description="Text from the page that matched the query")


class SearchResults(BaseModel):
    query: str
    backend: str = Field(description="The search service that answered")
    page: int
    results: list[SearchHit]


class SearchBackend(Protocol):
    name: str

    async def search(self, query: str, count: int, page: int) -> list[SearchHit]: ...


def _plain(text: Any) -> str:
    """Snippets arrive with <strong> highlights and entities: keep the words."""
    return " ".join(html.unescape(re.sub(r"<[^>]*>", "", str(text or ""))).split())


async def _get_json(
    backend: str, url: str, *, params: dict[str, Any], headers: dict[str, str], timeout: float
) -> Any:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=True) as client:
            response = await client.get(url, params=params)
    except httpx.TimeoutException:
        raise SearchError(
            f"The {backend} search backend at {url} did not answer within {timeout:g} s."
        ) from None
    except httpx.HTTPError as exc:
        raise SearchError(
            f"Could not reach the {backend} search backend at {url}: {type(exc).__name__}: {exc}"
        ) from None
    if response.status_code >= 400:
        hint = ""
        if backend == "searxng" and response.status_code == 403:
            hint = " (SearXNG answers 403 when its settings do not list 'json' under search.formats)"
        elif backend == "brave" and response.status_code in (401, 403, 422):
            hint = " (check BRAVE_API_KEY)"
        excerpt = " ".join(response.text.split())[:200]
        raise SearchError(
            f"The {backend} search backend answered HTTP {response.status_code}{hint}: {excerpt}"
        )
    try:
        return response.json()
    except ValueError:
        raise SearchError(f"The {backend} search backend at {url} did not answer with JSON.") from None


class SearxngBackend:
    """A SearXNG instance with the JSON output format enabled."""

    name = "searxng"

    def __init__(self, base_url: str, *, user_agent: str, timeout: float) -> None:
        self.endpoint = base_url.rstrip("/") + "/search"
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self.timeout = timeout

    async def search(self, query: str, count: int, page: int) -> list[SearchHit]:
        data = await _get_json(
            self.name,
            self.endpoint,
            params={"q": query, "format": "json", "pageno": page},
            headers=self.headers,
            timeout=self.timeout,
        )
        results = data.get("results", []) if isinstance(data, dict) else []
        return [
            SearchHit(
                title=_plain(r.get("title")) or r["url"], url=r["url"], snippet=_plain(r.get("content"))
            )
            for r in results
            if isinstance(r, dict) and r.get("url")
        ][:count]


class BraveBackend:
    """The Brave Search web API (an `X-Subscription-Token` key)."""

    name = "brave"

    def __init__(self, api_key: str, *, endpoint: str = BRAVE_URL, user_agent: str, timeout: float) -> None:
        self.endpoint = endpoint
        self.headers = {
            "User-Agent": user_agent,
            "Accept": "application/json",
            "X-Subscription-Token": api_key,
        }
        self.timeout = timeout

    async def search(self, query: str, count: int, page: int) -> list[SearchHit]:
        # Brave counts `offset` in pages of `count` results, at most 9.
        data = await _get_json(
            self.name,
            self.endpoint,
            params={"q": query, "count": min(count, 20), "offset": min(page - 1, 9)},
            headers=self.headers,
            timeout=self.timeout,
        )
        web = data.get("web", {}) if isinstance(data, dict) else {}
        results = web.get("results", []) if isinstance(web, dict) else []
        return [
            SearchHit(
                title=_plain(r.get("title")) or r["url"], url=r["url"], snippet=_plain(r.get("description"))
            )
            for r in results
            if isinstance(r, dict) and r.get("url")
        ][:count]


def format_results(results: SearchResults) -> str:
    """A numbered list of title, URL and snippet."""
    if not results.results:
        return f"No results for {results.query!r} (page {results.page}, {results.backend})."
    lines = [f"Results for {results.query!r} (page {results.page}, {results.backend}):", ""]
    for n, hit in enumerate(results.results, 1):
        lines.append(f"{n}. {hit.title}\n   {hit.url}")
        if hit.snippet:
            lines.append(f"   {hit.snippet}")
    return "\n".join(lines)
