"""The quick-start task from Python: `python examples/sdk_quickstart.py`.

With DEEPSEEK_API_KEY set it asks DeepSeek V4; without it, it replays the scripted demo turns from a local
scripted model server (and says so). The MCP server and its SQL tool are real either way.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import anyio

from agent import Agent
from agent.events import ModelDelta, ToolCallStarted, ToolResult
from agent.testing import ScriptedModelServer, load_script

HERE = Path(__file__).parent / "quickstart"
QUESTION = (
    "Using the sales database, which region had the highest total revenue (quantity x unit_price) in 2026 Q3 "
    "(July to September), and by how much did it beat the second region? Give both totals."
)


async def main(model: str) -> None:
    servers = {"sales": {"command": sys.executable, "args": [str(HERE / "sales_server.py")]}}
    async with Agent(model, servers, think="high", limits={"max_steps": 12}, name="sdk-quickstart") as agent:
        async for event in agent.stream(QUESTION):
            if isinstance(event, ModelDelta) and event.kind == "content":
                print(event.text, end="", flush=True)
            elif isinstance(event, ToolCallStarted):
                print(f"-> {event.tool} {event.arguments}")
            elif isinstance(event, ToolResult):
                print(f"<- {event.content[:200]}")
            elif event.type == "run_finished":
                print(f"\n[{event.stop_reason}: {event.steps} steps, {event.usage.total_tokens} tokens, ${event.cost:.6f}]")


if __name__ == "__main__":
    with ExitStack() as stack:
        if os.environ.get("DEEPSEEK_API_KEY"):
            model = "deepseek:deepseek-flash"
        else:
            print("DEEPSEEK_API_KEY is not set: SCRIPTED DEMO, the model's turns are replayed offline.")
            server = stack.enter_context(ScriptedModelServer(load_script(HERE / "demo.yaml"), model="deepseek-flash"))
            model = server.model_string
        anyio.run(main, model)
