"""Task files: a YAML document mapped 1:1 onto `TaskSpec`, with errors that name file, field and expectation."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.runtime.sandbox import SandboxSpec
from agent.runtime.workspace import WorkspaceSpec
from agent.tools.config import ServerSpec, expand_secrets, load_mcp_config, parse_servers

from .context import ContextConfig
from .errors import ConfigError
from .grade_spec import GradeSpec
from .limits import Limits
from .models.config import MODEL_SYNTAX, ModelConfig, parse_model
from .output import OutputSpec
from .sampling import SamplingPolicy
from .think import think_policy
from .toolkits import LOCAL_TOOLKITS

DEFAULT_MODEL = "deepseek:deepseek-flash"
M = TypeVar("M", bound=BaseModel)


class SubAgentSpec(BaseModel):
    """An agent offered as a tool `<name>(task)` by a task file's `agents:` section."""

    model_config = ConfigDict(extra="forbid")

    task: Path = Field(description="Its task file (model, think, servers, limits); the prompt comes with each call")
    description: str = Field(description="What the calling model reads about this agent")


class TaskSpec(BaseModel):
    """One task: what to ask, which model, which MCP servers, and the limits of the run."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Short name, used in trace file names")
    prompt: str = Field(description="The user's request")
    system: str | None = Field(None, description="System prompt; default: the framework's")
    model: ModelConfig = Field(default_factory=lambda: parse_model(DEFAULT_MODEL), description=MODEL_SYNTAX)
    think: str | dict[str, Any] = Field(
        "auto", description="auto, none, high, max, or {policy: auto, ...options} (see agent.think.AutoThink)"
    )
    servers: dict[str, ServerSpec] = Field(default_factory=dict, description="MCP servers, as mcpServers entries")
    mcp_config: Path | None = Field(None, description="A Claude Desktop / .mcp.json / VS Code file with more servers")
    limits: Limits = Field(default_factory=Limits)
    context: ContextConfig = Field(default_factory=ContextConfig, description="Context window use (see agent.context)")
    workdir: Path | None = Field(None, description="Working directory of stdio servers that set no cwd")
    workspace: WorkspaceSpec | None = Field(None, description="A fresh per-run workspace (files, repos, setup)")
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec, description="Where commands run: local, docker, bubblewrap")
    builtin_servers: list[Literal["files", "shell", "web"]] = Field(
        default_factory=list, description="Our servers to add, pointed at the workspace (files, shell) automatically"
    )
    claim_done: bool = Field(False, description="Offer the claim_done tool; calling it ends the run")
    local_tools: list[str] = Field(
        default_factory=list, description="Toolathlon's local tools, by its task-config names: claim_done, "
        "python_execute, history, manage_context, handle_overlong_tool_outputs, sleep, web_search (see agent.toolkits)")
    tools: list[str] = Field(
        default_factory=list, description="Python functions offered as tools, as 'module:function' (a module file "
        "beside the task file, or an importable module)")
    agents: dict[str, SubAgentSpec] = Field(
        default_factory=dict, description="Other agents offered as tools: name -> {task: a task file without a "
        "prompt of its own (its model, think, servers), description}")
    output_schema: dict[str, Any] | None = Field(
        None, description="A JSON schema the final answer must match: the model gives it by calling a final_result "
        "tool, it is validated (invalid answers are sent back, twice at most) and reported as the result's output")
    sampling: SamplingPolicy = Field(
        default_factory=SamplingPolicy, description="Whether the MCP servers may ask the model for completions "
        "(sampling/createMessage): true, or {allow, servers, model, think, max_tokens, max_requests_per_run}; off by "
        "default (see agent.sampling.SamplingPolicy)")
    demo: Path | None = Field(
        None, description="Scripted model turns (YAML) used offline when no API key or model server is available"
    )
    grade: GradeSpec | None = Field(
        None, description="How `agent eval` grades a run that ended normally (see agent.grade_spec.GradeSpec)"
    )

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> ModelConfig:
        return parse_model(value)

    @field_validator("think")
    @classmethod
    def _think(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        think_policy(value)  # validated here so errors name the task file
        return value

    @field_validator("local_tools")
    @classmethod
    def _local_tools(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in LOCAL_TOOLKITS]
        if unknown:
            raise ConfigError(f"field 'local_tools': unknown local tool{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))}; allowed values: {', '.join(LOCAL_TOOLKITS)}")
        return value

    @field_validator("output_schema")
    @classmethod
    def _output_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            OutputSpec.of_schema(value)  # a schema that is not one fails here, naming the task file
        return value

    @field_validator("servers", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> dict[str, ServerSpec]:
        if isinstance(value, dict):
            keep = frozenset({WORKSPACE_VAR[2:-1]})
            value = {name: expand_secrets(entry, where=f"servers.{name}", keep=keep) for name, entry in value.items()}
        return parse_servers(value or {}, where="servers")

    def all_servers(self) -> dict[str, ServerSpec]:
        """Servers from `servers` plus those of `mcp_config` (entries in `servers` win)."""
        servers = dict(load_mcp_config(self.mcp_config)) if self.mcp_config else {}
        servers.update(self.servers)
        return servers


def load_task(path: str | Path, *, prompt_required: bool = True) -> TaskSpec:
    """Read a task file; relative paths inside it are resolved against its folder. Without `prompt_required`
    (a sub-agent's task file: each call brings the prompt) a missing prompt is empty."""
    path = Path(path)
    data = read_yaml_mapping(path, "task file", "at least a 'prompt' field")
    if not prompt_required:
        data.setdefault("prompt", "")
    spec = validate_file(path, TaskSpec, data)
    return resolve_task_paths(spec, path.parent.resolve())


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict[str, Any]:
    """A YAML file's top-level mapping; errors name the file (and the line for syntax errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with {expected}, got {type(data).__name__}")
    return data


def validate_file(path: Path, model: type[M], data: dict[str, Any]) -> M:
    """`model` from a file's data; errors name the file, the field and what was expected."""
    try:
        return model.model_validate(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc, model)}") from None


T = TypeVar("T", bound=TaskSpec)


def resolve_task_paths(spec: T, base: Path) -> T:
    """Relative paths of a task (files, servers' cwd, workspace, repos) resolved against `base`."""
    updates: dict[str, Any] = {}
    for name in ("mcp_config", "workdir", "demo"):
        value = getattr(spec, name)
        if value is not None and not value.is_absolute():
            updates[name] = base / value
    if spec.workspace is not None:
        ws = spec.workspace
        ws_updates = {name: base / getattr(ws, name) for name in ("path", "files")
                      if getattr(ws, name) is not None and not getattr(ws, name).is_absolute()}
        ws_updates["repos"] = [r.model_copy(update={"clone": base / r.clone})
                               if r.clone is not None and not r.clone.is_absolute() else r for r in ws.repos]
        updates["workspace"] = ws.model_copy(update=ws_updates)
    workdir = updates.get("workdir", spec.workdir) or base
    servers = {}
    for name, server in spec.servers.items():
        if server.command is not None:
            cwd = Path(server.cwd) if server.cwd else workdir
            server = server.model_copy(update={"cwd": str(cwd if cwd.is_absolute() else base / cwd)})
        servers[name] = server
    updates["servers"] = servers
    updates["agents"] = {name: a if a.task.is_absolute() else a.model_copy(update={"task": base / a.task})
                         for name, a in spec.agents.items()}
    updates["tools"] = [_anchor_tool(ref, base) for ref in spec.tools]
    repos = [r if r.path.is_absolute() else r.model_copy(update={"path": base / r.path}) for r in spec.context.repos]
    updates["context"] = spec.context.model_copy(update={"repos": repos})
    if spec.grade is not None:
        updates["grade"] = spec.grade.resolved(base)
    return spec.model_copy(update=updates)


def _anchor_tool(ref: str, base: Path) -> str:
    """`module:function` with a module file beside the task file becomes `/abs/path/module.py:function`."""
    module, _, function = ref.rpartition(":")
    if module and not module.endswith(".py") and (base / f"{module.replace('.', '/')}.py").is_file():
        return f"{base / (module.replace('.', '/') + '.py')}:{function}"
    return ref


def load_function(ref: str, *, where: str = "tools") -> Any:
    """The function a task file names: `path/to/file.py:name` or `package.module:name`."""
    module_name, sep, function = ref.rpartition(":")
    if not sep or not module_name or not function:
        raise ConfigError(f"{where}: {ref!r}: expected 'module:function'")
    try:
        if module_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{where}: {ref!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    value = getattr(module, function, None)
    if not callable(value):
        raise ConfigError(f"{where}: {ref!r}: {module_name} has no function {function!r}")
    return value


def describe_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: `field 'a.b': what was wrong (expected ...)`."""
    lines = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        given = error.get("input")
        if error["type"] == "extra_forbidden":
            known = f" (known fields: {', '.join(model.model_fields)})" if model and "." not in loc else ""
            lines.append(f"field '{loc}': unknown field{known}")
        elif error["type"] == "missing":
            lines.append(f"field '{loc}': required but missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"field '{loc}': {message}; got {given!r}")
    return "; ".join(lines)


WORKSPACE_VAR = "${WORKSPACE}"


def bind_workspace(task: TaskSpec, workspace: Path) -> TaskSpec:
    """Point the task at a prepared workspace: `${WORKSPACE}` in server entries, the prompt and the system
    prompt becomes its path, our builtin servers are added (files and shell confined to it), and stdio
    servers run in it by default.
    """
    root = str(workspace)

    def bind(value: str) -> str:
        return value.replace(WORKSPACE_VAR, root)

    servers: dict[str, ServerSpec] = {}
    for name, server in task.servers.items():
        update: dict[str, Any] = {"args": [bind(a) for a in server.args],
                                  "env": {k: bind(v) for k, v in server.env.items()},
                                  "roots": None if server.roots is None else [bind(r) for r in server.roots]}
        if server.command is not None:
            update["command"] = bind(server.command)
            update["cwd"] = bind(server.cwd) if server.cwd and WORKSPACE_VAR in server.cwd else (server.cwd or root)
        servers[name] = server.model_copy(update=update)
    sandbox = task.sandbox
    builtin = {
        "files": ["-m", "agent.servers.files", root],
        "shell": ["-m", "agent.servers.shell", root, "--sandbox", sandbox.kind, *(
            ["--image", sandbox.image] if sandbox.kind == "docker" else []), *(
            ["--network"] if sandbox.network else [])],
        "web": ["-m", "agent.servers.web"],
    }
    for name in task.builtin_servers:
        # Our files server's resources (file:///{+path}) serve @files: mentions; its read_file is the model's tool.
        servers.setdefault(name, ServerSpec(command=sys.executable, args=builtin[name], cwd=root,
                                            resource_tools=name != "files"))
    return task.model_copy(update={"servers": servers, "workdir": workspace, "prompt": bind(task.prompt),
                                   "system": bind(task.system) if task.system is not None else None})
