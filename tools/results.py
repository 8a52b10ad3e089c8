"""MCP tool results -> `ToolOutcome`: the text the model reads, plus images and structured data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import mcp.types as types

NO_OUTPUT = "(no output)"
NO_ERROR_MESSAGE = "(the tool reported an error without a message)"


@dataclass
class ToolOutcome:
    """What a tool call produced, ready for the conversation."""

    text: str
    is_error: bool = False
    images: list[tuple[str, str]] = field(default_factory=list)
    """(mime_type, base64 data) of each image, in order; also described in `text`."""
    structured: Any = None
    """The result's structured content, if any."""


def format_size(n_bytes: int) -> str:
    """Human-readable size: `512 B`, `12.3 KB`, `4.0 MB`."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    if n_bytes < 1024 * 1024:
        return f"{n_bytes / 1024:.1f} KB"
    return f"{n_bytes / (1024 * 1024):.1f} MB"


def _base64_size(data: str) -> int:
    # Decoded size without decoding: 3 bytes per 4 characters, minus padding.
    data = data.strip()
    return max(0, len(data) * 3 // 4 - data[-2:].count("="))


def _describe_resource_link(link: types.ResourceLink) -> str:
    details = [d for d in (link.mime_type, format_size(link.size) if link.size is not None else None) if d]
    suffix = f" ({', '.join(details)})" if details else ""
    description = f": {link.description}" if link.description else ""
    return f"[resource link: {link.name} <{link.uri}>{suffix}{description}]"


def _describe_embedded(resource: types.TextResourceContents | types.BlobResourceContents) -> str:
    mime = resource.mime_type
    if isinstance(resource, types.TextResourceContents):
        header = f"[resource: {resource.uri}{f' ({mime})' if mime else ''}]"
        return f"{header}\n{resource.text}"
    details = ", ".join(d for d in (mime, format_size(_base64_size(resource.blob))) if d)
    return f"[binary resource: {resource.uri} ({details})]"


_JSON_START = frozenset('{["-0123456789tfn')


def _as_value(text: str) -> Any:
    stripped = text.strip()
    if stripped and stripped[0] in _JSON_START:
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def _carried_by_text(structured: Any, texts: list[str]) -> bool:
    """Whether the text blocks already say what the structured content says.

    MCPServer sends both: a model as pretty JSON text, a scalar `{"result": x}` as the text of x,
    a list `{"result": [..]}` as one text block per item; the reference TypeScript servers send
    `{"content": text}` beside the same text.
    """
    if not texts:
        return False
    values = [_as_value(t) for t in texts]
    candidates = [structured]
    if isinstance(structured, dict) and len(structured) == 1:
        (only,) = structured.values()
        candidates.append(only)
        if only == "\n".join(texts):
            return True
    for candidate in candidates:
        if any(v == candidate or t == candidate for v, t in zip(values, texts, strict=True)):
            return True
        if (
            isinstance(candidate, list)
            and len(candidate) == len(values)
            and all(v == item or t == str(item) for v, t, item in zip(values, texts, candidate, strict=True))
        ):
            return True
    return False


def outcome_from_result(result: types.CallToolResult) -> ToolOutcome:
    """Turn a `CallToolResult` into the text, images and structured data the model gets."""
    parts: list[str] = []
    texts: list[str] = []
    images: list[tuple[str, str]] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
            texts.append(block.text)
        elif isinstance(block, types.ImageContent):
            images.append((block.mime_type, block.data))
            parts.append(f"[image: {block.mime_type}, {format_size(_base64_size(block.data))}]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio: {block.mime_type}, {format_size(_base64_size(block.data))}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(_describe_resource_link(block))
        elif isinstance(block, types.EmbeddedResource):
            parts.append(_describe_embedded(block.resource))
        else:
            parts.append(f"[{getattr(block, 'type', type(block).__name__)} content]")
    structured = result.structured_content
    if structured is not None and not _carried_by_text(structured, texts):
        parts.append(json.dumps(structured, separators=(",", ":"), ensure_ascii=False, default=str))
    text = "\n".join(parts)
    if not text:
        text = NO_ERROR_MESSAGE if result.is_error else NO_OUTPUT
    return ToolOutcome(text=text, is_error=result.is_error, images=images, structured=structured)


def error_outcome(message: str) -> ToolOutcome:
    """An error the model should read, for problems found before or around the call."""
    return ToolOutcome(text=message, is_error=True)
