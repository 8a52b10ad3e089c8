"""Token counting for planning: a local Hugging Face tokenizer file, a server's `/tokenize` (vLLM), or an
estimate. During a run the server's reported usage is the truth; these counts plan packing and budgets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError
from .repo import estimate_tokens

TokenCount = Callable[[str], int]


def tokenizer_file_counter(path: Path) -> TokenCount:
    """Exact counts from a `tokenizer.json` (e.g. the one in DeepSeek-V4's Hugging Face repository)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ConfigError(f"tokenizer {path}: counting with a tokenizer file needs `pip install tokenizers`") from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises its own exception types for unreadable files
        raise ConfigError(f"tokenizer {path}: not a Hugging Face tokenizer.json ({exc})") from None

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    return count


def server_counter(base_url: str, model: str = "", *, timeout_s: float = 60.0) -> TokenCount:
    """Exact counts from a vLLM server's `/tokenize` (served at the root, beside `/v1`)."""
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")

    def count(text: str) -> int:
        if not text:
            return 0
        body = {"prompt": text, **({"model": model} if model else {}), "add_special_tokens": False}
        try:
            # One short-lived request per count: nothing to close, and loopback connections are cheap.
            response = httpx.post(f"{root}/tokenize", json=body, timeout=timeout_s, trust_env=False)
            response.raise_for_status()
            return int(response.json()["count"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise ConfigError(f"tokenize: {root}/tokenize did not count the text ({exc}); is it a vLLM server?") from None

    return count


def make_counter(tokenizer: str | Path | None, *, base_url: str | None = None, model: str = "") -> TokenCount:
    """`tokenizer`: a tokenizer.json path, "server" (the endpoint's /tokenize), or None for the estimate."""
    if tokenizer is None:
        return estimate_tokens
    if str(tokenizer) == "server":
        if not base_url:
            raise ConfigError("context.tokenizer: 'server' needs a model endpoint with /tokenize (a vLLM server)")
        return server_counter(base_url, model)
    return tokenizer_file_counter(Path(tokenizer))
