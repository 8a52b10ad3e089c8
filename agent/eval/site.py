"""A suite's local site: its folder served on 127.0.0.1 while the suite runs, and `${SITE_URL}` in its tasks
bound to that server's URL."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..task import TaskSpec
from .discovery import EvalTask

SITE_VAR = "${SITE_URL}"


class SiteServer:
    """A folder served over HTTP on 127.0.0.1 (a free port) on a background thread."""

    def __init__(self, folder: Path):
        self.folder = folder
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="suite-site", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> SiteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class SuiteSites:
    """The local sites of the suites being run, one server each, for the whole run."""

    def __init__(self, tasks: Sequence[EvalTask]):
        self.folders = {str(t.suite.folder): t.suite.spec.site for t in tasks
                        if t.suite is not None and t.suite.spec.site is not None}
        self.servers: dict[str, SiteServer] = {}

    def __enter__(self) -> dict[str, SiteServer]:
        for key, folder in self.folders.items():
            if not folder.is_dir():
                raise ConfigError(f"suite {key}: site folder {folder} does not exist")
            self.servers[key] = SiteServer(folder).__enter__()
        return self.servers

    def __exit__(self, *exc: object) -> None:
        for server in self.servers.values():
            server.__exit__(None, None, None)


def with_site(spec: TaskSpec, url: str) -> TaskSpec:
    """${SITE_URL} replaced wherever a task can mention it: prompts, server entries, setup and grade commands."""

    def sub(text: str) -> str:
        return text.replace(SITE_VAR, url)

    servers = {name: server.model_copy(update={
        "args": [sub(a) for a in server.args], "env": {k: sub(v) for k, v in server.env.items()},
        "url": sub(server.url) if server.url else None, "headers": {k: sub(v) for k, v in server.headers.items()},
    }) for name, server in spec.servers.items()}
    updates: dict[str, Any] = {"prompt": sub(spec.prompt), "system": sub(spec.system) if spec.system else None,
                               "servers": servers}
    if spec.workspace is not None:
        updates["workspace"] = spec.workspace.model_copy(update={"setup": [sub(c) for c in spec.workspace.setup]})
    if spec.grade is not None:
        commands = [c.model_copy(update={"run": sub(c.run)}) for c in spec.grade.commands]
        updates["grade"] = spec.grade.model_copy(update={"commands": commands})
    return spec.model_copy(update=updates)


def allow_local_site(task: TaskSpec) -> TaskSpec:
    """Our web server refuses private addresses; a suite's own site on 127.0.0.1 is let through."""
    servers = {}
    for name, server in task.servers.items():
        if server.args[:2] == ["-m", "agent.servers.web"] and "--allow-host" not in server.args:
            server = server.model_copy(update={"args": [*server.args, "--allow-host", "127.0.0.1"]})
        servers[name] = server
    return task.model_copy(update={"servers": servers})
