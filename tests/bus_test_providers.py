"""A provider for the shared-feed tests: a recording provider whose listing can change.

:class:`ListingProvider` is :class:`tests.providers_for_tests.FaultyProvider` (records every hook
call, publishes numbered rows, ``HANG*`` history never answers) whose ``get_dataset`` also lists
the names in the file ``options["listing"]`` (one per line) when it exists, so a test can change
what the provider lists and ask the feed server to refresh.
"""

from __future__ import annotations

from pathlib import Path

from tests.providers_for_tests import FaultyProvider


class ListingProvider(FaultyProvider):
    name = "listing"

    def get_dataset(self) -> list[dict]:
        entries = super().get_dataset()
        listing = self.options.get("listing")
        if listing and Path(listing).exists():
            intervals = list(self.options.get("intervals", ["tick", "1m", "1d"]))
            for name in Path(listing).read_text().split():
                entries.append({"source": self.name, "name": name, "type": "candlestick",
                                "name_label": f"Listed {name}", "categories": ["Tests"],
                                "intervals": intervals})
        return entries
