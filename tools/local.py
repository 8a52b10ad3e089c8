"""Framework-side tools that run in this process, offered to the model beside the MCP servers' tools, and
`LocalTools`, the built-in tool source that offers them under their own names."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.tools.results import ToolOutcome
from agent.tools.source import SourceTool

CLAIM_DONE = "claim_done"


@dataclass
class LocalTool:
    """A tool implemented by the framework; `handler` receives the parsed arguments object."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Callable[[dict[str, Any]], Awaitable[ToolOutcome]]
    read_only: bool = True
    destructive: bool | None = None
    open_world: bool | None = None
    """Whether the tool reaches outside the run (None: not said); the framework's own tools say False."""


class LocalTools:
    """Local tools as a `ToolSource`: their own names (no prefix), a fixed list, handlers called in this process."""

    prefix: str | None = None

    def __init__(self, tools: Sequence[LocalTool]) -> None:
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"local tool names must be unique, got {names}")
        self._handlers = {tool.name: tool.handler for tool in tools}
        self._tools = [
            SourceTool(tool.name, tool.description, tool.input_schema, read_only=tool.read_only,
                       destructive=tool.destructive, open_world=tool.open_world)
            for tool in tools
        ]

    async def __aenter__(self) -> LocalTools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def list_tools(self) -> list[SourceTool]:
        return self._tools

    @property
    def tools_changed(self) -> bool:
        return False

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        return await self._handlers[tool](arguments)


async def _claim_done(arguments: dict[str, Any]) -> ToolOutcome:
    summary = arguments.get("summary")
    if summary is not None and not isinstance(summary, str):
        return ToolOutcome(text="claim_done: 'summary' must be a string", is_error=True)
    return ToolOutcome(text="Done claimed; the run ends here.")


def claim_done_tool() -> LocalTool:
    """The tool the model calls to say the task is finished; the loop stops when it sees the call."""
    return LocalTool(
        name=CLAIM_DONE,
        description=(
            "Call this when the task is complete, and only then. "
            "Optionally give a short summary of what was done."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "summary": {"type": "string", "description": "What was done, in a few sentences."}
            },
        },
        handler=_claim_done,
        open_world=False,
    )


READ_OUTPUT = "read_output"
SEARCH_OUTPUT = "search_output"
CONTEXT_STATUS = "context_status"
_PAGE = 20_000


def output_tools(resolve: Callable[[str], Path | None]) -> list[LocalTool]:
    """read_output / search_output over tool outputs that were too long for the context.

    `resolve` maps an output id (given in the cut result) to its saved file, or None.
    """

    def load(arguments: dict[str, Any]) -> str | ToolOutcome:
        """The saved output's text, or the error outcome to return when the id is unknown."""
        output_id = arguments.get("output_id")
        path = resolve(output_id) if isinstance(output_id, str) else None
        if path is None:
            return ToolOutcome(text=f"no saved output with id {output_id!r}; use the id given in the cut "
                                    "tool result", is_error=True)
        return path.read_text(encoding="utf-8", errors="replace")

    async def read_output(arguments: dict[str, Any]) -> ToolOutcome:
        text = load(arguments)
        if isinstance(text, ToolOutcome):
            return text
        offset, limit = arguments.get("offset", 0), arguments.get("limit", _PAGE)
        if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or limit < 1:
            return ToolOutcome(text="offset must be an integer >= 0 and limit an integer >= 1", is_error=True)
        limit = min(limit, 100_000)
        end = min(offset + limit, len(text))
        more = f" Next: offset={end}." if end < len(text) else " This is the end."
        return ToolOutcome(text=f"[characters {offset:,}-{end:,} of {len(text):,}.{more}]\n{text[offset:end]}")

    async def search_output(arguments: dict[str, Any]) -> ToolOutcome:
        text = load(arguments)
        if isinstance(text, ToolOutcome):
            return text
        try:
            pattern = re.compile(str(arguments.get("pattern", "")))
        except re.error as exc:
            return ToolOutcome(text=f"invalid regular expression: {exc}", is_error=True)
        context = max(0, min(int(arguments.get("context_lines", 1) or 0), 20))
        limit = max(1, min(int(arguments.get("max_matches", 50) or 50), 500))
        lines = text.splitlines()
        shown: list[str] = []
        matches = 0
        for number, line in enumerate(lines):
            if pattern.search(line):
                matches += 1
                if matches <= limit:
                    low, high = max(0, number - context), min(len(lines), number + context + 1)
                    shown.extend(f"{i + 1}{':' if i == number else '-'} {lines[i][:500]}" for i in range(low, high))
                    shown.append("--")
        head = f"[{matches} matching lines" + (f", first {limit} shown" if matches > limit else "") + "]"
        return ToolOutcome(text="\n".join([head, *shown[:-1]]) if shown else f"[no line matches {pattern.pattern!r}]")

    output_id = {"type": "string", "description": "The output id given in the cut tool result"}
    return [
        LocalTool(
            name=READ_OUTPUT,
            description="Read part of a tool output that was too long to show in full, by character offset.",
            input_schema={"type": "object", "required": ["output_id"], "properties": {
                "output_id": output_id,
                "offset": {"type": "integer", "minimum": 0, "description": "First character to show (default 0)"},
                "limit": {"type": "integer", "minimum": 1, "description": f"Characters to show (default {_PAGE})"},
            }},
            handler=read_output,
            open_world=False,
        ),
        LocalTool(
            name=SEARCH_OUTPUT,
            description="Search a tool output that was too long to show in full: lines matching a regular "
                        "expression, with line numbers and context.",
            input_schema={"type": "object", "required": ["output_id", "pattern"], "properties": {
                "output_id": output_id,
                "pattern": {"type": "string", "description": "Python regular expression"},
                "context_lines": {"type": "integer", "minimum": 0, "description": "Lines around each match (default 1)"},
                "max_matches": {"type": "integer", "minimum": 1, "description": "At most this many matches (default 50)"},
            }},
            handler=search_output,
            open_world=False,
        ),
    ]


def context_status_tool(status: Callable[[], dict[str, Any]]) -> LocalTool:
    """A tool that tells the model how much context it has used and has left."""

    async def handler(arguments: dict[str, Any]) -> ToolOutcome:
        figures = status()
        return ToolOutcome(text=json.dumps(figures, indent=1), structured=figures)

    return LocalTool(
        name=CONTEXT_STATUS,
        description="How many tokens of the context window are used and left, when the conversation will be "
                    "compacted, and the compactions so far.",
        input_schema={"type": "object", "properties": {}},
        handler=handler,
        open_world=False,
    )
