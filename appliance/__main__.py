"""`python3 -m appliance`: the `appliance` command (see appliance.cli)."""

import sys

from .cli import main

sys.exit(main())
