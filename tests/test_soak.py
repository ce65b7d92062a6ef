"""The soak benchmark's short mode: churn at 20,000 row updates/s against a real server.

``bench/soak.py`` runs ten minutes for the figures (RSS at minute 2 and at the end); this test
runs it for 40 seconds and checks what must hold at any length: no socket goes silent while
its streams produce, every history request is answered, the bystander never waits a second,
and the server logs no error. Memory figures are printed, not asserted (a benchmark's job).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_short_soak_keeps_every_socket_delivering_and_logs_no_error():
    out = subprocess.run([sys.executable, str(SOAK), "--seconds", "40", "--json"],
                         capture_output=True, text=True, timeout=380)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({k: report[k] for k in ("rss_mb_at_mark", "rss_mb_at_end",
                                             "rss_growth_pct", "load_avg")}))
    assert report["server_alive"]
    assert report["silent_sockets"] == 0, report["silent_subscriptions"]
    assert report["history_answered"] > 10 and report["history_refused"] == 0
    assert report["unexpected_error_frames"] == []
    assert report["subscriptions"] > 50 and report["sockets_opened"] > 12
    assert report["log_errors"] == 0, report["log_error_lines"]
    assert report["bystander_max_gap_s"] < 1.0
