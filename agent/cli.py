"""The `agent` command line: run task files, read traces, serve a scripted model."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import anyio

from .approvals import add_approve_option, terminal_askers
from .demo import scripted_demo_if_needed
from .errors import AgentError, ConfigError
from .interrupts import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_UNFINISHED,
    error_exit,
    sigterm_as_ctrl_c,
)
from .models.config import MODEL_SYNTAX, parse_model
from .render import ConsoleRenderer
from .task import TaskSpec, bind_workspace, load_task
from .trace import result_from_trace
from .version import package_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent",
        description="Drive DeepSeek V4 (official API, vLLM or any OpenAI-compatible endpoint) through MCP servers.",
        epilog="Model strings: " + MODEL_SYNTAX + ". Environment: DEEPSEEK_API_KEY (deepseek profile), "
        "VLLM_API_KEY (vllm, optional), OPENAI_API_KEY (openai-compatible), AGENT_MODEL (default for --model).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run a task file",
        description="Run a task file: the model calls the task's MCP tools until it answers or a limit stops it. "
        "Progress goes to stderr, the answer to stdout, every event to a JSONL trace. Exit code 0 when the "
        "run finished (answer or claim_done), 1 when a limit or an error stopped it, 2 for bad input, "
        "130 on Ctrl-C, 143 on SIGTERM (both end the trace with stop reason cancelled).",
    )
    run.add_argument("task", type=Path, help="task file (YAML)")
    run.add_argument("--model", default=os.environ.get("AGENT_MODEL"),
                     help="override the task's model (default: $AGENT_MODEL or the task's)")
    run.add_argument("--think", choices=["auto", "none", "high", "max"],
                     help="override the task's think policy (auto chooses per step)")
    run.add_argument("--trace", type=Path, help="trace file (default: runs/<time>-<task>-<id>.jsonl)")
    run.add_argument("--max-steps", type=int, help="override limits.max_steps")
    run.add_argument("--demo", action="store_true",
                     help="run the task's scripted demo offline even when an API key is set")
    run.add_argument("--quiet", action="store_true", help="print only the answer")
    run.add_argument("--no-reasoning", action="store_true", help="do not show streamed reasoning")
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument("--keep-workspace", action="store_true", help="keep the task's workspace after the run")
    run.add_argument("--otel", action="store_true",
                     help="OpenTelemetry spans for the run (needs the otel extra): the global tracer provider, or one "
                     "built from OTEL_TRACES_EXPORTER (otlp|console|none), OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME")
    add_approve_option(run)

    sub.add_parser("eval", add_help=False,
                   help="run tasks as a benchmark suite: workers, repeats, graders, reports (agent eval --help)")

    # chat, serve, server and `vllm serve` are dispatched by main() before this parser; listed here for --help.
    sub.add_parser("chat", add_help=False,
                   help="talk with the agent in the terminal; --session FILE keeps the conversation (agent chat --help)")
    sub.add_parser("serve", add_help=False,
                   help="serve the agent itself as an MCP server (stdio or --http; agent serve --help)")

    trace = sub.add_parser("trace", help="summarise a trace file",
                           description="Read a JSONL trace back into a run result and print it as JSON.")
    trace.add_argument("path", type=Path)

    sub.add_parser("auth", add_help=False,
                   help="OAuth for HTTP MCP servers: log in once, log out, show stored tokens (agent auth --help)")
    sub.add_parser("server", add_help=False,
                   help="run one of our MCP servers (shell, files, web) over stdio or --http HOST:PORT "
                   "(agent server --help)")

    vllm = sub.add_parser(
        "vllm", help="start a vLLM server configured for DeepSeek V4 (`agent vllm serve --help`)",
        description="vLLM helpers. `agent vllm serve MODEL [--gpus ...] [--dry-run]` builds the right `vllm serve` "
        "command for DeepSeek V4-Flash/V4-Pro/V3.2, starts it and prints the model string to use.",
    )
    vllm.add_argument("action", choices=["serve"], help="serve: see `agent vllm serve --help`")

    sandbox = sub.add_parser(
        "sandbox", help="manage sandboxes (`agent sandbox prune`)",
        description="`agent sandbox prune` removes Docker sandbox containers left behind by agent processes "
        "that died (crash, kill -9); --all removes every sandbox container, live runs included.",
    )
    sandbox.add_argument("action", choices=["prune"])
    sandbox.add_argument("--all", action="store_true", help="also containers of agents that are still running")

    config = sub.add_parser(
        "config", help="print or install MCP host entries for our servers and the agent",
        description="`agent config mcp --client NAME` prints the entries that launch our MCP servers (files and "
        "shell confined to --root, web) and the agent itself (agent serve) from this installation, in the "
        "host's format; --install merges them into the host's config file, keeping what is there and "
        "writing a backup first.",
    )
    config.add_argument("what", choices=["mcp"])
    config.add_argument("--client", required=True, choices=["claude-desktop", "claude-code", "cursor", "vscode"])
    config.add_argument("--servers", default="files,shell,web,agent", help="comma-separated: files,shell,web,agent")
    config.add_argument("--root", type=Path, default=Path.cwd(), help="folder the files and shell servers may use")
    config.add_argument("--install", action="store_true", help="merge into the host's config file (with a backup)")
    config.add_argument("--path", type=Path, help="config file to write (default: the host's usual place)")

    pack = sub.add_parser(
        "pack", help="show how a repository packs into the context",
        description="Pack one or more repositories as a run would (gitignore-aware, binaries and vendored files "
        "skipped) and print the token count by folder and what would be left out.",
    )
    pack.add_argument("paths", nargs="+", type=Path)
    pack.add_argument("--budget", type=int, default=400_000, help="token budget for the snapshot")
    pack.add_argument("--max-file-tokens", type=int, default=60_000, help="files above this become outlines")
    pack.add_argument("--include", action="append", default=[], help="gitignore-style glob (repeatable)")
    pack.add_argument("--exclude", action="append", default=[], help="gitignore-style glob (repeatable)")
    pack.add_argument("--depth", type=int, default=1, help="folder depth of the token breakdown")
    pack.add_argument("--out", type=Path, help="also write the snapshot text to this file")
    counting = pack.add_mutually_exclusive_group()
    counting.add_argument("--tokenizer", type=Path, help="count with this Hugging Face tokenizer.json (exact)")
    counting.add_argument("--tokenize-url", metavar="URL", help="count with a vLLM server's /tokenize (exact)")

    scripted = sub.add_parser(
        "scripted-server", help="serve a scripted OpenAI-compatible model (tests and demos)",
        description="Serve scripted assistant turns over the OpenAI chat-completions protocol on 127.0.0.1.",
    )
    scripted.add_argument("script", type=Path)
    scripted.add_argument("--dialect", choices=["deepseek", "vllm"], default="deepseek")
    scripted.add_argument("--model", default="deepseek-v4-flash")
    scripted.add_argument("--port", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Commands with parsers of their own get every argument after their name, options included (argparse's
    # REMAINDER drops a leading `--option`, which made `agent serve --http ...` a usage error).
    if argv[:1] == ["eval"]:
        from .eval.cli import main as eval_main

        return eval_main(argv[1:])
    if argv[:1] == ["chat"]:
        from .chat import main as chat_main

        return chat_main(argv[1:])
    if argv[:1] == ["serve"]:
        from .serve import main as serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["server"]:
        return _server(argv[1:])
    if argv[:1] == ["auth"]:
        from .auth_cli import main as auth_main

        return auth_main(argv[1:])
    if argv[:2] == ["vllm", "serve"]:
        from agent.runtime.vllm import main as vllm_main

        return vllm_main(argv[2:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "trace":
            print(result_from_trace(args.path).model_dump_json(indent=2, exclude={"messages"}))
            return EXIT_OK
        if args.command == "sandbox":
            from agent.runtime.docker import prune_containers

            removed = prune_containers(everything=args.all)
            print(f"removed {len(removed)} sandbox container(s)" + "".join(f"\n  {c[:12]}" for c in removed))
            return EXIT_OK
        if args.command == "config":
            return _config(args)
        if args.command == "pack":
            return _pack(args)
        if args.command == "scripted-server":
            from .testing import main as serve

            return serve([str(args.script), "--dialect", args.dialect, "--model", args.model, "--port", str(args.port)])
    except AgentError as exc:
        return error_exit(exc)
    except KeyboardInterrupt:
        print("agent: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT


SERVER_NAMES = ("files", "shell", "web")


def _server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent server",
        description="Run one of our MCP servers alone, for any MCP host, over stdio (default) or streamable HTTP "
        "(--http HOST:PORT). The options after the name are the server's own: `agent server files --help`.",
    )
    parser.add_argument("name", choices=SERVER_NAMES, help="files: confined file tools; shell: commands in a "
                        "workspace (local, docker or bubblewrap sandbox); web: fetch pages and PDFs")
    parser.add_argument("server_args", nargs=argparse.REMAINDER, metavar="...",
                        help="the server's own arguments and options")
    return parser


def _server(argv: list[str]) -> int:
    """`agent server NAME ...`: the name is ours, everything after it is the server's own command line."""
    if not argv or argv[0] not in SERVER_NAMES:
        _server_parser().parse_args(argv)  # prints help (-h) or a usage error naming the choices, and exits
        return EXIT_BAD_INPUT
    module = importlib.import_module(f"agent.servers.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


def _config(args: argparse.Namespace) -> int:
    from agent.tools import hosts

    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    env = {name: f"${{{name}}}" for name in ("DEEPSEEK_API_KEY",)} if args.client == "claude-code" else None
    entries = hosts.server_entries(servers, args.root, env=env)
    if not args.install:
        print(json.dumps(hosts.host_document(args.client, entries), indent=2))
        return EXIT_OK
    path = args.path or hosts.config_path(args.client)
    backup = hosts.install(args.client, entries, path)
    print(f"installed {', '.join(entries)} into {path}" + (f" (backup: {backup})" if backup else ""))
    if args.client == "claude-desktop":
        print("Quit Claude Desktop fully and start it again to load them.")
    return EXIT_OK


def _pack(args: argparse.Namespace) -> int:
    from .repo import RepoSpec, pack_repos
    from .tokens import make_counter

    specs = [RepoSpec(path=p, include=args.include, exclude=args.exclude) for p in args.paths]
    count = make_counter("server" if args.tokenize_url else args.tokenizer, base_url=args.tokenize_url)
    pack = pack_repos(specs, budget_tokens=args.budget, max_file_tokens=args.max_file_tokens, count=count)
    full = sum(f.status == "full" for f in pack.files)
    how = "tokenizer file" if args.tokenizer else "server /tokenize" if args.tokenize_url else "estimate"
    print(f"snapshot: {pack.tokens:,} tokens ({how}; budget {args.budget:,}), {len(pack.files)} text files, "
          f"{full} in full")
    print("tokens by folder (before fallback):")
    for folder, tokens in pack.tokens_by_folder(args.depth).items():
        print(f"  {tokens:>12,}  {folder}")
    if pack.left_out:
        print(f"left out of the snapshot ({len(pack.left_out)}; the model can read them with the file tools):")
        for f in pack.left_out:
            print(f"  {f.status:>8}  {f.label} ({f.tokens:,} tokens)")
    for f in pack.files:
        if f.encoding != "utf-8":
            print(f"decoded as {f.encoding} (not UTF-8): {f.label}")
    if pack.skipped:
        print(f"not text, not packed ({len(pack.skipped)}):")
        for label, reason in pack.skipped:
            print(f"   skipped  {label}: {reason}")
    if args.out:
        try:
            args.out.write_text(pack.text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--out {args.out}: cannot write the snapshot ({exc.strerror or exc}); "
                              "give a file in a folder that exists and is writable") from None
        print(f"written to {args.out}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    task = load_task(args.task)
    updates: dict[str, object] = {}
    if args.model:
        updates["model"] = parse_model(args.model, where="--model")
    if args.think:
        updates["think"] = args.think
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise ConfigError(f"--max-steps: expected an integer >= 1, got {args.max_steps}")
        updates["limits"] = task.limits.model_copy(update={"max_steps": args.max_steps})
    task = task.model_copy(update=updates)
    with ExitStack() as stack, sigterm_as_ctrl_c() as terminated:
        try:
            task = scripted_demo_if_needed(task, demo=args.demo, where=str(args.task), stack=stack)
            return anyio.run(_run_async, task, args)
        except KeyboardInterrupt:
            if not terminated():
                raise
            print("agent: terminated", file=sys.stderr)
            return EXIT_TERMINATED


async def _run_async(task: TaskSpec, args: argparse.Namespace) -> int:
    from .runner import Agent

    renderer = None if args.quiet or args.json else ConsoleRenderer(show_reasoning=not args.no_reasoning)
    async with AsyncExitStack() as stack:
        workspace = None
        if task.workspace is not None or task.builtin_servers:
            from agent.runtime.workspace import Workspace

            workspace = await stack.enter_async_context(
                Workspace(task.workspace, task.sandbox, keep=True if args.keep_workspace else None))
            task = bind_workspace(task, workspace.path)
            if workspace.keep:
                print(f"workspace: {workspace.path} (kept)", file=sys.stderr)
        options: dict[str, Any] = terminal_askers(args.approve)
        if workspace is not None and workspace.sandbox is not None:
            options["sandbox"] = workspace.sandbox  # python-execute runs in the workspace's sandbox, not a second one
        if args.otel:
            from .telemetry import (
                tracing_from_environment,  # here: opentelemetry would slow every `agent` start
            )

            stack.callback(tracing_from_environment())  # flushed when the run is over
        agent = Agent.from_task(task, telemetry=args.otel or None, **options)
        result = await agent.run(task.prompt, trace_path=args.trace, on_event=renderer)
    if args.json:
        print(result.model_dump_json(indent=2, exclude={"messages"}))
    else:
        if result.output is not None:  # a task with output_schema: its validated answer, as JSON
            print(json.dumps(result.output, indent=2, ensure_ascii=False))
        elif result.answer:
            print(result.answer)
        if result.error:
            print(f"agent: error: {result.error}", file=sys.stderr)
        if not args.quiet:
            print(f"trace: {result.trace_path}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_UNFINISHED


if __name__ == "__main__":
    sys.exit(main())
