"""Approvals: a hook that asks a person before tool calls, chosen by tool-name globs and MCP annotations.

`ApprovalPolicy` decides per call (deny, allow or ask) and asks through its `confirm` callback: a terminal
(`terminal_prompt`), a host by MCP elicitation (`agent serve`), or your own function.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

import anyio

from .elicitation import terminal_form
from .errors import ConfigError
from .hooks import Hooks, ToolCallRequest, ToolDecision
from .terminal import read_line, terminal_fd, terminal_lock

if TYPE_CHECKING:
    from agent.tools.hub import ToolInfo

    from .run import RunContext

Verdict = Literal["yes", "no", "always"]
ApproveMode = Literal["ask", "destructive", "never"]
"""The `--approve` presets: see `approval_preset`."""
APPROVE_MODES: tuple[str, ...] = get_args(ApproveMode)

SAID_NO = "the user said no"
NO_TERMINAL = "no terminal to ask"
_ARGUMENT_CHARS = 120
_ARGUMENTS_CHARS = 600


@dataclass(frozen=True)
class Approval:
    """What a `confirm` callback answers: run the call, refuse it, or run it and every later call to the tool."""

    verdict: Verdict
    reason: str = ""
    """For `no`: what the model reads after "The call to X was refused: "."""

    @classmethod
    def yes(cls) -> Approval:
        return cls("yes")

    @classmethod
    def no(cls, reason: str = SAID_NO) -> Approval:
        return cls("no", reason or SAID_NO)

    @classmethod
    def always(cls) -> Approval:
        return cls("always")


ConfirmResult = Approval | bool | Verdict
"""A callback may also answer True / False or the verdict's name."""
Confirm = Callable[[ToolCallRequest], ConfirmResult | Awaitable[ConfirmResult]]
"""Asks whether a call may run: sync or async, given the `ToolCallRequest`."""


def is_destructive(info: ToolInfo) -> bool:
    """MCP's reading of the hints: a tool not marked read-only may delete or overwrite unless it says it won't
    (destructiveHint defaults to true, and means nothing on a read-only tool)."""
    return info.read_only is not True and info.destructive is not False


def is_open_world(info: ToolInfo) -> bool:
    """MCP's reading: a tool reaches outside the run (web, other systems) unless it says it doesn't."""
    return info.open_world is not False


class ApprovalPolicy(Hooks):
    """Asks `confirm` before the calls its rules select; the first rule that matches decides:

    1. `deny`: qualified tool-name globs (`fnmatch`, e.g. `"shell__*"`) refused without asking;
    2. `allow`: globs run without asking; so do tools the user answered `always` for (kept by this policy:
       give each Agent its own);
    3. `ask`: globs asked about, whatever the tool's annotations say;
    4. annotations: `writes` asks before every tool not marked read-only (readOnlyHint); `destructive` before
       tools that may delete or overwrite (`is_destructive`: destructiveHint, true when unsaid); `open_world`
       before tools that reach outside the run (`is_open_world`: openWorldHint, true when unsaid);
    5. anything else runs. Calls to tools the run doesn't know are left to the tool hub, which refuses them.

    A `no` reaches the model as the call's error result: "The call to X was refused: <reason>".
    """

    def __init__(
        self,
        confirm: Confirm,
        *,
        ask: Sequence[str] = (),
        allow: Sequence[str] = (),
        deny: Sequence[str] = (),
        writes: bool = False,
        destructive: bool = True,
        open_world: bool = False,
    ):
        self.confirm = confirm
        self.ask, self.allow, self.deny = list(ask), list(allow), list(deny)
        self.writes, self.destructive, self.open_world = writes, destructive, open_world
        self.always_allowed: set[str] = set()
        """Tools the user answered `always` for."""
        self._lock: anyio.Lock | None = None

    def decide(self, call: ToolCallRequest) -> Literal["allow", "ask", "deny"]:
        """What the rules say about `call`, before anyone is asked."""
        name = call.tool
        if _matches(name, self.deny):
            return "deny"
        if name in self.always_allowed or _matches(name, self.allow):
            return "allow"
        if _matches(name, self.ask):
            return "ask"
        info = call.info
        if info is None:
            return "allow"
        if ((self.writes and info.read_only is not True) or (self.destructive and is_destructive(info))
                or (self.open_world and is_open_world(info))):
            return "ask"
        return "allow"

    async def before_tool_call(self, ctx: RunContext, call: ToolCallRequest) -> ToolDecision | None:
        rule = self.decide(call)
        if rule == "deny":
            return ToolDecision.deny("the approval policy denies this tool")
        if rule == "allow":
            return None
        # One question at a time: parallel calls would interleave on a terminal, and an `always` answered
        # while another call to the same tool waited spares that call its question.
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if call.tool in self.always_allowed:
                return None
            answer = await self._ask(call)
        if answer.verdict == "no":
            return ToolDecision.deny(answer.reason)
        if answer.verdict == "always":
            self.always_allowed.add(call.tool)
        return None

    async def _ask(self, call: ToolCallRequest) -> Approval:
        reply = self.confirm(call)
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, Approval):
            return reply
        if isinstance(reply, bool):
            return Approval.yes() if reply else Approval.no()
        if reply in ("yes", "no", "always"):
            return Approval(reply, SAID_NO if reply == "no" else "")
        raise ConfigError(f"approval callback {self.confirm!r} answered {reply!r} for {call.tool}; it must return "
                          "an Approval, a bool, or 'yes' / 'no' / 'always'")


def _matches(name: str, globs: Sequence[str]) -> bool:
    return any(fnmatchcase(name, glob) for glob in globs)


def approval_preset(mode: str, confirm: Confirm, *, where: str = "--approve") -> ApprovalPolicy | None:
    """The presets: `ask` asks before every call to a tool not marked read-only; `destructive` before calls to
    tools that may delete or overwrite (marked destructive, or not marked at all and not read-only, as MCP
    reads missing hints); `never` asks nothing (None: no hook)."""
    if mode == "never":
        return None
    if mode == "ask":
        return ApprovalPolicy(confirm, writes=True)
    if mode == "destructive":
        return ApprovalPolicy(confirm, destructive=True)
    raise ConfigError(f"{where}: expected one of {', '.join(APPROVE_MODES)}, got {mode!r}")


def policy_for_cli(mode: str) -> ApprovalPolicy | None:
    """`agent run --approve MODE`: the preset, asking on the terminal."""
    return approval_preset(mode, terminal_prompt)


def add_approve_option(parser: argparse.ArgumentParser) -> None:
    """`--approve MODE` for the commands a person watches on a terminal (`agent run`, `agent chat`)."""
    parser.add_argument("--approve", choices=APPROVE_MODES, default="never",
                        help="ask on the terminal before tool calls: ask = every tool not marked read-only; "
                        "destructive = tools marked destructive, or unmarked and not read-only; never (default)")


def terminal_askers(mode: str) -> dict[str, Any]:
    """Agent options for a command with a person at the terminal: `--approve MODE` as a hook and servers'
    questions (MCP elicitation) as a form, both asked on the terminal; without one they are refused / declined."""
    policy = policy_for_cli(mode)
    return {"hooks": [policy] if policy else [], "elicitation": terminal_form}


def describe_call(call: ToolCallRequest) -> str:
    """The tool, what its annotations say, and its arguments shortened: what a person is asked about."""
    marks = []
    if call.info is not None:
        if call.info.read_only is True:
            marks.append("read-only")
        elif is_destructive(call.info):
            marks.append("destructive")
        if call.info.open_world is True:
            marks.append("open world")
    head = call.tool + (f" ({', '.join(marks)})" if marks else "")
    if isinstance(call.arguments, dict):
        if not call.arguments:
            return f"{head} with no arguments"
        args = ", ".join(f"{key}={_cut(json.dumps(value, ensure_ascii=False), _ARGUMENT_CHARS)}"
                         for key, value in call.arguments.items())
    else:
        args = repr(call.arguments or "")
    return f"{head} with {_cut(args, _ARGUMENTS_CHARS)}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def terminal_prompt(call: ToolCallRequest, *, stdin: TextIO | None = None,
                          stderr: TextIO | None = None) -> Approval:
    """Ask on the terminal: the call on stderr, then y(es) / n(o) / a(lways) read from stdin (a reason may follow
    `n`; an empty line is no). Without a terminal on stdin, or at end of input, the call is refused with the
    reason "no terminal to ask". Waiting for the answer does not block the event loop, and Ctrl-C ends it."""
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    fd = terminal_fd(stdin)
    if fd is None:
        return Approval.no(NO_TERMINAL)
    async with terminal_lock():  # a server's form may be asking on the same terminal
        return await _approve_on(fd, call, stderr)


async def _approve_on(fd: int, call: ToolCallRequest, stderr: TextIO) -> Approval:
    print(f"\nApprove {describe_call(call)}?", file=stderr)
    while True:
        print("[y]es / [N]o / [a]lways for this tool: ", end="", file=stderr, flush=True)
        line = await read_line(fd)
        if line is None:
            print(file=stderr)
            return Approval.no(NO_TERMINAL)
        word, _, reason = line.strip().partition(" ")
        word = word.lower()
        if word in ("y", "yes"):
            return Approval.yes()
        if word in ("a", "always"):
            return Approval.always()
        if word in ("", "n", "no"):
            reason = reason.strip()
            return Approval.no(f"{SAID_NO}: {reason}" if reason else SAID_NO)
        print("Answer y, n (optionally followed by a reason) or a.", file=stderr)
