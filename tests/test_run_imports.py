"""``run`` imports what the daemon uses and nothing more: each module is memory in every process."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

from grillstats_bridge.cli import GROUPS, groups_for

REPO = Path(__file__).resolve().parent.parent

# What a `run` never needs unless asked for: the simulator (demo, simulate), Alembic
# (db, run --migrate), the web app (http.web), the test tools, the other commands.
NOT_IMPORTED = (
    "grillstats_bridge.simulator",
    "grillstats_bridge.web.app",
    "grillstats_bridge.web.server",
    "grillstats_bridge.cli.demo",
    "alembic",
    "starlette",
    "uvicorn",
    "jinja2",
    "hypothesis",
    "pytest",
    *(f"grillstats_bridge.cli.{module}" for module in GROUPS if module != "run_cmd"),
)

# A `run` as far as it goes without a database (the daemon's modules are imported by
# then), then the daemon's HTTP server as `http.web: false` has it: /health alone.
SCRIPT = """
import json, sys
from grillstats_bridge.cli import main
code = main(["--config", sys.argv[1], "run"])
from grillstats_bridge.bridge.health import serve_http
from grillstats_bridge.config import Config
config = Config().replace("http", host="127.0.0.1", port=0, web=False)
server = serve_http(config, None, lambda: (True, {}), clock=None)
print(json.dumps({"code": code, "server": type(server).__name__, "modules": sorted(sys.modules)}))
"""


def test_run_imports_no_simulator_alembic_or_web(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    # A database that cannot be opened: `run` stops there, after importing the daemon.
    config.write_text(f"database: {{url: 'sqlite:///{tmp_path}/missing/dir/bridge.db'}}\n")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["code"] == 1, out.stderr
    assert result["server"] == "HealthServer"
    modules = set(result["modules"])
    assert "grillstats_bridge.bridge.daemon" in modules  # the closure under test is there
    unwanted = sorted(
        m for m in modules for prefix in NOT_IMPORTED if m == prefix or m.startswith(prefix + ".")
    )
    assert unwanted == []


def test_groups_table_names_what_each_module_registers() -> None:
    """GROUPS is what lets a command import only its own module: it must not drift."""
    for module, commands in GROUPS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"grillstats_bridge.cli.{module}").register(sub)
        assert tuple(sub.choices) == commands, module


def test_a_command_line_builds_only_its_groups() -> None:
    assert groups_for(["--config", "x.yaml", "run", "--migrate"]) == ["run_cmd"]
    assert groups_for(["db", "upgrade"]) == ["db_cmd"]
    assert groups_for(["--help"]) == list(GROUPS)  # the overall help lists every command
    assert groups_for(["nonsense"]) == list(GROUPS)  # and so does argparse's error
