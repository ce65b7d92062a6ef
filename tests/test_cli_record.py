"""``nbfeed record`` and ``nbfeed recordings``, run as real subprocesses on a real home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd

from nbfeed.recorder.layout import Layout
from tests.test_cli import TIMEOUT, _argv, _env, assert_user_error, in_a_terminal, nbfeed


def test_record_for_a_duration_then_list_show_export_and_delete(tmp_path):
    home = tmp_path / "home"
    done = nbfeed(home, "record", "simulated", "AAPL", "MSFT", "--interval", "tick",
                  "--interval", "1s", "--duration", "1.5", "--name", "cli-demo")
    assert done.returncode == 0, done.stderr
    name, status, rows, *_ = done.stdout.split()
    assert (name, status) == ("cli-demo", "finished") and int(rows) > 0
    assert "recording cli-demo (tick, 1s)" in done.stderr

    listed = nbfeed(home, "recordings")
    header, line = listed.stdout.splitlines()
    assert header.split()[:3] == ["name", "status", "sources"]
    assert line.split()[:5] == ["cli-demo", "finished", "simulated", "AAPL,MSFT", "1s,tick"]
    shown = json.loads(nbfeed(home, "recordings", "show", "cli-demo", "--format", "json").stdout)
    assert shown[0]["rows"] == int(rows) and shown[0]["lost_rows"] == 0

    out = tmp_path / "demo.csv"
    exported = nbfeed(home, "recordings", "export", "cli-demo", str(out))
    assert exported.returncode == 0 and exported.stdout.strip() == str(out)
    frame = pd.read_csv(out)
    assert len(frame) == int(rows) and set(frame["interval"]) == {"tick", "1s"}
    assert_user_error(nbfeed(home, "recordings", "export", "cli-demo", str(out)),
                      "exists; pass overwrite=True")

    assert nbfeed(home, "recordings", "delete", "cli-demo").returncode == 0
    assert "no recordings in" in nbfeed(home, "recordings").stderr


def test_bad_record_and_recordings_command_lines_name_the_problem(tmp_path):
    home = tmp_path / "home"
    assert_user_error(nbfeed(home, "record", "simulated", "AAPL", "--name", "../x"),
                      "recording name '../x' must be 1-64 characters")
    assert_user_error(nbfeed(home, "record", "simulated", "AAPL", "--duration", "-1"),
                      "duration must be more than 0")
    assert_user_error(nbfeed(home, "record", "simulated", "NOPE", "--duration", "1"),
                      "unknown symbol 'NOPE'")
    assert_user_error(nbfeed(home, "recordings", "show", "nope"), "unknown recording 'nope'")
    usage = nbfeed(home, "recordings", "export")
    assert usage.returncode == 2 and "needs the recording's NAME" in usage.stderr
    assert not Layout(home).names()


def test_ctrl_c_stops_a_recording_and_writes_every_row(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.Popen(_argv(home, "record", "simulated", "EURUSD", "--name", "open-ended"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True, preexec_fn=in_a_terminal)
    try:
        layout = Layout(home)
        deadline = time.monotonic() + TIMEOUT
        while not (layout.names() and layout.data_files("open-ended")):
            assert time.monotonic() < deadline and proc.poll() is None, "nothing recorded"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    name, status, rows, *_ = stdout.split()
    assert (name, status) == ("open-ended", "stopped") and int(rows) > 0
    files = layout.data_files("open-ended")
    assert sum(len(pd.read_parquet(f.path)) for f in files) == int(rows)
