"""The vLLM launcher behind `agent vllm serve`: a catalogue of DeepSeek checkpoints, GPU detection, the
`vllm serve` command line for a model on the GPUs at hand, and `VLLMServer`, which owns the server
process (and its whole process group) until its `async with` block ends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
from anyio.abc import Process, TaskGroup
from anyio.streams.text import TextReceiveStream

from agent.errors import AgentError, ConfigError

THINK_MAX_MIN_LEN = 393_216
"""Think Max "requires --max-model-len >= 393216 (384K tokens) to avoid truncation" (model card, recipe)."""

TIGHT_FIT_RATIO = 1.25
TIGHT_FIT_MAX_MODEL_LEN = 200_000
"""When the GPUs hold less than 1.25x a model's `vram_minimum_gb`, the default context is capped at 200000,
the value the V4-Pro recipe uses on 8x H200 (our generalisation of that one data point)."""

V4_COMPILATION_CONFIG = '{"cudagraph_mode":"FULL_AND_PIECEWISE", "custom_ops":["all"]}'
V4_PRO_H200_FLAGS = (
    "--gpu-memory-utilization", "0.95", "--max-num-seqs", "16", "--no-enable-flashinfer-autotune",
    "--compilation-config", '{"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY"}',
)


class VLLMStartError(AgentError):
    """The vLLM server exited, or never became ready, before it could serve a request."""


# --- The catalogue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One servable checkpoint and what `vllm serve` needs for it (vllm-project/recipes, vLLM blog)."""

    name: str
    repo: str
    """Hugging Face repo id; also the served model id unless `--served-model-name` says otherwise."""
    aliases: tuple[str, ...]
    family: Literal["v4", "v3.2", "v3.1"]
    min_vllm_version: str
    vram_minimum_gb: int
    """Total GPU memory the recipe asks for (weights plus room for the KV cache)."""
    context_length: int
    """The model's own maximum context; vLLM uses it when `--max-model-len` is absent."""
    parallelism: Literal["dp-ep", "tp-ep"]
    tool_call_parser: str
    reasoning_parser: str
    tokenizer_mode: str | None = None
    chat_template: str | None = None
    trust_remote_code: bool = False
    kv_cache_dtype: str | None = None
    block_size: int | None = None
    chat_template_kwargs: tuple[tuple[str, str], ...] = ()
    """Server-side defaults (`--default-chat-template-kwargs.K=V`); clients still set `thinking` per request."""
    speculative_methods: tuple[str, ...] = ()
    tested_on: str = ""

    @property
    def required_flags(self) -> list[str]:
        flags: list[str] = []
        if self.trust_remote_code:
            flags.append("--trust-remote-code")
        if self.kv_cache_dtype:
            flags += ["--kv-cache-dtype", self.kv_cache_dtype]
        if self.block_size:
            flags += ["--block-size", str(self.block_size)]
        if self.tokenizer_mode:
            flags += ["--tokenizer-mode", self.tokenizer_mode]
        flags += ["--tool-call-parser", self.tool_call_parser, "--enable-auto-tool-choice"]
        flags += ["--reasoning-parser", self.reasoning_parser]
        if self.chat_template:
            flags += ["--chat-template", self.chat_template]
        return flags


_V4: dict[str, Any] = dict(
    family="v4", context_length=1_048_576, parallelism="dp-ep", tokenizer_mode="deepseek_v4",
    tool_call_parser="deepseek_v4", reasoning_parser="deepseek_v4", trust_remote_code=True,
    kv_cache_dtype="fp8", block_size=256,
    chat_template_kwargs=(("thinking", "true"), ("reasoning_effort", "high")),
)
_V3: dict[str, Any] = dict(context_length=163_840, vram_minimum_gb=805, reasoning_parser="deepseek_v3",
                           tested_on="8x H200 or 8x B200")

CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec("DeepSeek-V4-Flash", "deepseek-ai/DeepSeek-V4-Flash", ("v4-flash",), min_vllm_version="0.20.0",
              vram_minimum_gb=170, speculative_methods=("mtp",), tested_on="4x B200/B300/H200", **_V4),
    # 0731 has no MTP head; DSpark drafting instead.
    ModelSpec("DeepSeek-V4-Flash-0731", "deepseek-ai/DeepSeek-V4-Flash-0731", ("v4-flash-0731",),
              min_vllm_version="0.25.0", vram_minimum_gb=200, speculative_methods=("dspark",),
              tested_on="4x B200/B300/H200", **_V4),
    ModelSpec("DeepSeek-V4-Pro", "deepseek-ai/DeepSeek-V4-Pro", ("v4-pro",), min_vllm_version="0.20.0",
              vram_minimum_gb=960, speculative_methods=("mtp",), tested_on="8x B200/B300, or 8x H200", **_V4),
    ModelSpec("DeepSeek-V4-Pro-0813", "deepseek-ai/DeepSeek-V4-Pro-0813", ("v4-pro-0813",),
              min_vllm_version="0.25.0", vram_minimum_gb=960, speculative_methods=("mtp", "dspark"),
              tested_on="8x B200/B300, or 8x H200", **_V4),
    # FlashMLA-Sparse pads 16 heads per rank to 64 under TP=8, so V3.2 prefers DP+EP.
    ModelSpec("DeepSeek-V3.2", "deepseek-ai/DeepSeek-V3.2", ("v3.2",), family="v3.2", min_vllm_version="0.18.0",
              parallelism="dp-ep", tokenizer_mode="deepseek_v32", tool_call_parser="deepseek_v32", **_V3),
    ModelSpec("DeepSeek-V3.1", "deepseek-ai/DeepSeek-V3.1", ("v3.1",), family="v3.1", min_vllm_version="0.12.0",
              parallelism="tp-ep", tool_call_parser="deepseek_v31",
              chat_template="examples/tool_chat_template_deepseekv31.jinja", **_V3),
)


def resolve_model(name: str) -> ModelSpec:
    """A catalogue entry by alias (`v4-flash`), repo id (`deepseek-ai/DeepSeek-V4-Flash`) or bare name."""
    key = name.strip().lower()
    for spec in CATALOGUE:
        if key in {*spec.aliases, spec.repo.lower(), spec.name.lower()}:
            return spec
    known = ", ".join(f"{s.aliases[0]} ({s.repo})" for s in CATALOGUE)
    raise ConfigError(f"model {name!r} is not in the vLLM catalogue; known: {known}")


# --- GPUs ------------------------------------------------------------------------------------------

_ARCH_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"RTX PRO \d+|RTX 50\d0", "sm_120"),  # Blackwell workstation parts
    (r"\bG?B[23]00\b", "sm_100"),  # datacenter Blackwell (B300/GB300 are sm_103, same family)
    (r"\bG?H(?:100|200|800|20)\b", "sm_90"),
    (r"\bA(?:100|800|40|30|10)\b", "sm_80"),
    (r"\bL(?:4|40S?)\b", "sm_89"),
)
KNOWN_GPU_MEMORY_GB: dict[str, float] = {
    "H100": 80, "H800": 80, "H20": 96, "H200": 141, "GH200": 96, "B200": 180, "B300": 288, "GB200": 186,
    "GB300": 288, "A100": 80, "RTX PRO 6000": 96,
}


def gpu_arch(name: str) -> str | None:
    """Compute capability family (`sm_90`, `sm_100`, `sm_120`, ...) guessed from a GPU's marketing name."""
    upper = name.upper()
    for pattern, sm in _ARCH_PATTERNS:
        if re.search(pattern, upper):
            return sm
    return None


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gb: float
    """GPU memory in GiB (nvidia-smi's MiB / 1024), the unit the recipes' `vram_minimum_gb` is compared in."""

    @property
    def arch(self) -> str | None:
        return gpu_arch(self.name)


def parse_nvidia_smi(text: str) -> list[GPU]:
    """GPUs from `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (memory in MiB)."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, memory = line.rpartition(",")
        try:
            if not sep:
                raise ValueError
            gpus.append(GPU(name.strip(), float(memory.strip()) / 1024))
        except ValueError:
            raise ConfigError(f"nvidia-smi: cannot read the line {line!r}; expected 'NAME, MEMORY_MIB'") from None
    return gpus


def detect_gpus(nvidia_smi: str = "nvidia-smi") -> list[GPU]:
    """The GPUs of this machine ([] when nvidia-smi is absent), narrowed by a numeric CUDA_VISIBLE_DEVICES."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return []
    query = [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"nvidia-smi failed ({exc}); pass --gpus to describe the GPUs") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise ConfigError(f"nvidia-smi exited with code {done.returncode}: {said}; pass --gpus to describe the GPUs")
    gpus = parse_nvidia_smi(done.stdout)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and re.fullmatch(r"\s*(\d+\s*(,\s*\d+\s*)*)?", visible):
        indexes = [int(i) for i in visible.split(",") if i.strip()]
        gpus = [gpus[i] for i in indexes if i < len(gpus)]
    return gpus


GPU_SPEC_SYNTAX = (
    "a comma-separated list of [COUNTx]NAME[:GB] or COUNT[:GB] items, e.g. 4xB200, 'H200:141,H200:141', 8:80"
)


def parse_gpu_spec(text: str, *, memory_gb: float | None = None) -> list[GPU]:
    """GPUs described by hand (tests, dry runs, another machine): see GPU_SPEC_SYNTAX.

    `memory_gb` applies to items that give no memory and whose name is not in KNOWN_GPU_MEMORY_GB.
    """
    gpus: list[GPU] = []
    for item in (part.strip() for part in text.split(",")):
        match = re.fullmatch(r"(?:(\d+)\s*[xX×]\s*)?([^:]+?)\s*(?::\s*(\d+(?:\.\d+)?)\s*(?:GB|G)?)?", item)
        if not item or match is None:
            raise ConfigError(f"--gpus: cannot read {item!r}; expected {GPU_SPEC_SYNTAX}")
        count_text, name, memory_text = match.groups()
        if name.isdigit() and count_text is None:
            count, name = int(name), "GPU"
        else:
            count = int(count_text or 1)
        memory = float(memory_text) if memory_text else memory_gb
        if memory is None:
            known = {k.upper(): v for k, v in KNOWN_GPU_MEMORY_GB.items()}
            memory = known.get(name.upper())
        if memory is None:
            raise ConfigError(f"--gpus: {item!r} gives no memory size and {name!r} is not a GPU we know; "
                              f"write it as NAME:GB (e.g. {name}:80)")
        if count < 1 or memory <= 0:
            raise ConfigError(f"--gpus: {item!r} needs a count >= 1 and a memory size > 0")
        gpus += [GPU(name, memory)] * count
    return gpus


def describe_gpus(gpus: Sequence[GPU]) -> str:
    groups: dict[tuple[str, float], int] = {}
    for gpu in gpus:
        groups[(gpu.name, gpu.memory_gb)] = groups.get((gpu.name, gpu.memory_gb), 0) + 1
    return " + ".join(f"{n}x {name} ({mem:.0f} GB)" for (name, mem), n in groups.items()) or "no GPUs"


# --- Command lines ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchPlan:
    """A model, the GPUs it runs on, and the `vllm serve` command line for them."""

    spec: ModelSpec
    gpus: tuple[GPU, ...]
    command: tuple[str, ...]
    host: str
    port: int
    notes: tuple[str, ...] = ()

    @property
    def served_model(self) -> str:
        return served_model_name(self.command) or self.spec.repo

    @property
    def model_string(self) -> str:
        return model_string(self.host, self.port, self.served_model)


def model_string(host: str, port: int, model: str) -> str:
    """Our `vllm:BASE_URL#MODEL` syntax for a server bound to host:port (wildcard hosts → this machine)."""
    if host in {"", "0.0.0.0", "::"}:
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"vllm:http://{host}:{port}/v1#{model}"


def plan_launch(
    model: str | ModelSpec,
    gpus: Iterable[GPU],
    *,
    max_model_len: int | None = None,
    port: int = 8000,
    host: str = "127.0.0.1",
    think_max: bool = False,
    speculative: str | None = None,
    extra_args: Sequence[str] = (),
    vllm_cmd: Sequence[str] = ("vllm",),
) -> LaunchPlan:
    """Choose parallelism, context length and per-GPU flags for `model` on `gpus`; ConfigError if it cannot run.

    `extra_args` go last, so they override what was chosen (vLLM keeps the last value of a flag).
    """
    spec = model if isinstance(model, ModelSpec) else resolve_model(model)
    gpus = tuple(gpus)
    if not gpus:
        raise ConfigError("no NVIDIA GPUs found (nvidia-smi is absent or lists none); "
                          f"describe the node with --gpus, {GPU_SPEC_SYNTAX}")
    if not 0 < port < 65536:
        raise ConfigError(f"--port: expected 1..65535, got {port}")
    n = len(gpus)
    total = n * min(g.memory_gb for g in gpus)  # every shard and replica is as large as on the smallest GPU
    if total < spec.vram_minimum_gb:
        raise ConfigError(
            f"{spec.name} needs at least {spec.vram_minimum_gb} GB of GPU memory in total (recipe "
            f"vram_minimum_gb); found {describe_gpus(gpus)} = {total:.0f} GB. It runs on {spec.tested_on}; "
            "use a larger node or a smaller model."
        )
    archs = {g.arch for g in gpus}
    arch = archs.pop() if len(archs) == 1 else None
    notes: list[str] = []
    if len({g.name for g in gpus}) > 1:
        notes.append(f"mixed GPUs ({describe_gpus(gpus)}): sized by the smallest, no per-architecture flags")
    if think_max and spec.family != "v4":
        raise ConfigError(f"--think-max: Think Max is a DeepSeek-V4 mode; {spec.name} has no such effort level")

    cmd = [*vllm_cmd, "serve", spec.repo, "--host", host, "--port", str(port)]
    if n == 1:
        cmd += ["--tensor-parallel-size", "1"]
        if spec.family == "v4":
            cmd += ["--gpu-memory-utilization", "0.92"]  # the single-GPU (DGX Station GB300) recipe
    elif spec.parallelism == "dp-ep":
        cmd += ["--data-parallel-size", str(n), "--enable-expert-parallel"]
    else:
        if n & (n - 1):
            raise ConfigError(f"{spec.name} uses tensor parallelism, which needs a power-of-two GPU count; "
                              f"found {n}. Limit the GPUs with CUDA_VISIBLE_DEVICES or --gpus.")
        cmd += ["--tensor-parallel-size", str(n), "--enable-expert-parallel"]
    cmd += spec.required_flags

    if spec.family == "v4":
        if arch == "sm_100":
            cmd += ["--compilation-config", V4_COMPILATION_CONFIG, "--attention_config.use_fp4_indexer_cache=True"]
        elif arch == "sm_120":
            cmd += ["--attention_config.use_fp4_indexer_cache=False"]
    default_len: int | None = None
    cap_reason = ""
    if spec.name.startswith("DeepSeek-V4-Pro") and all(re.search(r"\bH200\b", g.name.upper()) for g in gpus):
        cmd += V4_PRO_H200_FLAGS
        default_len = TIGHT_FIT_MAX_MODEL_LEN
        cap_reason = ("the recipe's H200 override for V4-Pro sets --max-model-len 200000 (its guide text also "
                      "says 'capped at 800K', so longer may work)")
    elif total < TIGHT_FIT_RATIO * spec.vram_minimum_gb and spec.context_length > TIGHT_FIT_MAX_MODEL_LEN:
        default_len = TIGHT_FIT_MAX_MODEL_LEN
        cap_reason = (f"{total:.0f} GB is a tight fit for {spec.name} (needs {spec.vram_minimum_gb}), so the "
                      f"context is capped at {default_len}")
    if cap_reason and max_model_len is None:
        notes.append(cap_reason + "; pass --max-model-len to change it")

    if max_model_len is not None:
        if not 0 < max_model_len <= spec.context_length:
            raise ConfigError(f"--max-model-len: {spec.name} supports 1..{spec.context_length}, got {max_model_len}")
        if think_max and max_model_len < THINK_MAX_MIN_LEN:
            raise ConfigError(f"--think-max needs --max-model-len >= {THINK_MAX_MIN_LEN} (384K tokens, else "
                              f"Think Max answers are truncated); got {max_model_len}")
        length: int | None = max_model_len
    else:
        length = default_len
        if think_max and default_len is not None and default_len < THINK_MAX_MIN_LEN:
            raise ConfigError(
                f"--think-max needs --max-model-len >= {THINK_MAX_MIN_LEN}, but on {describe_gpus(gpus)} "
                f"{spec.name} is capped at {default_len} by default: {cap_reason}. Use more GPU memory, or pass "
                f"--max-model-len {THINK_MAX_MIN_LEN} to try anyway."
            )
    if length is not None:
        cmd += ["--max-model-len", str(length)]
    cmd.append("--enable-prefix-caching")
    cmd += [f"--default-chat-template-kwargs.{key}={value}" for key, value in spec.chat_template_kwargs]

    if speculative is not None:
        if speculative not in spec.speculative_methods:
            offered = ", ".join(spec.speculative_methods) or "none"
            raise ConfigError(f"--speculative {speculative}: {spec.name} offers {offered}")
        if speculative == "mtp":
            tokens = 1 if arch == "sm_90" else 3 if n == 1 else 2
            config: dict[str, Any] = {"method": "mtp", "num_speculative_tokens": tokens}
        else:
            config = {"method": "dspark", "num_speculative_tokens": 7, "draft_sample_method": "probabilistic"}
        cmd += ["--speculative-config", json.dumps(config, separators=(",", ":"))]
    cmd += extra_args
    return LaunchPlan(spec, gpus, tuple(cmd), host, port, tuple(notes))


def build_command(
    model: str | ModelSpec,
    gpus: Iterable[GPU],
    *,
    max_model_len: int | None = None,
    port: int = 8000,
    host: str = "127.0.0.1",
    think_max: bool = False,
    speculative: str | None = None,
    extra_args: Sequence[str] = (),
    vllm_cmd: Sequence[str] = ("vllm",),
) -> list[str]:
    """The `vllm serve` command line for `model` on `gpus` (see `plan_launch`)."""
    plan = plan_launch(model, gpus, max_model_len=max_model_len, port=port, host=host, think_max=think_max,
                       speculative=speculative, extra_args=extra_args, vllm_cmd=vllm_cmd)
    return list(plan.command)


def _flag_values(command: Sequence[str], flag: str) -> list[str] | None:
    """The values after the last `flag` (or `flag=value`) in a command line; None when absent."""
    found: list[str] | None = None
    for i, word in enumerate(command):
        if word == flag:
            values = []
            for value in command[i + 1 :]:
                if value.startswith("-"):
                    break
                values.append(value)
            found = values
        elif word.startswith(flag + "="):
            found = [word.split("=", 1)[1]]
    return found


def served_model_name(command: Sequence[str]) -> str | None:
    """The model id a vLLM command serves: `--served-model-name`'s first value, else the word after `serve`."""
    names = _flag_values(command, "--served-model-name")
    if names:
        return names[0]
    if "serve" in command:
        i = list(command).index("serve") + 1
        if i < len(command) and not command[i].startswith("-"):
            return command[i]
    return None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


# --- The server process ----------------------------------------------------------------------------


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group `pgid`."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


async def _group_gone(pgid: int) -> None:
    # Workers are vLLM's children, not ours: nothing to wait on but /proc.
    while _group_alive(pgid):  # noqa: ASYNC110
        await anyio.sleep(0.05)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class VLLMServer:
    """Runs a `vllm serve` command line until the `async with` block ends, then stops its process group.

    Entering starts the process in its own process group, streams its output line by line to `on_log`
    (and `log_file`), and returns once `GET /health` answers 200 and `GET /v1/models` lists a model.
    It raises VLLMStartError when the process exits first or `startup_timeout_s` passes, quoting the
    last log lines. Leaving (also on cancellation) sends SIGTERM to the group, SIGKILL after `stop_grace_s`.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        startup_timeout_s: float = 1800.0,
        on_log: Callable[[str], None] | None = None,
        log_file: Path | None = None,
        min_vllm_version: str | None = None,
        stop_grace_s: float = 15.0,
        poll_interval_s: float = 0.5,
        env: Mapping[str, str] | None = None,
    ):
        self.command = list(command)
        self.startup_timeout_s = startup_timeout_s
        self.on_log = on_log
        self.log_file = log_file
        self.min_vllm_version = min_vllm_version
        self.stop_grace_s = stop_grace_s
        self.poll_interval_s = poll_interval_s
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")  # else vLLM's log reaches a pipe in 8 KiB lumps
        self.host = (_flag_values(self.command, "--host") or ["0.0.0.0"])[0]  # vLLM binds all interfaces by default
        port = (_flag_values(self.command, "--port") or ["8000"])[0]
        if not port.isdigit():
            raise ConfigError(f"vLLM command: --port {port!r} is not a port number")
        self.port = int(port)
        self.model_id: str | None = None
        """The served model id, known once the server is ready."""
        self._tail: deque[str] = deque(maxlen=200)
        self._process: Process | None = None
        self._task_group: TaskGroup | None = None
        self._log_writer: Any = None
        self._exited = anyio.Event()
        self._log_done = anyio.Event()

    @classmethod
    def for_plan(cls, plan: LaunchPlan, **options: Any) -> VLLMServer:
        return cls(plan.command, min_vllm_version=plan.spec.min_vllm_version, **options)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def base_url(self) -> str:
        """Where this process reaches the server (wildcard binds are probed on loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def model_string(self) -> str:
        if self.model_id is None:
            raise AgentError("VLLMServer.model_string: the server is not ready yet")
        return model_string(self.host, self.port, self.model_id)

    def log_tail(self, lines: int = 20) -> list[str]:
        return list(self._tail)[-lines:]

    async def wait(self) -> int:
        """Until the server process exits; its exit code."""
        assert self._process is not None, "VLLMServer.wait() outside `async with`"
        return await self._process.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group now (a second Ctrl-C)."""
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)

    async def __aenter__(self) -> VLLMServer:
        self.preflight()
        if self.log_file is not None:
            self._log_writer = await anyio.open_file(self.log_file, "a", encoding="utf-8")
        try:
            self._process = await anyio.open_process(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True,
            )
        except OSError as exc:
            await self._close_log()
            raise ConfigError(f"cannot start {shlex.join(self.command[:3])}: {exc}") from None
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            self._task_group.start_soon(self._pump_log)
            self._task_group.start_soon(self._reap)
            await self._wait_ready()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()

    def preflight(self) -> None:
        """ConfigError unless the command can start here: executable, vLLM version, chat template, free port."""
        exe = self.command[0]
        if shutil.which(exe) is None:
            raise ConfigError(f"{exe!r} is not installed or not on PATH: install vLLM (pip install vllm, or the "
                              "vllm/vllm-openai image), or point --vllm-cmd at it; --dry-run prints the command")
        if self.min_vllm_version is not None:
            try:
                found = version("vllm")
            except PackageNotFoundError:
                found = None  # not in this environment; `vllm` on PATH lives elsewhere
            if found is not None and _version_tuple(found) < _version_tuple(self.min_vllm_version):
                raise ConfigError(f"this model needs vLLM >= {self.min_vllm_version}; installed: {found}")
        template = _flag_values(self.command, "--chat-template")
        if template and not Path(template[0]).is_file():
            raise ConfigError(
                f"--chat-template {template[0]}: no such file here (it ships in vLLM's source tree, not its wheel); "
                "download it from github.com/vllm-project/vllm and pass `-- --chat-template PATH`"
            )
        with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                raise ConfigError(f"cannot serve on {self.host}:{self.port} ({exc.strerror}); "
                                  "is another server there? Pick another --port") from None

    async def _pump_log(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        buffer = ""
        try:
            async for chunk in TextReceiveStream(self._process.stdout, errors="replace"):
                *lines, buffer = re.split(r"\r\n|\r|\n", buffer + chunk)
                for line in lines:
                    await self._emit(line)
            await self._emit(buffer)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self._log_done.set()

    async def _emit(self, line: str) -> None:
        if not line.strip():
            return
        self._tail.append(line)
        if self._log_writer is not None:
            await self._log_writer.write(line + "\n")
            await self._log_writer.flush()
        if self.on_log is not None:
            self.on_log(line)

    async def _reap(self) -> None:
        assert self._process is not None
        await self._process.wait()
        self._exited.set()

    def quote_log(self, lines: int = 20) -> str:
        """The last log lines, indented, for error messages."""
        tail = self.log_tail(lines)
        if not tail:
            return "It printed nothing."
        return f"Last {len(tail)} log lines:\n" + "\n".join(f"    {line}" for line in tail)

    async def _wait_ready(self) -> None:
        deadline = anyio.current_time() + self.startup_timeout_s
        last = "no answer yet"
        answered = ""  # the last HTTP answer: a late timeout must not hide it
        what = f"vLLM ({served_model_name(self.command) or self.command[0]})"
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False, headers=self._auth()) as client:
            while True:
                if self._exited.is_set():
                    with anyio.move_on_after(2):
                        await self._log_done.wait()
                    raise VLLMStartError(f"{what} exited with code {self.returncode} before it was ready. "
                                         + self.quote_log())
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise VLLMStartError(
                        f"{what} was not ready within {self.startup_timeout_s:g} s (GET {self.base_url}/health: "
                        f"{last}{answered}), so it was stopped. Downloads and compilation can take long: raise "
                        f"--startup-timeout. {self.quote_log()}"
                    )
                try:
                    health = await client.get("/health", timeout=min(5.0, remaining))
                    last = f"HTTP {health.status_code}"
                    answered = ""
                    if health.status_code == 200:
                        models = await client.get("/v1/models", timeout=min(5.0, remaining))
                        if models.status_code in (401, 403):
                            raise VLLMStartError(
                                f"vLLM is up but GET /v1/models answered {models.status_code}: it was started "
                                "with an API key; set VLLM_API_KEY to it"
                            )
                        ids = [m.get("id") for m in models.json().get("data", []) if isinstance(m, dict)]
                        if ids:
                            expected = served_model_name(self.command)
                            self.model_id = expected if expected in ids else ids[0]
                            return
                        last = "HTTP 200, but /v1/models lists no model"
                except (httpx.HTTPError, ValueError, AttributeError) as exc:
                    if last.startswith("HTTP "):
                        answered = f"; it last answered {last}"
                    last = type(exc).__name__
                with anyio.move_on_after(min(self.poll_interval_s, max(remaining, 0))):
                    await self._exited.wait()

    def _auth(self) -> dict[str, str]:
        flagged = _flag_values(self.command, "--api-key")
        key = (flagged[0] if flagged else None) or self.env.get("VLLM_API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        pgid = process.pid  # start_new_session: the leader's pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        with anyio.move_on_after(self.stop_grace_s):
            await process.wait()
            await _group_gone(pgid)
        _signal_group(pgid, signal.SIGKILL)
        await process.wait()
        with anyio.move_on_after(2):  # SIGKILLed members vanish once reaped
            await _group_gone(pgid)

    async def _shutdown(self) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._stop()
                with anyio.move_on_after(1):  # let the last lines reach the log file
                    await self._log_done.wait()
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
                task_group, self._task_group = self._task_group, None
                await task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_log()

    async def _close_log(self) -> None:
        if self._log_writer is not None:
            writer, self._log_writer = self._log_writer, None
            await writer.aclose()


# --- `agent vllm serve` ----------------------------------------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent vllm serve",
        description="Start a vLLM server for a DeepSeek model with flags chosen for the GPUs here, print the "
        "model string once it is ready, and run until Ctrl-C. Arguments after `--` go to vllm serve as they are.",
        epilog="Models: " + ", ".join(f"{s.aliases[0]} ({s.repo})" for s in CATALOGUE)
        + ". Exit codes: 1 when vLLM fails or exits, 2 for bad input, 128+N on signal N (130 on Ctrl-C).",
    )
    parser.add_argument("model", help="catalogue alias (v4-flash, v4-pro, v3.2, v3.1, ...) or HF repo id")
    parser.add_argument("--gpus", help=f"describe the GPUs instead of asking nvidia-smi: {GPU_SPEC_SYNTAX}")
    parser.add_argument("--gpu-memory", type=float, metavar="GB", help="memory per GPU for --gpus items without one")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--max-model-len", type=int, help="context length (default: the model's, less on tight fits)")
    parser.add_argument("--think-max", action="store_true",
                        help=f"make room for Think Max (max-model-len >= {THINK_MAX_MIN_LEN})")
    parser.add_argument("--speculative", choices=["mtp", "dspark"], help="speculative decoding (off by default)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and model string; start nothing")
    parser.add_argument("--startup-timeout", type=float, default=1800.0, metavar="S",
                        help="seconds to wait for the server to be ready (default 1800: downloads, compilation)")
    parser.add_argument("--vllm-cmd", default="vllm", help="the vllm executable, shell-quoted (default: vllm)")
    parser.add_argument("--log-file", type=Path, help="also append vLLM's log to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`agent vllm serve MODEL [options] [-- vllm args]`; `argv` starts after `serve` (a leading one is skipped)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["serve"]:
        words = words[1:]
    extra: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, extra = words[:cut], words[cut + 1 :]
    args = build_parser().parse_args(words)
    try:
        gpus = parse_gpu_spec(args.gpus, memory_gb=args.gpu_memory) if args.gpus else detect_gpus()
        plan = plan_launch(
            args.model, gpus, max_model_len=args.max_model_len, port=args.port, host=args.host,
            think_max=args.think_max, speculative=args.speculative, extra_args=extra,
            vllm_cmd=shlex.split(args.vllm_cmd),
        )
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.dry_run:
            print(shlex.join(plan.command))
            print(f"use --model {plan.model_string}")
            return EXIT_OK
        return anyio.run(_serve, plan, args)
    except ConfigError as exc:
        print(f"agent vllm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AgentError as exc:
        print(f"agent vllm: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


async def _serve(plan: LaunchPlan, args: argparse.Namespace) -> int:
    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server = VLLMServer.for_plan(plan, startup_timeout_s=args.startup_timeout, on_log=show, log_file=args.log_file)
    stopped_by: list[int] = []
    error: AgentError | None = None
    server.preflight()
    print(f"starting: {shlex.join(plan.command)}", file=sys.stderr, flush=True)
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            await tg.start(_watch_signals, scope, server, stopped_by)
            try:
                async with server:
                    print(f"ready: use --model {server.model_string}", flush=True)
                    returncode = await server.wait()
                    print(f"agent vllm: vLLM exited with code {returncode}. {server.quote_log()}",
                          file=sys.stderr, flush=True)
            except AgentError as exc:  # kept out of the task group, which would wrap it in an ExceptionGroup
                error = exc
        tg.cancel_scope.cancel()
    if stopped_by:
        return 128 + stopped_by[0]
    if error is not None:
        raise error
    return EXIT_FAILED  # the server exited on its own


async def _watch_signals(scope: anyio.CancelScope, server: VLLMServer, stopped_by: list[int], *,
                         task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    # vLLM runs in its own session, so Ctrl-C reaches only us: the first signal stops it gracefully,
    # a second one kills it.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if stopped_by:
                server.kill()
                continue
            stopped_by.append(signum)
            print("agent vllm: stopping vLLM (again to kill it now)", file=sys.stderr, flush=True)
            scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
