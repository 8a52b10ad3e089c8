"""A handshake-era stdio server as many on mcp 1.x behave: it answers `initialize`, `tools/list` and `tools/call`,
and dies on the 2026-07-28 `server/discover` probe (its request validation fails). Each start appends a line to
the file named by $STARTS_FILE, with the first method it was asked for."""

import json
import os
import sys


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


first = None
for line in sys.stdin:
    request = json.loads(line)
    method = request.get("method")
    if first is None:
        first = method
        with open(os.environ["STARTS_FILE"], "a", encoding="utf-8") as starts:
            starts.write(f"{method}\n")
    if method == "server/discover":
        print("pydantic_core._pydantic_core.ValidationError: 40 validation errors for ClientRequest", file=sys.stderr)
        sys.exit(1)
    if "id" not in request:
        continue  # a notification
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": request["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "handshake-era", "version": "1.0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": request["id"], "result": {"tools": [{
            "name": "echo", "description": "Echo the text.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}]}})
    elif method == "tools/call":
        text = request["params"]["arguments"]["text"]
        send({"jsonrpc": "2.0", "id": request["id"], "result": {"content": [{"type": "text", "text": f"echo: {text}"}]}})
    else:
        send({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": f"no method {method}"}})
