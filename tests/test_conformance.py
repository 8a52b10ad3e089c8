"""The official MCP conformance suite's client scenarios (npm @modelcontextprotocol/conformance, installed by
.ci/thirdparty-setup.sh, run with its Node 22) against our client: tests/conformance_client.py, which uses the
ToolHub and agent.tools.oauth. The suite starts each scenario's servers itself; nothing leaves the machine.

Every scenario the suite lists is in one of three tables, which the tests check: APPLIES (must pass, at each
spec version named), NOT_YET (applies, fails today for the reason given: the test fails when one starts passing,
so the table is kept true) and NOT_APPLICABLE (why it does not apply to this framework).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_installed

REPO = Path(__file__).resolve().parent.parent
NODE = REPO / ".thirdparty" / "node22" / "bin" / "node"
SUITE = REPO / ".thirdparty" / "conformance" / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
CLIENT = f"{sys.executable} {REPO / 'tests' / 'conformance_client.py'}"

DEFAULT = "default"  # the scenario's own version (2025-11-25 unless it was introduced in 2026-07-28)
BOTH = (DEFAULT, "2026-07-28")

APPLIES: dict[str, tuple[str, ...]] = {
    "initialize": (DEFAULT,),
    "tools_call": BOTH,
    "sse-retry": (DEFAULT,),
    "request-metadata": BOTH,
    "auth/metadata-default": BOTH,
    "auth/metadata-var1": BOTH,
    "auth/metadata-var2": BOTH,
    "auth/metadata-var3": BOTH,
    "auth/basic-cimd": BOTH,
    "auth/scope-from-www-authenticate": BOTH,
    "auth/scope-from-scopes-supported": BOTH,
    "auth/scope-omitted-when-undefined": BOTH,
    "auth/scope-retry-limit": BOTH,
    "auth/token-endpoint-auth-basic": BOTH,
    "auth/token-endpoint-auth-post": BOTH,
    "auth/token-endpoint-auth-none": BOTH,
    "auth/pre-registration": BOTH,
    "auth/2025-03-26-oauth-metadata-backcompat": (DEFAULT,),
    "auth/2025-03-26-oauth-endpoint-fallback": (DEFAULT,),
    "auth/resource-mismatch": BOTH,
    "auth/offline-access-scope": BOTH,
    "auth/offline-access-not-supported": BOTH,
    "auth/iss-supported": BOTH,
    "auth/iss-not-advertised": BOTH,
    "auth/iss-supported-missing": BOTH,
    "auth/iss-wrong-issuer": BOTH,
    "auth/iss-unexpected": BOTH,
    "auth/iss-normalized": BOTH,
    "auth/metadata-issuer-mismatch": BOTH,
    "auth/client-credentials-basic": (DEFAULT,),
    "http-standard-headers": BOTH,
    "http-custom-headers": BOTH,
    "http-invalid-tool-headers": BOTH,
    "json-schema-ref-no-deref": BOTH,
    # The client applies a form's defaults (agent.elicitation.with_defaults) and answers multi-round-trip input
    # requests through the hub's elicitation seam (the accepting user of tests/conformance_client.py).
    "elicitation-sep1034-client-defaults": (DEFAULT,),
    "sep-2322-client-request-state": BOTH,
    "json-schema-2020-12-preservation": BOTH,  # the hub keeps a tool's inputSchema as the server sent it
}

NOT_YET: dict[str, tuple[tuple[str, ...], str]] = {
    "auth/scope-step-up": (BOTH, "by design a run never authorizes again: a 403 insufficient_scope mid-run fails "
                           "the call and names `agent auth login`; the suite wants a second browser authorization"),
    "auth/authorization-server-migration": (BOTH, "the login passes every check; the run's second connection "
                                            "after the server moves to a new authorization server then needs a new "
                                            "login (headless), so the client exits 1"),
}

NOT_APPLICABLE: dict[str, str] = {
    "auth/client-credentials-jwt": "extension: private_key_jwt client assertions are not offered in `oauth`",
    "auth/enterprise-managed-authorization": "extension (SEP-990 ID-JAG token exchange): not offered",
    "auth/dpop": "extension (DPoP-bound tokens): not offered",
    "auth/dpop-nonce": "extension (DPoP-bound tokens): not offered",
    "auth/wif-jwt-bearer": "extension (workload identity JWT bearer): not offered",
    "sep-2640-client-no-prefetch": "extension (skills over MCP): the framework loads no skills from servers",
    "sep-2640-client-verify-digest": "extension (skills over MCP): the framework loads no skills from servers",
    "sep-2640-client-verify-size": "extension (skills over MCP): the framework loads no skills from servers",
    "sep-2640-client-verify-frontmatter": "extension (skills over MCP): the framework loads no skills from servers",
}


def _require_suite() -> None:
    require_installed("the MCP conformance suite with Node 22", NODE.exists() and SUITE.exists(),
                      "run .ci/thirdparty-setup.sh")


def _run(scenario: str, version: str, out: Path) -> tuple[bool, str]:
    argv = [str(NODE), str(SUITE), "client", "--command", CLIENT, "--scenario", scenario, "-o", str(out),
            "--timeout", "60000"]
    if version != DEFAULT:
        argv += ["--spec-version", version]
    env = {**os.environ, "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=out, timeout=180)
    checks = [c for f in out.rglob("checks.json") for c in json.loads(f.read_text())]
    failed = [c["id"] for c in checks if c.get("status") in ("FAILURE", "WARNING")]
    passed = done.returncode == 0 and not failed and bool(checks)
    return passed, f"exit {done.returncode}, failed checks {failed}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_every_scenario_of_the_suite_is_accounted_for() -> None:
    _require_suite()
    listed = subprocess.run([str(NODE), str(SUITE), "list", "--client"], capture_output=True, text=True, check=True)
    names = {line.split()[1] for line in listed.stdout.splitlines() if line.startswith("  - ")}
    ours = set(APPLIES) | set(NOT_YET) | set(NOT_APPLICABLE)
    assert names - ours == set(), "scenarios the tables do not mention"
    assert ours - names == set(), "scenarios the suite no longer has"
    assert not set(NOT_APPLICABLE) & (set(APPLIES) | set(NOT_YET))


RUNS = [(s, v) for s, versions in APPLIES.items() for v in versions
        if v not in NOT_YET.get(s, ((), ""))[0]]


@pytest.mark.parametrize(("scenario", "version"), RUNS)
def test_scenario_passes(scenario: str, version: str, tmp_path: Path) -> None:
    _require_suite()
    passed, details = _run(scenario, version, tmp_path)
    assert passed, details


@pytest.mark.parametrize(("scenario", "version"), [(s, v) for s, (vs, _) in NOT_YET.items() for v in vs])
def test_known_gap_still_fails(scenario: str, version: str, tmp_path: Path) -> None:
    """A scenario in NOT_YET that starts passing must move to APPLIES."""
    _require_suite()
    passed, _ = _run(scenario, version, tmp_path)
    assert not passed, f"{scenario} ({version}) passes now: move it from NOT_YET to APPLIES"
