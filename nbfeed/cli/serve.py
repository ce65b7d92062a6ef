"""``nbfeed serve``: a Jupyter server (JupyterLab when installed) with nbfeed enabled.

Everything after ``serve`` goes to Jupyter unchanged (``nbfeed serve --port 9999 --no-browser``).
The process is replaced by Jupyter's own (``exec``), so Ctrl-C, SIGTERM and Jupyter's shutdown
behave exactly as with ``jupyter lab``; the extension stops every provider process on the way out.
Jupyter prints its URL with the token; nbfeed's start hook prints the OpenBB Workspace URL.
"""

from __future__ import annotations

import importlib.util
import os
import sys

ENABLE = '--ServerApp.jpserver_extensions={"nbfeed": True}'


def command(argv: list[str]) -> list[str]:
    """The command line ``serve`` runs (JupyterLab if importable, else a bare Jupyter server)."""
    lab = importlib.util.find_spec("jupyterlab") is not None and "--no-lab" not in argv
    args = [a for a in argv if a != "--no-lab"]
    module = "jupyterlab" if lab else "jupyter_server"
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args:
        # Containers and CI machines run as root; Jupyter refuses that unless told.
        print("nbfeed: running as root, adding --allow-root", file=sys.stderr)
        args.append("--allow-root")
    return [sys.executable, "-m", module, ENABLE, *args]


def main(argv: list[str] | None = None) -> int:
    """Replace this process with the Jupyter server; returns only if that fails."""
    cmd = command(list(sys.argv[2:] if argv is None else argv))
    print("nbfeed: starting", " ".join(cmd[2:3]), "with the nbfeed extension", file=sys.stderr)
    try:
        os.execv(cmd[0], cmd)
    except OSError as exc:
        print(f"nbfeed serve: could not start Jupyter: {exc}", file=sys.stderr)
        return 2
    return 0  # not reached
