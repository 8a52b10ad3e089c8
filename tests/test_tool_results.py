"""Converting MCP `CallToolResult`s into `ToolOutcome`s: text, images, resources, structured content."""

from __future__ import annotations

import base64

import mcp.types as types

from agent.tools.results import outcome_from_result


def text(value: str) -> types.TextContent:
    return types.TextContent(type="text", text=value)


def b64(n_bytes: int) -> str:
    return base64.b64encode(b"\x00" * n_bytes).decode()


def test_text_blocks_are_joined_with_newlines():
    outcome = outcome_from_result(types.CallToolResult(content=[text("one"), text("two")]))
    assert (outcome.text, outcome.is_error, outcome.images) == ("one\ntwo", False, [])


def test_is_error_is_copied():
    outcome = outcome_from_result(types.CallToolResult(content=[text("bad")], is_error=True))
    assert outcome.is_error and outcome.text == "bad"


def test_structured_content_without_text_is_included_as_compact_json():
    result = types.CallToolResult(content=[], structured_content={"city": "Oslo", "temps": [1, 2]})
    outcome = outcome_from_result(result)
    assert outcome.text == '{"city":"Oslo","temps":[1,2]}'
    assert outcome.structured == {"city": "Oslo", "temps": [1, 2]}


def test_structured_content_already_in_a_json_text_block_is_not_repeated():
    result = types.CallToolResult(
        content=[text('{\n  "city": "Oslo",\n  "celsius": 4.5\n}')],
        structured_content={"city": "Oslo", "celsius": 4.5},
    )
    assert outcome_from_result(result).text == '{\n  "city": "Oslo",\n  "celsius": 4.5\n}'


def test_wrapped_scalar_result_is_not_repeated():
    assert (
        outcome_from_result(types.CallToolResult(content=[text("5")], structured_content={"result": 5})).text
        == "5"
    )
    result = types.CallToolResult(content=[text("007")], structured_content={"result": "007"})
    assert outcome_from_result(result).text == "007"


def test_wrapped_list_result_sent_as_one_block_per_item_is_not_repeated():
    result = types.CallToolResult(content=[text("a"), text("b")], structured_content={"result": ["a", "b"]})
    assert outcome_from_result(result).text == "a\nb"


def test_structured_content_that_differs_from_the_text_is_appended():
    result = types.CallToolResult(content=[text("Found 2 rows")], structured_content={"rows": [1, 2]})
    assert outcome_from_result(result).text == 'Found 2 rows\n{"rows":[1,2]}'


def test_image_is_kept_and_described_with_type_and_size():
    data = b64(12_595)
    outcome = outcome_from_result(
        types.CallToolResult(
            content=[text("chart:"), types.ImageContent(type="image", data=data, mime_type="image/png")]
        )
    )
    assert outcome.images == [("image/png", data)]
    assert outcome.text == "chart:\n[image: image/png, 12.3 KB]"


def test_audio_is_described():
    block = types.AudioContent(type="audio", data=b64(100), mime_type="audio/wav")
    assert outcome_from_result(types.CallToolResult(content=[block])).text == "[audio: audio/wav, 100 B]"


def test_resource_link_is_described_with_uri_type_and_size():
    link = types.ResourceLink(
        type="resource_link",
        name="report",
        uri="file:///tmp/report.pdf",
        mime_type="application/pdf",
        size=2048,
    )
    outcome = outcome_from_result(types.CallToolResult(content=[link]))
    assert outcome.text == "[resource link: report <file:///tmp/report.pdf> (application/pdf, 2.0 KB)]"


def test_embedded_text_resource_is_included_under_its_uri():
    resource = types.TextResourceContents(uri="file:///a.txt", mime_type="text/plain", text="hello")
    outcome = outcome_from_result(
        types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=resource)])
    )
    assert outcome.text == "[resource: file:///a.txt (text/plain)]\nhello"


def test_embedded_blob_resource_is_described_with_its_size():
    resource = types.BlobResourceContents(
        uri="file:///a.bin", mime_type="application/octet-stream", blob=b64(3000)
    )
    outcome = outcome_from_result(
        types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=resource)])
    )
    assert outcome.text == "[binary resource: file:///a.bin (application/octet-stream, 2.9 KB)]"


def test_empty_result_says_there_was_no_output():
    assert outcome_from_result(types.CallToolResult(content=[])).text == "(no output)"
    assert "without a message" in outcome_from_result(types.CallToolResult(content=[], is_error=True)).text


def test_a_single_field_echo_of_the_text_is_not_repeated():
    # The reference TypeScript servers send {"content": text} beside the same text.
    result = types.CallToolResult(content=[types.TextContent(type="text", text="Allowed directories:\n/tmp")],
                                  structured_content={"content": "Allowed directories:\n/tmp"})
    assert outcome_from_result(result).text == "Allowed directories:\n/tmp"
