"""The client under test for the MCP conformance suite's client scenarios: our ToolHub and our OAuth module.

The suite runs `python tests/conformance_client.py SERVER_URL` with MCP_CONFORMANCE_SCENARIO, the protocol
version (MCP_CONFORMANCE_PROTOCOL_VERSION) and, for some scenarios, MCP_CONFORMANCE_CONTEXT (JSON). It does what
a user of this framework does: a server entry (`url`, `protocol`, `oauth`), `agent auth login` where the server
needs a person to log in (the browser step done by following the URL with an HTTP client), then a run's hub that
lists the tools and calls them. Exit 0 when everything went through.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

import anyio
import httpx2
import mcp.types as types

from agent.elicitation import with_defaults
from agent.tools import oauth
from agent.tools.config import ServerSpec
from agent.tools.hub import ToolHub
from agent.tools.server_requests import CallOrigin

CIMD_URL = "https://conformance-test.local/client-metadata.json"
"""The Client ID Metadata Document URL the suite's authorization servers recognise (auth/basic-cimd)."""


def server_spec(url: str, scenario: str, version: str, context: dict[str, Any]) -> ServerSpec:
    entry: dict[str, Any] = {"url": url, "protocol": "auto" if version >= "2026-07-28" else "legacy",
                             "startup_timeout": 20.0}
    if scenario.startswith("auth/"):
        settings: dict[str, Any] = {}
        if scenario.startswith("auth/client-credentials"):
            settings = {"grant": "client_credentials", "client_id": context["client_id"],
                        "client_secret": context["client_secret"]}
        else:
            settings["client_metadata_url"] = CIMD_URL
            if context.get("client_id"):
                settings["client_id"] = context["client_id"]
                if context.get("client_secret"):
                    settings["client_secret"] = context["client_secret"]
        entry["oauth"] = settings
    return ServerSpec.model_validate(entry)


async def browser(url: str) -> None:
    """The person logging in: open the authorization URL and follow the redirects to our loopback listener."""
    async with httpx2.AsyncClient(follow_redirects=True, timeout=20.0) as http:
        await http.get(url)


def arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Plain values for a tool's required parameters (the suite's tools check that a call arrives, not what)."""
    samples = {"number": 1, "integer": 1, "boolean": True, "string": "x", "array": [], "object": {}}
    properties = schema.get("properties") or {}
    return {name: samples.get((properties.get(name) or {}).get("type", "string"), "x")
            for name in schema.get("required") or []}


class AcceptingUser:
    """The person in front of the client (`agent.tools.server_requests.ServerRequests`): accepts every form as
    offered, so the framework's SEP-1034 defaults fill it in; no sampling; progress and logs ignored."""

    log_level: types.LoggingLevel | None = None

    def answers_elicitation(self, server: str) -> bool:
        return True

    def answers_sampling(self, server: str) -> bool:
        return False

    def caller(self) -> Any:
        return None

    async def elicit(self, server: str, origin: CallOrigin | None,
                     params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        schema = getattr(params, "requested_schema", None) or {}
        if hasattr(schema, "model_dump"):
            schema = schema.model_dump(by_alias=True, exclude_none=True)
        return types.ElicitResult(action="accept", content=with_defaults(schema, {}))

    async def sample(self, server: str, origin: CallOrigin | None,
                     params: types.CreateMessageRequestParams) -> types.CreateMessageResult | types.ErrorData:
        return types.ErrorData(code=-32600, message="sampling is not offered")

    def progress(self, origin: CallOrigin, progress: float, total: float | None, message: str | None) -> None:
        return None

    def log(self, server: str, origin: CallOrigin | None, params: types.LoggingMessageNotificationParams) -> None:
        return None


async def run(url: str) -> None:
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "2025-11-25")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    spec = server_spec(url, scenario, version, context)
    if spec.oauth is not None and spec.oauth.grant == "authorization_code":
        await oauth.login("conformance", spec, browser=browser, timeout=25.0)
    async with ToolHub({"conformance": spec}, tool_timeout=20.0, server_requests=AcceptingUser()) as hub:
        calls = context.get("toolCalls")
        if calls is None:
            calls = [{"name": t.tool, "arguments": arguments_for(t.input_schema)} for t in hub.tools
                     if t.server == "conformance"]
            if scenario == "tools_call":
                calls = [{"name": "add_numbers", "arguments": {"a": 5, "b": 3}}]
            elif scenario == "json-schema-2020-12-preservation":  # echo the schema the hub holds for the tool
                focal = next(t for t in hub.tools if t.tool == "json_schema_2020_12_tool")
                calls = [{"name": "json_schema_echo", "arguments": {"schema": focal.input_schema}}]
        for call in calls:
            name = next(t.name for t in hub.tools if t.tool == call["name"])
            outcome = await hub.call(name, call.get("arguments") or {})
            print(f"{call['name']}: {'error: ' if outcome.is_error else ''}{outcome.text[:200]}", flush=True)


def main() -> int:
    # Tokens of this run only: never the user's own token folder.
    os.environ.setdefault(oauth.TOKEN_DIR_ENV, tempfile.mkdtemp(prefix="conformance-oauth-"))
    anyio.run(run, sys.argv[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
