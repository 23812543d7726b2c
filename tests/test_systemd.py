"""The service unit is valid for systemd and carries the hardening we promise."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "grillstats-bridge.service"


def unit_options() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            options.setdefault(key, []).append(value)
    return options


def test_unit_has_notify_watchdog_and_hardening() -> None:
    opts = unit_options()
    expected = {
        "Type": "notify",
        "Restart": "on-failure",
        "User": "grillstats",
        "StateDirectory": "grillstats-bridge",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert opts.get(key) == [value], key
    assert "WatchdogSec" in opts
    assert "/etc/grillstats-bridge/config.yaml" in opts["ExecStart"][0]
    assert configparser.ConfigParser(strict=False, interpolation=None).read(UNIT)


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # .ci/run installs systemd (for systemd-analyze) where it is missing: this never skips
    assert shutil.which("systemd-analyze"), "systemd-analyze is not installed (apt: systemd)"
    # The binary path only exists after installation; point it at a real program.
    unit = tmp_path / "grillstats-bridge.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/grillstats-bridge/bin/grillstats-bridge", "/bin/true")
    )
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


TEMPLATE = UNIT.with_name("grillstats-bridge@.service")


def test_template_unit_runs_one_process_each_and_is_clean(tmp_path: Path) -> None:
    """grillstats-bridge@I.service: process I of GRILLSTATS_PROCESSES, hardened the same."""
    text = TEMPLATE.read_text()
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert exec_start.endswith("run --processes ${GRILLSTATS_PROCESSES} --process-index %i")
    assert "Environment=GRILLSTATS_PROCESSES=2" in text.splitlines()
    hardening = [
        line
        for line in UNIT.read_text().splitlines()
        if line.startswith(("Protect", "Private", "Restrict", "SystemCall", "NoNew", "Capab"))
    ]
    assert hardening and all(line in text.splitlines() for line in hardening)
    assert shutil.which("systemd-analyze"), "systemd-analyze is not installed (apt: systemd)"
    unit = tmp_path / "grillstats-bridge@0.service"
    unit.write_text(text.replace("/opt/grillstats-bridge/bin/grillstats-bridge", "/bin/true"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
