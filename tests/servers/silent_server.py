"""A server that never answers: it reads stdin forever (for startup-timeout tests)."""

import sys

print("silent server starting", file=sys.stderr, flush=True)
for _line in sys.stdin:
    pass
