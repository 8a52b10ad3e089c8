"""MCP tool names and input schemas -> OpenAI function names and schemas (with a strict-mode normaliser)."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Collection
from typing import Any

MAX_NAME_LEN = 64
MAX_DESCRIPTION_LEN = 1024
SEPARATOR = "__"

_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LEN = 8

# OpenAI strict mode rejects these; the server still validates them, so dropping them loses no safety.
STRICT_UNSUPPORTED = frozenset(
    {
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "patternProperties",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
    }
)


_SUBSCHEMA_KEYS = frozenset({"items", "prefixItems", "allOf", "not", "additionalProperties"})


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def _with_suffix(name: str, suffix: str) -> str:
    return f"{name[: MAX_NAME_LEN - len(suffix) - 1]}_{suffix}"


def tool_name(server: str, tool: str) -> str:
    """`<server>__<tool>` made a valid OpenAI function name (`^[a-zA-Z0-9_-]{1,64}$`)."""
    original = f"{server}{SEPARATOR}{tool}"
    name = _INVALID_NAME_CHARS.sub("_", original)
    if len(name) > MAX_NAME_LEN:
        # The hash of the unsanitised name keeps two long names with a common prefix apart.
        name = _with_suffix(name, _short_hash(original))
    return name


def unique_names(pairs: list[tuple[str, str]], *, reserved: Collection[str] = ()) -> list[str]:
    """`tool_name` for each (server, tool), with a stable hash suffix on the later of any clashing names.

    Names in `reserved` (e.g. local tools) are never produced.
    """
    names = [tool_name(server, tool) for server, tool in pairs]
    taken: set[str] = set(reserved)
    out: list[str] = []
    for (server, tool), name in zip(pairs, names, strict=True):
        if name in taken:
            candidate = _with_suffix(name, _short_hash(f"{server}\x00{tool}"))
            n = 2
            while candidate in taken or candidate in names:
                candidate = _with_suffix(name, _short_hash(f"{server}\x00{tool}\x00{n}"))
                n += 1
            name = candidate
        taken.add(name)
        out.append(name)
    return out


def _cap_description(description: str | None) -> str:
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION_LEN:
        text = text[: MAX_DESCRIPTION_LEN - 3].rstrip() + "..."
    return text


def _is_object_root(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "object":
        return True
    if isinstance(kind, list):
        return "object" in kind
    # No type: an object only if nothing says otherwise (composition or other-type keywords).
    return kind is None and not any(
        k in schema for k in ("anyOf", "oneOf", "allOf", "enum", "const", "items", "$ref")
    )


def object_root(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of `schema` whose root is an object schema, as function calling requires.

    A non-object root becomes the single required property `value`; its `$defs`/`definitions`
    move to the new root so `#/$defs/...` references still resolve.
    """
    if not schema:
        return {"type": "object", "properties": {}}
    root = {k: v for k, v in schema.items() if k != "$schema"}
    if _is_object_root(root):
        root["type"] = "object"
        root.setdefault("properties", {})
        return root
    defs: dict[str, Any] = {k: root.pop(k) for k in ("$defs", "definitions") if k in root}
    return {"type": "object", "properties": {"value": root}, "required": ["value"], **defs}


def to_openai_function(
    name: str, description: str | None, input_schema: dict[str, Any] | None
) -> dict[str, Any]:
    """An OpenAI `tools` entry: `{"type": "function", "function": {name, description, parameters}}`."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": _cap_description(description),
            "parameters": object_root(input_schema),
        },
    }


def _nullable(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        if kind != "null":
            out["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            out["type"] = [*kind, "null"]
    elif "anyOf" in out:
        if not any(isinstance(s, dict) and s.get("type") == "null" for s in out["anyOf"]):
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        return out
    else:
        # $ref, const or a bare schema: strict mode allows siblings of $ref only as description.
        return {"anyOf": [out, {"type": "null"}]}
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _strict_node(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict_node(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in STRICT_UNSUPPORTED or key == "$schema":
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: _strict_node(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            # Strict mode knows only anyOf; for tool arguments the two mean the same in practice.
            out["anyOf"] = [*out.get("anyOf", []), *_strict_node(value)]
        elif key in _SUBSCHEMA_KEYS:
            out[key] = _strict_node(value)
        else:
            out[key] = value
    kind = out.get("type")
    if (
        kind == "object"
        or (isinstance(kind, list) and "object" in kind)
        or (kind is None and "properties" in out)
    ):
        props: dict[str, Any] = out.get("properties", {})
        required = set(out.get("required", []))
        out["properties"] = {name: sub if name in required else _nullable(sub) for name, sub in props.items()}
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


def strict_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """Normalise an input schema for OpenAI strict mode (a new dict; the input is not changed).

    Every object gets `additionalProperties: false` and lists all properties as required, optional
    ones made nullable; keywords strict mode rejects are removed; the root is an object.
    """
    return _strict_node(object_root(copy.deepcopy(schema) if schema else None))
