#!/usr/bin/env bash
# A small Ray cluster on this machine for the Ray tests: a head and a second raylet (two nodes), one CPU each; the
# head also offers the `docker` resource. Its own ports and temp dir, so it never touches another Ray on the host.
#   bash .ci/ray-cluster.sh start   # prints the address to use (RAY_ADDRESS); RAY_CI_NODES=1: the head alone
#   bash .ci/ray-cluster.sh stop    # stops exactly this cluster's processes (not `ray stop`, which stops every Ray)
set -euo pipefail
cd "$(dirname "$0")/.."
RAY=${RAY:-.venv/bin/ray}
PYTHON=${PYTHON:-.venv/bin/python}
PORT=${RAY_CI_PORT:-6390}
TEMP=${RAY_CI_TEMP:-/tmp/ray-agent-ci}
export RAY_USAGE_STATS_ENABLED=0
common=(--num-cpus 1 --object-store-memory 200000000 --disable-usage-stats)

stop() {
  # Every process of this cluster names its temp dir or its GCS port; their children (workers, agents) go with them.
  "$PYTHON" - "$TEMP" "$PORT" <<'EOF'
import os, signal, sys, time
temp, port = sys.argv[1], sys.argv[2]
def table():
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(pid)] = (ppid, cmd)
    return procs
procs = table()
ours = {pid for pid, (_, cmd) in procs.items() if pid != os.getpid() and "ray" in cmd
        and (temp in cmd or f":{port} " in cmd + " " or f"--gcs-address=127.0.0.1:{port}" in cmd)}
changed = True
while changed:  # and their descendants
    grown = ours | {pid for pid, (ppid, _) in procs.items() if ppid in ours}
    changed, ours = grown != ours, grown
for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
    for pid in ours:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                              "Z" not in open(f"/proc/{p}/stat").read().rsplit(")", 1)[1][:3]
                                              for p in ours if os.path.exists(f"/proc/{p}")):
        time.sleep(0.2)
print(f"ray-cluster: stopped {len(ours)} processes")
EOF
}

case "${1:-}" in
  start)
    "$RAY" start --head --node-ip-address 127.0.0.1 --port "$PORT" --temp-dir "$TEMP" "${common[@]}" \
      --resources '{"docker": 1}' --include-dashboard true --dashboard-port $((PORT + 1885)) \
      --ray-client-server-port $((PORT + 3621)) --min-worker-port 20000 --max-worker-port 20499 >"$TEMP.head.log" 2>&1 \
      || { cat "$TEMP.head.log" >&2; stop; exit 1; }
    [ "${RAY_CI_NODES:-2}" = 1 ] && { echo "127.0.0.1:$PORT"; exit 0; }  # the head alone (benchmarks)
    "$RAY" start --address "127.0.0.1:$PORT" --node-ip-address 127.0.0.1 "${common[@]}" \
      --min-worker-port 20500 --max-worker-port 20999 --dashboard-agent-listen-port 52366 >"$TEMP.node.log" 2>&1 \
      || { cat "$TEMP.node.log" >&2; stop; exit 1; }
    echo "127.0.0.1:$PORT"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
