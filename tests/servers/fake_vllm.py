"""A stand-in for `vllm serve MODEL --host H --port P ...`: prints vLLM-like log lines and serves
`/health` (503 while "loading", then 200) and `/v1/models`. Unknown vLLM flags are accepted and ignored.

Variants: --exit-early (logs an error and exits 1), --never-healthy, --exit-after-models (exits 0 just
after answering /v1/models once), --spawn-worker (a child in the same process group, like vLLM's workers),
--ignore-sigterm, --pid-file PATH (JSON {"server": pid, "worker": pid}), --argv-file PATH (JSON of the argv it got).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", nargs="+")
    parser.add_argument("--healthy-after", type=float, default=0.5)
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--exit-early", action="store_true")
    parser.add_argument("--exit-after-models", action="store_true")
    parser.add_argument("--spawn-worker", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--pid-file")
    parser.add_argument("--argv-file")
    args, _unknown = parser.parse_known_args(argv)
    # `serve MODEL` may sit anywhere among the flags; the model is the word after `serve`.
    args.model = argv[argv.index("serve") + 1] if "serve" in argv else "fake-model"
    return args


def main() -> None:
    args = parse(sys.argv[1:])
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = None
    if args.spawn_worker:
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            json.dump({"server": os.getpid(), "worker": worker.pid if worker else None}, f)
    if args.argv_file:
        with open(args.argv_file, "w") as f:
            json.dump(sys.argv[1:], f)

    print(f"INFO 11-20 10:00:00 [api_server.py:1000] vLLM API server version 0.25.0 (fake), model {args.model}",
          flush=True)
    print("INFO 11-20 10:00:00 [model_runner.py:100] Loading model weights ...", flush=True)
    if args.exit_early:
        print("ERROR 11-20 10:00:01 [core.py:700] ValueError: To serve at least one request with the model's "
              "max seq len (1048576), 9.6 GiB KV cache is needed, which is larger than the available KV cache "
              "memory (2.1 GiB).", file=sys.stderr, flush=True)
        sys.exit(1)

    started = time.monotonic()
    served = (args.served_model_name or [args.model])[0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *log_args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/health":
                healthy = not args.never_healthy and time.monotonic() - started >= args.healthy_after
                self.send_response(200 if healthy else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/v1/models":
                body = json.dumps({"object": "list", "data": [
                    {"id": served, "object": "model", "owned_by": "vllm", "root": args.model},
                ]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if args.exit_after_models:
                    threading.Timer(0.1, server.shutdown).start()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"INFO 11-20 10:00:01 [api_server.py:1100] Starting vLLM API server on http://{args.host}:{args.port}",
          flush=True)
    server.serve_forever(poll_interval=0.05)
    print("INFO 11-20 10:00:09 [launcher.py:80] Shutting down FastAPI HTTP server.", flush=True)


if __name__ == "__main__":
    main()
