"""Model strings, profiles and request bodies: what goes on the wire for each provider."""

from __future__ import annotations

import json

import pytest

from agent.errors import ConfigError
from agent.models import ChatModel, ModelConfig, Price, parse_model
from agent.models.profiles import DEEPSEEK, VLLM, deepseek_peak
from agent.think import ThinkMode
from agent.usage import Usage


def test_model_string_with_profile_and_name():
    config = parse_model("deepseek:deepseek-v4-pro")
    assert (config.profile, config.model, config.base_url) == ("deepseek", "deepseek-v4-pro", None)
    assert config.resolved_base_url() == "https://api.deepseek.com"


def test_model_string_with_base_url_and_model_after_hash():
    config = parse_model("vllm:http://gpu-box:8000/v1#deepseek-ai/DeepSeek-V4-Flash")
    assert config.profile == "vllm"
    assert config.base_url == "http://gpu-box:8000/v1"
    assert config.model == "deepseek-ai/DeepSeek-V4-Flash"


def test_vllm_model_string_may_leave_the_model_to_the_server():
    assert parse_model("vllm:http://127.0.0.1:8000/v1").model == ""


@pytest.mark.parametrize("bad", ["deepseek-v4-pro", "gpt:foo", "deepseek:", "openai-compatible:http://#x", ""])
def test_unknown_model_syntax_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="model"):
        parse_model(bad)


def test_model_mapping_with_unknown_field_names_it():
    with pytest.raises(ConfigError, match="temprature"):
        parse_model({"profile": "deepseek", "model": "deepseek-flash", "temprature": 1})


@pytest.mark.parametrize("value", [None, ""])
def test_official_deepseek_without_key_names_the_variable(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    else:
        monkeypatch.setenv("DEEPSEEK_API_KEY", value)
    with pytest.raises(ConfigError, match="DEEPSEEK_API_KEY is not set"):
        ChatModel(parse_model("deepseek:deepseek-flash"))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (ThinkMode.none, {"thinking": {"type": "disabled"}}),
        (ThinkMode.high, {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        (ThinkMode.max, {"thinking": {"type": "enabled"}, "reasoning_effort": "max"}),
    ],
)
def test_deepseek_think_modes_use_thinking_and_reasoning_effort(mode, expected):
    assert DEEPSEEK.think_params(mode) == expected


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (ThinkMode.none, {"chat_template_kwargs": {"thinking": False}}),
        (ThinkMode.high, {"chat_template_kwargs": {"thinking": True, "reasoning_effort": "high"}}),
        (ThinkMode.max, {"chat_template_kwargs": {"thinking": True, "reasoning_effort": "max"}}),
    ],
)
def test_vllm_think_modes_use_chat_template_kwargs(mode, expected):
    assert VLLM.think_params(mode) == expected


def _model(text: str, **update) -> ChatModel:
    config = parse_model(text).model_copy(update=update)
    return ChatModel(config)


ASSISTANT = {"role": "assistant", "content": None, "reasoning": "",
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a__b", "arguments": "{}"}}]}


def test_deepseek_echoes_empty_reasoning_as_reasoning_content_when_tools_are_present():
    model = _model("deepseek:http://127.0.0.1:1/v1#deepseek-flash")
    wire = json.loads(model.render(ASSISTANT, with_tools=True))
    assert wire["reasoning_content"] == ""
    assert "reasoning" not in wire


def test_vllm_echoes_reasoning_under_the_reasoning_key():
    model = _model("vllm:http://127.0.0.1:1/v1#m")
    wire = json.loads(model.render({**ASSISTANT, "reasoning": "because"}, with_tools=True))
    assert wire["reasoning"] == "because" and "reasoning_content" not in wire


def test_reasoning_is_decided_by_profile_not_by_model_name():
    # A gateway name without "deepseek" in it still gets the DeepSeek echo on the deepseek profile.
    model = _model("deepseek:http://127.0.0.1:1/v1#my-gateway-alias")
    assert "reasoning_content" in json.loads(model.render(ASSISTANT, with_tools=True))
    generic = _model("openai-compatible:http://127.0.0.1:1/v1#deepseek-v4-pro")
    assert "reasoning_content" not in json.loads(generic.render(ASSISTANT, with_tools=True))


def test_reasoning_is_not_sent_without_tools():
    model = _model("deepseek:http://127.0.0.1:1/v1#deepseek-flash")
    assert "reasoning_content" not in json.loads(model.render(ASSISTANT, with_tools=False))


def test_request_body_is_valid_json_with_think_fields_and_prerendered_messages():
    model = _model("deepseek:http://127.0.0.1:1/v1#deepseek-flash", temperature=0.5)
    messages = [model.render({"role": "user", "content": "hé"}, with_tools=True)]
    body = json.loads(model.request_body(messages, tools_json=b'[{"type":"function"}]', mode=ThinkMode.max))
    assert body["reasoning_effort"] == "max" and body["thinking"] == {"type": "enabled"}
    assert body["messages"] == [{"role": "user", "content": "hé"}]
    assert body["tools"] == [{"type": "function"}]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.5


def test_forced_tool_choice_in_thinking_mode_is_refused_before_any_request():
    model = _model("deepseek:http://127.0.0.1:1/v1#deepseek-flash")
    with pytest.raises(ConfigError, match="tool_choice.*auto, none.*think high"):
        model.request_body([], tools_json=b"[]", mode=ThinkMode.high, tool_choice="required")
    body = json.loads(model.request_body([], tools_json=b"[]", mode=ThinkMode.none, tool_choice="required"))
    assert body["tool_choice"] == "required"


def test_think_fields_can_be_overridden_for_generic_endpoints():
    model = _model("openai-compatible:http://127.0.0.1:1/v1#qwen",
                   think_params={"high": {"reasoning": {"effort": "high"}}})
    assert json.loads(model.request_body([], tools_json=None, mode=ThinkMode.high))["reasoning"] == {"effort": "high"}
    assert "reasoning" not in json.loads(model.request_body([], tools_json=None, mode=ThinkMode.none))


def test_usage_reads_deepseek_cache_fields():
    usage = DEEPSEEK.usage({"prompt_tokens": 100, "completion_tokens": 20, "prompt_cache_hit_tokens": 64,
                            "prompt_cache_miss_tokens": 36, "completion_tokens_details": {"reasoning_tokens": 7}})
    assert (usage.cache_hit_tokens, usage.cache_miss_tokens, usage.reasoning_tokens) == (64, 36, 7)


def test_usage_reads_vllm_cached_tokens_and_derives_misses():
    usage = VLLM.usage({"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 80}})
    assert (usage.cache_hit_tokens, usage.cache_miss_tokens) == (80, 20)


def test_cost_uses_the_price_table_and_user_override():
    usage = Usage(prompt_tokens=2_000_000, completion_tokens=1_000_000, cache_hit_tokens=1_000_000,
                  cache_miss_tokens=1_000_000)
    model = _model("deepseek:http://127.0.0.1:1/v1#deepseek-v4-pro")
    import datetime as dt
    off_peak = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)  # a Saturday
    assert model.cost(usage, off_peak) == pytest.approx(0.022 + 0.66 + 1.98)
    custom = _model("deepseek:http://127.0.0.1:1/v1#deepseek-v4-pro", prices=Price(cache_hit=1, cache_miss=2, output=3))
    assert custom.cost(usage, off_peak) == pytest.approx(6.0)


def test_deepseek_peak_hours_are_weekday_mornings_utc():
    import datetime as dt
    assert deepseek_peak(dt.datetime(2026, 11, 30, 2, tzinfo=dt.UTC))  # Monday 02:00
    assert not deepseek_peak(dt.datetime(2026, 11, 30, 5, tzinfo=dt.UTC))
    assert not deepseek_peak(dt.datetime(2026, 11, 29, 2, tzinfo=dt.UTC))  # Sunday


def test_model_config_label_round_trips():
    text = "vllm:http://127.0.0.1:8000/v1#deepseek-ai/DeepSeek-V4-Flash"
    assert parse_model(parse_model(text).label()) == parse_model(text)
    assert isinstance(parse_model(text), ModelConfig)
