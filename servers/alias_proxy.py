"""A stdio MCP server run behind a path alias: its files live in ROOT while its clients name them ALIAS.

    python -m agent.servers.alias_proxy /data=ROOT -- COMMAND [ARG ...]

MCP-Atlas's prompts and its servers' configurations name `/data/<file>`; each of our runs works on its own
copy. The proxy starts COMMAND with ALIAS written as ROOT in its arguments and environment, rewrites string
values that name ALIAS as a path in every JSON-RPC message from the client (tool arguments), and shows ROOT
as ALIAS in every message from the server, so the model sees `/data` throughout. Lines that are not JSON pass
through unchanged; stderr is the server's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agent.servers.shell import PathAlias


def rewrite_message(line: bytes, change: Callable[[str], str]) -> bytes:
    """One newline-delimited JSON-RPC message with `change` applied to every string value (keys kept)."""
    try:
        message = json.loads(line)
    except ValueError:
        return line

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return change(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return json.dumps(walk(message), ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def parse_arguments(argv: Sequence[str]) -> tuple[list[PathAlias], list[str]]:
    """(aliases, command) from `ALIAS=ROOT ... -- COMMAND ...`; ValueError with what is wrong."""
    if "--" not in argv:
        raise ValueError("expected ALIAS=ROOT ... -- COMMAND [ARG ...]")
    split = list(argv).index("--")
    aliases = []
    for pair in argv[:split]:
        alias, sep, root = pair.partition("=")
        if not sep or not alias.startswith("/") or not root:
            raise ValueError(f"{pair!r}: expected ALIAS=ROOT with an absolute ALIAS, e.g. /data=/tmp/run-1")
        aliases.append(PathAlias(alias, os.path.abspath(root)))
    command = list(argv[split + 1:])
    if not command or not aliases:
        raise ValueError("expected at least one ALIAS=ROOT and a COMMAND after --")
    return aliases, command


def main(argv: Sequence[str] | None = None) -> int:
    try:
        aliases, command = parse_arguments(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"alias_proxy: {exc}", file=sys.stderr)
        return 2

    def inward(text: str) -> str:
        for alias in aliases:
            text = alias.inward(text)
        return text

    def outward(text: str) -> str:
        for alias in aliases:
            text = alias.outward(text)
        return text

    env = {name: inward(value) for name, value in os.environ.items()}
    try:
        child = subprocess.Popen([inward(a) for a in command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=env)
    except OSError as exc:
        print(f"alias_proxy: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    assert child.stdin is not None and child.stdout is not None
    to_child, from_child = child.stdin, child.stdout

    def forward_stop(signum: int, _frame: Any) -> None:
        child.send_signal(signum)  # the server ends, its stdout closes, and so do we

    signal.signal(signal.SIGTERM, forward_stop)
    signal.signal(signal.SIGINT, forward_stop)

    def client_to_server() -> None:
        try:
            for line in sys.stdin.buffer:
                to_child.write(rewrite_message(line, inward))
                to_child.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        finally:
            try:
                to_child.close()
            except OSError:
                pass

    threading.Thread(target=client_to_server, daemon=True).start()
    out = sys.stdout.buffer
    try:
        for line in from_child:
            out.write(rewrite_message(line, outward))
            out.flush()
    except (BrokenPipeError, OSError):
        child.terminate()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
