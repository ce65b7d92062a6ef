"""The shared feed's security: the ACL recipe's roles, TLS, and secrets kept out of logs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_sync
from redis.exceptions import NoPermissionError

from nbfeed.bus import BusClient
from nbfeed.bus.acl import acl_file, role_rules
from nbfeed.bus.connection import check_url, redact
from nbfeed.errors import BadRequest
from tests.bus_fixtures import SOURCE, BusWorld, Collector, until
from tests.redis_server import REDIS_SERVER, RedisServer, free_port

REPO = Path(__file__).resolve().parents[1]
FEED_PW, USER_PW = "feed-pw-0d9c", "user-pw-77ae"


@pytest.fixture
def acl_redis(tmp_path):
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    (tmp_path / "users.acl").write_text(acl_file(FEED_PW, USER_PW))
    server = RedisServer(tmp_path / "redis", extra_config=f"aclfile {tmp_path / 'users.acl'}")
    server.start()
    yield server
    server.kill()


def role_client(server: RedisServer, user: str, password: str) -> redis_sync.Redis:
    return redis_sync.Redis(host="127.0.0.1", port=server.port, username=user,
                            password=password, socket_timeout=10)


def test_the_user_role_reads_the_feed_but_cannot_write_market_data_or_command_it(acl_redis):
    feed = role_client(acl_redis, "nbfeed-feed", FEED_PW)
    user = role_client(acl_redis, "nbfeed-user", USER_PW)
    feed.xadd("nbfeed:data:sim:tick:AAPL", {"r": b'[{"time": 1, "price": 1.0}]'})
    feed.set("nbfeed:source:sim", b"{}", px=10_000)
    # What a user's server does: read streams and records, keep its lease and demand, ask.
    assert user.xread({"nbfeed:data:sim:tick:AAPL": "0-0"}, count=5)
    assert user.xrevrange("nbfeed:data:sim:tick:AAPL", count=1)
    assert user.get("nbfeed:source:sim") == b"{}"
    user.set("nbfeed:server:me", b"{}", px=5000)
    user.sadd("nbfeed:demand:me", "sim:tick:AAPL")
    user.pexpire("nbfeed:demand:me", 5000)
    user.publish("nbfeed:ch:demand", "me")
    user.lpush("nbfeed:req:sim", b"{}")
    user.pexpire("nbfeed:req:sim", 5000)
    feed.lpush("nbfeed:reply:me", b'{"id": "1"}')
    assert user.brpop(["nbfeed:reply:me"], timeout=1)[1] == b'{"id": "1"}'
    # What it must not do: publish data, forge replies or records, command providers.
    refused = [
        lambda: user.xadd("nbfeed:data:sim:tick:AAPL", {"r": b"[]"}),
        lambda: user.xadd("nbfeed:data:sim:tick:NEW", {"r": b"[]"}),
        lambda: user.xtrim("nbfeed:data:sim:tick:AAPL", maxlen=0),
        lambda: user.delete("nbfeed:data:sim:tick:AAPL"),
        lambda: user.expire("nbfeed:data:sim:tick:AAPL", 1),
        lambda: user.set("nbfeed:source:sim", b'{"state": "failed"}'),
        lambda: user.set("nbfeed:owner:sim", b"me"),
        lambda: user.set("nbfeed:catalog:sim", b"x"),
        lambda: user.xadd("nbfeed:events", {"e": b"{}"}),
        lambda: user.lpush("nbfeed:reply:other", b'{"id": "1", "ok": true}'),
        lambda: user.rpop("nbfeed:req:sim"),
        lambda: user.publish("nbfeed:ch:control", '{"op": "populate"}'),
        lambda: user.eval("return redis.call('del', KEYS[1])", 1,
                          "nbfeed:data:sim:tick:AAPL"),
        lambda: user.get("other-app:secret"),
        lambda: user.flushall(),
        lambda: user.config_get("*"),
        lambda: user.keys("*"),
    ]
    for attempt in refused:
        with pytest.raises(NoPermissionError):
            attempt()
    assert feed.xlen("nbfeed:data:sim:tick:AAPL") == 1, "nothing was written or trimmed"
    feed.close()
    user.close()


def test_the_shipped_recipe_is_the_generated_one():
    text = (REPO / "deploy" / "redis" / "users.acl").read_text()
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("user ")}
    for role, name in (("feed", "nbfeed-feed"), ("user", "nbfeed-user")):
        assert lines[name].endswith(role_rules(role)), f"deploy/redis/users.acl: {name} drifted"
    assert lines["default"].startswith("user default off")


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_feed_and_user_roles_run_the_whole_feed(acl_redis, tmp_path, caplog):
    """The roles are sufficient, not only restrictive: a feed server and a hub work with them,
    and not one log line - Redis going away included - holds a password."""
    caplog.set_level(logging.DEBUG, logger="nbfeed")
    host = f"127.0.0.1:{acl_redis.port}"
    world = BusWorld(tmp_path, acl_redis)
    try:
        await world.feed(url=f"redis://nbfeed-feed:{FEED_PW}@{host}/0")
        hub = await world.hub(url=f"redis://nbfeed-user:{USER_PW}@{host}/0")
        col = Collector(await hub.subscribe(SOURCE, ["S11"], "tick"))
        await until(lambda: col.count() >= 5, 30, "rows")
        assert len(await hub.history(SOURCE, "S11", "1m", count=10)) == 10
        acl_redis.kill()
        await until(lambda: col.states() and col.states()[-1] == "stale", 30, "stale")
        acl_redis.start()
        await until(lambda: col.source_states()[-1:] == ["running"], 60, "running again")
        n = col.count()
        await until(lambda: col.count() > n + 5, 60, "rows again")
    finally:
        await world.close()
    assert "Redis" in caplog.text
    assert FEED_PW not in caplog.text and USER_PW not in caplog.text


def _certificates(folder: Path) -> dict[str, Path]:
    """A private CA and a server certificate for 127.0.0.1, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    for cmd in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
         "-out", ca, "-days", "2", "-subj", "/CN=nbfeed test CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    return {"ca": ca, "key": key, "cert": cert}


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_rediss_urls_carry_the_feed_over_tls(tmp_path):
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    certs = _certificates(tmp_path / "tls")
    tls_port = free_port()
    (tmp_path / "users.acl").write_text(acl_file(FEED_PW, USER_PW))
    server = RedisServer(tmp_path / "redis", extra_config="\n".join([
        f"aclfile {tmp_path / 'users.acl'}", f"tls-port {tls_port}",
        f"tls-cert-file {certs['cert']}", f"tls-key-file {certs['key']}",
        f"tls-ca-cert-file {certs['ca']}", "tls-auth-clients no"])).start()
    base = f"127.0.0.1:{tls_port}/0?ssl_ca_certs={certs['ca']}&ssl_cert_reqs=required"
    world = BusWorld(tmp_path, server)
    try:
        # Without TLS the TLS port does not talk to us: the URL scheme is what matters.
        plain = redis_sync.Redis(host="127.0.0.1", port=tls_port, socket_timeout=3)
        with pytest.raises(redis_sync.exceptions.ConnectionError):
            plain.ping()
        await world.feed(url=f"rediss://nbfeed-feed:{FEED_PW}@{base}")
        hub = await world.hub(url=f"rediss://nbfeed-user:{USER_PW}@{base}")
        col = Collector(await hub.subscribe(SOURCE, ["S12"], "tick"))
        await until(lambda: col.count() >= 5, 30, "rows over TLS")
        assert len(await hub.history(SOURCE, "S12", "1m", count=5)) == 5
    finally:
        await world.close()
        server.kill()


def test_urls_are_redacted_and_bad_ones_refused_without_echoing_secrets(monkeypatch):
    url = "rediss://nbfeed-user:s3cr3t@redis.internal:6380/2?ssl_keyfile=/k&ssl_password=pw2"
    shown = redact(url)
    assert "s3cr3t" not in shown and "pw2" not in shown
    assert shown.startswith("rediss://nbfeed-user:***@redis.internal:6380/2")
    with pytest.raises(BadRequest) as err:
        check_url("http://user:s3cr3t@host/")
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(BadRequest):
        BusClient("redis://h/0", lease_ttl=0)
    with pytest.raises(BadRequest, match="server id"):
        BusClient("redis://h/0", server_id="a:b*")


def test_the_password_may_come_from_the_environment(acl_redis, monkeypatch):
    feed = role_client(acl_redis, "nbfeed-feed", FEED_PW)
    feed.zadd("nbfeed:sources", {"sim": 4102444800000})
    feed.close()
    url = f"redis://nbfeed-user@127.0.0.1:{acl_redis.port}/0"  # no password in the URL
    monkeypatch.setenv("NBFEED_BUS_PASSWORD", USER_PW)
    assert BusClient(url).discover() == ["sim"]
    monkeypatch.setenv("NBFEED_BUS_PASSWORD", "wrong")
    assert BusClient(url).discover() == []  # refused: logged (redacted), nothing found


def test_feed_server_command_reports_bad_credentials_without_the_password(acl_redis, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nbfeed.bus", "--redis",
         f"redis://nbfeed-feed:wrong-{FEED_PW}@127.0.0.1:{acl_redis.port}/0",
         "--provider", "simulated", "--home", str(tmp_path / "home"), "--lease-ttl", "2"],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "wrong-" not in proc.stderr and FEED_PW not in proc.stderr
    assert "refused the feed server's login" in proc.stderr
    assert f"redis://nbfeed-feed:***@127.0.0.1:{acl_redis.port}/0" in proc.stderr
