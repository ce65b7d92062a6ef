"""nbfeed's engine: provider processes, subscriptions, catalog and history cache (asyncio)."""

from .backfill import BackfillRules
from .config import HubConfig, default_home
from .hub import Hub
from .outbox import Outbox, StreamBatch
from .staleness import StalenessRules
from .subscription import Subscription

__all__ = ["BackfillRules", "Hub", "HubConfig", "Outbox", "StalenessRules", "StreamBatch",
           "Subscription", "default_home"]
