"""`python -m agent.eval ...` is `agent eval ...`."""

import sys

from .cli import main

sys.exit(main())
