"""A JupyterHub-like deployment in real processes: one feed server, two Jupyter servers, Redis.

Redis runs with the shipped ACL recipe: the feed server logs in as the feed role, the Jupyter
servers as the user role. The tests look at what users see - websocket frames, REST answers,
notebook output - and at what the provider was asked to do (its hook record).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.bus_deployment import SECRETS, Deployment, alive, children, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]


@pytest.fixture
def deployment(tmp_path):
    if not Path("/usr/bin/redis-server").exists():
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        dep.close()
    assert not any(secret in dep.outputs() for secret in SECRETS), "a password was logged"


def subscribe(rid: str, symbols: list[str]) -> dict:
    return {"type": "subscribe", "id": rid, "source": "listing", "symbols": symbols,
            "interval": "tick"}


def has_rows(rid: str, symbol: str):
    return lambda f: (f.get("type") == "data_update" and f.get("id") == rid
                      and any(r.get("symbol") == symbol for r in f["rows"]))


NOTEBOOK = [
    "import nbfeed, time\nfeed = nbfeed.connect()\nprint(type(feed).__name__)",
    "stream = feed.subscribe('listing', ['S04'])\ndeadline = time.time() + 60\n"
    "while stream.latest is None or len(stream.latest) == 0:\n"
    "    assert time.time() < deadline, 'no rows'\n    time.sleep(0.1)\n"
    "print('rows', int(stream.latest.loc['S04', 'seq']) >= 0)\nstream.close()",
    "bars = feed.history('listing', 'S04', '1m', count=12)\nprint('bars', len(bars))",
]


def run_notebook(server, tmp: Path) -> str:
    """Run a small notebook in a kernel that belongs to ``server`` (as one it started)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK])
    old = os.environ.get("NBFEED_SERVER_INFO")
    os.environ["NBFEED_SERVER_INFO"] = str(server.info_file)
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp)}}).execute()
    finally:
        if old is None:
            os.environ.pop("NBFEED_SERVER_INFO", None)
        else:
            os.environ["NBFEED_SERVER_INFO"] = old
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


async def test_two_jupyter_servers_share_one_feed_server(deployment, tmp_path):
    dep = deployment
    dep.start_feed()
    a, b = dep.start_server(), dep.start_server()
    for server in (a, b):
        (info,) = server.providers()
        assert info["name"] == "listing" and info["status"] == "running"
        assert info["pid"] is None, "no provider process runs in a user's server"
        status, found = server.get("nbfeed/api/symbols?q=S1&source=listing")
        assert status == 200 and {r["name"] for r in found["results"]} >= {"S10", "S11"}
    assert not [c for c in children(a.proc.pid) if alive(c)], "server A runs no provider"

    wa, wb = await a.socket(), await b.socket()
    await wa.send(subscribe("q1", ["S01", "S02"]))
    await wb.send(subscribe("q1", ["S01", "S02", "S03"]))
    for wire, symbols in ((wa, ["S01", "S02"]), (wb, ["S01", "S02", "S03"])):
        for symbol in symbols:
            await wire.until(has_rows("q1", symbol), 60, f"rows of {symbol}")
    assert sorted(dep.calls("subscribe")) == ["S01", "S02", "S03"], "one upstream each"

    # History through both servers: one upstream fetch, the same bars. (A span that ended in
    # the past: with the open bar in it, a second request that comes after the first one has
    # finished - a loaded machine - rightly asks upstream again for that bar.)
    path = ("nbfeed/api/history?source=listing&symbol=S08&interval=1m&count=20"
            "&end=2026-01-01T00:00:00Z")
    (sa, ha), (sb, hb) = await asyncio.gather(asyncio.to_thread(a.get, path),
                                              asyncio.to_thread(b.get, path))
    assert sa == sb == 200 and len(ha["rows"]) == len(hb["rows"]) == 20
    assert [r["time"] for r in ha["rows"]] == [r["time"] for r in hb["rows"]]
    assert dep.calls("get_history").count("S08") == 1

    # OpenBB Workspace on a server of the shared feed: its backend answers from the feed.
    status, widgets = a.get("nbfeed/workspace/widgets.json")
    assert status == 200 and any("listing" in json.dumps(w) for w in widgets.values())

    # Notebooks on both servers: connect() finds their server, which uses the shared feed.
    for server in (a, b):
        out = await asyncio.to_thread(run_notebook, server, tmp_path)
        assert "RemoteFeed" in out and "rows True" in out and "bars 12" in out, out

    # A unsubscribes: B keeps its rows, nothing stops upstream.
    await wa.send({"type": "unsubscribe", "id": "q1"})
    await wa.until(lambda f: f.get("type") == "unsubscribed", 20, "unsubscribed")
    seen = len(wb.rows("q1", "S01"))
    await wb.until(lambda f: has_rows("q1", "S01")(f) and len(wb.rows("q1", "S01")) > seen + 20,
                   30, "more rows on B")
    assert not set(dep.calls("unsubscribe")) & {"S01", "S02"}
    # B unsubscribes too: the last one out stops the streams.
    await wb.send({"type": "unsubscribe", "id": "q1"})
    await asyncio.to_thread(wait_until, lambda: {"S01", "S02", "S03"} <= set(
        dep.calls("unsubscribe")), 30, "the streams to stop upstream")
    wa.close()
    wb.close()


async def test_streams_resume_after_kill_9_of_the_feed_server_and_of_redis(deployment):
    dep = deployment
    feed = dep.start_feed()
    server = dep.start_server()
    wire = await server.socket()
    await wire.send(subscribe("q", ["S05"]))
    await wire.until(has_rows("q", "S05"), 60, "rows")
    dep.note_providers()
    old_providers = children(feed.proc.pid)
    assert old_providers

    feed.kill()
    await wire.until(lambda f: f.get("type") == "status" and f["state"] == "stale", 30,
                     "the server to say the feed is gone")
    for pid in old_providers:  # an orphaned provider notices its parent is gone and exits
        await asyncio.to_thread(wait_until, lambda pid=pid: not alive(pid), 20,
                                "the dead feed's provider to exit")
    dep.start_feed()
    await wire.until(lambda f: f.get("type") == "status" and f["state"] == "running", 60,
                     "the source to come back")
    await wire.until(has_rows("q", "S05"), 60, "rows from the new feed server")
    assert wire.states()[-1] == "running"

    dep.note_providers()
    dep.redis.kill()
    await wire.until(lambda f: f.get("type") == "status" and f["state"] == "stale", 30,
                     "the server to say Redis is gone")
    dep.redis.start()  # a fresh, empty Redis on the same port, with the same ACL file
    await wire.until(lambda f: f.get("type") == "status" and f["state"] == "running", 60,
                     "the source to come back after Redis")
    n = len(wire.rows("q", "S05"))
    await wire.until(lambda f: has_rows("q", "S05")(f) and len(wire.rows("q", "S05")) > n + 20,
                     60, "rows after the Redis restart")
    # The provider stayed up through the short Redis outage: no second upstream start.
    assert dep.calls("subscribe").count("S05") <= 3
    wire.close()


async def test_kill_9_of_a_users_server_leaves_nothing_behind(deployment):
    dep = deployment
    dep.start_feed()
    doomed, survivor = dep.start_server(), dep.start_server()
    wd, ws = await doomed.socket(), await survivor.socket()
    await wd.send(subscribe("d", ["S06", "S07"]))
    await ws.send(subscribe("s", ["S07"]))
    await wd.until(has_rows("d", "S06"), 60, "rows on the doomed server")
    await ws.until(has_rows("s", "S07"), 60, "rows on the survivor")
    admin = dep.admin()
    server_keys = {k.decode() for k in admin.scan_iter("nbfeed:server:*")}
    doomed_id = next(k.split(":", 2)[2] for k in server_keys
                     if json.loads(admin.get(k))["pid"] == doomed.proc.pid)
    doomed.kill()  # its socket dies with it: no goodbye, no unsubscribe
    await asyncio.to_thread(wait_until, lambda: "S06" in dep.calls("unsubscribe"), 30,
                            "the dead server's stream to stop upstream")
    assert "S07" not in dep.calls("unsubscribe"), "the survivor's stream goes on"
    await asyncio.to_thread(wait_until, lambda: not list(admin.scan_iter(
        f"nbfeed:*{doomed_id}*")), 10, "the dead server's keys to expire")
    n = len(ws.rows("s"))
    await ws.until(lambda f: has_rows("s", "S07")(f) and len(ws.rows("s")) > n + 20, 30,
                   "the survivor's rows")
    # Every key in Redis is bounded: a TTL on each (streams are also MAXLEN-trimmed).
    ttls = {k.decode(): admin.pttl(k) for k in admin.scan_iter("nbfeed:*")}
    assert all(t > 0 for t in ttls.values()), ttls
    admin.close()
    ws.close()
    wd.close()


async def test_a_standby_feed_server_takes_over_when_the_owner_is_killed(deployment):
    dep = deployment
    owner = dep.start_feed()
    standby = dep.start_feed(standby=True)
    server = dep.start_server()
    wire = await server.socket()
    await wire.send(subscribe("q", ["S09"]))
    await wire.until(has_rows("q", "S09"), 60, "rows")
    assert dep.owner() == "feed0"
    assert not [p for p in children(standby.proc.pid) if alive(p)], "standby runs no provider"
    dep.note_providers()
    owner.kill()
    await asyncio.to_thread(wait_until, lambda: dep.owner() == "feed1", 30,
                            "the standby to take the source over")
    n = len(wire.rows("q", "S09"))
    await wire.until(lambda f: has_rows("q", "S09")(f) and len(wire.rows("q", "S09")) > n + 20,
                     60, "rows from the new owner")
    assert wire.states()[-1] == "running"
    assert [p for p in children(standby.proc.pid) if alive(p)], "the new owner runs it now"
    # Exactly one upstream stream at a time: one start before, one after the takeover.
    assert dep.calls("subscribe").count("S09") == 2
    wire.close()
