"""The shell MCP server: run commands and background jobs in a Sandbox bound to one workspace folder.

    agent server shell ROOT [--timeout-default 60] [--timeout-max 600] [--output-cap 30000]
        [--env-allow NAME]... [--allow REGEX]... [--deny REGEX]... [--sandbox local] [--alias /data]
        [--http HOST:PORT]

Speaks stdio by default, streamable HTTP (at /mcp) with --http. Heavy imports wait until they are needed:
`import mcp.server` alone takes about a second, and clients time the start-up.
"""

import argparse
import itertools
import os
import posixpath
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from agent.servers._http import TOKEN_ENV, bearer_auth, check_exposure, host_port_argument, url_of

if TYPE_CHECKING:
    import anyio
    from mcp.server import MCPServer

    from agent.runtime.sandbox import Sandbox, SandboxProcess

OUTPUTS_DIR = ".agent/outputs"
"""Where full outputs of truncated commands are saved, relative to the workspace root."""
JOB_STOP_GRACE_S = 1.0
"""SIGTERM-to-SIGKILL grace when jobs are stopped; short, so that shutdown beats a client's own kill."""
MAX_READ_WAIT_S = 30.0
SANDBOX_BACKENDS = {
    "local": ("agent.runtime.local", "LocalSandbox"),
    "docker": ("agent.runtime.docker", "DockerSandbox"),
    "bubblewrap": ("agent.runtime.bubblewrap", "BubblewrapSandbox"),
}


class CommandPolicy:
    """`--deny` and `--allow` regular expressions, searched (`re.search`) in the whole command line.

    A guard-rail against mistakes, not a security boundary: `git status; rm -rf x` matches `^git `. The
    sandbox is the boundary.
    """

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()):
        self.allow = [re.compile(p) for p in allow]
        self.deny = [re.compile(p) for p in deny]

    def refusal(self, command: str) -> str | None:
        """Why `command` may not run, or None when it may."""
        for pattern in self.deny:
            if pattern.search(command):
                return f"command refused: it matches the deny pattern {pattern.pattern!r}"
        if self.allow and not any(p.search(command) for p in self.allow):
            patterns = ", ".join(repr(p.pattern) for p in self.allow)
            return f"command refused: it matches none of the allowed patterns ({patterns})"
        return None

    def describe(self) -> str:
        parts = []
        if self.allow:
            parts.append(
                "Only commands matching one of these regular expressions run: "
                + ", ".join(repr(p.pattern) for p in self.allow)
                + "."
            )
        if self.deny:
            parts.append(
                "Commands matching any of these are refused: "
                + ", ".join(repr(p.pattern) for p in self.deny)
                + "."
            )
        return " ".join(parts)


class PathAlias:
    """An absolute path (`/data`) that names the workspace root, for a sandbox that cannot mount it there.

    The local sandbox runs on the host, so the alias is written out: where the command line names the alias
    as a path (`cat /data/x.csv`, `--dir=/data`, `'/data/a b.csv'`), the workspace root replaces it, and the
    root is shown as the alias again in what the command prints. Docker and bubblewrap mount the workspace at
    the alias instead (`open_sandbox(workdir=...)`), and nothing is rewritten.
    """

    def __init__(self, alias: str, root: str):
        self.alias = alias.rstrip("/") or "/"
        self.root = root.rstrip("/") or "/"
        # The alias as a whole path component: not inside a longer name (/database, foo/data, /data2).
        self._inward = re.compile(r"(?<![\w./~-])" + re.escape(self.alias) + r"(?![\w.-])")

    def inward(self, text: str) -> str:
        """`text` (a command line, a cwd) with the alias written as the workspace root."""
        return self._inward.sub(lambda _: self.root, text)

    def outward(self, text: str) -> str:
        """`text` (a command's output) with the workspace root shown as the alias."""
        return text.replace(self.root, self.alias) if self.root != "/" else text


@dataclass
class _Job:
    job_id: str
    command: str
    cwd: str
    process: "SandboxProcess"


def build_server(
    sandbox: "Sandbox",
    *,
    timeout_default: float = 60.0,
    timeout_max: float = 600.0,
    output_cap: int = 30_000,
    env_allow: Sequence[str] = (),
    allow: Sequence[str] = (),
    deny: Sequence[str] = (),
    name: str = "shell",
    auth: Mapping[str, Any] | None = None,
    alias: str | None = None,
) -> "MCPServer":
    """An MCP server running commands in `sandbox`, any backend; the server's lifespan enters and leaves it.

    `env_allow` names variables of this process passed to every command (the sandbox passes no secrets on
    its own); `allow`/`deny` are regular expressions (see `CommandPolicy`). `auth`: MCPServer's auth
    arguments (agent.servers._http.bearer_auth) for HTTP. `alias`: an absolute path that also names the
    workspace root (`/data`); unless the sandbox mounts the workspace there, command lines and outputs are
    rewritten (`PathAlias`).
    """
    from contextlib import asynccontextmanager

    import anyio
    from mcp.server import MCPServer
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import CallToolResult, TextContent, ToolAnnotations
    from pydantic import BaseModel, Field

    from agent.runtime.sandbox import SandboxError
    from agent.servers._byte_names import show, show_all, unescape
    from agent.servers._client_log import ClientLog
    from agent.version import package_version

    if timeout_default <= 0 or timeout_max < timeout_default:
        raise ValueError("need 0 < timeout_default <= timeout_max")
    policy = CommandPolicy(allow, deny)
    log = ClientLog(name)
    jobs: dict[str, _Job] = {}
    job_numbers = itertools.count(1)
    workdir = sandbox.workdir
    rewrite = PathAlias(alias, workdir) if alias and alias.rstrip("/") != workdir.rstrip("/") else None

    def inward(text: str) -> str:
        return rewrite.inward(text) if rewrite else text

    def outward(text: str) -> str:
        return rewrite.outward(text) if rewrite else text

    class CommandResult(BaseModel):
        exit_code: int | None = Field(description="Exit status; null when the command was killed (timed_out)")
        stdout: str = Field(
            description=f"Standard output; beyond {output_cap} characters the middle is elided"
        )
        stderr: str = Field(
            description=f"Standard error; beyond {output_cap} characters the middle is elided"
        )
        duration_s: float = Field(description="Wall-clock seconds the command ran")
        timed_out: bool = Field(
            description="Whether the timeout killed the command and everything it started"
        )
        truncated: bool = Field(
            description="Whether stdout or stderr was cut; output_path then holds all of it"
        )
        stdout_chars: int = Field(description="Full size of stdout in characters")
        stderr_chars: int = Field(description="Full size of stderr in characters")
        output_path: str | None = Field(
            description="When truncated: file with the full output (stdout, then stderr), relative to the "
            "workspace root; otherwise null"
        )

    class JobInfo(BaseModel):
        job_id: str = Field(description="Identifier to pass to read_job, send_job_input and stop_job")
        command: str = Field(description="The command line")
        cwd: str = Field(description="Working directory, relative to the workspace root")
        running: bool = Field(description="Whether the job's main process is still running")
        exit_code: int | None = Field(
            description="Exit status once it has ended (negative: killed by that signal)"
        )

    class JobOutput(JobInfo):
        output: str = Field(description="Output (stdout and stderr interleaved) since the previous read")

    class JobList(BaseModel):
        jobs: list[JobInfo] = Field(description="Jobs started and not yet stopped, oldest first")

    async def refuse_unless_allowed(ctx: Context, command: str) -> None:
        if (reason := policy.refusal(command)) is not None:
            await log.warning(ctx, f"{reason}: {command}")
            raise ToolError(reason)

    def inside_workdir(cwd: str) -> str:
        path = posixpath.normpath(posixpath.join(workdir, cwd))
        if path != workdir and not path.startswith(workdir.rstrip("/") + "/"):
            raise ToolError(
                f"cwd {cwd!r} is outside the workspace root; give a path relative to it, such as '.'"
            )
        return path

    def command_cwd(cwd: str) -> str:
        cwd = inward(cwd)
        path = inside_workdir(cwd)
        on_host = os.path.join(sandbox.workspace, posixpath.relpath(path, workdir))
        if not os.path.lexists(on_host) and (decoded := unescape(cwd)) is not None:
            return inside_workdir(decoded)  # a folder name shown with \xNN escapes for its odd bytes
        return path

    def command_env(env: dict[str, str] | None) -> dict[str, str]:
        merged = {name: os.environ[name] for name in env_allow if name in os.environ}
        merged.update(env or {})
        return merged

    def output_file() -> Path | None:
        folder = Path(sandbox.workspace, OUTPUTS_DIR)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ignore = folder / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# Full outputs saved by the shell server\n*\n")
        except OSError:
            return None  # the result stays capped; only the saved copy is lost
        return folder / f"{uuid.uuid4().hex[:12]}.log"

    def job(job_id: str) -> _Job:
        found = jobs.get(job_id)
        if found is None:
            known = ", ".join(jobs) or "none"
            raise ToolError(f"no job {job_id!r} (current jobs: {known}); start_job returns the id")
        return found

    def job_info(entry: _Job) -> dict[str, Any]:
        code = entry.process.returncode
        return {
            "job_id": entry.job_id,
            "command": entry.command,
            "cwd": entry.cwd,
            "running": code is None,
            "exit_code": code,
        }

    def job_status(info: dict[str, Any]) -> str:
        state = "running" if info["running"] else f"exited with code {info['exit_code']}"
        return f"{info['job_id']} ({state}): {info['command']}"

    def result(text: str, structured: BaseModel) -> CallToolResult:
        # Paths of a workspace whose names are not valid UTF-8 carry lone surrogates, which JSON cannot.
        return CallToolResult(
            content=[TextContent(type="text", text=show(text))],
            structured_content=show_all(structured.model_dump(mode="json")),
        )

    async def stop_jobs() -> None:
        entries = list(jobs.values())
        jobs.clear()
        async with anyio.create_task_group() as tg:
            for entry in entries:
                tg.start_soon(entry.process.stop, JOB_STOP_GRACE_S)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> Any:
        await sandbox.__aenter__()
        try:
            yield {}
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await stop_jobs()
                finally:
                    await sandbox.__aexit__(None, None, None)

    rules = policy.describe()
    server = MCPServer(
        name,
        version=package_version(),
        instructions=show(
            f"Runs shell commands in a {sandbox.kind} sandbox whose workspace root is {alias or workdir}. "
            "Use run_command "
            "for commands that finish; start_job for servers, watchers and anything interactive. " + rules
        ).strip(),
        lifespan=lifespan,
        log_level="WARNING",
        **(auth or {}),
    )
    log.install(server)
    cwd_field = Field(
        description="Working directory, relative to the workspace root (or absolute inside it); "
        "it must exist. Default: the root."
    )
    env_field = Field(
        description='Extra environment variables for this command only, e.g. {"DEBUG": "1"}. '
        "Commands otherwise get a clean environment (PATH, HOME, locale; no host secrets)."
    )

    @server.tool(
        title="Run a shell command",
        description=(
            "Run a command line with /bin/sh -c in the workspace and wait for it to finish. Returns exit_code, "
            f"stdout, stderr, duration_s and timed_out. stdout and stderr are each capped at {output_cap} "
            "characters (head and tail kept, the middle elided); when cut, the full output is saved to a file "
            f"under {OUTPUTS_DIR}/ and output_path names it. On timeout the command and every process it "
            "started are killed; processes left running in the background when it exits are killed as well, "
            "so use start_job for servers and watchers. stdin is empty: pipe input in with printf or a file. "
            + rules
        ).strip(),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def run_command(
        command: Annotated[str, Field(description="Shell command line (pipes, redirections, && and ; work)")],
        ctx: Context,
        cwd: Annotated[str, cwd_field] = ".",
        timeout: Annotated[
            float | None,
            Field(
                gt=0,
                description=f"Seconds before the command is killed. Default {timeout_default:g}, "
                f"at most {timeout_max:g} (larger values are lowered).",
            ),
        ] = None,
        env: Annotated[dict[str, str] | None, env_field] = None,
    ) -> Annotated[CallToolResult, CommandResult]:
        await refuse_unless_allowed(ctx, command)
        run_cwd = command_cwd(cwd)
        limit = min(timeout or timeout_default, timeout_max)
        full = output_file()
        try:
            outcome = await sandbox.exec(
                inward(command),
                cwd=run_cwd,
                env=command_env(env),
                timeout=limit,
                output_cap=output_cap,
                output_file=full,
            )
        except SandboxError as exc:
            if full is not None:
                full.unlink(missing_ok=True)
            await log.error(ctx, f"the sandbox could not run the command: {exc}: {command}")
            raise ToolError(show(str(exc))) from exc
        saved: str | None = None
        if full is not None:
            if outcome.truncated:
                saved = f"{OUTPUTS_DIR}/{full.name}"
            else:
                full.unlink(missing_ok=True)
        stdout, stderr = outward(outcome.stdout), outward(outcome.stderr)
        structured = CommandResult(
            exit_code=outcome.exit_code,
            stdout=stdout,
            stderr=stderr,
            duration_s=round(outcome.duration_s, 3),
            timed_out=outcome.timed_out,
            truncated=outcome.truncated,
            stdout_chars=outcome.stdout_chars,
            stderr_chars=outcome.stderr_chars,
            output_path=saved,
        )
        if outcome.timed_out:
            lines = [f"Timed out after {limit:g} s; the command and every process it started were killed."]
            await log.warning(ctx, f"timed out after {limit:g} s and was killed: {command}")
        else:
            lines = [f"Exit code {outcome.exit_code} ({outcome.duration_s:.2f} s)."]
        if timeout is not None and timeout > timeout_max:
            lines.append(f"(Timeout lowered from {timeout:g} s to the server's maximum, {timeout_max:g} s.)")
        if stdout:
            lines.append(f"stdout:\n{stdout.rstrip(chr(10))}")
        if stderr:
            lines.append(f"stderr:\n{stderr.rstrip(chr(10))}")
        if not stdout and not stderr:
            lines.append("(no output)")
        if not outcome.timed_out and outcome.exit_code is not None and outcome.exit_code < 0:
            await log.warning(ctx, f"killed by signal {-outcome.exit_code}: {command}")
        if outcome.truncated:
            where = f"saved in {saved} (relative to the workspace root)" if saved else "not saved"
            lines.append(
                f"Output truncated: stdout has {outcome.stdout_chars} characters, stderr "
                f"{outcome.stderr_chars}; the full output is {where}."
            )
        return result("\n".join(lines), structured)

    @server.tool(
        title="Start a background job",
        description=(
            "Start a command line (/bin/sh -c) in the background and return at once with its job_id. Use it for "
            "servers, watchers and interactive programs; read its output with read_job, type into it with "
            "send_job_input, end it with stop_job. All jobs are stopped when this server exits. " + rules
        ).strip(),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def start_job(
        command: Annotated[str, Field(description="Shell command line to run in the background")],
        ctx: Context,
        cwd: Annotated[str, cwd_field] = ".",
        env: Annotated[dict[str, str] | None, env_field] = None,
    ) -> Annotated[CallToolResult, JobInfo]:
        await refuse_unless_allowed(ctx, command)
        run_cwd = command_cwd(cwd)
        try:
            process = await sandbox.spawn(inward(command), cwd=run_cwd, env=command_env(env))
        except SandboxError as exc:
            await log.error(ctx, f"the sandbox could not start the job: {exc}: {command}")
            raise ToolError(show(str(exc))) from exc
        entry = _Job(f"job-{next(job_numbers)}", command, posixpath.relpath(run_cwd, workdir), process)
        jobs[entry.job_id] = entry
        info = job_info(entry)
        return result(f"Started {job_status(info)}", JobInfo(**info))

    @server.tool(
        title="Read a job's output",
        description=(
            "Return the output a background job produced since the previous read_job (stdout and stderr "
            f"interleaved; beyond {output_cap} characters the middle is elided) and whether it is still "
            "running or its exit code. With wait_s, waits up to that long for output or for the job to end."
        ),
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False),
    )
    async def read_job(
        job_id: Annotated[str, Field(description="The id returned by start_job, e.g. 'job-1'")],
        wait_s: Annotated[
            float,
            Field(
                ge=0,
                le=MAX_READ_WAIT_S,
                description=(
                    "Seconds to wait for new output or the job's end when there is none yet; 0 returns at once"
                ),
            ),
        ] = 0.0,
    ) -> Annotated[CallToolResult, JobOutput]:
        entry = job(job_id)
        output = await entry.process.read(output_cap)
        with anyio.move_on_after(wait_s):
            while not output and entry.process.returncode is None:
                await anyio.sleep(0.05)
                output = await entry.process.read(output_cap)
        if not output and entry.process.returncode is not None:
            output = await entry.process.read(output_cap)  # what arrived while it exited
        output = outward(output)
        info = job_info(entry)
        text = f"{job_status(info)}\n" + (output if output else "(no new output)")
        return result(text, JobOutput(**info, output=output))

    @server.tool(
        title="Send input to a job",
        description=(
            "Write text to a background job's standard input. Nothing is added: end a line with \\n "
            "to submit it."
        ),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
    async def send_job_input(
        job_id: Annotated[str, Field(description="The id returned by start_job")],
        text: Annotated[str, Field(description="Text to write, e.g. 'yes\\n'")],
    ) -> str:
        entry = job(job_id)
        try:
            await entry.process.write(text)
        except (SandboxError, OSError) as exc:
            raise ToolError(f"cannot write to {job_id}: {exc}") from exc
        return f"Sent {len(text)} characters to {job_id}."

    @server.tool(
        title="Stop a job",
        description=(
            "Stop a background job: SIGTERM to it and every process it started, SIGKILL to what is left "
            f"after {JOB_STOP_GRACE_S:g} s. Returns its last output and exit code and forgets the job."
        ),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def stop_job(
        job_id: Annotated[str, Field(description="The id returned by start_job")],
    ) -> Annotated[CallToolResult, JobOutput]:
        entry = job(job_id)
        await entry.process.stop(JOB_STOP_GRACE_S)
        jobs.pop(job_id, None)
        output = await entry.process.read(output_cap)
        info = job_info(entry)
        text = f"Stopped {job_status(info)}\n" + (output if output else "(no new output)")
        return result(text, JobOutput(**info, output=output))

    @server.tool(
        title="List jobs",
        description="List the background jobs not yet stopped, with whether each is running or its exit code.",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def list_jobs() -> Annotated[CallToolResult, JobList]:
        infos = [job_info(entry) for entry in jobs.values()]
        text = "\n".join(job_status(info) for info in infos) or "No jobs."
        return result(text, JobList(jobs=[JobInfo(**info) for info in infos]))

    return server


def open_sandbox(kind: str, root: Path, *, image: str | None = None, network: bool = False,
                 workdir: str | None = None) -> "Sandbox":
    """The backend `kind` over `root`, imported only now; `LookupError` when this checkout lacks it. `workdir`:
    where docker and bubblewrap mount the workspace (the local sandbox runs in `root` itself)."""
    import importlib

    from agent.runtime.sandbox import SandboxSpec

    module_name, class_name = SANDBOX_BACKENDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise LookupError(
            f"the {kind} sandbox is not available in this installation ({module_name} is missing); "
            "use --sandbox local"
        ) from exc
    spec = SandboxSpec(kind=kind, network=network, **({"image": image} if image else {}),
                       **({"workdir": workdir} if workdir and kind != "local" else {}))
    return getattr(module, class_name)(root, spec)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent server shell",
        description="MCP server that runs shell commands and background jobs in a workspace folder.",
    )
    parser.add_argument("root", type=Path, help="workspace folder: commands run there, cwd cannot leave it")
    parser.add_argument(
        "--timeout-default",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a command may run when the call names no timeout (default 60)",
    )
    parser.add_argument(
        "--timeout-max",
        type=float,
        default=600.0,
        metavar="S",
        help="largest timeout a call may ask for (default 600)",
    )
    parser.add_argument(
        "--output-cap",
        type=int,
        default=30_000,
        metavar="CHARS",
        help="characters of stdout, and of stderr, returned per command (default 30000)",
    )
    parser.add_argument(
        "--env-allow",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this variable of the server's environment to commands (repeatable)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        type=_regex,
        metavar="REGEX",
        help="run only commands in which one of these regexes is found (repeatable)",
    )
    parser.add_argument(
        "--deny",
        action="append",
        default=[],
        type=_regex,
        metavar="REGEX",
        help="refuse commands in which this regex is found (repeatable)",
    )
    parser.add_argument(
        "--sandbox",
        choices=sorted(SANDBOX_BACKENDS),
        default="local",
        help="where commands run (default local)",
    )
    parser.add_argument("--image", help="container image (docker sandbox; default agent-sandbox:bookworm)")
    parser.add_argument(
        "--alias",
        metavar="PATH",
        help="an absolute path that also names the workspace root, e.g. /data for tasks that name /data/<file>: "
        "docker and bubblewrap mount the workspace there; the local sandbox rewrites it in command lines (and "
        "the root back to PATH in outputs)",
    )
    parser.add_argument(
        "--network", action="store_true", help="let commands use the network (docker and bubblewrap; off by default)"
    )
    parser.add_argument(
        "--http",
        type=host_port_argument,
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio",
    )
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' over HTTP (default: ${TOKEN_ENV}); "
                        "needed to serve an address that is not loopback")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    root: Path = args.root.expanduser()
    if not root.is_dir():
        parser.error(f"root {str(root)!r} is not a directory")
    if args.timeout_default <= 0 or args.timeout_max < args.timeout_default:
        parser.error("need 0 < --timeout-default <= --timeout-max")
    if args.output_cap < 100:
        parser.error("--output-cap must be at least 100")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.http is not None:
        try:
            check_exposure(args.http[0], token)
        except ValueError as exc:
            parser.error(str(exc))
    if args.alias is not None and (not args.alias.startswith("/") or args.alias.rstrip("/") == ""):
        parser.error(f"--alias {args.alias!r}: expected an absolute path such as /data")
    try:
        sandbox = open_sandbox(args.sandbox, root, image=args.image, network=args.network, workdir=args.alias)
    except LookupError as exc:
        print(f"shell server: {exc}", file=sys.stderr)
        return 2
    server = build_server(
        sandbox,
        timeout_default=args.timeout_default,
        timeout_max=args.timeout_max,
        output_cap=args.output_cap,
        env_allow=args.env_allow,
        allow=args.allow,
        deny=args.deny,
        auth=bearer_auth(token, url_of(*args.http)) if args.http is not None else None,
        alias=args.alias,
    )
    import anyio

    try:
        if args.http is not None:
            host, port = args.http
            server.run("streamable-http", host=host, port=port)
        else:
            anyio.run(_serve_stdio, server)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a sandbox that cannot start: say so in one line, not a traceback
        from agent.runtime.sandbox import SandboxError

        cause = _find(exc, SandboxError)
        if cause is None:
            raise
        print(f"shell server: {cause}", file=sys.stderr)
        return 1
    return 0


async def _serve_stdio(server: "MCPServer") -> None:
    """stdio until the client closes stdin, or until SIGTERM, SIGINT or SIGHUP, which count as that close.

    The SDK reads stdin in a worker thread that cancellation cannot stop, so a cancelled server would
    linger until EOF. When stdin is a pipe or socket (as MCP clients make it), the server reads a pipe of
    ours instead, fed from the real stdin; a signal closes it, and the shutdown is the ordinary one: the
    lifespan stops the jobs and leaves the sandbox.
    """
    import signal
    import stat

    import anyio

    async with anyio.create_task_group() as tg:
        relay = anyio.CancelScope()
        if stat.S_ISFIFO(mode := os.fstat(0).st_mode) or stat.S_ISSOCK(mode):
            wire, feed = _divert_stdin()
            tg.start_soon(_relay, wire, feed, relay)
            stop = relay.cancel
        else:
            stop = tg.cancel_scope.cancel  # e.g. a terminal: plain cancellation is the best there is

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for _ in signals:
                    stop()

        tg.start_soon(stop_on_signal)
        await server.run_stdio_async()
        tg.cancel_scope.cancel()


def _divert_stdin() -> tuple[int, int]:
    """Make fd 0 the read end of a new pipe; returns the client's stdin (moved) and the pipe's write end."""
    wire = os.dup(0)
    read_end, feed = os.pipe()
    os.dup2(read_end, 0)
    os.close(read_end)
    os.set_blocking(wire, False)
    os.set_blocking(feed, False)
    return wire, feed


async def _relay(wire: int, feed: int, scope: "anyio.CancelScope") -> None:
    """Copy `wire` to `feed` until EOF or until `scope` is cancelled; then close `feed`, which the server
    reads as the end of its input."""
    import anyio

    try:
        with scope:
            while data := await _read_some(wire):
                view = memoryview(data)
                while view:
                    await anyio.wait_writable(feed)
                    try:
                        view = view[os.write(feed, view) :]
                    except BlockingIOError:
                        continue
    except OSError:
        pass  # the server stopped reading: it is shutting down anyway
    finally:
        os.close(feed)
        os.close(wire)


async def _read_some(fd: int) -> bytes:
    import anyio

    while True:
        await anyio.wait_readable(fd)
        try:
            return os.read(fd, 1 << 16)
        except BlockingIOError:
            continue


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        if (found := _find(inner, kind)) is not None:
            return found
    return _find(exc.__cause__, kind) if exc.__cause__ is not None else None


if __name__ == "__main__":
    sys.exit(main())
