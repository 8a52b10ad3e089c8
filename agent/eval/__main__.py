"""`python -m agent.eval ...` is `agent eval ...`."""

import sys

from .suite import main

sys.exit(main())
