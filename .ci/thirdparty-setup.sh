#!/usr/bin/env bash
# Installs the third-party MCP servers that tests/test_thirdparty_servers.py and examples/thirdparty use, from
# the registries, into this project (never globally). Idempotent: pinned versions, nothing done when present.
#   npm  @modelcontextprotocol/server-filesystem -> .thirdparty/npm (bin: .thirdparty/npm/node_modules/.bin/)
#   PyPI mcp-server-fetch, mcp-server-git        -> the project's venv (.venv, or $PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."

FILESYSTEM_VERSION=2026.8.31
FETCH_VERSION=2026.10.24
GIT_VERSION=2026.10.19
PYTHON=${PYTHON:-.venv/bin/python}

if ! command -v npm >/dev/null 2>&1; then
    echo "thirdparty-setup: npm (Node.js >= 18) is needed for @modelcontextprotocol/server-filesystem" >&2
    exit 1
fi
installed=.thirdparty/npm/node_modules/@modelcontextprotocol/server-filesystem/package.json
if ! grep -q "\"version\": \"$FILESYSTEM_VERSION\"" "$installed" 2>/dev/null; then
    npm install --prefix .thirdparty/npm --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/server-filesystem@$FILESYSTEM_VERSION"
fi

"$PYTHON" -m pip install --quiet "mcp-server-fetch==$FETCH_VERSION" "mcp-server-git==$GIT_VERSION"

echo "thirdparty-setup: server-filesystem $FILESYSTEM_VERSION, mcp-server-fetch $FETCH_VERSION," \
    "mcp-server-git $GIT_VERSION installed"
