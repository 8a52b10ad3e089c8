"""The labelled scripted demo: without credentials for the official API (or with --demo), a task with a `demo:`
script runs offline against the scripted model server, and says so plainly (`agent run`, `agent chat`)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING, Literal

from .errors import ConfigError
from .models.config import parse_model
from .task import TaskSpec

if TYPE_CHECKING:
    from .testing import ScriptedModelServer


def demo_server(task: TaskSpec, *, forced: bool) -> ScriptedModelServer | None:
    """The scripted model server replaying `task`'s demo, not started yet, when the run should be the demo:
    asked for, or without the key the official API needs; None otherwise, and for a task with no demo."""
    model = task.model
    missing_key = model.needs_key() and model.resolved_api_key() is None
    if not (forced or missing_key) or task.demo is None:
        return None
    # Here, not at the top: `agent --help` and every real run would pay for starting up the server library.
    from .testing import ScriptedModelServer, load_script

    dialect: Literal["deepseek", "vllm"] = "vllm" if model.profile == "vllm" else "deepseek"
    return ScriptedModelServer(load_script(task.demo), dialect=dialect, model=model.model or "deepseek-v4-flash")


def scripted_demo_if_needed(task: TaskSpec, *, demo: bool, where: str, stack: ExitStack) -> TaskSpec:
    """Without credentials for the official API, run the task's scripted demo, and say so plainly."""
    if demo and task.demo is None:
        raise ConfigError(f"{where}: --demo needs a 'demo' field naming a script of model turns")
    server = demo_server(task, forced=demo)
    if server is None:
        return task  # a real run; without a key the model client raises the clear "key is not set" error
    reason = "--demo was given" if demo else f"{task.model.key_env()} is not set"
    print(
        f"agent: {reason}: running a SCRIPTED DEMO offline. The model's turns are replayed from {task.demo} by a "
        "local scripted OpenAI-compatible server; the MCP servers and tools are real. Set DEEPSEEK_API_KEY "
        "(or --model vllm:http://HOST:8000/v1#MODEL) to run the same task against DeepSeek V4.",
        file=sys.stderr,
    )
    stack.enter_context(server)
    return task.model_copy(update={"model": parse_model(server.model_string)})
