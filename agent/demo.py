"""The labelled scripted demo: without credentials for the official API (or with --demo), a task with a `demo:`
script runs offline against the scripted model server, and says so plainly (`agent run`, `agent chat`)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Literal

from .errors import ConfigError
from .models.config import parse_model
from .task import TaskSpec


def scripted_demo_if_needed(task: TaskSpec, *, demo: bool, where: str, stack: ExitStack) -> TaskSpec:
    """Without credentials for the official API, run the task's scripted demo, and say so plainly."""
    model = task.model
    missing_key = model.needs_key() and model.resolved_api_key() is None
    if not (demo or missing_key):
        return task
    if task.demo is None:
        if demo:
            raise ConfigError(f"{where}: --demo needs a 'demo' field naming a script of model turns")
        return task  # the model client raises the clear "key is not set" error
    # Here, not at the top: `agent --help` and every real run would pay for starting up the server library.
    from .testing import ScriptedModelServer, load_script

    reason = "--demo was given" if demo else f"{model.key_env()} is not set"
    print(
        f"agent: {reason}: running a SCRIPTED DEMO offline. The model's turns are replayed from {task.demo} by a "
        "local scripted OpenAI-compatible server; the MCP servers and tools are real. Set DEEPSEEK_API_KEY "
        "(or --model vllm:http://HOST:8000/v1#MODEL) to run the same task against DeepSeek V4.",
        file=sys.stderr,
    )
    dialect: Literal["deepseek", "vllm"] = "vllm" if model.profile == "vllm" else "deepseek"
    server = stack.enter_context(
        ScriptedModelServer(load_script(task.demo), dialect=dialect, model=model.model or "deepseek-v4-flash")
    )
    return task.model_copy(update={"model": parse_model(server.model_string)})
