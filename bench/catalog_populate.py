"""How fast the catalog is populated, and how fast it answers searches while a source is replaced.

Builds the synthetic 200k-entry catalog of ``bench/catalog_search.py`` (stocks 60%, two crypto
exchanges, FX) and, for this checkout and for a reference revision of nbfeed (by default the
catalog before bulk populate, exported from git into a temporary directory), runs in a fresh
subprocess each:

1. populate: every source into an empty catalog file. Since issue 18 the work is split as in
   the product: a provider's process turns its entries into a ``Listing`` (checks, JSON,
   catalog order: ``prepare_entries``) and the hub only writes it (``replace_source``); both
   are timed (``time.thread_time``) and reported apart and together. The reference revision
   does everything in ``replace_source``, in the hub. Also timed for this checkout:
   ``replace_source`` handed the entries as dicts (both steps in the hub, the bus's path);
2. refresh: the largest source (``stocks``, 120k entries) replaced in the full catalog on a
   worker thread - as the hub does, ``asyncio.to_thread``, with the listing as the provider
   sent it - while the main thread searches without pause (the bench's query mix); CPU and wall
   time of the refresh, and p50/p99/max of the searches that ran during it;
3. searches on the idle catalog afterwards (p50/p99), to show ranking work did not get slower.

Prints both columns and their ratio, with the load average before and after (the machine is
shared: CPU time is the figure to compare, wall time and latencies move with the load). Each
subprocess populates ``--rounds`` times; the fastest round is reported.

    python bench/catalog_populate.py [--size 200000] [--rounds 2] [--reference REV | --no-reference]

Targets (issue 18): populate 200k entries in under 3 s of CPU (under 15 us per entry); a search
during a refresh answers in under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The catalog as it was before bulk populate (issue 18): row tuples built per entry with a
# dict copy, one big sort, PRAGMA optimize reading whole indexes.
REFERENCE = "318247e"


def run_one(size: int, queries_per_kind: int, rounds: int) -> dict:
    """The three measurements on whatever ``nbfeed`` is first on sys.path."""
    # nbfeed first, from PYTHONPATH: catalog_search puts this checkout on sys.path.
    import nbfeed.hub.catalog
    from nbfeed.hub.catalog import Catalog

    sys.path.insert(0, str(ROOT / "bench"))
    from catalog_search import make_catalog_entries, make_queries

    by_source = make_catalog_entries(size)
    mix = [q for pairs in make_queries(by_source, queries_per_kind).values() for q in pairs]
    try:  # since issue 18: listings made in the provider's process
        from nbfeed.providers.listing import prepare_entries
    except ImportError:  # a reference from before: the hub prepared dicts itself
        prepare_entries = None
    split = prepare_entries is not None
    result: dict = {"module": nbfeed.hub.catalog.__file__, "split": split}
    with tempfile.TemporaryDirectory() as tmp:
        best: dict = {}
        for round_ in range(rounds):
            cat = Catalog(Path(tmp) / f"catalog{round_}.db")
            cpu = time.thread_time()
            listings = ({source: prepare_entries(source, entries)
                         for source, entries in by_source.items()} if split else by_source)
            prepare = time.thread_time() - cpu
            cpu, wall = time.thread_time(), time.perf_counter()
            for source, listing in listings.items():
                cat.replace_source(source, listing)
            write, wall = time.thread_time() - cpu, time.perf_counter() - wall
            if not best or prepare + write < best["populate_cpu"]:
                best = {"populate_cpu": prepare + write, "prepare_cpu": prepare,
                        "write_cpu": write, "populate_wall": wall}
            if round_ < rounds - 1:
                cat.close()
        result.update(best)
        result["entries"] = sum(cat.sources().values())
        if split:  # the same catalog from dicts, both steps in one thread (the bus's way)
            other = Catalog(Path(tmp) / "from_dicts.db")
            cpu = time.thread_time()
            for source, entries in by_source.items():
                other.replace_source(source, entries)
            result["dicts_cpu"] = time.thread_time() - cpu
            other.close()
            # The hub holds no dicts of a provider's listing, only its texts: neither does
            # this process from here on (a garbage collection walking 200k dicts during the
            # refresh stalled a search for 240 ms, which the hub would not see).
            del by_source

        refresh: dict = {}
        started = threading.Event()

        def replace() -> None:
            started.set()
            cpu, wall = time.thread_time(), time.perf_counter()
            refresh["stored"] = cat.replace_source("stocks", listings["stocks"])
            refresh["cpu"] = time.thread_time() - cpu
            refresh["wall"] = time.perf_counter() - wall

        worker = threading.Thread(target=replace)
        worker.start()
        started.wait()
        during: list[float] = []
        i = 0
        while worker.is_alive():
            query, filters = mix[i % len(mix)]
            i += 1
            t = time.perf_counter()
            cat.search(query, **filters)
            during.append(time.perf_counter() - t)
        worker.join()
        result.update(refresh_cpu=refresh["cpu"], refresh_wall=refresh["wall"],
                      refreshed=refresh["stored"], during=_stats(during))
        idle = []
        for query, filters in mix * 2:
            t = time.perf_counter()
            cat.search(query, **filters)
            idle.append(time.perf_counter() - t)
        result["idle"] = _stats(idle[len(mix):])  # the second, warm pass
        cat.close()
    result["e2e"] = through_a_provider(size)
    return result


def through_a_provider(size: int) -> dict:
    """Populate from a real provider process, as the hub does: CPU of the hub's process (all
    threads: reading the reply, preparing if it has to, writing) and of the provider's (its
    validation, and since issue 18 its preparing), for the stocks source of a ``size`` catalog.
    """
    import asyncio

    from nbfeed.hub import Hub, HubConfig
    from nbfeed.providers.base import Provider
    from nbfeed.providers.registry import ProviderSpec

    class ListingProvider(Provider):
        """``get_dataset()`` is the bench's stocks listing, made once when the process starts."""

        def __init__(self, size: int, bench_dir: str) -> None:
            super().__init__()
            sys.path.insert(0, bench_dir)
            from catalog_search import make_catalog_entries

            self.entries = make_catalog_entries(size)["stocks"]
            for entry in self.entries:
                entry["source"] = "listing"

        def get_dataset(self) -> list[dict]:
            return self.entries

    def child_cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def run(home: str) -> dict:
        spec = ProviderSpec("listing", ListingProvider,
                            {"size": size, "bench_dir": str(ROOT / "bench")})
        hub = Hub(HubConfig(home=Path(home), providers=[spec]))
        await hub.start()
        try:
            await hub.wait_ready()  # the first listing, at start: not measured
            pid = hub._processes["listing"].pid
            hub_cpu, provider_cpu = time.process_time(), child_cpu(pid)
            wall = time.perf_counter()
            outcome = await hub.populate(["listing"])
            wall = time.perf_counter() - wall
            hub_cpu, provider_cpu = (time.process_time() - hub_cpu,
                                     child_cpu(pid) - provider_cpu)
            return {"outcome": outcome["listing"], "hub_cpu": hub_cpu,
                    "provider_cpu": provider_cpu, "wall": wall,
                    "entries": hub.catalog.sources()["listing"]}
        finally:
            await hub.stop()

    with tempfile.TemporaryDirectory() as home:
        return asyncio.run(run(home))


def _stats(seconds: list[float]) -> dict:
    ms = sorted(s * 1e3 for s in seconds)
    if not ms:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"n": len(ms), "p50": statistics.median(ms),
            "p99": ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], "max": ms[-1]}


def _export(revision: str, into: Path) -> Path | None:
    """The ``nbfeed`` package of ``revision`` unpacked under ``into``, or None without git."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "nbfeed"],
                                 check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"reference {revision}: cannot export it from git ({exc}); skipped")
        return None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _measure(package_root: Path, size: int, queries: int, rounds: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(package_root))
    out = subprocess.run(
        [sys.executable, __file__, "--one", "--size", str(size), "--queries", str(queries),
         "--rounds", str(rounds)],
        check=True, capture_output=True, text=True, env=env, cwd=package_root,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000, help="catalog entries")
    parser.add_argument("--queries", type=int, default=60, help="queries per kind in the mix")
    parser.add_argument("--rounds", type=int, default=2, help="populates per run (fastest kept)")
    parser.add_argument("--reference", default=REFERENCE, help="git revision to compare with")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.size, args.queries, args.rounds)))
        return

    load_before = os.getloadavg()
    import sqlite3
    print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, "
          f"load average {load_before[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"this checkout": _measure(ROOT, args.size, args.queries, args.rounds)}
        if not args.no_reference:
            root = _export(args.reference, Path(tmp))
            if root is not None:
                runs[f"reference {args.reference}"] = _measure(root, args.size, args.queries,
                                                               args.rounds)
    names = list(runs)
    for name, run in runs.items():
        print(f"{name}: {run['module']}")
    n = runs[names[0]]["entries"]
    refreshed = runs[names[0]]["refreshed"]
    rows = [
        (f"populate {n} entries: CPU s", lambda r: r["populate_cpu"], "{:.2f}"),
        ("  CPU us per entry", lambda r: r["populate_cpu"] / r["entries"] * 1e6, "{:.1f}"),
        ("  of it in the provider process s",
         lambda r: r["prepare_cpu"] if r["split"] else 0.0, "{:.2f}"),
        ("  of it in the hub s", lambda r: r["write_cpu"], "{:.2f}"),
        ("  hub CPU us per entry", lambda r: r["write_cpu"] / r["entries"] * 1e6, "{:.1f}"),
        ("  all in the hub, from dicts s",
         lambda r: r.get("dicts_cpu", r["populate_cpu"]), "{:.2f}"),
        ("  wall s", lambda r: r["populate_wall"], "{:.2f}"),
        (f"replace {refreshed} of them: CPU s", lambda r: r["refresh_cpu"], "{:.2f}"),
        ("  wall s", lambda r: r["refresh_wall"], "{:.2f}"),
        ("searches during it", lambda r: r["during"]["n"], "{:.0f}"),
        ("  p50 ms", lambda r: r["during"]["p50"], "{:.2f}"),
        ("  p99 ms", lambda r: r["during"]["p99"], "{:.2f}"),
        ("  max ms", lambda r: r["during"]["max"], "{:.2f}"),
        ("searches idle: p50 ms", lambda r: r["idle"]["p50"], "{:.2f}"),
        ("  p99 ms", lambda r: r["idle"]["p99"], "{:.2f}"),
        (f"from a provider process, {runs[names[0]]['e2e']['entries']} entries: hub CPU s",
         lambda r: r["e2e"]["hub_cpu"], "{:.2f}"),
        ("  provider CPU s", lambda r: r["e2e"]["provider_cpu"], "{:.2f}"),
        ("  both, us per entry",
         lambda r: (r["e2e"]["hub_cpu"] + r["e2e"]["provider_cpu"]) / r["e2e"]["entries"] * 1e6,
         "{:.1f}"),
        ("  wall s", lambda r: r["e2e"]["wall"], "{:.2f}"),
    ]
    print(f"\n{'':<36}" + "".join(f"{name:>24}" for name in names)
          + ("   this/reference" if len(names) == 2 else ""))
    for label, get, fmt in rows:
        values = [get(runs[name]) for name in names]
        line = f"{label:<36}" + "".join(f"{fmt.format(v):>24}" for v in values)
        if len(values) == 2 and values[1]:
            line += f"   {values[0] / values[1]:>8.2f}"
        print(line)
    print(f"\ntargets: populate {n} entries in < 3 s CPU (< 15 us per entry); "
          f"searches during a refresh < 50 ms")
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
