"""The memory of the modules a ``run`` imports (run by hand; Linux: /proc/self/status).

    PYTHONPATH=. .venv/bin/python benchmarks/run_imports.py

The CLI parses ``run --help`` (its own modules and the ``run`` group's), then the daemon's
modules are imported as ``run`` imports them; prints VmRSS, RssAnon and RssFile in MB and
the number of modules. With ``--web`` also the web app (``http.web`` on).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path


def status_mb() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def main() -> None:
    from grillstats_bridge.cli import main as cli

    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        cli(["run", "--help"])
    from grillstats_bridge.bridge.daemon import Bridge  # noqa: F401  (what run imports)

    if "--web" in sys.argv[1:]:
        from grillstats_bridge.web.app import create_app  # noqa: F401
        from grillstats_bridge.web.server import WebServer  # noqa: F401
    figures = ", ".join(f"{k} {v:.1f} MB" for k, v in status_mb().items())
    print(f"{figures}; {len(sys.modules)} modules")


if __name__ == "__main__":
    main()
