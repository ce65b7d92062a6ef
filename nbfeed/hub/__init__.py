"""nbfeed's engine: provider processes, subscriptions, catalog and history cache (asyncio)."""

from .config import HubConfig, default_home
from .hub import Hub
from .outbox import Outbox, StreamBatch
from .subscription import Subscription

__all__ = ["Hub", "HubConfig", "Outbox", "StreamBatch", "Subscription", "default_home"]
