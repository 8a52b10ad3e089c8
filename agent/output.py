"""Structured output: the run ends when the model calls a final-answer tool whose arguments validate.

A tool, not JSON mode: DeepSeek's thinking mode accepts only `tool_choice` auto/none, and a tool call carries
its own schema (as pydantic-ai's tool output). The output type is a pydantic-validatable type (a model, a
dataclass, `list[int]`, ...) or, from task files, a JSON schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import TypeAdapter, ValidationError

from agent.tools.schema import to_openai_function

from .errors import ConfigError

FINAL_RESULT = "final_result"
_WRAP = "result"


class OutputInvalid(Exception):
    """The model's output does not match the schema; the message says why, for the model to fix it."""


@dataclass(frozen=True)
class OutputSpec:
    """What a run must produce, and how to check it."""

    schema: dict[str, Any]
    """The final_result tool's parameters (an object schema; other types are wrapped as {"result": ...})."""
    wrapped: bool
    check: Callable[[Any], Any]
    """Validates the (unwrapped) arguments and returns the output value; raises OutputInvalid."""
    max_retries: int = 2
    """Invalid outputs told back to the model before the run ends with an error."""
    description: str = "Give the final answer of the task. Call this once, when the task is done; its arguments " \
                       "are the answer and must match the schema."

    @classmethod
    def of_type(cls, output_type: Any, *, max_retries: int = 2) -> OutputSpec:
        """From a pydantic-validatable type: a BaseModel, a dataclass, `list[str]`, `int`, ..."""
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = adapter.json_schema()
        except Exception as exc:
            raise ConfigError(f"output_type {output_type!r}: cannot build a JSON schema for it ({exc})") from None

        def check(value: Any) -> Any:
            try:
                return adapter.validate_python(value)
            except ValidationError as exc:
                raise OutputInvalid(_pydantic_errors(exc)) from None

        return cls._build(schema, check, max_retries)

    @classmethod
    def of_schema(cls, schema: Mapping[str, Any], *, max_retries: int = 2, where: str = "output_schema") -> OutputSpec:
        """From a JSON schema (task files' `output_schema:`); the output is the validated JSON value."""
        schema = dict(schema)
        try:
            validator_class = jsonschema.validators.validator_for(schema)
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"{where}: not a valid JSON schema: {exc.message}") from None
        validator = validator_class(schema)

        def check(value: Any) -> Any:
            errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            if errors:
                raise OutputInvalid("; ".join(f"{_where(e.absolute_path)}: {e.message}" for e in errors[:10]))
            return value

        return cls._build(schema, check, max_retries)

    @classmethod
    def _build(cls, schema: dict[str, Any], check: Callable[[Any], Any], max_retries: int) -> OutputSpec:
        if max_retries < 0:
            raise ConfigError(f"output retries must not be negative, got {max_retries}")
        schema = dict(schema)  # the validator keeps the original
        wrapped = schema.get("type") != "object"
        if wrapped:
            defs: dict[str, Any] = {k: schema.pop(k) for k in ("$defs", "definitions") if k in schema}
            schema = {"type": "object", "properties": {_WRAP: schema}, "required": [_WRAP], **defs}
        return cls(schema=schema, wrapped=wrapped, check=check, max_retries=max_retries)

    def openai_tool(self) -> dict[str, Any]:
        return to_openai_function(FINAL_RESULT, self.description, self.schema)

    def from_arguments(self, arguments: str | None) -> Any:
        """The output from a final_result call's arguments (JSON text); OutputInvalid when they don't fit."""
        try:
            value = json.loads(arguments) if arguments else {}
        except ValueError as exc:
            raise OutputInvalid(f"the arguments are not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise OutputInvalid("the arguments must be a JSON object")
        if self.wrapped:
            if _WRAP not in value:
                raise OutputInvalid(f"missing '{_WRAP}'")
            value = value[_WRAP]
        return self.check(value)

    def from_text(self, text: str) -> Any:
        """The output from a plain answer that is JSON (some models answer so instead of calling the tool)."""
        stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
        try:
            value = json.loads(stripped)
        except ValueError:
            raise OutputInvalid(f"give the answer by calling {FINAL_RESULT}, not as text") from None
        if self.wrapped and isinstance(value, dict) and set(value) == {_WRAP}:
            value = value[_WRAP]
        return self.check(value)

    def output_json(self, value: Any) -> Any:
        """The output as JSON-compatible data (for traces and `agent run --json`)."""
        return TypeAdapter(Any).dump_python(value, mode="json")


def _where(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(the answer)"


def _pydantic_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(the answer)'}: {e['msg']}" for e in exc.errors()[:10])
