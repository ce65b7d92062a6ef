"""The front ends on the shared feed: the ``nbfeed`` command with ``--bus`` (and its
``feed-server`` and ``bus-acl`` commands) and ``nbfeed.connect(bus=...)`` in a notebook process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

import nbfeed
from nbfeed.errors import BadRequest
from tests.bus_fixtures import SOURCE, bus_world, until
from tests.redis_server import redis_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]
__all__ = ["bus_world", "redis_server"]
REPO = Path(__file__).resolve().parents[1]


async def nbfeed_cmd(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nbfeed.cli", *args, cwd=str(REPO),
        env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_the_command_line_on_the_shared_feed(bus_world, tmp_path):
    await bus_world.feed()
    url = bus_world.redis.url
    home = ["--home", str(tmp_path / "cli-home")]
    code, out, err = await nbfeed_cmd("--bus", url, *home, "symbols", "S1", "--source", SOURCE)
    assert code == 0, err
    assert "S10" in out and "S19" in out
    code, out, err = await nbfeed_cmd("--bus", url, *home, "stream", SOURCE, "S01", "--limit",
                                      "5", "--format", "json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 5 and all(r["symbol"] == "S01" for r in rows)
    # NBFEED_BUS alone is enough (as in a JupyterHub user's terminal).
    code, out, err = await nbfeed_cmd(*home, "history", SOURCE, "S02", "1m", "--count", "4",
                                      "--format", "json", env={"NBFEED_BUS": url})
    assert code == 0, err
    assert len(json.loads(out)) == 4
    code, out, err = await nbfeed_cmd("--bus", url, *home, "providers", "--format", "json")
    assert code == 0, err
    (listing,) = [p for p in json.loads(out) if p["name"] == SOURCE]
    assert listing["status"] == "running" and listing["pid"] is None
    assert "subscribe" in {c["hook"] for c in bus_world.calls()}
    code, out, err = await nbfeed_cmd("--bus", url, "--provider", "simulated", "providers")
    assert code == 2 and "--provider" in err


async def test_feed_server_and_bus_acl_commands_answer_help_and_read_secrets_from_env():
    code, out, err = await nbfeed_cmd("feed-server", "--help")
    assert code == 0 and "--redis" in out and "--lease-ttl" in out
    code, out, err = await nbfeed_cmd("bus-acl")
    assert code == 2 and "NBFEED_FEED_PASSWORD" in err
    code, out, err = await nbfeed_cmd("bus-acl", env={"NBFEED_FEED_PASSWORD": "f-pw-1",
                                                      "NBFEED_USER_PASSWORD": "u-pw-2"})
    assert code == 0, err
    assert "user nbfeed-feed on #" in out and "user nbfeed-user on #" in out
    assert "f-pw-1" not in out and "u-pw-2" not in out
    code, out, err = await nbfeed_cmd("feed-server", "--redis", "http://x:secret@h/")
    assert code == 2 and "secret" not in err and "redis://" in err


async def test_connect_with_a_bus_gives_a_notebook_the_shared_feed(bus_world, tmp_path):
    await bus_world.feed()
    url = bus_world.redis.url

    def notebook() -> dict:
        feed = nbfeed.connect(bus=url, home=str(tmp_path / "kernel-home"))
        try:
            found = feed.symbols("S3", source=SOURCE, limit=20)
            bars = feed.history(SOURCE, "S03", "1m", count=6)
            with feed.subscribe(SOURCE, ["S03"]) as stream:
                deadline = time.time() + 30
                while stream.latest is None or len(stream.latest) == 0:
                    assert time.time() < deadline, "no rows"
                    time.sleep(0.05)
                seq = int(stream.latest.loc["S03", "seq"])
            with pytest.raises(BadRequest, match="feed server"):
                feed.register_provider("simulated")
            return {"found": list(found["name"]), "bars": len(bars), "seq": seq,
                    "repr": repr(feed)}
        finally:
            feed.close()

    result = await asyncio.to_thread(notebook)
    assert "S30" in result["found"] and result["bars"] == 6 and result["seq"] >= 0
    assert "shared feed" in result["repr"]
    await until(lambda: "S03" in [c["args"][0] for c in bus_world.calls("unsubscribe")], 30,
                "the closed stream to stop upstream")
