"""Tool names and schema conversion: OpenAI function names, parameters, and strict-mode normalisation."""

from __future__ import annotations

import copy
import re

from agent.tools.schema import strict_schema, to_openai_function, tool_name, unique_names

VALID_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_tool_name_joins_server_and_tool_with_double_underscore():
    assert tool_name("demo", "echo") == "demo__echo"


def test_tool_name_replaces_invalid_characters():
    assert tool_name("fs", "read.file/v2 (beta)") == "fs__read_file_v2__beta_"


def test_long_tool_name_is_truncated_to_64_with_a_stable_hash():
    name = tool_name("server", "t" * 100)
    assert len(name) == 64 and VALID_NAME.match(name)
    assert name == tool_name("server", "t" * 100)
    assert name != tool_name("server", "t" * 99)


def test_unique_names_keeps_distinct_names_unchanged():
    assert unique_names([("a", "x"), ("a", "y"), ("b", "x")]) == ["a__x", "a__y", "b__x"]


def test_unique_names_adds_a_hash_suffix_when_sanitised_names_clash():
    names = unique_names([("s", "a.b"), ("s", "a/b"), ("s", "a b")])
    assert names[0] == "s__a_b"
    assert len(set(names)) == 3 and all(VALID_NAME.match(n) for n in names)
    assert names[1].startswith("s__a_b_") and names == unique_names(
        [("s", "a.b"), ("s", "a/b"), ("s", "a b")]
    )


def test_unique_names_avoids_reserved_names():
    [name] = unique_names([("claim", "done")], reserved={"claim__done"})
    assert name != "claim__done" and name.startswith("claim__done_")


def test_unique_names_handles_clashes_between_long_names():
    long_tool = "x" * 80
    names = unique_names([("s", long_tool + "a"), ("s", long_tool + "b")])
    assert len(set(names)) == 2 and all(VALID_NAME.match(n) for n in names)


def test_openai_function_has_name_description_and_parameters():
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    assert to_openai_function("demo__echo", "Echo it.", schema) == {
        "type": "function",
        "function": {"name": "demo__echo", "description": "Echo it.", "parameters": schema},
    }


def test_missing_or_empty_schema_becomes_an_empty_object_schema():
    empty = {"type": "object", "properties": {}}
    assert to_openai_function("t", None, None)["function"]["parameters"] == empty
    assert to_openai_function("t", None, {})["function"]["parameters"] == empty


def test_object_schema_without_properties_gets_empty_properties():
    params = to_openai_function("t", "", {"type": "object"})["function"]["parameters"]
    assert params == {"type": "object", "properties": {}}


def test_dollar_schema_is_dropped_and_defs_are_kept():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    params = to_openai_function("t", "", schema)["function"]["parameters"]
    assert "$schema" not in params
    assert params["$defs"] == schema["$defs"] and params["properties"]["item"] == {"$ref": "#/$defs/Item"}
    assert "$schema" in schema  # the tool's own schema is not changed


def test_non_object_root_is_wrapped_in_a_value_property_with_defs_hoisted():
    schema = {
        "anyOf": [{"$ref": "#/definitions/A"}, {"type": "string"}],
        "definitions": {"A": {"type": "integer"}},
    }
    params = to_openai_function("t", "", schema)["function"]["parameters"]
    assert params["type"] == "object" and params["required"] == ["value"]
    assert params["properties"]["value"] == {"anyOf": [{"$ref": "#/definitions/A"}, {"type": "string"}]}
    assert params["definitions"] == {"A": {"type": "integer"}}


def test_long_description_is_capped():
    description = to_openai_function("t", "word " * 1000, None)["function"]["description"]
    assert len(description) <= 1024 and description.endswith("...")


def test_strict_schema_closes_objects_and_requires_every_property():
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "opts": {"type": "object", "properties": {"depth": {"type": "integer"}}, "required": ["depth"]},
        },
        "required": ["path"],
    }
    strict = strict_schema(schema)
    assert strict["additionalProperties"] is False and strict["required"] == ["path", "opts"]
    assert strict["properties"]["opts"]["additionalProperties"] is False
    assert strict["properties"]["opts"]["required"] == ["depth"]


def test_strict_schema_makes_optional_properties_nullable():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": ["integer", "string"]},
            "c": {"$ref": "#/$defs/C"},
            "d": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "e": {"type": "string", "enum": ["x", "y"]},
        },
        "$defs": {"C": {"type": "object", "properties": {}}},
    }
    props = strict_schema(schema)["properties"]
    assert props["a"]["type"] == ["string", "null"]
    assert props["b"]["type"] == ["integer", "string", "null"]
    assert props["c"] == {"anyOf": [{"$ref": "#/$defs/C"}, {"type": "null"}]}
    assert props["d"]["anyOf"][-1] == {"type": "null"}
    assert props["e"]["enum"] == ["x", "y", None]


def test_strict_schema_removes_unsupported_keywords_but_not_properties_named_like_them():
    schema = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a", "format": "uri"},
            "n": {"type": "number", "minimum": 0, "maximum": 9, "multipleOf": 2},
            "xs": {
                "type": "array",
                "items": {"type": "string", "maxLength": 3},
                "minItems": 1,
                "maxItems": 2,
            },
        },
        "patternProperties": {"^x": {"type": "string"}},
        "required": ["pattern", "n", "xs"],
    }
    strict = strict_schema(schema)
    assert strict["properties"]["pattern"] == {"type": "string"}
    assert strict["properties"]["n"] == {"type": "number"}
    assert strict["properties"]["xs"] == {"type": "array", "items": {"type": "string"}}
    assert "patternProperties" not in strict


def test_strict_schema_normalises_nested_defs_and_array_items():
    schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": {"$ref": "#/$defs/Row"}}},
        "required": ["rows"],
        "$defs": {
            "Row": {"type": "object", "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}}
        },
    }
    row = strict_schema(schema)["$defs"]["Row"]
    assert row["additionalProperties"] is False and row["required"] == ["id", "note"]
    assert row["properties"]["note"]["type"] == ["string", "null"]


def test_strict_schema_turns_one_of_into_any_of():
    schema = {"type": "object", "properties": {"v": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}}
    assert strict_schema(schema)["properties"]["v"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]
    }


def test_strict_schema_does_not_change_its_input():
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}
    before = copy.deepcopy(schema)
    strict_schema(schema)
    assert schema == before


def test_strict_schema_of_nothing_is_a_closed_empty_object():
    assert strict_schema(None) == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
