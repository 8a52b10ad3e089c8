"""Sessions: one conversation kept in a JSON file, continued by every run and saved again after it.

`session = agent.session("chat.json")`; `await session.run(prompt)`. Any later Agent, in any process, can
open the same file and go on where the last run stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .result import RunResult, StopReason
from .run import AgentRun, EventSink
from .task import describe_validation_error
from .usage import Usage

if TYPE_CHECKING:
    from .runner import Agent

SESSION_FORMAT = "agent-session"
UNRUN_CALL = "Not run: the run ended before this call was made."


class SessionTurn(BaseModel):
    """One run of the session: what was asked, how it ended, where its trace is, what it cost."""

    prompt: str
    run_id: str
    stop_reason: StopReason
    trace_path: Path | None = None
    usage: Usage = Usage()
    cost: float = 0.0
    finished_at: dt.datetime


class SessionFile(BaseModel):
    """The file's content: the canonical conversation and one record per run."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["agent-session"] = Field(description="Marks the file as a session")
    version: Literal[1] = 1
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The conversation, canonical form")
    turns: list[SessionTurn] = Field(default_factory=list)


class Session:
    """A conversation that outlives the Agent and the process: each `run` continues it and saves it.

    The file is replaced atomically after each run (a temp file in the same folder, fsync, rename), so it
    always holds a complete session. `path=None` keeps the conversation in memory only. Runs of one session
    go one after the other; a cancelled run's messages are kept too, so the model knows what its tools did.
    """

    def __init__(self, agent: Agent, path: str | Path | None):
        self.agent = agent
        """The Agent the next runs use; replace it to switch model or servers and keep the conversation."""
        self.path = Path(path) if path is not None else None
        self.messages: list[dict[str, Any]] = []
        self.turns: list[SessionTurn] = []
        self._lock = anyio.Lock()
        if self.path is not None and self.path.exists():
            saved = load_session(self.path)
            self.messages, self.turns = saved.messages, saved.turns

    @property
    def usage(self) -> Usage:
        """Tokens of every run so far."""
        return sum((t.usage for t in self.turns), Usage())

    @property
    def cost(self) -> float:
        """USD of every run so far."""
        return sum(t.cost for t in self.turns)

    async def run(self, prompt: str, *, trace_path: str | Path | None = None, on_event: EventSink | None = None,
                  output_type: Any = None) -> RunResult:
        """`Agent.run` on the saved conversation; the session is saved when the run ends, however it ends."""
        async with self._lock:
            run: AgentRun | None = None
            try:
                async with self.agent.iter(prompt, trace_path=trace_path, history=answered(self.messages),
                                           on_event=on_event, output_type=output_type) as run:
                    await run.run_to_end()
            finally:
                if run is not None and run.result is not None:
                    self._record(prompt, run.result)
            assert run is not None and run.result is not None
            return run.result

    def reset(self) -> None:
        """Forget the conversation and its turns, and save the empty session."""
        self.messages, self.turns = [], []
        self.save()

    def save(self) -> None:
        """Write the session: a temp file in the same folder, fsync, then rename over the old file."""
        if self.path is None:
            return
        data = SessionFile(format=SESSION_FORMAT, messages=self.messages, turns=self.turns).model_dump(mode="json")
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        try:
            write_atomically(self.path, text)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot save the session ({exc.strerror or exc}); give a path in a "
                              "folder that is writable") from None

    def _record(self, prompt: str, result: RunResult) -> None:
        self.messages = result.messages
        self.turns.append(SessionTurn(
            prompt=prompt, run_id=result.run_id, stop_reason=result.stop_reason,
            trace_path=result.trace_path.absolute() if result.trace_path else None,
            usage=result.usage, cost=result.cost, finished_at=dt.datetime.now(dt.UTC)))
        self.save()

    def __repr__(self) -> str:
        return f"<Session {self.path or 'in memory'}: {len(self.turns)} turns, {len(self.messages)} messages>"


def load_session(path: Path) -> SessionFile:
    """A session file read back; anything else is a ConfigError naming the file."""
    advice = "give a file written by a session (agent.session(), agent chat --session) or a new path"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the session ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a session file (not JSON: {exc}); {advice}") from None
    if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
        raise ConfigError(f"{path}: not a session file (no \"format\": \"{SESSION_FORMAT}\"); {advice}")
    try:
        return SessionFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: not a valid session file: {describe_validation_error(exc, SessionFile)}") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old file or the new one, never a part."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    # The rename is durable only once the folder's entry is on disk too.
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


def answered(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages, with a result for each tool call a stopped run left without one.

    A run cancelled during its tool calls, or stopped by max_tool_calls, ends on an assistant turn whose
    calls got no results; the API refuses such a conversation, so the next run would fail.
    """
    history = [dict(m) for m in messages]
    last = next((i for i in range(len(history) - 1, -1, -1) if history[i].get("role") == "assistant"), None)
    if last is None or not history[last].get("tool_calls"):
        return history
    if any(m.get("role") != "tool" for m in history[last + 1:]):
        return history
    done = {m.get("tool_call_id") for m in history[last + 1:]}
    for call in history[last]["tool_calls"]:
        if call.get("id") not in done:
            history.append({"role": "tool", "tool_call_id": call.get("id"), "content": UNRUN_CALL})
    return history
