"""The `ToolSource` protocol: any provider of tools the agent can call, beside the MCP servers.

The hub offers a source's tools under `<prefix>__<tool>` (or their own names when `prefix` is None) in the same
prefix-stable tool list as the MCP servers' tools, and routes calls back to it. Sources are entered and exited
with the hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from agent.tools.results import ToolOutcome


@dataclass(frozen=True)
class SourceTool:
    """One tool of a source, as the model will see it (before the hub qualifies its name)."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    read_only: bool | None = None
    """Like MCP's readOnlyHint: the tool changes nothing."""
    destructive: bool | None = None
    """Like MCP's destructiveHint: the tool may delete or overwrite."""
    open_world: bool | None = None
    """Like MCP's openWorldHint: the tool reaches outside the run (network, other systems)."""


@runtime_checkable
class ToolSource(Protocol):
    """Tools from anywhere: Python functions, another agent, a remote API. Errors are outcomes, not raises.

    The hub enters the source when it is entered and exits it when it closes, from the same task. A `call` that
    raises anyway becomes an error outcome naming the tool; the run goes on.
    """

    @property
    def prefix(self) -> str | None:
        """Offered as `<prefix>__<tool>`; None: the tools keep their own names, which must not clash with other
        unprefixed names (local tools, other sources). A plain attribute will do."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None: ...

    def list_tools(self) -> Sequence[SourceTool]:
        """The tools offered now (unique names). The hub reads it when entered, and in `refresh()` (between
        steps) when `tools_changed` is set."""
        ...

    @property
    def tools_changed(self) -> bool:
        """True when the tools changed since `list_tools` last ran (so reading the list clears it)."""
        ...

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one tool (its own name, not the qualified one) with parsed arguments; problems come back as an
        error outcome."""
        ...
