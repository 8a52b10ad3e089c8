"""The vLLM launcher: catalogue, GPU parsing, `vllm serve` command lines per model and node, and the
server lifecycle against a stand-in vLLM process (tests/servers/fake_vllm.py)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from agent.errors import ConfigError
from agent.models.config import parse_model
from agent.runtime.vllm import (
    GPU,
    VLLMServer,
    VLLMStartError,
    build_command,
    detect_gpus,
    gpu_arch,
    main,
    parse_gpu_spec,
    parse_nvidia_smi,
    plan_launch,
    resolve_model,
)
from tests.conftest import SERVERS_DIR, alive, free_port

FAKE_VLLM = SERVERS_DIR / "fake_vllm.py"
ROOT = Path(__file__).resolve().parent.parent

H200_SMI = "NVIDIA H200, 143771\n" * 8
B200 = [GPU("NVIDIA B200", 183359 / 1024)] * 4
H200x8 = parse_nvidia_smi(H200_SMI)
H100x8 = [GPU("NVIDIA H100 80GB HBM3", 81559 / 1024)] * 8

V4_FLAGS = [
    "--trust-remote-code", "--kv-cache-dtype", "fp8", "--block-size", "256", "--tokenizer-mode", "deepseek_v4",
    "--tool-call-parser", "deepseek_v4", "--enable-auto-tool-choice", "--reasoning-parser", "deepseek_v4",
]
V4_DEFAULTS = [
    "--enable-prefix-caching",
    "--default-chat-template-kwargs.thinking=true", "--default-chat-template-kwargs.reasoning_effort=high",
]
HOST_PORT = ["--host", "127.0.0.1", "--port", "8000"]


def fake_command(*fake_args: str, port: int, model: str = "v4-flash", **options) -> list[str]:
    return build_command(model, B200, port=port, vllm_cmd=[sys.executable, str(FAKE_VLLM), *fake_args], **options)


# --- Catalogue -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "repo"), [
    ("v4-flash", "deepseek-ai/DeepSeek-V4-Flash"),
    ("deepseek-ai/DeepSeek-V4-Flash", "deepseek-ai/DeepSeek-V4-Flash"),
    ("DeepSeek-V4-Pro", "deepseek-ai/DeepSeek-V4-Pro"),
    ("v4-flash-0731", "deepseek-ai/DeepSeek-V4-Flash-0731"),
    ("V4-PRO-0813", "deepseek-ai/DeepSeek-V4-Pro-0813"),
    ("v3.2", "deepseek-ai/DeepSeek-V3.2"),
    ("deepseek-ai/deepseek-v3.1", "deepseek-ai/DeepSeek-V3.1"),
])
def test_aliases_and_repo_ids_resolve_to_catalogue_entries(name, repo):
    assert resolve_model(name).repo == repo


def test_an_unknown_model_is_refused_with_the_known_ones_listed():
    with pytest.raises(ConfigError, match=r"'llama-3'.*v4-flash \(deepseek-ai/DeepSeek-V4-Flash\)"):
        resolve_model("llama-3")


def test_newer_checkpoints_need_a_newer_vllm_and_more_memory():
    assert resolve_model("v4-flash").min_vllm_version == "0.20.0"
    assert resolve_model("v4-flash-0731").min_vllm_version == "0.25.0"
    assert resolve_model("v4-flash-0731").vram_minimum_gb == 200
    assert resolve_model("v3.2").min_vllm_version == "0.18.0"
    assert resolve_model("v3.1").chat_template == "examples/tool_chat_template_deepseekv31.jinja"


# --- GPUs ------------------------------------------------------------------------------------------


def test_nvidia_smi_output_gives_names_and_memory_in_gib():
    gpus = parse_nvidia_smi("NVIDIA H200, 143771\n\nNVIDIA H200, 143771\n")
    assert [g.name for g in gpus] == ["NVIDIA H200", "NVIDIA H200"]
    assert round(gpus[0].memory_gb) == 140
    assert gpus[0].arch == "sm_90"


def test_unreadable_nvidia_smi_output_is_a_config_error():
    with pytest.raises(ConfigError, match="NAME, MEMORY_MIB"):
        parse_nvidia_smi("NVIDIA H200, [N/A]\n")


@pytest.mark.parametrize(("name", "arch"), [
    ("NVIDIA B200", "sm_100"), ("NVIDIA GB300", "sm_100"), ("NVIDIA H100 80GB HBM3", "sm_90"),
    ("NVIDIA H20", "sm_90"), ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "sm_120"),
    ("NVIDIA A100-SXM4-80GB", "sm_80"), ("Tesla T4", None),
])
def test_the_architecture_follows_from_the_gpu_name(name, arch):
    assert gpu_arch(name) == arch


def test_detect_gpus_runs_nvidia_smi_and_honours_cuda_visible_devices(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf 'NVIDIA B200, 183359\\nNVIDIA H200, 143771\\n'\n")
    smi.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [g.name for g in detect_gpus(str(smi))] == ["NVIDIA B200", "NVIDIA H200"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [g.name for g in detect_gpus(str(smi))] == ["NVIDIA H200"]


def test_no_nvidia_smi_means_no_gpus():
    assert detect_gpus("/nonexistent/nvidia-smi") == []


def test_a_failing_nvidia_smi_is_reported(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\n"
                   "exit 9\n")
    smi.chmod(0o755)
    with pytest.raises(ConfigError, match="code 9: NVIDIA-SMI has failed"):
        detect_gpus(str(smi))


@pytest.mark.parametrize(("spec", "expected"), [
    ("H200:141,H200:141", [GPU("H200", 141)] * 2),
    ("4xB200", [GPU("B200", 180)] * 4),
    ("8xH100:80", [GPU("H100", 80)] * 8),
    ("8:96", [GPU("GPU", 96)] * 8),
])
def test_gpu_overrides_are_parsed(spec, expected):
    assert parse_gpu_spec(spec) == expected


def test_a_count_alone_takes_the_memory_option():
    assert parse_gpu_spec("2", memory_gb=80) == [GPU("GPU", 80)] * 2


def test_an_unknown_gpu_without_memory_is_refused():
    with pytest.raises(ConfigError, match="NAME:GB"):
        parse_gpu_spec("2xMI300X")


# --- Command lines ---------------------------------------------------------------------------------


def test_v4_flash_on_4x_b200_uses_dp_ep_and_the_blackwell_flags():
    assert build_command("v4-flash", B200) == [
        "vllm", "serve", "deepseek-ai/DeepSeek-V4-Flash", *HOST_PORT,
        "--data-parallel-size", "4", "--enable-expert-parallel", *V4_FLAGS,
        "--compilation-config", '{"cudagraph_mode":"FULL_AND_PIECEWISE", "custom_ops":["all"]}',
        "--attention_config.use_fp4_indexer_cache=True", *V4_DEFAULTS,
    ]


def test_v4_flash_on_one_h200_is_refused_for_lack_of_memory():
    with pytest.raises(ConfigError) as caught:
        build_command("v4-flash", H200x8[:1])
    message = str(caught.value)
    assert "at least 170 GB" in message and "1x NVIDIA H200 (140 GB)" in message


def test_v4_pro_on_8x_h200_gets_the_recipes_h200_override():
    assert build_command("v4-pro", H200x8) == [
        "vllm", "serve", "deepseek-ai/DeepSeek-V4-Pro", *HOST_PORT,
        "--data-parallel-size", "8", "--enable-expert-parallel", *V4_FLAGS,
        "--gpu-memory-utilization", "0.95", "--max-num-seqs", "16", "--no-enable-flashinfer-autotune",
        "--compilation-config", '{"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY"}',
        "--max-model-len", "200000", *V4_DEFAULTS,
    ]


def test_v4_pro_on_8x_b200_runs_dp8_at_full_context():
    command = build_command("v4-pro", [GPU("NVIDIA B200", 179)] * 8)
    assert command[7:10] == ["--data-parallel-size", "8", "--enable-expert-parallel"]
    assert "--max-model-len" not in command and "--max-num-seqs" not in command


def test_v3_2_on_8x_h100_is_refused_with_requirement_and_findings():
    with pytest.raises(ConfigError, match=r"DeepSeek-V3.2 needs at least 805 GB.*8x NVIDIA H100 80GB HBM3 "
                                          r"\(80 GB\) = 637 GB"):
        build_command("v3.2", H100x8)


def test_v3_2_on_8x_h200_prefers_dp_ep_over_tp():
    assert build_command("v3.2", H200x8) == [
        "vllm", "serve", "deepseek-ai/DeepSeek-V3.2", *HOST_PORT,
        "--data-parallel-size", "8", "--enable-expert-parallel",
        "--tokenizer-mode", "deepseek_v32", "--tool-call-parser", "deepseek_v32", "--enable-auto-tool-choice",
        "--reasoning-parser", "deepseek_v3", "--enable-prefix-caching",
    ]


def test_v3_1_uses_tp_ep_and_its_chat_template():
    assert build_command("v3.1", H200x8) == [
        "vllm", "serve", "deepseek-ai/DeepSeek-V3.1", *HOST_PORT,
        "--tensor-parallel-size", "8", "--enable-expert-parallel",
        "--tool-call-parser", "deepseek_v31", "--enable-auto-tool-choice", "--reasoning-parser", "deepseek_v3",
        "--chat-template", "examples/tool_chat_template_deepseekv31.jinja", "--enable-prefix-caching",
    ]


def test_tensor_parallelism_needs_a_power_of_two_gpu_count():
    with pytest.raises(ConfigError, match="power-of-two GPU count; found 6"):
        build_command("v3.1", [GPU("NVIDIA H200", 140)] * 6)


def test_a_single_large_gpu_runs_v4_flash_without_parallelism():
    command = build_command("v4-flash", [GPU("NVIDIA GB300", 279)])
    assert command[7:11] == ["--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.92"]
    assert "--data-parallel-size" not in command


def test_a_tight_fit_caps_the_default_context():
    plan = plan_launch("v4-flash", [GPU("NVIDIA B200", 179)])
    assert plan.command[plan.command.index("--max-model-len") + 1] == "200000"
    assert "tight fit" in plan.notes[0]


def test_rtx_pro_6000_turns_the_fp4_indexer_cache_off():
    command = build_command("v4-flash", [GPU("NVIDIA RTX PRO 6000 Blackwell Server Edition", 95)] * 8)
    assert "--attention_config.use_fp4_indexer_cache=False" in command
    assert "--compilation-config" not in command


def test_think_max_on_a_roomy_node_keeps_the_full_context():
    command = build_command("v4-flash", B200, think_max=True)
    assert "--max-model-len" not in command  # vLLM then uses the model's 1M


def test_think_max_refuses_a_context_below_393216():
    with pytest.raises(ConfigError, match="--think-max needs --max-model-len >= 393216.*got 131072"):
        build_command("v4-flash", B200, think_max=True, max_model_len=131072)


def test_think_max_refuses_the_h200_cap_for_v4_pro_unless_the_length_is_given():
    with pytest.raises(ConfigError, match="393216.*capped at 200000.*pass --max-model-len 393216"):
        build_command("v4-pro", H200x8, think_max=True)
    command = build_command("v4-pro", H200x8, think_max=True, max_model_len=393216)
    assert command[command.index("--max-model-len") + 1] == "393216"
    assert "--max-num-seqs" in command  # the rest of the H200 override stays


def test_think_max_is_a_v4_mode():
    with pytest.raises(ConfigError, match="DeepSeek-V4 mode"):
        build_command("v3.2", H200x8, think_max=True)


def test_a_context_beyond_the_models_is_refused():
    with pytest.raises(ConfigError, match="supports 1..163840"):
        build_command("v3.2", H200x8, max_model_len=200_000)


@pytest.mark.parametrize(("gpus", "tokens"), [(H200x8, 1), (B200, 2), ([GPU("NVIDIA GB300", 279)], 3)])
def test_mtp_drafts_fewer_tokens_on_hopper(gpus, tokens):
    command = build_command("v4-flash", gpus, speculative="mtp")
    assert command[-2:] == ["--speculative-config", f'{{"method":"mtp","num_speculative_tokens":{tokens}}}']


def test_0731_has_no_mtp_head_but_offers_dspark():
    with pytest.raises(ConfigError, match="offers dspark"):
        build_command("v4-flash-0731", B200, speculative="mtp")
    command = build_command("v4-flash-0731", B200, speculative="dspark")
    assert json.loads(command[-1]) == {"method": "dspark", "num_speculative_tokens": 7,
                                       "draft_sample_method": "probabilistic"}


def test_extra_args_come_last_and_a_served_name_changes_the_model_string():
    plan = plan_launch("v4-flash", B200, extra_args=["--served-model-name", "flash"], port=9001)
    assert plan.command[-2:] == ("--served-model-name", "flash")
    assert plan.model_string == "vllm:http://127.0.0.1:9001/v1#flash"


def test_no_gpus_asks_for_an_override():
    with pytest.raises(ConfigError, match="no NVIDIA GPUs found.*--gpus"):
        build_command("v4-flash", [])


# --- `agent vllm serve --dry-run` ------------------------------------------------------------------


def test_dry_run_prints_the_quoted_command_and_the_model_string(capsys):
    assert main(["serve", "v4-flash", "--gpus", "4xB200", "--dry-run", "--", "--max-num-seqs", "64"]) == 0
    command_line, model_line = capsys.readouterr().out.splitlines()
    command = shlex.split(command_line)
    assert command[:3] == ["vllm", "serve", "deepseek-ai/DeepSeek-V4-Flash"]
    assert command[-2:] == ["--max-num-seqs", "64"]
    assert "'{\"cudagraph_mode\":\"FULL_AND_PIECEWISE\", \"custom_ops\":[\"all\"]}'" in command_line
    assert model_line == "use --model vllm:http://127.0.0.1:8000/v1#deepseek-ai/DeepSeek-V4-Flash"
    assert parse_model(model_line.removeprefix("use --model ")).base_url == "http://127.0.0.1:8000/v1"


def test_dry_run_takes_argv_without_the_serve_word_and_prints_notes(capsys):
    assert main(["v4-pro", "--gpus", "8xH200", "--port", "8100", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "--max-model-len 200000" in out
    assert "vllm:http://127.0.0.1:8100/v1#deepseek-ai/DeepSeek-V4-Pro" in out
    assert "note: the recipe's H200 override" in err


def test_dry_run_of_an_impossible_launch_exits_2_with_the_reason(capsys):
    assert main(["serve", "v4-flash", "--gpus", "H200:141", "--dry-run"]) == 2
    assert "needs at least 170 GB" in capsys.readouterr().err


def test_starting_without_vllm_installed_is_a_config_error(capsys):
    assert main(["serve", "v4-flash", "--gpus", "4xB200", "--vllm-cmd", "/nonexistent/vllm"]) == 2
    assert "'/nonexistent/vllm' is not installed" in capsys.readouterr().err


# --- The server process ----------------------------------------------------------------------------


async def test_the_server_becomes_ready_and_names_its_model(tmp_path):
    port = free_port()
    argv_file, log_file = tmp_path / "argv.json", tmp_path / "vllm.log"
    lines: list[str] = []
    command = fake_command("--argv-file", str(argv_file), port=port)
    async with VLLMServer(command, poll_interval_s=0.05, on_log=lines.append, log_file=log_file) as server:
        assert server.model_string == f"vllm:http://127.0.0.1:{port}/v1#deepseek-ai/DeepSeek-V4-Flash"
        assert server.returncode is None
    assert "--block-size" in json.loads(argv_file.read_text())
    assert any("Starting vLLM API server" in line for line in lines)
    assert "Starting vLLM API server" in log_file.read_text()


async def test_an_early_exit_is_reported_with_its_log():
    command = fake_command("--exit-early", port=free_port())
    with pytest.raises(VLLMStartError, match=r"exited with code 1 before it was ready(.|\n)*KV cache is needed"):
        async with VLLMServer(command, poll_interval_s=0.05):
            pass


async def test_a_server_that_never_becomes_healthy_times_out(tmp_path):
    pids = tmp_path / "pids.json"
    command = fake_command("--never-healthy", "--pid-file", str(pids), port=free_port())
    # 4 s so that a loaded machine still gets the fake server listening; a poll that times out at the
    # deadline keeps the last real answer in the message
    with pytest.raises(VLLMStartError, match=r"not ready within 4 s .*HTTP 503.*--startup-timeout"):
        async with VLLMServer(command, startup_timeout_s=4, poll_interval_s=0.05):
            pass
    assert not alive(json.loads(pids.read_text())["server"])


async def test_leaving_the_block_stops_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids.json"
    command = fake_command("--spawn-worker", "--pid-file", str(pids), port=free_port())
    async with VLLMServer(command, poll_interval_s=0.05):
        started = json.loads(pids.read_text())
        assert alive(started["server"]) and alive(started["worker"])
    assert not alive(started["server"]) and not alive(started["worker"])


async def test_cancellation_during_startup_stops_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids.json"
    command = fake_command("--never-healthy", "--spawn-worker", "--pid-file", str(pids), port=free_port())
    with anyio.move_on_after(1.0) as scope:
        async with VLLMServer(command, poll_interval_s=0.05):
            pytest.fail("the server never becomes healthy")
    assert scope.cancelled_caught
    started = json.loads(pids.read_text())
    assert not alive(started["server"]) and not alive(started["worker"])


async def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    pids = tmp_path / "pids.json"
    command = fake_command("--ignore-sigterm", "--spawn-worker", "--pid-file", str(pids), port=free_port())
    async with VLLMServer(command, poll_interval_s=0.05, stop_grace_s=0.5) as server:
        pass
    assert server.returncode == -signal.SIGKILL
    assert not alive(json.loads(pids.read_text())["worker"])


async def test_a_busy_port_is_refused_before_starting():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        with pytest.raises(ConfigError, match=f"cannot serve on 127.0.0.1:{port}"):
            async with VLLMServer(fake_command(port=port)):
                pass


async def test_a_missing_chat_template_is_refused_before_starting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = build_command("v3.1", H200x8, port=free_port(), vllm_cmd=[sys.executable, str(FAKE_VLLM)])
    with pytest.raises(ConfigError, match="tool_chat_template_deepseekv31.jinja: no such file"):
        async with VLLMServer(command):
            pass


def test_main_prints_the_model_string_when_ready_and_fails_when_vllm_exits(capsys):
    port = free_port()
    vllm_cmd = shlex.join([sys.executable, str(FAKE_VLLM), "--exit-after-models"])
    assert main(["serve", "v4-flash", "--gpus", "4xB200", "--port", str(port), "--vllm-cmd", vllm_cmd]) == 1
    out, err = capsys.readouterr()
    assert out == f"ready: use --model vllm:http://127.0.0.1:{port}/v1#deepseek-ai/DeepSeek-V4-Flash\n", err
    assert "vLLM exited with code 0" in err and "Shutting down" in err


def test_ctrl_c_stops_vllm_and_its_workers(tmp_path):
    port, pids = free_port(), tmp_path / "pids.json"
    vllm_cmd = shlex.join([sys.executable, str(FAKE_VLLM), "--spawn-worker", "--pid-file", str(pids)])
    launcher = subprocess.Popen(
        [sys.executable, "-m", "agent.runtime.vllm", "serve", "v4-flash", "--gpus", "4xB200", "--port", str(port),
         "--vllm-cmd", vllm_cmd],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert launcher.stdout is not None
        assert launcher.stdout.readline().startswith("ready: use --model vllm:")
        started = json.loads(pids.read_text())
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=20) == 130
    finally:
        launcher.kill()
        launcher.wait()
    assert not alive(started["server"]) and not alive(started["worker"])
