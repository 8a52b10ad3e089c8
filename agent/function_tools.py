"""Python functions as tools: `@tool` reads a function's signature and docstring into a JSON schema through
pydantic, and `FunctionTools` offers such functions to the model as a `ToolSource`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Generic, ParamSpec, TypeVar, overload

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import to_jsonable_python

from agent.errors import ConfigError
from agent.tools.results import ToolOutcome, error_outcome
from agent.tools.schema import MAX_NAME_LEN, tool_name
from agent.tools.source import SourceTool
from agent.tools.supervisor import describe_error

from .run import CURRENT_RUN, RunContext

P = ParamSpec("P")
R = TypeVar("R")

NO_RESULT = "done"
"""What the model reads when a function returns None."""
_MAX_LISTED_ERRORS = 10
_SHOWN_INPUT = 80
_VALID_NAME = re.compile(rf"^[a-zA-Z0-9_-]{{1,{MAX_NAME_LEN}}}$")
_SECTION = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments|other parameters|returns?|yields?|"
    r"raises|examples?|notes?|attributes|see also|warnings?|todo|references)\s*:\s*$",
    re.IGNORECASE,
)
_ARGS_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments",
                  "other parameters"}
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class _ToolSchema(GenerateJsonSchema):
    # Titles repeat the parameter names: tokens in every request, nothing for the model.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(the text before the first section, {parameter: description} from a Google-style `Args:` section)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    base: int | None = None
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section, current, base = header.group(1).lower(), None, None
            continue
        if section is None:
            summary.append(line)
            continue
        stripped = line.strip()
        if section not in _ARGS_SECTIONS or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        base = indent if base is None else base
        match = _ARG_LINE.match(stripped)
        if indent <= base and match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None and indent > base:
            params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(summary).strip(), params


def _unwrap_annotated(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _context_kind(hint: Any) -> str | None:
    """'required' for `RunContext`, 'optional' for `RunContext | None`, None for any other annotation."""
    hint = _unwrap_annotated(hint)
    if hint is RunContext:
        return "required"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if RunContext in args and all(a in (RunContext, type(None)) for a in args):
            return "optional"
    return None


def _parameter_hints(function: Callable[..., Any]) -> dict[str, Any]:
    """The parameters' type hints, resolved in the function's module; the return annotation is left out, as
    the schema does not need it (and a class defined in the calling function would not resolve)."""
    target: Any = function if hasattr(function, "__annotations__") else type(function).__call__
    annotations = {k: v for k, v in getattr(target, "__annotations__", {}).items() if k != "return"}
    scope = getattr(inspect.unwrap(target), "__globals__", {})
    return typing.get_type_hints(types.SimpleNamespace(__annotations__=annotations), globalns=scope,
                                 include_extras=True)


def _is_async(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    # An object whose __call__ is a coroutine function.
    return not inspect.isroutine(function) and inspect.iscoroutinefunction(type(function).__call__)


class FunctionTool(Generic[P, R]):
    """A Python function offered as a tool: its name, description, JSON schema and hints; still callable as
    the function itself.

    Parameters annotated `RunContext` (or `RunContext | None`) are filled in with the run being served and
    are left out of the schema; the others are validated by pydantic before the function runs.
    """

    def __init__(self, function: Callable[P, R], *, name: str | None = None, description: str | None = None,
                 read_only: bool | None = None, destructive: bool | None = None,
                 open_world: bool | None = None) -> None:
        self.function = function
        self._call: Callable[..., Any] = function
        self.name: str = name or str(getattr(function, "__name__", type(function).__name__))
        if not _VALID_NAME.match(self.name):
            raise ConfigError(f"function tool name {self.name!r} is not a valid tool name (letters, digits, _ "
                              f"and -, at most {MAX_NAME_LEN}); pass one with @tool(name=...)")
        doc = inspect.getdoc(function)
        if not doc and not inspect.isroutine(function):
            doc = inspect.getdoc(type(function).__call__)  # an object whose __call__ is documented
        summary, documented = parse_docstring(doc)
        self.description = summary if description is None else description
        self.read_only, self.destructive, self.open_world = read_only, destructive, open_world
        self.is_async = _is_async(function)
        self._positional: list[str] = []
        self._context: dict[str, str] = {}
        self._model, self.input_schema = self._arguments_model(documented)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<FunctionTool {self.name}>"

    def _arguments_model(self, documented: dict[str, str]) -> tuple[type[BaseModel], dict[str, Any]]:
        where = f"function tool {self.name!r}"
        try:
            signature = inspect.signature(self.function)
            hints = _parameter_hints(self.function)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: its signature cannot be read ({exc})") from exc
        except NameError as exc:
            raise ConfigError(f"{where}: a type hint does not resolve ({exc}); define or import the type at "
                              "module level") from exc
        fields: dict[str, Any] = {}
        for index, param in enumerate(signature.parameters.values()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigError(f"{where}: *{param.name} cannot be described to the model; "
                                  "give the tool named parameters")
            hint = hints.get(param.name, Any)
            if (kind := _context_kind(hint)) is not None:
                self._context[param.name] = kind
                continue
            if param.kind is param.POSITIONAL_ONLY:
                self._positional.append(param.name)
            # Field names are internal and each parameter is its alias, so any name works (`_x`, `schema`).
            if isinstance(param.default, FieldInfo):  # `x: int = Field(3, description=...)`
                fields[f"p{index}"] = (Annotated[hint, param.default], Field(alias=param.name))
            else:
                default = ... if param.default is param.empty else param.default
                fields[f"p{index}"] = (hint, Field(default, alias=param.name))
        try:
            model = create_model(f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
            schema = model.model_json_schema(schema_generator=_ToolSchema)
        except Exception as exc:
            raise ConfigError(f"{where}: its parameters have no JSON schema ({describe_error(exc)})") from exc
        schema.pop("title", None)
        for param, prop in schema.get("properties", {}).items():
            if param in documented and isinstance(prop, dict):
                prop.setdefault("description", documented[param])  # an Annotated Field's description wins
        return model, schema

    @property
    def source_tool(self) -> SourceTool:
        """The tool as a source lists it."""
        return SourceTool(self.name, self.description, self.input_schema, read_only=self.read_only,
                          destructive=self.destructive, open_world=self.open_world)

    async def run(self, arguments: dict[str, Any], *, label: str | None = None) -> ToolOutcome:
        """Validate the arguments, call the function (a sync one in a worker thread) and turn what it returns
        into an outcome; `label` is the name the model knows the tool by, for messages."""
        label = label or self.name
        try:
            validated = self._model.model_validate(arguments)
        except ValidationError as exc:
            return error_outcome(_invalid_arguments(label, exc, self.input_schema))
        values = {field.alias or name: getattr(validated, name) for name, field in type(validated).model_fields.items()}
        if self._context:
            run = CURRENT_RUN.get()
            context = run.context if run is not None else None
            if context is None and "required" in self._context.values():
                return error_outcome(f"Tool {label} needs the run's RunContext, but it was called outside a run")
            if context is not None and not self.is_async:
                # Events reach the trace and the live stream from the event loop's thread only.
                emit = context.emit
                context = dataclasses.replace(context, emit=lambda event: anyio.from_thread.run_sync(emit, event))
            values.update(dict.fromkeys(self._context, context))
        args = [values.pop(name) for name in self._positional]
        try:
            if self.is_async:
                result = await self._call(*args, **values)
            else:
                # Abandoned on cancellation (wall time, Ctrl-C): a thread cannot be stopped, the run can.
                result = await anyio.to_thread.run_sync(functools.partial(self._call, *args, **values),
                                                        abandon_on_cancel=True)
        except Exception as exc:
            return error_outcome(f"Tool {label} failed: {describe_error(exc)}")
        return outcome_of(result)


@overload
def tool(function: Callable[P, R], /) -> FunctionTool[P, R]: ...


@overload
def tool(*, name: str | None = None, description: str | None = None, read_only: bool | None = None,
         destructive: bool | None = None, open_world: bool | None = None,
         ) -> Callable[[Callable[P, R]], FunctionTool[P, R]]: ...


def tool(function: Callable[P, R] | None = None, /, *, name: str | None = None, description: str | None = None,
         read_only: bool | None = None, destructive: bool | None = None, open_world: bool | None = None,
         ) -> FunctionTool[P, R] | Callable[[Callable[P, R]], FunctionTool[P, R]]:
    """Make a sync or async function a tool: `@tool` or `@tool(name=..., read_only=True, ...)`.

    The schema comes from the type hints (`Annotated[int, Field(description=...)]` honoured), the description
    from the docstring (the text before its sections; parameters from a Google-style `Args:` section). The hints
    are MCP's: read_only (changes nothing), destructive (may delete or overwrite), open_world (reaches outside
    the run); None leaves them unsaid.
    """

    def wrap(fn: Callable[P, R]) -> FunctionTool[P, R]:
        return FunctionTool(fn, name=name, description=description, read_only=read_only,
                            destructive=destructive, open_world=open_world)

    return wrap if function is None else wrap(function)


class FunctionTools:
    """Python functions (`@tool`-decorated or plain) as a `ToolSource`; pass it as `Agent(tool_sources=[...])`.

    With `prefix=None` the tools keep their own names; otherwise they are offered as `<prefix>__<name>`.
    """

    def __init__(self, functions: Iterable[FunctionTool[..., Any] | Callable[..., Any]],
                 prefix: str | None = None) -> None:
        self.prefix = prefix
        tools = [f if isinstance(f, FunctionTool) else FunctionTool(f) for f in functions]
        names = [t.name for t in tools]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"FunctionTools got more than one tool named {repeated}; rename one with "
                              "@tool(name=...)")
        self.tools: dict[str, FunctionTool[..., Any]] = {t.name: t for t in tools}

    async def __aenter__(self) -> FunctionTools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def list_tools(self) -> list[SourceTool]:
        return [t.source_tool for t in self.tools.values()]

    @property
    def tools_changed(self) -> bool:
        return False

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        label = tool if self.prefix is None else tool_name(self.prefix, tool)
        function_tool = self.tools.get(tool)
        if function_tool is None:
            return error_outcome(f"Unknown tool {label!r}; this source offers {sorted(self.tools)}")
        return await function_tool.run(arguments, label=label)


def outcome_of(result: Any) -> ToolOutcome:
    """A function's return value as the model reads it: a str as is, None as "done", a ToolOutcome as given,
    anything else (pydantic models, dataclasses, dicts, lists, numbers) as JSON, also kept as `structured`."""
    if isinstance(result, ToolOutcome):
        return result
    if result is None:
        return ToolOutcome(text=NO_RESULT)
    if isinstance(result, str):
        return ToolOutcome(text=result)
    structured = to_jsonable_python(result, fallback=str)
    return ToolOutcome(text=json.dumps(structured, ensure_ascii=False), structured=structured)


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN_INPUT else f"{text[:_SHOWN_INPUT]}..."


def _type_label(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return "one of " + "/".join(json.dumps(v) for v in schema["enum"])
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(map(str, kind))
    if isinstance(kind, str):
        return f"array of {_type_label(schema['items'])}" if kind == "array" and "items" in schema else kind
    if "anyOf" in schema:
        return "|".join(_type_label(s) for s in schema["anyOf"])
    return "any"


def _invalid_arguments(label: str, exc: ValidationError, schema: dict[str, Any]) -> str:
    """Pydantic's errors, one line each, then the parameters the tool takes."""
    errors = exc.errors(include_url=False)
    lines = [f"Invalid arguments for {label}; it did not run:"]
    for error in errors[:_MAX_LISTED_ERRORS]:
        where = ".".join(str(part) for part in error["loc"]) or "(the arguments)"
        got = "" if error["type"] == "missing" else f" (got {_shorten(repr(error['input']))})"
        lines.append(f"- {where}: {error['msg']}{got}")
    if len(errors) > _MAX_LISTED_ERRORS:
        lines.append(f"- ... and {len(errors) - _MAX_LISTED_ERRORS} more")
    required = set(schema.get("required", []))
    properties: dict[str, Any] = schema.get("properties", {})
    params = [f"{name}{'' if name in required else '?'}: {_type_label(prop)}" for name, prop in properties.items()]
    note = " (? = optional)" if set(properties) - required else ""
    lines.append(f"{label} takes: {', '.join(params) if params else 'no arguments'}{note}")
    return "\n".join(lines)
