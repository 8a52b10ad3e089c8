"""MCP resources and prompts on the client side: what a server offers (`Catalog`), the read-only tools that show them
to the model (`<server>__list_resources`, `__read_resource`, `__list_prompts`, `__get_prompt`), their texts, and
`ResourceWatch`, which follows the resources read through the hub and keeps the updates the server reports.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import mcp.types as types
from mcp import Client, MCPError
from mcp.client.subscriptions import ResourceUpdated
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from agent.errors import AgentError
from agent.tools.results import ToolOutcome, format_size

LIST_RESOURCES = "list_resources"
READ_RESOURCE = "read_resource"
LIST_PROMPTS = "list_prompts"
GET_PROMPT = "get_prompt"
SYNTHETIC_TOOLS = (LIST_RESOURCES, READ_RESOURCE, LIST_PROMPTS, GET_PROMPT)
_MAX_PAGES = 100
T = TypeVar("T")
# After a resource subscription stream failed, how long before it is opened again (sooner when a new URI is read).
_RELISTEN_S = 5.0
# How long a read waits for its subscription to be in place, so an update right after the read is not missed.
SUBSCRIBE_WAIT_S = 2.0


class ResourceError(AgentError):
    """A resource or prompt could not be listed, read or got: unknown server, nothing offered, or the server's error."""


@dataclass(frozen=True)
class Catalog:
    """What a connected server offers beside its tools."""

    resources: bool = False
    """It declares the resources capability and lists at least one resource or resource template."""
    prompts: bool = False
    """It declares the prompts capability and lists at least one prompt."""
    subscribe: bool = False
    """It offers resource update subscriptions (`resources/subscribe`, or `subscriptions/listen` on 2026-07-28)."""


@dataclass(frozen=True)
class ResourceInfo:
    """One resource, or one resource template (`template=True`, `uri` is then an RFC 6570 URI template)."""

    server: str
    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    size: int | None = None
    template: bool = False


@dataclass(frozen=True)
class PromptInfo:
    """One prompt of a server, with its arguments."""

    server: str
    name: str
    title: str | None = None
    description: str | None = None
    arguments: list[types.PromptArgument] = field(default_factory=list)


async def probe(client: Client) -> Catalog:
    """What the server offers: one page of each listing decides; a listing the server refuses counts as none."""
    capabilities = client.server_capabilities
    has_resources = has_prompts = False
    if capabilities is not None and capabilities.resources is not None:
        try:
            has_resources = bool((await client.list_resources()).resources) or bool(
                (await client.list_resource_templates()).resource_templates)
        except MCPError:
            has_resources = False
    if capabilities is not None and capabilities.prompts is not None:
        try:
            has_prompts = bool((await client.list_prompts()).prompts)
        except MCPError:
            has_prompts = False
    subscribe = bool(has_resources and capabilities is not None and capabilities.resources is not None
                     and capabilities.resources.subscribe)
    return Catalog(resources=has_resources, prompts=has_prompts, subscribe=subscribe)


# -- the tools offered to the model ---------------------------------------------------------------------------------

_READ_ONLY = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)


def synthetic_tools(catalog: Catalog) -> list[types.Tool]:
    """The tools a server with this catalog gets, as MCP tools (named without the server prefix)."""
    tools: list[types.Tool] = []
    if catalog.resources:
        tools += [
            types.Tool(
                name=LIST_RESOURCES, annotations=_READ_ONLY,
                description="List this server's resources (URI, name, MIME type, description) and resource templates "
                "(URI patterns: fill in the {placeholders} to get a URI for read_resource). Paginated: when the "
                "answer ends with a cursor, call again with it for more.",
                input_schema={"type": "object", "properties": {"cursor": {
                    "type": "string", "description": "from the previous answer, for the next page"}}},
            ),
            types.Tool(
                name=READ_RESOURCE, annotations=_READ_ONLY,
                description="Read one of this server's resources by URI (from list_resources, or a template with its "
                "placeholders filled in). Text comes back as text; binary contents are summarised (MIME type, "
                "size).",
                input_schema={"type": "object", "required": ["uri"],
                              "properties": {"uri": {"type": "string", "description": "the resource's URI"}}},
            ),
        ]
    if catalog.prompts:
        tools += [
            types.Tool(
                name=LIST_PROMPTS, annotations=_READ_ONLY,
                description="List this server's prompt templates with their arguments.",
                input_schema={"type": "object", "properties": {}},
            ),
            types.Tool(
                name=GET_PROMPT, annotations=_READ_ONLY,
                description="Get one of this server's prompts, filled in with the arguments, as text.",
                input_schema={"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "description": "the prompt's name (from list_prompts)"},
                    "arguments": {"type": "object", "additionalProperties": {"type": "string"},
                                  "description": "the prompt's arguments, all strings"},
                }},
            ),
        ]
    return tools


# -- listings -------------------------------------------------------------------------------------------------------


async def all_pages(fetch: Callable[[str | None], Awaitable[Any]], items: Callable[[Any], Sequence[T]],
                    max_pages: int = _MAX_PAGES) -> list[T]:
    """Every item of a paged MCP listing: `fetch(cursor)` gets a page, `items(page)` its entries. A server that
    repeats a cursor would otherwise page forever: a cursor seen before ends the listing, as `max_pages` does."""
    found: list[T] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        page = await fetch(cursor)
        found += items(page)
        cursor = page.next_cursor
        if cursor is None or cursor in seen:
            break
        seen.add(cursor)
    return found


async def list_all_resources(client: Client, server: str) -> list[ResourceInfo]:
    """Every resource, then every template, all pages."""
    resources = await all_pages(lambda cursor: client.list_resources(cursor=cursor),
                                lambda page: [_resource_info(server, r) for r in page.resources])
    templates = await all_pages(lambda cursor: client.list_resource_templates(cursor=cursor),
                                lambda page: [_template_info(server, t) for t in page.resource_templates])
    return resources + templates


async def list_all_prompts(client: Client, server: str) -> list[PromptInfo]:
    return await all_pages(
        lambda cursor: client.list_prompts(cursor=cursor),
        lambda page: [PromptInfo(server=server, name=p.name, title=p.title, description=p.description,
                                 arguments=list(p.arguments or [])) for p in page.prompts])


def _resource_info(server: str, r: types.Resource) -> ResourceInfo:
    return ResourceInfo(server=server, uri=r.uri, name=r.name, title=r.title, description=r.description,
                        mime_type=r.mime_type, size=r.size)


def _template_info(server: str, t: types.ResourceTemplate) -> ResourceInfo:
    return ResourceInfo(server=server, uri=t.uri_template, name=t.name, title=t.title, description=t.description,
                        mime_type=t.mime_type, template=True)


def _resource_line(info: ResourceInfo) -> str:
    details = [d for d in (info.mime_type, format_size(info.size) if info.size is not None else None) if d]
    name = info.name if not info.title or info.title == info.name else f"{info.name} ({info.title})"
    line = f"- {info.uri}  {name}" + (f" [{', '.join(details)}]" if details else "")
    return line + (f": {info.description.strip()}" if info.description else "")


async def list_page(client: Client, server: str, cursor: str | None) -> str:
    """One page for the model: resources (and, on the first page, templates), with cursors for more.

    The model's cursor is `resources:<server cursor>` or `templates:<server cursor>`.
    """
    kind, _, token = (cursor or "").partition(":")
    lines: list[str] = []
    more: list[str] = []
    if not cursor or kind == "resources":
        page = await client.list_resources(cursor=token or None)
        lines.append("Resources:" if page.resources else "Resources: none listed")
        lines += [_resource_line(_resource_info(server, r)) for r in page.resources]
        if page.next_cursor:
            more.append(f"More resources: call list_resources with cursor \"resources:{page.next_cursor}\".")
    if not cursor or kind == "templates":
        templates = await client.list_resource_templates(cursor=token or None)
        if templates.resource_templates:
            lines.append("Resource templates (fill in the {placeholders} to get a URI to read):")
            lines += [_resource_line(_template_info(server, t)) for t in templates.resource_templates]
        if templates.next_cursor:
            more.append(f"More templates: call list_resources with cursor \"templates:{templates.next_cursor}\".")
    if cursor and kind not in ("resources", "templates"):
        raise ResourceError(f"cursor {cursor!r} was not given by list_resources; call it without a cursor first")
    return "\n".join(lines + more)


def prompts_text(prompts: Sequence[PromptInfo]) -> str:
    if not prompts:
        return "No prompts listed."
    lines = []
    for p in prompts:
        line = f"- {p.name}" + (f" ({p.title})" if p.title and p.title != p.name else "")
        line += f": {p.description.strip()}" if p.description else ""
        for a in p.arguments:
            need = "required" if a.required else "optional"
            line += f"\n    {a.name} ({need})" + (f": {a.description}" if a.description else "")
        lines.append(line)
    return "\n".join(lines)


# -- contents -------------------------------------------------------------------------------------------------------


def _blob_size(blob: str) -> int:
    blob = blob.strip()
    return max(0, len(blob) * 3 // 4 - blob[-2:].count("="))


def _blob_summary(content: types.BlobResourceContents) -> str:
    details = ", ".join(d for d in (content.mime_type or "unknown type", format_size(_blob_size(content.blob))) if d)
    return f"[binary resource: {content.uri} ({details}); not shown as text]"


def contents_text(result: types.ReadResourceResult, uri: str) -> str:
    """What the model reads: a single text content as it is; several each under a header; blobs summarised."""
    contents = result.contents
    if not contents:
        return f"(the resource {uri} has no contents)"
    if len(contents) == 1 and isinstance(contents[0], types.TextResourceContents):
        return contents[0].text or "(empty)"
    parts = []
    for content in contents:
        if isinstance(content, types.TextResourceContents):
            mime = f" ({content.mime_type})" if content.mime_type else ""
            parts.append(f"--- {content.uri}{mime} ---\n{content.text}")
        else:
            parts.append(_blob_summary(content))
    return "\n".join(parts)


def resource_text(result: types.ReadResourceResult) -> str:
    """The text of a read resource (text contents joined by newlines); ResourceError when it is binary only."""
    texts = [c.text for c in result.contents if isinstance(c, types.TextResourceContents)]
    if not texts and result.contents:
        raise ResourceError("binary contents only: " + "; ".join(
            _blob_summary(c) for c in result.contents if isinstance(c, types.BlobResourceContents)))
    return "\n".join(texts)


def prompt_text(result: types.GetPromptResult) -> str:
    """A prompt's messages as text: each under its role."""
    parts = [f"({result.description.strip()})"] if result.description else []
    for message in result.messages:
        content = message.content
        if isinstance(content, types.TextContent):
            body = content.text
        elif isinstance(content, types.EmbeddedResource):
            inner = content.resource
            body = (f"[resource: {inner.uri}]\n{inner.text}" if isinstance(inner, types.TextResourceContents)
                    else _blob_summary(inner))
        elif isinstance(content, types.ResourceLink):
            body = f"[resource link: {content.name} <{content.uri}>]"
        else:
            body = f"[{getattr(content, 'type', type(content).__name__)}: {getattr(content, 'mime_type', '')}]"
        parts.append(f"[{message.role}]\n{body}")
    return "\n\n".join(parts) or "(the prompt has no messages)"


async def answer(client: Client, server: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
    """Run one of the synthetic tools; bad arguments raise ResourceError, the server's errors MCPError."""
    if tool == LIST_RESOURCES:
        cursor = arguments.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise ResourceError("'cursor' must be a string")
        return ToolOutcome(text=await list_page(client, server, cursor or None))
    if tool == READ_RESOURCE:
        uri = arguments.get("uri")
        if not isinstance(uri, str) or not uri.strip():
            raise ResourceError("give 'uri', the resource's URI as a string (list_resources shows them)")
        return ToolOutcome(text=contents_text(await client.read_resource(uri.strip()), uri))
    if tool == LIST_PROMPTS:
        return ToolOutcome(text=prompts_text(await list_all_prompts(client, server)))
    name, values = arguments.get("name"), arguments.get("arguments") or {}
    if not isinstance(name, str) or not name:
        raise ResourceError("give 'name', the prompt's name (list_prompts shows them)")
    if not isinstance(values, dict):
        raise ResourceError("'arguments' must be an object of argument name to string value")
    strings = {k: v if isinstance(v, str) else str(v) for k, v in values.items()}
    return ToolOutcome(text=prompt_text(await client.get_prompt(name, strings)))


# -- update subscriptions -------------------------------------------------------------------------------------------


class ResourceWatch:
    """The URIs read through the hub on a server that offers update subscriptions, and the updates it reported since.

    `follow(client)` runs for each connection (a restart subscribes again): on 2026-07-28 one `subscriptions/listen`
    stream for all the URIs, opened again when one is added; on handshake-era connections `resources/subscribe` per
    URI, the updates arriving as `notifications/resources/updated` (`mark`).
    """

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.active: set[str] = set()
        """The URIs the current connection is subscribed to."""
        self._updated: dict[str, None] = {}
        self._grown = anyio.Event()
        self._settled = anyio.Event()

    def add(self, uri: str) -> None:
        if uri not in self.uris:
            self.uris.append(uri)
            self._grown.set()

    async def watch(self, uri: str, wait: float = SUBSCRIBE_WAIT_S) -> bool:
        """Add `uri` and wait (at most `wait` seconds) until the server has the subscription; True once it has."""
        self.add(uri)
        with anyio.move_on_after(wait):
            while uri not in self.active:
                settled = self._settled
                await settled.wait()
        return uri in self.active

    def _set_active(self, uris: set[str]) -> None:
        self.active = uris
        self._settled.set()
        self._settled = anyio.Event()

    def mark(self, uri: str) -> None:
        """The server says `uri` changed; kept when it is watched."""
        if uri in self.uris:
            self._updated[uri] = None

    def take(self) -> list[str]:
        """The URIs updated since the last take, oldest first."""
        updated, self._updated = list(self._updated), {}
        return updated

    async def follow(self, client: Client) -> None:
        modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        subscribed: set[str] = set()
        self._set_active(set())
        while True:
            grown = self._grown = anyio.Event()
            uris = list(self.uris)
            if not uris:
                await grown.wait()
                continue
            try:
                if modern:
                    await self._listen(client, uris, grown)
                    continue
                for uri in uris:
                    if uri not in subscribed:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")  # deprecated in 2026-07-28, the way before it
                            await client.session.subscribe_resource(uri)
                        subscribed.add(uri)
                        self._set_active(set(subscribed))
                await grown.wait()
            except Exception:
                # Refused or dropped: a dead connection is the supervisor's to notice; try again later.
                self._set_active(set(subscribed) if not modern else set())
                with anyio.move_on_after(_RELISTEN_S):
                    await grown.wait()

    async def _listen(self, client: Client, uris: list[str], grown: anyio.Event) -> None:
        async with client.listen(resource_subscriptions=uris) as subscription, anyio.create_task_group() as group:
            async def read() -> None:
                async for event in subscription:
                    if isinstance(event, ResourceUpdated):
                        self.mark(event.uri)
                raise ConnectionError("the resource subscription stream ended")

            group.start_soon(read)
            self._set_active(set(uris))
            await grown.wait()
            group.cancel_scope.cancel()
