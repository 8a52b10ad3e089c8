"""An HTTP endpoint that refuses every MCP request: `refusing_server.py PORT STATUS` (401 or 403)."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

STATUS = int(sys.argv[2])


async def refuse(request: Request) -> JSONResponse:
    challenge = 'Bearer error="invalid_token"' if STATUS == 401 else 'Bearer error="insufficient_scope"'
    return JSONResponse({"error": "invalid_token" if STATUS == 401 else "insufficient_scope"}, status_code=STATUS,
                        headers={"WWW-Authenticate": challenge})


app = Starlette(routes=[Route("/mcp", refuse, methods=["GET", "POST", "DELETE"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
