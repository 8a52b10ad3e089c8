"""An MCP server for tests whose tools ask things of the client: a form (elicitation), a completion (sampling),
and progress and log messages while they work. stdio; both protocol eras (Resolve works on either)."""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.resolve import Sample
from mcp.types import CreateMessageResult, SamplingMessage, TextContent
from pydantic import BaseModel, Field

warnings.filterwarnings("ignore")  # ctx.info is deprecated (SEP-2577) but still what servers send

mcp = MCPServer("asking")


class Booking(BaseModel):
    guests: int = Field(description="How many people", ge=1, le=12)
    time: Literal["18:00", "20:00"] = "20:00"
    vegan: bool = False
    name: str = Field(description="Whose name the table is under")


async def ask_booking(date: str) -> Elicit[Booking]:
    return Elicit(f"Book a table for {date}?", Booking)


@mcp.tool()
async def book_table(date: str, booking: Annotated[Booking, Resolve(ask_booking)]) -> str:
    """Book a table; the user fills in the details."""
    vegan = ", vegan" if booking.vegan else ""
    return f"Booked a table on {date} at {booking.time} for {booking.guests} under {booking.name}{vegan}."


async def ask_summary(text: str) -> Sample:
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=f"Summarise: {text}"))],
                  max_tokens=5000, system_prompt="You write one-line summaries.")


@mcp.tool()
async def summarise(text: str, summary: Annotated[CreateMessageResult, Resolve(ask_summary)]) -> str:
    """Summarise a text with the client's model."""
    content = summary.content
    said = content.text if isinstance(content, TextContent) else f"[{content.type}]"
    return f"Summary by {summary.model}: {said}"


@mcp.tool()
async def count(n: int, ctx: Context) -> str:
    """Count to n, reporting progress and logging each number."""
    await ctx.info(f"counting to {n}")
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, message=f"counted {i}")
    await ctx.warning("done counting")
    return f"counted to {n}"


if __name__ == "__main__":
    mcp.run()
