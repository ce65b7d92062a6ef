"""``python -m nbfeed.bus``: the same as ``nbfeed feed-server`` (see nbfeed.bus.command)."""

import sys

from .command import main

sys.exit(main())
