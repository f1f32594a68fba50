"""`python3 -m appliance`: the `appliance` command (see appliance.cli)."""

import os
import sys

from .cli import main

try:
    sys.exit(main())
except BrokenPipeError:
    # The reader went away (`appliance status | head -1`): not an error of ours. Python's
    # own flush of stdout at exit would raise again; point it at /dev/null (Python's
    # documentation on SIGPIPE).
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
