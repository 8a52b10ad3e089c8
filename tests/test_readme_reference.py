"""The README's task-file reference is a task file that loads, and it shows every option of a server entry."""

from __future__ import annotations

import re
from pathlib import Path

from agent.task import load_task
from agent.tools.config import ServerSpec

README = Path(__file__).resolve().parent.parent / "README.md"
# Not shown under the stdio `sales` entry of the reference: the remote-only options (its `remote` entry shows
# url and headers) and the transport, which is inferred.
NOT_IN_THE_STDIO_EXAMPLE = {"url", "headers", "oauth", "type", "deny"}


def reference_block() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    return next(block for block in blocks if block.startswith("name: quickstart-sales"))


def test_the_task_file_reference_loads_as_a_task(tmp_path):
    (tmp_path / "task.yaml").write_text(reference_block())
    task = load_task(tmp_path / "task.yaml")
    assert task.name == "quickstart-sales" and set(task.servers) == {"sales", "remote"}
    assert task.servers["remote"].url == "http://127.0.0.1:8000/mcp"


def test_the_reference_shows_every_option_of_a_stdio_server_entry():
    sales = reference_block().split("  sales:\n", 1)[1].split("  remote:\n", 1)[0]
    shown = set(re.findall(r"^    ([a-z_]+):", sales, re.MULTILINE))
    assert set(ServerSpec.model_fields) - NOT_IN_THE_STDIO_EXAMPLE == shown
