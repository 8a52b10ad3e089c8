"""`@server:uri` mentions in prompts: each is replaced by the text of that server's resource before a run starts.

A mention is `@NAME:URI` where NAME is a configured MCP server and URI has a scheme (`scheme://...`); `@NAME:<URI>`
takes a URI up to `>` (for one that ends in punctuation). Trailing `.,;:!?` and unbalanced closing brackets or
quotes are not part of a bare URI. Anything else with an `@` stays as written, and `@@NAME:URI` is the literal text
`@NAME:URI`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from agent.tools.hub import ToolHub

MENTION = re.compile(
    r"(?<![\w@])(?P<escape>@?)@(?P<server>[A-Za-z0-9_-]+):"
    r"(?:<(?P<quoted>[^<>\s]+)>|(?P<bare>[A-Za-z][A-Za-z0-9+.-]*://\S+))"
)
_TRAILING = ".,;:!?'\""
_PAIRS = {")": "(", "]": "[", "}": "{"}


class MentionError(ConfigError):
    """An `@server:uri` mention names a server that is not connected, or a resource that cannot be read as text."""


def _trim(uri: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets from the end of a bare URI."""
    while uri:
        last = uri[-1]
        if last in _TRAILING or (last in _PAIRS and uri.count(last) > uri.count(_PAIRS[last])):
            uri = uri[:-1]
        else:
            break
    return uri


def find_mentions(text: str, servers: set[str] | frozenset[str]) -> list[tuple[int, int, str, str, bool]]:
    """(start, end, server, uri, escaped) of each mention of one of `servers`, in order."""
    found = []
    for match in MENTION.finditer(text):
        server = match["server"]
        if server not in servers:
            continue
        if match["quoted"] is not None:
            uri, end = match["quoted"], match.end()
        else:
            uri = _trim(match["bare"])
            end = match.start("bare") + len(uri)
        if match["quoted"] is None and "://" not in uri:
            continue
        found.append((match.start(), end, server, uri, bool(match["escape"])))
    return found


async def expand_mentions(text: str, hub: ToolHub, *, where: str = "prompt") -> str:
    """`text` with each `@server:uri` mention replaced by the resource's text (read once per URI, and watched for
    updates like a read by the model). Raises MentionError naming the mention and `where`."""
    if "@" not in text:
        return text
    configured = frozenset([*hub.servers, *hub.failures])
    mentions = find_mentions(text, configured)
    if not mentions:
        return text
    from agent.tools.resources import ResourceError, resource_text

    read: dict[tuple[str, str], str] = {}
    parts: list[str] = []
    last = 0
    for start, end, server, uri, escaped in mentions:
        parts.append(text[last:start])
        last = end
        if escaped:
            parts.append(text[start + 1:end])  # `@@name:uri` -> `@name:uri`
            continue
        mention = text[start:end]
        if (server, uri) not in read:
            if server in hub.failures:
                raise MentionError(f"{where}: the mention {mention} names the MCP server {server!r}, which failed to "
                                   f"start: {hub.failures[server]}")
            try:
                result = await hub.read_resource(server, uri, watch=True)
                read[(server, uri)] = resource_text(result)
            except ResourceError as exc:
                raise MentionError(f"{where}: the mention {mention} could not be replaced by the resource's text: "
                                   f"{exc} (to keep the text as written, write @{mention})") from None
        parts.append(read[(server, uri)])
    parts.append(text[last:])
    return "".join(parts)
