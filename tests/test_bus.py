"""The shared feed in one process: a feed server and several hubs on a real redis-server.

Real provider processes (recording every hook call), real Redis, the hubs' own subscriptions:
what a user of a JupyterHub would notice - one upstream stream however many servers want it,
rows in order without gaps, history errors that come in time, status in-band, catalogs that
follow the provider, and nothing left behind in Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis as redis_sync

from nbfeed.bus import BusClient
from nbfeed.errors import BadRequest, UpstreamError, UpstreamTimeout
from nbfeed.providers.registry import resolve_spec
from tests.bus_fixtures import SOURCE, SYMBOLS, Collector, bus_world, redis_keys, until
from tests.redis_server import redis_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]
__all__ = ["bus_world", "redis_server"]  # fixtures used by name


async def test_one_upstream_subscription_per_stream_across_five_servers(bus_world):
    """100 subscriptions from 5 servers to the same 50 symbols: exactly 50 upstream streams;
    a server unsubscribing never cuts another, the last one leaving stops the stream."""
    feed = await bus_world.feed()
    hubs = [await bus_world.hub() for _ in range(5)]
    # Server i wants symbols 10i .. 10i+19 (mod 50), one subscription each: every symbol is
    # wanted by exactly two servers.
    wanted = {i: [SYMBOLS[(10 * i + k) % 50] for k in range(20)] for i in range(5)}
    collectors = {i: [Collector(await hubs[i].subscribe(SOURCE, [sym], "tick"))
                      for sym in wanted[i]] for i in range(5)}
    assert sum(len(c) for c in collectors.values()) == 100
    await until(lambda: all(c.count() >= 3 for cs in collectors.values() for c in cs), 60,
                "rows on every subscription")
    streamed = bus_world.streamed()
    assert sorted(streamed) == sorted(SYMBOLS), "one upstream subscription per symbol"
    assert len(feed.stats()["streams"]) == 50

    # Server 0 leaves: each of its symbols is still wanted by server 1 or 4.
    for c in collectors[0]:
        await c.sub.close()
    await asyncio.sleep(1.5)  # a demand change takes one round trip; give it several
    assert bus_world.calls("unsubscribe") == []
    before = {c.sub.symbols[0]: c.count() for c in collectors[1] + collectors[4]}
    await until(lambda: all(c.count() > before[c.sub.symbols[0]] + 5
                            for c in collectors[1] + collectors[4]), 30,
                "rows still flowing on the other servers")

    # Server 1 leaves too: S10..S19 were wanted by servers 0 and 1 only.
    for c in collectors[1]:
        await c.sub.close()
    await until(lambda: len(bus_world.calls("unsubscribe")) == 10, 30, "10 upstream stops")
    stopped = sorted(c["args"][0] for c in bus_world.calls("unsubscribe"))
    assert stopped == SYMBOLS[10:20]
    assert len(bus_world.streamed()) == 50


async def test_rows_arrive_in_order_and_resume_without_a_gap_after_a_lost_connection(
        bus_world, redis_server):
    await bus_world.feed()
    hub = await bus_world.hub()
    col = Collector(await hub.subscribe(SOURCE, ["S01", "S02"], "tick"))
    await until(lambda: col.count("S01") >= 20 and col.count("S02") >= 20, 30, "rows")
    # Cut every connection of the user hub, as a network blip would.
    admin = redis_sync.Redis.from_url(redis_server.url, socket_timeout=30)
    killed = 0
    for client in admin.client_list():
        if client.get("name", "").startswith("nbfeed-user-user0"):
            admin.client_kill_filter(_id=client["id"])
            killed += 1
    admin.close()
    assert killed >= 1
    seen = col.count("S01")
    await until(lambda: col.count("S01") >= seen + 50, 30, "rows after the reconnect")
    for symbol in ("S01", "S02"):
        seqs = [r["seq"] for r in col.rows[symbol]]
        first = seqs[0]
        assert seqs == list(range(first, first + len(seqs))), f"gap or disorder in {symbol}"


async def test_new_subscriber_gets_the_streams_latest_row_from_the_tail(bus_world):
    await bus_world.feed()
    first, second = await bus_world.hub(), await bus_world.hub()
    a = Collector(await first.subscribe(SOURCE, ["S05"], "tick"))
    await until(lambda: a.count() >= 5, 30, "rows")
    late = await second.subscribe(SOURCE, ["S05"], "tick")
    got: list[list] = []
    late.on_batch(got.append)
    await until(lambda: got, 10, "the first delivery")
    first_rows = [r for b in got[0] if hasattr(b, "rows") for r in b.rows]
    assert first_rows and first_rows[0]["seq"] > 0, "a snapshot of the running stream first"


async def test_history_is_shared_and_a_lost_reply_errors_within_its_timeout(bus_world):
    await bus_world.feed()
    hubs = [await bus_world.hub(request_timeout=2.0) for _ in range(3)]
    results = await asyncio.gather(*(h.history(SOURCE, "S07", "1m", count=30) for h in hubs))
    assert all(len(rows) == 30 for rows in results)
    assert results[0] == results[1] == results[2]
    fetches = [c for c in bus_world.calls("get_history") if c["args"][0] == "S07"]
    assert len(fetches) == 1, f"identical requests share one upstream call: {fetches}"
    # Asked again: the feed server's cache answers, the provider is not asked.
    again = await hubs[1].history(SOURCE, "S07", "1m", count=30)
    assert again[:-1] == results[0][:-1]
    # HANG1's history never comes back: the caller hears so within its own timeout.
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="did not answer the history request"):
        await hubs[0].history(SOURCE, "HANG1", "1m", count=5)
    assert time.monotonic() - started < 5.0
    # Bad input is refused by name, at the user's own hub, before anything is asked.
    with pytest.raises(BadRequest, match="count"):
        await hubs[0].history(SOURCE, "S07", "1m", count=-3)


async def test_history_while_no_feed_server_runs_fails_at_once(bus_world):
    feed = await bus_world.feed()
    hub = await bus_world.hub(request_timeout=20.0)
    await feed.stop()
    await until(lambda: hub.providers_info()[0]["status"] in ("restarting", "stale"), 15,
                "the handover to show")
    await until(lambda: hub.providers_info()[0]["status"] == "stale", 15, "stale")
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="no feed server is serving"):
        await hub.history(SOURCE, "S07", "1m", count=5)
    assert time.monotonic() - started < 1.0


async def test_provider_restart_reaches_every_subscriber_in_band(bus_world):
    feed = await bus_world.feed()
    hubs = [await bus_world.hub(), await bus_world.hub()]
    cols = [Collector(await h.subscribe(SOURCE, ["S03"], "tick")) for h in hubs]
    await until(lambda: all(c.count() >= 5 for c in cols), 30, "rows")
    pid = feed.leased[SOURCE].inner.pid
    bus_world.pids.add(pid)
    os.kill(pid, signal.SIGKILL)
    await until(lambda: all("restarting" in c.states() for c in cols), 30, "restarting")
    await until(lambda: all(c.source_states()[-1] == "running" for c in cols), 30,
                "running again")
    counts = [c.count() for c in cols]
    await until(lambda: all(c.count() > n + 10 for c, n in zip(cols, counts)), 30,
                "rows after the restart")
    assert hubs[0].providers_info()[0]["restarts"] >= 1


async def test_catalog_is_replicated_and_a_refresh_reaches_every_server(bus_world):
    feed = await bus_world.feed()
    hubs = [await bus_world.hub(), await bus_world.hub()]
    for hub in hubs:
        found = await hub.search("S4", source=SOURCE, limit=20)
        assert {e["name"] for e in found} >= {"S40", "S49"}
        assert not await hub.search("NEWCO", source=SOURCE)
    bus_world.listing.write_text("NEWCO\n")
    results = await feed.refresh_catalogs()
    assert results[SOURCE].startswith("ok")
    for hub in hubs:
        await until(lambda hub=hub: hub.catalog.lookup(SOURCE, "NEWCO"), 20,
                    "the new symbol to reach every server")
    # And a subscription to it works end to end.
    col = Collector(await hubs[1].subscribe(SOURCE, ["NEWCO"], "tick"))
    await until(lambda: col.count() >= 3, 30, "rows of the new symbol")
    # An operator's refresh (the feed role's control channel) reaches every server too.
    bus_world.listing.write_text("NEWCO\nOTHERCO\n")
    admin = redis_sync.Redis.from_url(bus_world.redis.url)
    admin.publish("nbfeed:ch:control", '{"op": "populate", "sources": ["listing"]}')
    admin.close()
    for hub in hubs:
        await until(lambda hub=hub: hub.catalog.lookup(SOURCE, "OTHERCO"), 20,
                    "the operator's refresh to reach every server")


async def test_a_restarted_user_server_does_not_reindex_an_unchanged_catalog(bus_world):
    await bus_world.feed()
    hub = await bus_world.hub()
    await hub.stop()
    # Same home, so the same catalog file: the version kept beside it matches.
    client = BusClient(bus_world.redis.url, lease_ttl=3.0, server_id="user0b")
    from nbfeed.hub import Hub

    again = Hub(client.hub_config(home=bus_world.tmp / "user0"))
    bus_world.hubs.append(again)
    await again.start()
    assert again.catalog.lookup(SOURCE, "S00")
    assert client.sources[SOURCE].catalog_version is not None


async def test_a_user_server_that_stops_renewing_loses_its_demand(bus_world, redis_server):
    await bus_world.feed()
    keeper, dying = await bus_world.hub(), await bus_world.hub()
    Collector(await keeper.subscribe(SOURCE, ["S20"], "tick"))
    col = Collector(await dying.subscribe(SOURCE, ["S20", "S21"], "tick"))
    await until(lambda: col.count("S21") >= 3, 30, "rows")
    client = dying.config.transport
    # Freeze it as a dead process would be: no heartbeat, no reads, no goodbye.
    for task in client._tasks:
        task.cancel()
    await client._reader.close()
    await until(lambda: [c["args"][0] for c in bus_world.calls("unsubscribe")] == ["S21"], 30,
                "the dead server's stream to stop upstream")
    keys = redis_keys(redis_server)
    assert "nbfeed:demand:user1" not in keys and "nbfeed:server:user1" not in keys
    assert "nbfeed:demand:user0" in keys
    bus_world.hubs.remove(dying)
    client._closed = True
    await client.redis.aclose()


async def test_every_key_expires_or_is_bounded_and_goodbyes_clean_up(bus_world, redis_server):
    feed = await bus_world.feed(stream_length=50)
    hub = await bus_world.hub()
    col = Collector(await hub.subscribe(SOURCE, ["S30", "S31"], "tick"))
    await hub.history(SOURCE, "S30", "1m", count=5)
    await until(lambda: col.count("S30") >= 150, 60, "more rows than a stream keeps")
    keys = redis_keys(redis_server)
    assert keys, "the feed writes under nbfeed:"
    assert all(ttl > 0 for ttl in keys.values()), f"keys without a TTL: {keys}"
    admin = redis_sync.Redis.from_url(redis_server.url, socket_timeout=30)
    assert admin.xlen("nbfeed:data:listing:tick:S30") <= 50 + 100  # MAXLEN ~: whole nodes
    await hub.stop()
    bus_world.hubs.remove(hub)
    await feed.stop()
    bus_world.feeds.remove(feed)
    left = set(redis_keys(redis_server))
    assert not any(k.startswith(("nbfeed:server:", "nbfeed:demand:", "nbfeed:owner:"))
                   for k in left), left
    admin.close()


async def test_hostile_demand_and_requests_do_not_disturb_the_feed(bus_world, redis_server):
    feed = await bus_world.feed()
    hub = await bus_world.hub(request_timeout=3.0)
    col = Collector(await hub.subscribe(SOURCE, ["S40"], "tick"))
    admin = redis_sync.Redis.from_url(redis_server.url, socket_timeout=30)
    admin.sadd("nbfeed:demand:evil", "no-colons", "other:tick:AAPL", "listing:7x:S41",
               "listing:tick:" + "X" * 300, b"\xff\xfe:tick:S1", "listing:tick:UNLISTED")
    admin.pexpire("nbfeed:demand:evil", 10_000)
    admin.set("nbfeed:demand:junk", "not a set", px=10_000)
    admin.publish("nbfeed:ch:demand", "evil")
    admin.publish("nbfeed:ch:demand", "junk")
    admin.publish("nbfeed:ch:demand", "../../etc")
    admin.publish("nbfeed:ch:control", "{not json")
    for junk in (b"not json", b"[1,2]", b'{"id": 5}', b"x" * 100_000):
        admin.lpush("nbfeed:req:listing", junk)
    # A well-formed request for something the bus does not serve is answered with an error.
    admin.lpush("nbfeed:req:listing", b'{"id": "r1", "server": "evil", "kind": "dataset", '
                b'"args": [], "deadline": 99999999999999}')
    reply = await asyncio.to_thread(admin.brpop, "nbfeed:reply:evil", timeout=10)
    assert reply is not None and b"not served over the bus" in reply[1]
    # The unknown symbol got an error entry; the feed keeps serving the real stream.
    n = col.count()
    await until(lambda: col.count() > n + 20, 30, "rows still flowing")
    await until(lambda: admin.exists("nbfeed:data:listing:tick:UNLISTED"), 10,
                "the error entry of the unlisted symbol")
    assert set(bus_world.streamed()) == {"S40"}
    assert feed.stats()["streams"] == ["listing:tick:S40", "listing:tick:UNLISTED"]
    admin.close()


async def test_a_hub_on_the_bus_refuses_to_run_a_provider_of_its_own(bus_world):
    await bus_world.feed()
    hub = await bus_world.hub()
    with pytest.raises(BadRequest, match="providers run on the feed server"):
        await hub.add_provider(resolve_spec("simulated"))
    with pytest.raises(BadRequest, match="restart it there"):
        await hub.restart_provider(SOURCE)
    assert [p["name"] for p in hub.providers_info()] == [SOURCE]
    # The replay of the hub's own recordings is the exception: it reads local files.
    assert await hub.search("", source="replay") == []
    replay = next(p for p in hub.providers_info() if p["name"] == "replay")
    assert replay["status"] == "running" and replay["pid"]


async def test_a_second_feed_server_takes_over_a_source(bus_world):
    first = await bus_world.feed()
    await until(lambda: first.owned() == [SOURCE], 20, "the first feed to own the source")
    second = await bus_world.feed()
    hub = await bus_world.hub()
    col = Collector(await hub.subscribe(SOURCE, ["S09"], "tick"))
    await until(lambda: col.count() >= 5, 30, "rows")
    assert second.owned() == []
    assert second.leased[SOURCE].inner.pid is None, "standby runs no provider process"
    bus_world.note_pids()
    await first.stop()
    bus_world.feeds.remove(first)
    await until(lambda: second.owned() == [SOURCE], 20, "the takeover")
    n = col.count()
    await until(lambda: col.count() > n + 10, 30, "rows from the new owner")
    states = col.source_states()
    assert "restarting" in states and states[-1] == "running", col.states()


async def test_a_standby_with_an_older_catalog_never_ends_a_stream_its_owner_serves(bus_world):
    from nbfeed.hub.catalog import Catalog

    bus_world.listing.write_text("NEWCO\n")
    owner = await bus_world.feed()
    await until(lambda: owner.owned() == [SOURCE], 20, "the owner")
    # The standby's catalog copy predates NEWCO (as after an earlier ownership).
    stale = Catalog(str(bus_world.tmp / "feed1" / "catalog.sqlite"))
    stale.replace_source(SOURCE, [{"name": s, "type": "quote", "intervals": ["tick"]}
                                  for s in SYMBOLS])
    stale.close()
    standby = await bus_world.feed()
    hub = await bus_world.hub()
    col = Collector(await hub.subscribe(SOURCE, ["NEWCO"], "tick"))
    await until(lambda: col.count() >= 10, 30, "rows of NEWCO")
    await until(lambda: "listing:tick:NEWCO" in standby.stats()["streams"], 10, "its demand")
    assert not [e for e in col.events if e.get("type") == "error"], col.events
    # Once the standby owns the source, it serves the stream its hub refused before.
    await owner.stop()
    bus_world.feeds.remove(owner)
    await until(lambda: standby.owned() == [SOURCE], 20, "the takeover")
    n = col.count()
    await until(lambda: col.count() > n + 10, 30, "rows from the new owner")
    assert not [e for e in col.events if e.get("type") == "error"], col.events
