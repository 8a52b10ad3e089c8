"""Toolathlon task folders as `TaskSpec`s, run the way the benchmark runs them.

A Toolathlon checkout (the "root": `tasks/finalpool/<task>/`, `configs/mcp_servers/*.yaml`, `utils/`,
`configs/`, `scripts/formal_run_v0.json`, and the virtualenv `uv sync` makes in `.venv`) supplies:

- the servers: each name in a task's `needed_mcp_servers` is the root's `configs/mcp_servers/<file>.yaml`
  whose `name` it is, with its placeholders (`${agent_workspace}`, `${local_servers_paths}`,
  `${local_binary_paths}`, `${podman_or_docker}`, `${token.X}`, `${config.X}`) substituted as the benchmark
  does; our own files/shell/web servers stand in for filesystem/terminal/fetch only when asked
  (`our_servers=True`) or when there is no root;
- the interpreter for preprocess scripts and checkers: the root's `.venv` (or `grader_python`), run as modules
  from the root, as `uv run -m tasks.<pool>.<task>.evaluation.main` does;
- the run settings of `scripts/formal_run_v0.json` (steps, temperature, top_p, max_tokens).

Whatever a task needs that this machine lacks (a service such as Canvas or the mail server, a key in
`configs/token_key_session.py`, a program such as `uvx`, a local tool such as web_search without a key) makes it
not runnable, with the reason, before anything runs.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.tools.config import ServerSpec

from ..errors import ConfigError
from ..task import WORKSPACE_VAR, TaskSpec
from ..toolkits import LOCAL_TOOLKITS, missing_local_tools
from .importers import OUR_SERVERS, SERVER_MAP, ImportedTask

TOOLATHLON_WORKSPACE_PLACEHOLDER = "!!<<<<||||workspace_dir||||>>>>!!"
TOOLATHLON_RELATIVE_WORKSPACE_PLACEHOLDER = "!!<<<<||||workspace_dir_rela||||>>>>!!"

# Toolathlon's scripts/formal_run_v0.json, used when a root does not have one.
FORMAL_RUN_DEFAULTS: dict[str, Any] = {
    "max_steps": 200, "temperature": 0.6, "top_p": 1.0, "max_tokens": 4096, "parallel_tool_calls": True,
}
# Checkers and preprocess scripts get this long (Toolathlon bounds the whole task by run_parallel's TIMEOUT).
SCRIPT_TIMEOUT_S = 600

# Servers that reach something a machine does not have by default: (short name, what to do).
SERVICES: dict[str, tuple[str, str]] = {
    "canvas": ("canvas", "a Canvas LMS instance (Toolathlon's global_preparation/deploy_containers.sh)"),
    "emails": ("emails", "the poste.io mail server (deploy_containers.sh) and configs/users_data.json accounts"),
    "woocommerce": ("woocommerce", "a WooCommerce site (deploy_containers.sh)"),
    "k8s": ("k8s", "a Kind Kubernetes cluster (deploy_containers.sh)"),
    "google_sheet": ("google", "a Google account (configs/google_credentials.json)"),
    "google_calendar": ("google", "a Google account (configs/google_credentials.json)"),
    "google_forms": ("google", "a Google account (configs/google_credentials.json)"),
    "google-cloud": ("google", "a Google Cloud project (configs/gcp-service_account.keys.json)"),
    "google_map": ("google", "a Google Maps API key"),
    "github": ("github", "a GitHub account and token"),
    "notion": ("notion", "a Notion workspace and integration token"),
    "notion_official": ("notion", "a Notion workspace and integration token"),
    "snowflake": ("snowflake", "a Snowflake account"),
    "huggingface": ("huggingface", "a Hugging Face token"),
    "wandb": ("wandb", "a Weights & Biases account"),
    "youtube": ("youtube", "a YouTube API key"),
}
# Keyless servers that still need the internet (runnable; a warning says so).
NETWORK_SERVERS = frozenset({
    "fetch", "playwright_with_chunk", "scholarly", "arxiv_local", "arxiv-latex", "yahoo-finance", "12306",
    "youtube_transcript",
})
# utils.app_specific.<package> imported by a task's preprocess or checker -> the service it talks to.
APP_SERVICES: dict[str, str] = {
    "canvas": "canvas", "poste": "emails", "woocommerce": "woocommerce", "notion": "notion",
    "github": "github", "google": "google_sheet", "googlesheet": "google_sheet", "google_calendar": "google_calendar",
    "google_form": "google_forms", "snowflake": "snowflake", "huggingface": "huggingface", "wandb": "wandb",
    "k8s": "k8s",
}
INSTALL_HINTS = {
    "uv": "install uv: `pip install uv` (or https://docs.astral.sh/uv/)",
    "uvx": "install uv, which provides uvx: `pip install uv`",
    "npx": "install Node.js 18+ with npm, which provides npx",
    "node": "install Node.js 18+",
}
OUR_STAND_INS = {"filesystem": "files", "terminal": "shell", "fetch": "web"}


# --- the benchmark's checkout ----------------------------------------------------------------------------


@dataclass
class ServerDef:
    """One `configs/mcp_servers/*.yaml` of the root, as written (placeholders not yet substituted)."""

    name: str
    file: Path
    type: str
    command: str | None
    args: list[str]
    env: dict[str, str]
    cwd: str | None
    url: str | None
    timeout_s: float | None
    cache_tools_list: bool


@dataclass
class ToolathlonRoot:
    """A Toolathlon checkout: its server definitions, its interpreter and its run settings."""

    path: Path
    grader_python: Path | None = None
    servers: dict[str, ServerDef] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    run_settings: dict[str, Any] = field(default_factory=lambda: dict(FORMAL_RUN_DEFAULTS))

    @classmethod
    def open(cls, path: str | Path, grader_python: str | Path | None = None) -> ToolathlonRoot:
        root = cls(Path(path).resolve(), Path(grader_python).absolute() if grader_python else None)
        if not root.path.is_dir():
            raise ConfigError(f"--toolathlon-root {path}: no such folder")
        folder = root.path / "configs" / "mcp_servers"
        for file in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                server = _server_def(file)
            except (OSError, yaml.YAMLError, ValueError) as exc:
                root.problems.append(f"{file}: {exc}")
                continue
            if server is not None:
                root.servers[server.name] = server
        run_file = root.path / "scripts" / "formal_run_v0.json"
        if run_file.is_file():
            root.run_settings.update(_formal_run(run_file))
        return root

    @property
    def python(self) -> Path | None:
        """The interpreter checkers and preprocess scripts run with: `grader_python`, else the root's .venv."""
        if self.grader_python is not None:
            return self.grader_python
        venv = self.path / ".venv" / "bin" / "python"
        return venv if venv.exists() else None

    @property
    def venv(self) -> Path | None:
        python = self.python
        return python.parent.parent if python is not None and (python.parent.parent / "pyvenv.cfg").exists() else None

    def python_problem(self) -> str | None:
        if self.grader_python is not None and not self.grader_python.exists():
            return f"--grader-python {self.grader_python}: no such file"
        if self.python is None:
            return (f"the benchmark's environment (run `uv sync` in {self.path}, or pass --grader-python): "
                    "its checkers and preprocess scripts import the benchmark's own dependencies")
        return None

    def template_values(self) -> dict[str, str]:
        """`${...}` values that need no code of the benchmark's to know."""
        return {"local_servers_paths": str(self.path / "local_servers"),
                "local_binary_paths": str(self.path / "local_binary")}

    @functools.cached_property
    def pinned_uv_tools(self) -> dict[str, str]:
        """package -> what global_preparation/install_env.sh passes to `uv tool install` (a pinned version)."""
        script = self.path / "global_preparation" / "install_env.sh"
        try:
            text = script.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {}
        pins = {}
        for spec in re.findall(r"^\s*uv tool install\s+(\S+)", text, re.MULTILINE):
            name = spec.rstrip("/").rsplit("/", 1)[-1] if "://" in spec else spec
            pins[re.split(r"[=<>@\[]", name, maxsplit=1)[0]] = spec
        return pins

    @functools.cached_property
    def _uv_tools_dir(self) -> Path | None:
        uv = find_program("uv")
        if uv is None:
            return None
        try:
            done = subprocess.run([uv, "tool", "dir"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None

    def uv_tool_bin(self, package: str, executable: str) -> Path | None:
        """The executable of a tool `uv tool install` installed (what uvx runs when the tool is installed)."""
        if self._uv_tools_dir is None:
            return None
        candidate = self._uv_tools_dir / package / "bin" / executable
        return candidate if candidate.is_file() else None

    @functools.cached_property
    def config_values(self) -> dict[str, str]:
        """`token.X` and `config.X`: the benchmark's own configs/token_key_session.py and global_configs.py,
        read by its interpreter from the root (they are Python and import the benchmark's dependencies)."""
        python = self.python
        if python is None:
            return {}
        code = (
            "import json\n"
            "out = {}\n"
            "for module, attr, prefix in (('configs.token_key_session', 'all_token_key_session', 'token'),"
            " ('configs.global_configs', 'global_configs', 'config')):\n"
            "    try:\n"
            "        values = getattr(__import__(module, fromlist=[attr]), attr)\n"
            "    except Exception:\n"
            "        continue\n"
            "    for key, value in dict(values).items():\n"
            "        if isinstance(value, (str, int, float, bool)):\n"
            "            out[prefix + '.' + key] = str(value)\n"
            "print(json.dumps(out))\n"
        )
        try:
            done = subprocess.run([str(python), "-c", code], cwd=self.path, capture_output=True, text=True,
                                  timeout=60, env={**os.environ, "PYTHONPATH": str(self.path)})
            values = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            values = {}
        return {k: v for k, v in values.items() if isinstance(v, str)}


def _server_def(file: Path) -> ServerDef | None:
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return None
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params: expected a mapping")
    timeout = data.get("client_session_timeout_seconds")
    return ServerDef(
        name=str(data.get("name") or file.stem), file=file, type=str(data.get("type", "stdio")).lower(),
        command=None if params.get("command") is None else str(params["command"]),
        args=[str(a) for a in params.get("args") or []],
        env={str(k): "" if v is None else str(v) for k, v in (params.get("env") or {}).items()},
        cwd=None if params.get("cwd") is None else str(params["cwd"]),
        url=None if params.get("url") is None else str(params["url"]),
        timeout_s=float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None,
        cache_tools_list=bool(data.get("cache_tools_list", True)),
    )


def _formal_run(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {}
    steps = (data.get("global_task_config") or {}).get("max_steps_under_single_turn_mode")
    if isinstance(steps, int) and steps > 0:
        out["max_steps"] = steps
    generation = (data.get("agent") or {}).get("generation") or {}
    for key in ("temperature", "top_p"):
        if isinstance(generation.get(key), int | float):
            out[key] = float(generation[key])
    if isinstance(generation.get("max_tokens"), int) and generation["max_tokens"] > 0:
        out["max_tokens"] = generation["max_tokens"]
    tool = (data.get("agent") or {}).get("tool") or {}
    if isinstance(tool.get("parallel_tool_calls"), bool):
        out["parallel_tool_calls"] = tool["parallel_tool_calls"]
    return out


def find_root(folder: Path) -> Path | None:
    """The checkout above a task folder: the parent of `tasks/` that has `configs/mcp_servers`."""
    for parent in folder.parents:
        if parent.name == "tasks" and (parent.parent / "configs" / "mcp_servers").is_dir():
            return parent.parent
    return None


# --- servers ---------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
_UNFILLED = {"", "xx", "xxx", "null", "none"}


@dataclass
class _Resolved:
    spec: ServerSpec | None
    source: str
    needs: list[str] = field(default_factory=list)
    programs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _resolve_benchmark_server(root: ToolathlonRoot, server: ServerDef) -> _Resolved:
    """The root's definition as an mcpServers entry, placeholders substituted as Toolathlon does."""
    where = f"configs/mcp_servers/{server.file.name}"
    out = _Resolved(None, f"benchmark ({where})")
    values = {"agent_workspace": WORKSPACE_VAR, **root.template_values()}

    def substitute(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key in values:
                return values[key]
            if key == "podman_or_docker" or key.startswith(("token.", "config.")):
                lookup = "config.podman_or_docker" if key == "podman_or_docker" else key
                value = root.config_values.get(lookup)
                if value is not None and value.strip().lower() not in _UNFILLED:
                    return value
                file = "configs/token_key_session.py" if key.startswith("token.") else "configs/global_configs.py"
                out.needs.append(f"{key.split('.', 1)[-1]} in {file} ({where})")
                return match.group(0)
            out.needs.append(f"a value for ${{{key}}} ({where})")
            return match.group(0)
        return _PLACEHOLDER.sub(one, text)

    if server.type != "stdio" or server.command is None:
        if server.url is None:
            out.needs.append(f"a command or url in {where}")
            return out
        spec = ServerSpec(url=substitute(server.url), tool_timeout=server.timeout_s, protocol="legacy")
        out.spec = spec if not out.needs else None
        return out
    command = substitute(server.command)
    args = [substitute(a) for a in server.args]
    env = {k: substitute(v) for k, v in server.env.items()}
    # Toolathlon starts servers from its root; a definition without cwd runs there (git.yaml says so).
    cwd = substitute(server.cwd) if server.cwd is not None else str(root.path)
    for value in [command, *args, cwd]:
        for prefix in (root.path / "local_servers", root.path / "local_binary"):
            if value.startswith(str(prefix)):
                part = Path(value.split()[0])
                if not part.exists():
                    out.needs.append(f"{part.relative_to(root.path)} (the benchmark's global_preparation/"
                                     "install_env.sh installs it)")
    if out.needs:
        return out
    name = command
    program = find_program(command)
    if program is None:
        out.programs.append(command)
    elif command in ("uv", "uvx", "npx", "node") and not shutil.which(command):
        command = program  # installed beside the agent (its virtualenv's bin), not on PATH
    if name == "uv" and args[:1] == ["run"]:
        # `uv run X` from a workspace inside the checkout resolves X in the checkout's virtualenv; our
        # workspaces live elsewhere, so name that environment (VIRTUAL_ENV is what uv run uses outside a project).
        venv = root.venv
        if venv is None:
            out.needs.append(root.python_problem() or f"the benchmark's virtualenv (`uv sync` in {root.path})")
        else:
            env.setdefault("VIRTUAL_ENV", str(venv))
            target = args[2] if args[1:2] == ["-m"] and len(args) > 2 else (args[1] if len(args) > 1 else "")
            if args[1:2] != ["-m"] and target and "/" not in target and not (venv / "bin" / target).exists():
                out.needs.append(f"`{target}` in the benchmark's environment {venv} (`uv sync` in {root.path})")
    elif name == "uvx":
        # The benchmark pins these with `uv tool install` (global_preparation/install_env.sh); a bare uvx would
        # fetch today's release (measured: cli-mcp-server's no longer imports). Run the installed tool itself.
        package, executable, rest = _uvx_parts(args)
        installed = root.uv_tool_bin(package, executable)
        if installed is None:
            pinned = root.pinned_uv_tools.get(package, package)
            # `mcp<2`: these were written for the MCP SDK 1.x, and their own pins let today's 2.x in (measured:
            # pdf-tools-mcp 0.1.4 then fails on `from mcp.server.fastmcp import FastMCP`).
            out.needs.append(f"`uv tool install {pinned} --with 'mcp<2'` (the benchmark's pinned {package}, as its "
                             "global_preparation/install_env.sh installs it, kept on the MCP SDK 1.x it was built for)")
        else:
            command, args = str(installed), rest
    elif name == "npx":
        # The benchmark's package.json pins these (`npm install` in the checkout); npx finds them from there.
        package = next((a for a in args if not a.startswith("-")), "")
        if not (root.path / "node_modules" / package / "package.json").is_file():
            out.needs.append(f"npm package {package} in {root.path}/node_modules (`npm install` in the checkout, as "
                             "its global_preparation/install_env.sh does)")
        else:
            args = ["--prefix", str(root.path), *args]
            env.setdefault("PATH", f"{root.path / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    tool_timeout = server.timeout_s
    # The benchmark's servers speak the handshake era (many Python ones, on mcp 1.x, die on the 2026-07-28
    # discovery probe), as its own client did.
    out.spec = ServerSpec(command=command, args=args, env=env, cwd=cwd, tool_timeout=tool_timeout,
                          startup_timeout=max(60.0, tool_timeout or 0.0), protocol="legacy")
    if out.needs or out.programs:
        out.spec = None
    return out


def _uvx_parts(args: list[str]) -> tuple[str, str, list[str]]:
    """`uvx [--from PACKAGE] EXECUTABLE ARGS...` -> (package name, executable, ARGS)."""
    package = None
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "--from" and i + 1 < len(args):
            package = args[i + 1]
            i += 2
        else:
            i += 1
    executable = args[i] if i < len(args) else ""
    name = re.split(r"[=<>@\[]", package or executable, maxsplit=1)[0]
    return name, re.split(r"[=<>@\[]", executable, maxsplit=1)[0], args[i + 1:]


def find_program(command: str) -> str | None:
    """A server's program: on PATH, or beside this interpreter (a virtualenv the user did not activate)."""
    if command in ("python", "python3"):
        return sys.executable  # the agent's interpreter, as for every server entry
    found = shutil.which(command)
    if found is None and os.sep not in command:
        beside = Path(sys.executable).parent / command
        found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None
    return found


def resolve_server(name: str, *, root: ToolathlonRoot | None, user: Mapping[str, ServerSpec],
                   our_servers: bool) -> _Resolved:
    """Who serves benchmark server `name`: an entry the user gave, ours on request, the benchmark's own
    definition, or ours when there is no root."""
    if name in user:
        return _Resolved(user[name], "--servers entry")
    if our_servers and name in OUR_STAND_INS:
        ours = OUR_STAND_INS[name]
        return _Resolved(ServerSpec.model_validate(OUR_SERVERS[ours]), f"ours ({ours})")
    if root is not None and name in root.servers:
        return _resolve_benchmark_server(root, root.servers[name])
    if name in SERVER_MAP:
        ours = SERVER_MAP[name][0]
        source = f"ours ({ours})" if root is None else f"ours ({ours}; the root has no definition)"
        return _Resolved(ServerSpec.model_validate(OUR_SERVERS[ours]), source)
    return _Resolved(None, "none")  # reported with the servers we do not have


# --- tasks -----------------------------------------------------------------------------------------------


def is_toolathlon_task(folder: Path) -> bool:
    return (folder / "task_config.json").is_file() and (folder / "docs" / "task.md").is_file()


_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+((?:configs|utils)(?:\.\w+)*)[ \t]+import[ \t]+\(?([\w ,\t]+)"
                     r"|import[ \t]+((?:configs|utils)(?:\.\w+)*))", re.MULTILINE)


def _module_files(root: Path, module: str) -> list[Path]:
    """The files Python runs to import `module` from the checkout: its packages' __init__.py, then it."""
    parts = module.split(".")
    files = []
    for i in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif i == len(parts) and base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def _checkout_imports(root: Path, files: list[Path], *, follow: bool = True) -> set[str]:
    """Every `configs.*` / `utils.*` module that running `files` imports, followed through the checkout
    (`follow=False`: only the modules `files` name themselves)."""
    seen: set[str] = set()
    visited: set[Path] = set()
    todo = list(files)
    while todo:
        file = todo.pop()
        if file in visited:
            continue
        visited.add(file)
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for package, names, plain in _IMPORT.findall(text):
            modules = [plain] if plain else [package, *(f"{package}.{n.strip()}" for n in names.split(",") if n.strip())]
            for module in modules:
                found = _module_files(root, module)
                if found or module.startswith("configs."):
                    seen.add(module)
                if follow:
                    todo += found
    return seen


def _script_needs(folder: Path, root: Path) -> tuple[list[str], set[str]]:
    """What a task's preprocess and checker scripts import, directly or through the checkout's `utils`, from
    the checkout's configs/ that is missing (token_key_session.py, global_configs.py are made by hand from their
    examples), and the services they talk to (utils.app_specific.<service>)."""
    scripts = [file for sub in ("preprocess", "evaluation") if (folder / sub).is_dir()
               for file in sorted((folder / sub).glob("*.py"))]
    missing: list[str] = []
    services: set[str] = set()
    # Services: what the task's own scripts import (the checkout's helpers import many apps they do not use);
    # configs: everything imported along the way (a missing one fails the import).
    for module in _checkout_imports(root, scripts, follow=False):
        parts = module.split(".")
        if parts[:2] == ["utils", "app_specific"] and len(parts) > 2 and parts[2] in APP_SERVICES:
            services.add(APP_SERVICES[parts[2]])
    for module in sorted(_checkout_imports(root, scripts)):
        parts = module.split(".")
        if parts[0] == "configs" and len(parts) > 1:
            if not (root / "configs" / f"{parts[1]}.py").is_file() and not (root / "configs" / parts[1]).is_dir():
                example = root / "configs" / f"{parts[1]}_example.py"
                hint = f" (copy {example.name} and fill it in)" if example.is_file() else ""
                need = f"configs/{parts[1]}.py{hint}"
                if need not in missing:
                    missing.append(need)
    return missing, services


def _local_tools_problems(names: list[str]) -> dict[str, str]:
    """Local tools this installation cannot offer, with why (web_search without a search key, ...)."""
    return dict(missing_local_tools(names))


def import_toolathlon_task(folder: str | Path, *, servers: Mapping[str, ServerSpec] | None = None,
                           toolathlon_root: str | Path | ToolathlonRoot | None = None,
                           grader_python: str | Path | None = None, our_servers: bool = False,
                           services: Collection[str] = ()) -> ImportedTask:
    """A Toolathlon task folder (task_config.json, docs/task.md, docs/agent_system_prompt.md,
    initial_workspace/, preprocess/main.py, evaluation/main.py, groundtruth_workspace/) as a task.

    `toolathlon_root` (else the checkout found above `tasks/`) supplies the servers, the interpreter and the
    run settings (module docstring). `services` names the external services that are running (canvas,
    emails, woocommerce, k8s, google, github, notion, ...); tasks that need others are not runnable.
    """
    folder = Path(folder).resolve()
    task_id = folder.name
    imported = ImportedTask(id=task_id, kind="toolathlon", source=str(folder))
    try:
        config = json.loads((folder / "task_config.json").read_text(encoding="utf-8"))
        prompt = (folder / "docs" / "task.md").read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        imported.problem = f"cannot read the task: {exc}"
        return imported
    if not isinstance(config, dict):
        imported.problem = "task_config.json is not an object"
        return imported
    root: ToolathlonRoot | None
    if isinstance(toolathlon_root, ToolathlonRoot):
        root = toolathlon_root
    else:
        found = Path(toolathlon_root) if toolathlon_root is not None else find_root(folder)
        root = ToolathlonRoot.open(found, grader_python) if found is not None else None
    system_path = folder / "docs" / "agent_system_prompt.md"
    system = system_path.read_text(encoding="utf-8") if system_path.is_file() else None
    if system is not None:
        system = _our_names(system.replace(TOOLATHLON_WORKSPACE_PLACEHOLDER, WORKSPACE_VAR)
                            .replace(TOOLATHLON_RELATIVE_WORKSPACE_PLACEHOLDER, "."))
    prompt = _our_names(prompt.replace(TOOLATHLON_WORKSPACE_PLACEHOLDER, WORKSPACE_VAR)
                        .replace(TOOLATHLON_RELATIVE_WORKSPACE_PLACEHOLDER, "."))

    needs: list[str] = []
    programs: list[str] = []
    user = dict(servers or {})
    available = set(services)
    entries: dict[str, Any] = {}
    for name in config.get("needed_mcp_servers") or []:
        name = str(name)
        if name in SERVICES and name not in user:
            short, what = SERVICES[name]
            if short not in available and name not in available:
                needs.append(f"{what} for server {name} (pass --toolathlon-services {short} when it runs)")
        resolved = resolve_server(name, root=root, user=user, our_servers=our_servers)
        imported.servers[name] = resolved.source
        needs += resolved.needs
        programs += [p for p in resolved.programs if p not in programs]
        imported.warnings += resolved.warnings
        if resolved.spec is None:
            if not resolved.needs and not resolved.programs:
                imported.missing_servers.append(name)
            continue
        entries[name] = resolved.spec
        if name in NETWORK_SERVERS and name not in user:
            imported.warnings.append(f"server {name} uses the internet")
        elif name in OUR_STAND_INS and resolved.source.startswith("ours"):
            imported.warnings.append(f"server {name}: our {OUR_STAND_INS[name]} server stands in for the benchmark's")

    local_tools = [str(t) for t in config.get("needed_local_tools") or []]
    for tool, why in _local_tools_problems(local_tools).items():
        needs.append(f"local tool {tool}: {why}")

    root_path, module = _toolathlon_module(folder, root.path if root is not None else None)
    python: Path | str = sys.executable
    if root is not None:
        missing_configs, script_services = _script_needs(folder, root.path)
        needs += [f"{need}, which its scripts import" for need in missing_configs]
        for service in sorted(script_services - set(config.get("needed_mcp_servers") or [])):
            short, what = SERVICES.get(service, (service, service))
            if short not in available and service not in available:
                needs.append(f"{what}, which its scripts talk to (pass --toolathlon-services {short} when it runs)")
        problem = root.python_problem()
        has_scripts = (folder / "preprocess" / "main.py").is_file() or (folder / "evaluation" / "main.py").is_file()
        if problem is not None and has_scripts:
            needs.append(problem)
        python = root.python or sys.executable
    elif (folder / "evaluation" / "main.py").is_file():
        imported.warnings.append("no Toolathlon root: the checker runs with this interpreter "
                                 f"({sys.executable}); pass --toolathlon-root for the benchmark's environment")
    for program in programs:
        needs.append(f"program {program!r}: {INSTALL_HINTS.get(program, 'install it and put it on PATH')}")
    if imported.missing_servers:
        needs.insert(0, f"servers we do not have: {', '.join(imported.missing_servers)}")
    imported.needs = needs = list(dict.fromkeys(needs))
    if needs:
        imported.problem = "needs " + "; ".join(needs)

    pythonpath = f'PYTHONPATH="{root_path}${{PYTHONPATH:+:$PYTHONPATH}}"'
    setup = []
    if (folder / "preprocess" / "main.py").is_file():
        setup.append(f'WS="$PWD"; cd "{root_path}" && {pythonpath} "{python}" -m {module}.preprocess.main '
                     f'--agent_workspace "$WS" --launch_time "$(date "+%Y-%m-%d %H:%M:%S %A")"')
    grade: dict[str, Any] = {"timeout_s": SCRIPT_TIMEOUT_S}
    if (folder / "evaluation" / "main.py").is_file():
        grade["commands"] = [{
            "name": "evaluation/main.py",
            "run": f'cd "{root_path}" && {pythonpath} "{python}" -m {module}.evaluation.main --agent_workspace '
                   '"$AGENT_WORKSPACE" --groundtruth_workspace "$GROUNDTRUTH_WORKSPACE" --res_log_file '
                   '"$RES_LOG_FILE" --launch_time "$LAUNCH_TIME"',
        }]
    else:
        imported.warnings.append("no evaluation/main.py: runs cannot pass")
        grade["commands"] = [{"name": "no checker", "run": "exit 1"}]
    if (folder / "groundtruth_workspace").is_dir():
        grade["groundtruth"] = str(folder / "groundtruth_workspace")
    workspace: dict[str, Any] = {"setup": setup, "setup_timeout_s": SCRIPT_TIMEOUT_S}
    if (folder / "initial_workspace").is_dir():
        workspace["files"] = str(folder / "initial_workspace")
    settings = root.run_settings if root is not None else FORMAL_RUN_DEFAULTS
    model = TaskSpec.model_fields["model"].get_default(call_default_factory=True)
    model = model.model_copy(update={k: settings[k] for k in ("temperature", "top_p", "max_tokens") if k in settings})
    try:
        imported.spec = TaskSpec.model_validate({
            "name": task_id, "prompt": prompt, "system": system, "servers": entries, "workspace": workspace,
            # Toolathlon's own claim_done (no arguments) among its local tools; names it has that we lack
            # made the task not runnable above.
            "model": model, "grade": grade, "local_tools": [t for t in local_tools if t in LOCAL_TOOLKITS],
            "limits": {"max_steps": settings["max_steps"], "tool_timeout_s": 300},
        })
    except Exception as exc:  # a malformed field in the benchmark's files
        imported.problem = f"cannot build a task from it: {exc}"
    return imported


_LOCAL_NAMES = sorted({tool for tools in LOCAL_TOOLKITS.values() for tool in tools}, key=len, reverse=True)
_LOCAL_PREFIX = re.compile(r"\blocal-(" + "|".join(map(re.escape, _LOCAL_NAMES)) + r")(?![\w-])")


def _our_names(text: str) -> str:
    """Toolathlon names its framework tools `local-<name>`; ours are `<name>` (other `local-` words stay)."""
    return _LOCAL_PREFIX.sub(r"\1", text)


def _toolathlon_module(folder: Path, root: Path | None) -> tuple[Path, str]:
    """(folder to run from, dotted module of the task folder)."""
    if root is not None:
        try:
            return root, ".".join(folder.relative_to(root).parts)
        except ValueError:
            pass
    for parent in folder.parents:
        if parent.name == "tasks":
            return parent.parent, ".".join(folder.relative_to(parent.parent).parts)
    return folder.parent, folder.name
