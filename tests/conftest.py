"""Shared fixtures: hubs with real provider processes that are always stopped after the test."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from nbfeed.hub import Hub, HubConfig


def _runtime_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) ``nbfeed.providers.runtime`` process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    if b"nbfeed.providers.runtime" not in cmdline:
        return False
    return "\nState:\tZ" not in status


@pytest_asyncio.fixture
async def start_hub(tmp_path):
    """Factory: ``hub = await start_hub(spec, ..., request_timeout=1)`` starts a Hub.

    Each hub gets its own home under ``tmp_path`` (real SQLite catalog and cache files) and a
    short restart backoff. At teardown every hub is stopped and every provider process it ever
    started is checked to be gone, so a test cannot leak processes silently.
    """
    hubs: list[Hub] = []
    pids: set[int] = set()

    async def start(*specs, **config) -> Hub:
        config.setdefault("backoff_base", 0.05)
        hub = Hub(HubConfig(home=tmp_path / f"hub{len(hubs)}", providers=list(specs), **config))
        hubs.append(hub)
        await hub.start()
        note_pids()
        return hub

    def note_pids() -> None:
        for hub in hubs:
            pids.update(p["pid"] for p in hub.providers_info() if p["pid"])

    yield start
    note_pids()
    for hub in hubs:
        await hub.stop()
    leaked = [pid for pid in pids if _runtime_alive(pid)]
    assert not leaked, f"provider processes still running after hub.stop(): {leaked}"


@pytest.fixture
def call_record(tmp_path) -> Path:
    """A path for a provider's hook-call record (see tests/providers_for_tests.py)."""
    return tmp_path / "calls.jsonl"
