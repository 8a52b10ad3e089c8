"""`agent chat`: a conversation in the terminal, each answer streamed as `agent run` streams a run.

The prompt loop owns the main thread (readline, Ctrl-C); the Agent and its runs live on an event loop in a
portal thread, so the MCP servers stay up between prompts and Ctrl-C can cancel just the run in progress.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from agent.runtime.sandbox import Sandbox

from .approvals import add_approve_option, terminal_askers
from .demo import scripted_demo_if_needed
from .errors import AgentError, ConfigError
from .interrupts import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    error_exit,
    sigterm_as_ctrl_c,
)
from .models.config import parse_model
from .render import ConsoleRenderer, usage_line
from .result import RunResult
from .runner import Agent
from .session import Session
from .task import TaskSpec, bind_workspace, load_task
from .think import policy_label, think_policy

THINK_CHOICES = ("auto", "none", "high", "max")
PROMPT = "> "
HELP = """commands:
  /think auto|none|high|max   the think policy of the next prompts
  /model MODEL                switch model (a new Agent: the servers restart, the conversation is kept)
  /tools                      the tools offered to the model
  /reset                      start the conversation again
  /help                       this list
  /exit                       leave (so do Ctrl-D, and Ctrl-C at the prompt; Ctrl-C during a run stops the run)
A line starting with // is sent as a prompt starting with /."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent chat",
        description="Talk with the agent: each prompt is a run on the conversation so far, streamed as `agent run` "
        "streams it (progress on stderr, answers on stdout). Reads prompts from stdin, so piped input works; "
        "type /help for the commands.",
    )
    parser.add_argument("task", type=Path, nargs="?",
                        help="task file (YAML) giving the model, servers, system prompt, limits and workspace "
                        "(its prompt is not sent)")
    parser.add_argument("--model", default=os.environ.get("AGENT_MODEL"),
                        help="override the task's model (default: $AGENT_MODEL or the task's)")
    parser.add_argument("--think", choices=THINK_CHOICES, help="think policy (auto chooses per step)")
    parser.add_argument("--session", type=Path,
                        help="keep the conversation in this JSON file, and continue it if it exists")
    parser.add_argument("--demo", action="store_true",
                        help="replay the task's scripted demo offline even when an API key is set")
    parser.add_argument("--no-reasoning", action="store_true", help="do not show streamed reasoning")
    add_approve_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with sigterm_as_ctrl_c() as terminated:
        try:
            return _chat(args, terminated)
        except AgentError as exc:
            return error_exit(exc)
        except KeyboardInterrupt:
            if terminated():
                print("\nagent: terminated", file=sys.stderr)
                return EXIT_TERMINATED
            print(file=sys.stderr)  # leave the prompt's line
            return EXIT_INTERRUPTED


def _chat(args: argparse.Namespace, terminated: Callable[[], bool]) -> int:
    if args.demo and args.task is None:
        raise ConfigError("--demo needs a task file with a 'demo' field naming a script of model turns")
    task = load_task(args.task) if args.task is not None else TaskSpec(prompt="")
    updates: dict[str, object] = {}
    if args.model:
        updates["model"] = parse_model(args.model, where="--model")
    if args.think:
        updates["think"] = args.think
    task = task.model_copy(update=updates)
    with ExitStack() as stack:
        task = scripted_demo_if_needed(task, demo=args.demo, where=str(args.task), stack=stack)
        portal = stack.enter_context(start_blocking_portal())
        sandbox = None
        if task.workspace is not None or task.builtin_servers:
            from agent.runtime.workspace import Workspace

            workspace = stack.enter_context(portal.wrap_async_context_manager(Workspace(task.workspace, task.sandbox)))
            task = bind_workspace(task, workspace.path)
            sandbox = workspace.sandbox  # python-execute runs in the workspace's sandbox, not a second one
            if workspace.keep:
                print(f"workspace: {workspace.path} (kept)", file=sys.stderr)
        chat = Chat(task, portal, args.session, show_reasoning=not args.no_reasoning, terminated=terminated,
                    approve=args.approve, sandbox=sandbox)
        with chat:
            return chat.loop()


class Chat:
    """The prompt loop: reads lines, runs prompts on the session, obeys /commands."""

    def __init__(self, task: TaskSpec, portal: BlockingPortal, session_path: Path | None, *,
                 show_reasoning: bool = True, terminated: Callable[[], bool] = lambda: False,
                 approve: str = "never", sandbox: Sandbox | None = None):
        self.task = task
        # As in `agent run`: approvals and servers' questions are asked on the terminal during a run (the prompt
        # loop waits meanwhile, so they read the same stdin).
        self._agent_options = terminal_askers(approve)
        if sandbox is not None:
            self._agent_options["sandbox"] = sandbox
        self.portal = portal
        self.renderer = ConsoleRenderer(show_reasoning=show_reasoning)
        self.terminated = terminated
        # The session file is read before any server starts: a wrong path fails fast.
        self.session = Session(Agent.from_task(task, **self._agent_options), session_path)
        self._agent_open = ExitStack()
        self._interactive = sys.stdin.isatty() and sys.stdout.isatty()
        self._history_file: Path | None = None

    def __enter__(self) -> Chat:
        self._agent_open.enter_context(self.portal.wrap_async_context_manager(self.session.agent))
        if self._interactive:
            self._start_readline()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._save_readline()
        finally:
            self._agent_open.close()

    @property
    def agent(self) -> Agent:
        return self.session.agent

    # -- the loop ----------------------------------------------------------------------------------------

    def loop(self) -> int:
        model, _ = self.agent.connected()
        self._say(f"agent chat · {model.label} · think {policy_label(self.agent.policy)} · "
                  f"{len(self.agent.tools)} tools · /help for commands")
        if self.session.turns:
            self._say(f"continuing {self.session.path}: {len(self.session.turns)} turns, "
                      f"{len(self.session.messages)} messages")
        while True:
            try:
                line = self._read()
            except EOFError:
                print(file=sys.stderr)  # leave the prompt's line
                break
            line = line.strip()
            if not line:
                continue
            if line.startswith("/") and not line.startswith("//"):
                if not self.command(line):
                    break
                continue
            self.turn(line[1:] if line.startswith("//") else line)
        if self.session.turns:
            saved = f" · saved in {self.session.path}" if self.session.path else ""
            self._say(f"session: {len(self.session.turns)} turns · {usage_line(self.session.usage, self.session.cost)}"
                      f"{saved}")
        return EXIT_OK

    def _read(self) -> str:
        if self._interactive:
            return input(PROMPT)  # readline draws the prompt itself, so that editing keeps it
        sys.stderr.write(PROMPT)
        sys.stderr.flush()
        return input()

    def turn(self, prompt: str) -> None:
        """One run on the conversation; Ctrl-C cancels it (its cleanup finishes) and comes back here."""
        scope = self.portal.call(anyio.CancelScope)
        future = self.portal.start_task_soon(self._run, prompt, scope)
        try:
            result = self._wait(future, scope)
        except AgentError as exc:
            self._say(f"agent: error: {exc}")
            return
        if result is None:
            self._say("run cancelled; the conversation keeps what it did")
            return
        if result.output is not None:
            print(json.dumps(result.output, indent=2, ensure_ascii=False))
        elif result.answer:
            print(result.answer)
        sys.stdout.flush()
        if result.error:
            self._say(f"agent: error: {result.error}")

    async def _run(self, prompt: str, scope: anyio.CancelScope) -> RunResult | None:
        with scope:
            return await self.session.run(prompt, on_event=self.renderer)
        return None

    def _wait(self, future: Future[RunResult | None], scope: anyio.CancelScope) -> RunResult | None:
        while True:
            try:
                result = future.result()
                break
            except KeyboardInterrupt:
                self.portal.call(scope.cancel)  # then wait on: the run closes its trace and saves the session
        if self.terminated():
            raise KeyboardInterrupt  # SIGTERM: the run is stopped, now leave
        return result

    # -- commands --------------------------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Do a /command; False when the chat should end."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            self._say(HELP)
        elif name == "/think":
            self._think(argument)
        elif name == "/model":
            self._model(argument)
        elif name == "/tools":
            self._tools()
        elif name == "/reset":
            self.session.reset()
            self._say("the conversation starts again")
        else:
            self._say(f"unknown command {name} (/help lists them; start with // to send a prompt beginning with /)")
        return True

    def _think(self, argument: str) -> None:
        if argument not in THINK_CHOICES:
            self._say(f"/think: expected one of {', '.join(THINK_CHOICES)}; "
                      f"now {policy_label(self.agent.policy)}")
            return
        self.agent.policy = think_policy(argument, where="/think")
        self._say(f"think {argument} from the next prompt")

    def _model(self, argument: str) -> None:
        if not argument:
            self._say(f"/model: give a model string; now {self.agent.connected()[0].label}")
            return
        try:
            config = parse_model(argument, where="/model")
            agent = Agent.from_task(self.task.model_copy(update={"model": config}), think=self.agent.policy,
                                    **self._agent_options)
            opened = ExitStack()
            opened.enter_context(self.portal.wrap_async_context_manager(agent))
        except AgentError as exc:
            self._say(f"agent: error: {exc}; still on {self.agent.connected()[0].label}")
            return
        previous, self._agent_open, self.session.agent = self._agent_open, opened, agent
        previous.close()
        self._say(f"model {agent.connected()[0].label}; the conversation goes on")

    def _tools(self) -> None:
        _, hub = self.agent.connected()
        width = max((len(t.name) for t in hub.tools), default=0)
        lines = [f"  {t.name:<{width}}  {next(iter(t.description.strip().splitlines()), '')}" for t in hub.tools]
        self._say(f"{len(hub.tools)} tools:\n" + "\n".join(lines))

    # -- terminal --------------------------------------------------------------------------------------

    @staticmethod
    def _say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def _start_readline(self) -> None:
        try:
            import readline
        except ImportError:  # no readline on this platform: plain input
            return
        self._history_file = Path(os.environ.get("AGENT_CHAT_HISTORY", Path.home() / ".agent_chat_history"))
        readline.set_history_length(1000)
        try:
            readline.read_history_file(self._history_file)
        except OSError:
            pass  # the first chat: no history yet

    def _save_readline(self) -> None:
        if self._history_file is None:
            return
        import readline

        try:
            readline.write_history_file(self._history_file)
        except OSError as exc:
            self._say(f"agent: cannot save the prompt history in {self._history_file} ({exc.strerror})")


if __name__ == "__main__":
    sys.exit(main())
