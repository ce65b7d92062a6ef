"""``python -m nbfeed.bus``: the same as ``nbfeed feed-server`` (nbfeed/cli/feed_server.py)."""

import sys

from ..cli.feed_server import main

sys.exit(main())
