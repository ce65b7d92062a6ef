"""``python -m nbfeed.cli``: the ``nbfeed`` command."""

import sys

from . import main

sys.exit(main())
