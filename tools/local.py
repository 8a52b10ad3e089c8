"""Framework-side tools that run in this process, offered to the model beside the MCP servers' tools."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tools.results import ToolOutcome

CLAIM_DONE = "claim_done"


@dataclass
class LocalTool:
    """A tool implemented by the framework; `handler` receives the parsed arguments object."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Callable[[dict[str, Any]], Awaitable[ToolOutcome]]
    read_only: bool = True


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
    )
