"""Elicitation: questions an MCP server asks the user during a tool call, and who answers them.

An `Elicit` callback gets an `ElicitationRequest` (server, message, requested JSON schema) and returns an
`ElicitationAnswer` (accept with content, decline, cancel). `terminal_form` asks on the terminal, one prompt per
field of the flat schema; `agent serve` forwards the question to its host (agent.serve).
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TextIO

from .errors import ConfigError
from .terminal import read_line, terminal_fd, terminal_lock

Action = Literal["accept", "decline", "cancel"]
NO_TERMINAL = "no terminal to ask (the run is not interactive)"


@dataclass(frozen=True)
class ElicitationRequest:
    """A server's question, as an `Elicit` callback gets it."""

    server: str
    """The MCP server that asks."""
    message: str
    """What the server says to the user."""
    schema: dict[str, Any] = field(default_factory=dict)
    """The requested JSON schema: a flat object of string, number, integer, boolean and enum fields (form mode)."""
    tool: str | None = None
    """The tool call (model-facing name) the question came during, when known."""
    run_id: str | None = None
    """The run that made the call, when known."""
    mode: Literal["form", "url"] = "form"
    url: str | None = None
    """url mode: the page the user is asked to open (nothing comes back through the client)."""

    @property
    def fields(self) -> list[str]:
        return list((self.schema.get("properties") or {}).keys())


@dataclass(frozen=True)
class ElicitationAnswer:
    """What an `Elicit` callback answers: the form filled in (`accept`), a refusal (`decline`) or a dismissal
    (`cancel`). `reason` (decline, cancel) is for the trace and the model, never sent to the server."""

    action: Action
    content: dict[str, Any] | None = None
    reason: str = ""
    by: str = "callback"
    """Who answered: callback, terminal, host (set by the built-in askers)."""

    @classmethod
    def accept(cls, content: Mapping[str, Any] | None = None, *, by: str = "callback") -> ElicitationAnswer:
        return cls("accept", dict(content or {}), by=by)

    @classmethod
    def decline(cls, reason: str = "", *, by: str = "callback") -> ElicitationAnswer:
        return cls("decline", None, reason, by)

    @classmethod
    def cancel(cls, reason: str = "", *, by: str = "callback") -> ElicitationAnswer:
        return cls("cancel", None, reason, by)


ElicitReply = ElicitationAnswer | Mapping[str, Any] | None
"""A callback may also return the content (a mapping: accept) or None (decline)."""
Elicit = Callable[[ElicitationRequest], ElicitReply | Awaitable[ElicitReply]]
"""Answers a server's question: sync or async, given the `ElicitationRequest`."""


def with_defaults(schema: Mapping[str, Any], content: Mapping[str, Any] | None) -> dict[str, Any]:
    """An accepted answer with the schema's defaults filled in for the fields it leaves out (SEP-1034: the
    client applies the defaults a server gives)."""
    filled = dict(content or {})
    for name, spec in (schema.get("properties") or {}).items():
        if name not in filled and isinstance(spec, Mapping) and "default" in spec:
            filled[name] = spec["default"]
    return filled


async def ask(callback: Elicit, request: ElicitationRequest) -> ElicitationAnswer:
    """Run `callback` on `request` and normalise its reply; an acceptance gets the schema's defaults for the
    fields it leaves out."""
    reply = callback(request)
    if inspect.isawaitable(reply):
        reply = await reply
    if isinstance(reply, ElicitationAnswer):
        if reply.action == "accept":
            reply = replace(reply, content=with_defaults(request.schema, reply.content))
        return reply
    if reply is None:
        return ElicitationAnswer.decline()
    if isinstance(reply, Mapping):
        return ElicitationAnswer.accept(with_defaults(request.schema, reply))
    raise ConfigError(f"elicitation callback {callback!r} answered {reply!r}; it must return an ElicitationAnswer, "
                      "a mapping (the content) or None (decline)")


# -- the terminal form -----------------------------------------------------------------------------------------


class _Cancelled(Exception):
    """End of input while filling in the form."""


async def terminal_form(request: ElicitationRequest, *, stdin: TextIO | None = None,
                        stderr: TextIO | None = None) -> ElicitationAnswer:
    """Ask on the terminal: the question on stderr, then accept / decline / cancel, then one prompt per field (its
    type, description, choices and default shown; answers checked against the schema and asked again until they
    fit). Ctrl-D cancels. Without a terminal on stdin the question is declined ("no terminal to ask")."""
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    fd = terminal_fd(stdin)
    if fd is None:
        return ElicitationAnswer.decline(NO_TERMINAL, by="nobody")
    async with terminal_lock():  # one question at a time: forms and approvals would interleave their prompts
        try:
            return await _fill_in(request, fd, stderr)
        except _Cancelled:
            print(file=stderr)
            return ElicitationAnswer.cancel("the user ended the input", by="terminal")


async def _line(fd: int, stderr: TextIO, prompt: str) -> str:
    print(prompt, end="", file=stderr, flush=True)
    line = await read_line(fd)
    if line is None:
        raise _Cancelled
    return line.strip()


async def _fill_in(request: ElicitationRequest, fd: int, stderr: TextIO) -> ElicitationAnswer:
    during = f" (during {request.tool})" if request.tool else ""
    print(f"\nThe MCP server {request.server!r} asks{during}: {request.message}", file=stderr)
    if request.mode == "url":
        print(f"  It asks you to open: {request.url}", file=stderr)
    question = "  Open it? [y]es / [d]ecline / [c]ancel: " if request.mode == "url" else \
        "  Answer? [Y]es / [d]ecline / [c]ancel: "
    while True:
        word = (await _line(fd, stderr, question)).lower()
        if word in ("d", "decline", "n", "no"):
            return ElicitationAnswer.decline("the user declined", by="terminal")
        if word in ("c", "cancel"):
            return ElicitationAnswer.cancel("the user cancelled", by="terminal")
        if word in ("y", "yes") or (word == "" and request.mode == "form"):
            break
        print("  Answer y, d or c.", file=stderr)
    if request.mode == "url":
        return ElicitationAnswer.accept(by="terminal")
    required = set(request.schema.get("required") or [])
    content: dict[str, Any] = {}
    for name, spec in (request.schema.get("properties") or {}).items():
        value = await _ask_field(name, spec if isinstance(spec, dict) else {}, name in required, fd, stderr)
        if value is not _SKIP:
            content[name] = value
    return ElicitationAnswer.accept(content, by="terminal")


_SKIP = object()


async def _ask_field(name: str, spec: dict[str, Any], required: bool, fd: int, stderr: TextIO) -> Any:
    choices = _choices(spec)
    label = spec.get("title") or name
    kind = "yes/no" if spec.get("type") == "boolean" else ("several of" if spec.get("type") == "array" else
                                                           spec.get("type", "string"))
    details = [kind if not choices else ("choose several, comma-separated" if spec.get("type") == "array"
                                         else "choose one")]
    if spec.get("description"):
        details.append(str(spec["description"]))
    details.append("required" if required else "optional")
    if choices:
        for number, (value, title) in enumerate(choices, 1):
            print(f"    {number}. {title}" + (f" ({value})" if title != str(value) else ""), file=stderr)
    default = spec.get("default")
    shown_default = f" [{_show(default)}]" if "default" in spec else ""
    while True:
        text = await _line(fd, stderr, f"  {label} ({', '.join(details)}){shown_default}: ")
        if not text:
            if "default" in spec:
                return default
            if not required:
                return _SKIP
            print("    A value is needed.", file=stderr)
            continue
        try:
            return _parse(text, spec, choices)
        except ValueError as exc:
            print(f"    {exc}", file=stderr)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _choices(spec: dict[str, Any]) -> list[tuple[Any, str]]:
    """(value, title) of an enum field, or of the items of a multi-select field."""
    source = spec.get("items", {}) if spec.get("type") == "array" else spec
    if not isinstance(source, dict):
        return []
    if isinstance(source.get("enum"), list):
        names = source.get("enumNames") or []
        return [(v, str(names[i]) if i < len(names) else str(v)) for i, v in enumerate(source["enum"])]
    options = source.get("oneOf") or source.get("anyOf")
    if isinstance(options, list) and all(isinstance(o, dict) and "const" in o for o in options):
        return [(o["const"], str(o.get("title", o["const"]))) for o in options]
    return []


def _pick(text: str, choices: list[tuple[Any, str]]) -> Any:
    for value, title in choices:
        if text == str(value) or text.lower() == title.lower():
            return value
    if text.isdigit() and 1 <= int(text) <= len(choices):
        return choices[int(text) - 1][0]
    raise ValueError(f"Choose one of: {', '.join(title for _, title in choices)} (or its number).")


def _parse(text: str, spec: dict[str, Any], choices: list[tuple[Any, str]]) -> Any:
    """The typed value of one answer; ValueError says what would fit."""
    kind = spec.get("type", "string")
    if kind == "array":
        picked = [_pick(part.strip(), choices) if choices else part.strip() for part in text.split(",") if part.strip()]
        low, high = spec.get("minItems"), spec.get("maxItems")
        if low is not None and len(picked) < low or high is not None and len(picked) > high:
            raise ValueError(f"Choose between {low or 0} and {high if high is not None else len(choices)} items.")
        return picked
    if choices:
        return _pick(text, choices)
    if kind == "boolean":
        if text.lower() in ("y", "yes", "true", "1"):
            return True
        if text.lower() in ("n", "no", "false", "0"):
            return False
        raise ValueError("Answer yes or no.")
    if kind in ("integer", "number"):
        try:
            number: float = int(text) if kind == "integer" else float(text)
        except ValueError:
            raise ValueError(f"Give {'a whole number' if kind == 'integer' else 'a number'}.") from None
        if "minimum" in spec and number < spec["minimum"]:
            raise ValueError(f"Give at least {spec['minimum']}.")
        if "maximum" in spec and number > spec["maximum"]:
            raise ValueError(f"Give at most {spec['maximum']}.")
        return number
    if "minLength" in spec and len(text) < spec["minLength"]:
        raise ValueError(f"Give at least {spec['minLength']} characters.")
    if "maxLength" in spec and len(text) > spec["maxLength"]:
        raise ValueError(f"Give at most {spec['maxLength']} characters.")
    fmt = spec.get("format")
    if fmt == "email" and ("@" not in text or " " in text):
        raise ValueError("Give an email address.")
    if fmt in ("date", "date-time"):
        try:
            (dt.date if fmt == "date" else dt.datetime).fromisoformat(text)
        except ValueError:
            raise ValueError(f"Give a {'date (YYYY-MM-DD)' if fmt == 'date' else 'date and time (ISO 8601)'}.") \
                from None
    if fmt == "uri" and "://" not in text:
        raise ValueError("Give a URI (scheme://...).")
    return text
