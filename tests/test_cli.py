"""The ``nbfeed`` command, run as a real subprocess against a real home folder.

Every hub command starts real provider processes, so calls are kept few and each asserts what a
user would see: the rows printed, the exit code, the one-line error naming the bad value, and no
provider process left behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nbfeed import __version__

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60  # seconds per command; generous for a loaded 2-core machine


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NBFEED_HOME", None)
    env.pop("NBFEED_CSV_DIR", None)
    return env


def in_a_terminal() -> None:
    """``preexec_fn`` giving a child the Ctrl-C of a terminal: SIGINT at its default even when
    the test run itself ignores it (a suite started in the background with ``&`` does)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _argv(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "nbfeed.cli", "--home", str(home), *args]


def nbfeed(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``nbfeed --home HOME ARGS...`` to completion."""
    return subprocess.run(_argv(home, *args), capture_output=True, text=True, timeout=TIMEOUT,
                          env=_env(), cwd=cwd or REPO)


def assert_user_error(result: subprocess.CompletedProcess, *named: str) -> None:
    """A failed command: non-zero exit, a message naming each value, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for value in named:
        assert value in result.stderr, result.stderr


def parse_iso(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1] + "+00:00")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One nbfeed home for the read-only commands (its catalog fills on first use)."""
    return tmp_path_factory.mktemp("nbfeed-home")


# ---- no hub needed ------------------------------------------------------------------------------


def test_version_and_help(home):
    version = nbfeed(home, "--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"nbfeed {__version__}"
    helped = nbfeed(home, "--help")
    assert helped.returncode == 0
    for command in ("providers", "populate", "symbols", "history", "stream", "new-provider",
                    "serve"):
        assert command in helped.stdout
    bare = nbfeed(home)
    assert bare.returncode == 2
    assert "COMMAND" in bare.stderr


@pytest.mark.parametrize("args, named", [
    (["--option", "rate=5", "providers"], "rate=5"),
    (["--option", "nope.rate=5", "providers"], "nope"),
    (["--provider", "simulated", "--provider", "simulated", "providers"], "simulated"),
    (["--timeout", "0", "providers"], "0"),
    (["history", "simulated", "AAPL", "7m"], "7m"),
    (["history", "simulated", "AAPL", "1m", "--start", "yesterdayish"], "yesterdayish"),
    (["history", "simulated", "AAPL", "1m", "--count", "lots"], "lots"),
    (["history", "simulated", "AAPL", "1m", "--bogus"], "--bogus"),
    (["stream", "simulated", "AAPL", "--limit", "0"], "0"),
    (["history", "nope", "AAPL", "1m"], "nope"),
])
def test_bad_command_lines_fail_before_any_provider_starts(home, args, named):
    assert_user_error(nbfeed(home, *args), named)


# ---- with a hub ---------------------------------------------------------------------------------


def test_providers_lists_the_default_sources(home):
    result = nbfeed(home, "providers")
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.partition("\n\n")[0]
    lines = loaded.splitlines()
    assert lines[0].split()[:4] == ["name", "status", "datasets", "restarts"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"simulated", "csv"}
    assert rows["simulated"][1] == "running", result.stdout
    assert int(rows["simulated"][2]) > 40, result.stdout + result.stderr


def test_providers_also_shows_what_is_installed_and_how_to_turn_it_on(home):
    env = _env()
    env.pop("POLYGON_API_KEY", None)
    result = subprocess.run(_argv(home, "providers"), capture_output=True, text=True,
                            timeout=TIMEOUT, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    others = result.stdout.partition("Also installed")[2]
    assert "binance" in others and "polygon" in others, result.stdout
    binance = others[others.index("binance"):].splitlines()
    assert "not loaded" in binance[0] and "--provider binance" in binance[1]
    polygon = others[others.index("polygon"):]
    assert "not usable" in polygon and "POLYGON_API_KEY" in polygon
    env["POLYGON_API_KEY"] = "a-key"  # with a key it is one flag away
    result = subprocess.run(_argv(home, "providers", "--format", "json"), capture_output=True,
                            text=True, timeout=TIMEOUT, env=env, cwd=REPO)
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert listed["polygon"]["status"] == "not loaded" and not listed["polygon"]["loaded"]
    assert listed["simulated"]["loaded"] and listed["simulated"]["status"] == "running"
    assert "a-key" not in result.stdout


def test_populate_reports_per_source_and_fails_when_one_fails(home):
    ok = nbfeed(home, "populate", "simulated")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["simulated", "ok:", "47", "symbols"]

    broken = nbfeed(home, "--provider", "simulated", "--provider", "broken=no_such_module:Feed",
                    "populate")
    assert broken.returncode == 1
    lines = dict(line.split(None, 1) for line in broken.stdout.splitlines())
    assert lines["simulated"].startswith("ok: 47 symbols")
    assert lines["broken"].startswith("error:")
    assert "no_such_module" in lines["broken"]


def test_symbols_ranks_the_best_match_first(home):
    table = nbfeed(home, "symbols", "apple", "--source", "simulated")
    assert table.returncode == 0, table.stderr
    header, first = table.stdout.splitlines()[:2]
    assert header.split() == ["source", "name", "type", "categories", "name_label"]
    assert first.split()[:2] == ["simulated", "AAPL"]
    assert "Apple Inc." in first

    as_json = nbfeed(home, "symbols", "apple", "--format", "json", "--limit", "3")
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert found[0]["name"] == "AAPL"
    assert "1m" in found[0]["intervals"]

    as_csv = nbfeed(home, "symbols", "--source", "simulated", "--category", "FX",
                    "--format", "csv", "--limit", "100")
    names = [row["name"] for row in csv.DictReader(io.StringIO(as_csv.stdout))]
    assert sorted(names) == ["EURGBP", "EURUSD", "GBPUSD", "USDJPY"]


def test_history_as_csv_and_json(home):
    result = nbfeed(home, "history", "simulated", "AAPL", "5m", "--start",
                    "2024-01-02T00:00:00Z", "--end", "2024-01-02T01:00:00Z", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 12
    times = [parse_iso(r["time"]) for r in rows]
    assert times[0] == datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert all((b - a).total_seconds() == 300 for a, b in zip(times, times[1:]))
    for r in rows:
        assert r["symbol"] == "AAPL"
        assert float(r["low"]) <= float(r["open"]) <= float(r["high"])

    newest = nbfeed(home, "history", "simulated", "MSFT", "1m", "--count", "7",
                    "--format", "json")
    assert newest.returncode == 0, newest.stderr
    bars = json.loads(newest.stdout)
    assert len(bars) == 7
    assert parse_iso(bars[-1]["time"]) <= datetime.now(timezone.utc)


@pytest.mark.parametrize("args, named", [
    (["history", "simulated", "NOPE", "1m"], "NOPE"),
    (["history", "simulated", "AAPL", "1m", "--count", "0"], "0"),
    (["history", "simulated", "AAPL", "tick"], "tick"),
    (["history", "simulated", "AAPL", "1m", "--start", "2024-01-02", "--end", "2024-01-01"],
     "2024-01-01"),
    (["stream", "simulated", "AAPL", "NOPE"], "NOPE"),
    (["--provider", "simulated", "symbols", "--source", "csv"], "csv"),
])
def test_bad_requests_fail_with_a_message_naming_the_value(home, args, named):
    assert_user_error(nbfeed(home, *args), named)


def test_stream_prints_limit_rows_and_exits(home):
    result = nbfeed(home, "stream", "simulated", "AAPL", "MSFT", "--limit", "5",
                    "--option", "simulated.rate=50")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["time", "symbol", "price"]
    assert len(rows) == 5
    assert {r.split()[1] for r in rows} <= {"AAPL", "MSFT"}
    parse_iso(rows[0].split()[0])

    bars = nbfeed(home, "stream", "simulated", "ETH-USD", "--interval", "1m", "--limit", "3",
                  "--format", "json", "--option", "simulated.rate=50")
    assert bars.returncode == 0, bars.stderr
    lines = [json.loads(line) for line in bars.stdout.splitlines()]
    assert len(lines) == 3
    assert all(b["symbol"] == "ETH-USD" and parse_iso(b["time"]).second == 0 for b in lines)


def _runtime_children(pid: int) -> list[int]:
    """Live ``nbfeed.providers.runtime`` processes whose parent is ``pid`` (a /proc scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z" and b"nbfeed.providers.runtime" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_ctrl_c_ends_a_stream_cleanly_and_stops_its_provider(home):
    proc = subprocess.Popen(_argv(home, "stream", "simulated", "AAPL", "--option",
                                  "simulated.rate=20"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=REPO,
                            preexec_fn=in_a_terminal)
    try:
        # Wait for the header and one row: the provider is running and streaming.
        lines: list[bytes] = []
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + TIMEOUT
            while len(lines) < 2 and sel.select(max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
        assert len(lines) == 2, proc.stderr.read1().decode() if proc.poll() is not None else ""
        children = _runtime_children(proc.pid)
        assert len(children) == 1

        proc.send_signal(signal.SIGINT)
        rc = proc.wait(TIMEOUT)
        assert rc == 0, proc.stderr.read().decode()
        assert b"Traceback" not in proc.stderr.read()
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# ---- new-provider ------------------------------------------------------------------------------


def test_new_provider_scaffolds_a_provider_whose_test_passes(tmp_path):
    feeds = tmp_path / "feeds"
    made = nbfeed(tmp_path / "home", "new-provider", "acme_feed", "--dir", str(feeds))
    assert made.returncode == 0, made.stderr
    module, test = feeds / "acme_feed_provider.py", feeds / "test_acme_feed_provider.py"
    assert "class AcmeFeedProvider(Provider)" in module.read_text()
    assert str(module) in made.stdout and str(test) in made.stdout

    # Run from elsewhere: the generated test makes its own folder importable, for itself and
    # for the provider process its hub starts.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(test)], capture_output=True, text=True, timeout=TIMEOUT * 2,
                         env=_env(), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6 passed" in run.stdout

    # The CLI loads it from the current folder, as the module docstring says.
    history = nbfeed(tmp_path / "home", "--provider",
                     "acme_feed=acme_feed_provider:AcmeFeedProvider", "history", "acme_feed",
                     "DEMO", "1h", "--count", "4", "--format", "csv", cwd=feeds)
    assert history.returncode == 0, history.stderr
    assert len(list(csv.DictReader(io.StringIO(history.stdout)))) == 4


def test_new_provider_refuses_to_overwrite_without_force(tmp_path):
    first = nbfeed(tmp_path, "new-provider", "mine", "--dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    module = tmp_path / "mine_provider.py"
    module.write_text("# my edits\n")

    again = nbfeed(tmp_path, "new-provider", "mine", "--dir", str(tmp_path))
    assert_user_error(again, "mine_provider.py", "--force")
    assert module.read_text() == "# my edits\n"

    forced = nbfeed(tmp_path, "new-provider", "mine", "--dir", str(tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "class MineProvider(Provider)" in module.read_text()


@pytest.mark.parametrize("name", ["Bad-Name", "1feed", "simulated", "class", "x" * 41,
                                  "../evil", ""])
def test_new_provider_refuses_bad_names(tmp_path, name):
    result = nbfeed(tmp_path, "new-provider", name, "--dir", str(tmp_path / "out"))
    assert_user_error(result, repr(name))
    assert not (tmp_path / "out").exists()


def test_serve_hands_its_arguments_to_jupyter(tmp_path):
    # '--version' is nbfeed's own option too: after 'serve' it must reach Jupyter unchanged.
    result = nbfeed(tmp_path, "serve", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()[:1].isdigit()
    assert "nbfeed" not in result.stdout
