"""The README's "Install as a service" commands, run as written in a scratch root.

The commands are read from the README's marked block (not copied here) and run one by
one with ``ROOT`` set to a scratch directory, in a copy of the source tree. Skipped,
and said so: what needs the real machine (``apt``), a running systemd (``systemctl``,
``journalctl``, and ``curl`` of the service systemd would have started) or a real
ThermoWorks account (``account link``). Where ``systemctl enable --now`` stands,
the test starts the unit's ``ExecStart=`` itself, as systemd would: the unit's
``Environment=``, ``WorkingDirectory=`` and a ``$CREDENTIALS_DIRECTORY`` holding a
copy of each ``LoadCredential=`` file. Stand-ins, because this is no real system:
``runuser`` (the service user exists only in the scratch root's /etc/passwd) runs
the command as the current user, and pip installs offline (``PIP_NO_INDEX``, no build
isolation), the dependencies and setuptools coming from the test's own virtualenv
through a ``.pth`` file (the virtualenv's bundled setuptools is older than the build
needs; a real install gets a new one from the index).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from grillstats_bridge.config import MqttConfig
from tests.fixtures.mqtt import free_port

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- install-commands"
UNIT = "etc/systemd/system/grillstats-bridge.service"
SKIPPED = {
    "apt": "installs system packages: needs the real machine and the network",
    "systemctl": "needs a running systemd (enable --now: ExecStart= is run below instead)",
    "journalctl": "needs a running systemd",
    "curl": "asks the service that systemctl would have started",
}
NEEDS_CLOUD = "account link"  # a real ThermoWorks account and its password, typed in


def readme_commands() -> list[str]:
    """The commands of the README's marked install block, comments and blank lines left out."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER) :]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block is not None, "no ```sh block after the install-commands marker"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def scratch(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A copy of the source tree, an empty root with a fresh system's account files, the env."""
    tree = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    accounts = {  # a fresh system's, for useradd --prefix (not the host's: no hashes copied)
        "passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "group": "root:x:0:\n",
        "shadow": "root:*:20000:0:99999:7:::\n",
        "gshadow": "root:*::\n",
    }
    for name, text in accounts.items():
        (root / "etc" / name).write_text(text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runuser = bin_dir / "runuser"
    runuser.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n')
    runuser.chmod(0o755)
    (bin_dir / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
    # The virtualenv's dependencies, without this project (installed from the copy instead).
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "grillstats" not in entry.name and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "ROOT": str(root),
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_QUIET": "1",
        "GRILLSTATS_DEPS": str(deps),
    }
    return tree, root, env


def test_the_readme_install_commands_give_a_running_service(
    scratch: tuple[Path, Path, dict[str, str]], mqtt_config: MqttConfig, instance_id: str
) -> None:
    tree, root, env = scratch
    ran, skipped = [], []
    for command in readme_commands():
        first = shlex.split(command)[0]
        if first in SKIPPED or NEEDS_CLOUD in command:
            skipped.append(command)
            if command.startswith("systemctl enable --now"):
                start_the_unit(root, env, mqtt_config, instance_id)
            continue
        stdin = "a long grill password\n" if "user add" in command else None
        done = subprocess.run(
            ["sh", "-ec", command],
            cwd=tree,
            env=env,
            input=stdin,
            text=True,
            capture_output=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        ran.append(command)
        if command.startswith("python3 -m venv"):
            venv = Path(command.split()[-1].replace("$ROOT", str(root)))
            site = site_packages(venv)
            (site / "test-deps.pth").write_text(env["GRILLSTATS_DEPS"] + "\n")
            for bundled in site.glob("setuptools*"):  # too old for the build; ours is used
                shutil.rmtree(bundled)
    assert any("install.sh" in c for c in ran) and any("user add" in c for c in ran)
    assert sum(NEEDS_CLOUD in c for c in skipped) == 1

    unit = root / UNIT
    assert (root / "etc/grillstats-bridge/config.yaml").stat().st_mode & 0o777 == 0o644
    creds = root / "etc/grillstats-bridge/credentials"
    assert creds.stat().st_mode & 0o777 == 0o750
    # The unit as installed, its paths moved into the scratch root, passes systemd's check.
    verified = root / "verify" / unit.name
    verified.parent.mkdir()
    verified.write_text(unit.read_text().replace("/opt/", f"{root}/opt/"))
    check = subprocess.run(
        ["systemd-analyze", "verify", str(verified)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    # The user added by step 4 is in the service's database.
    listed = subprocess.run(
        [f"{root}/usr/local/sbin/grillstats-admin", "user", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and "you@example.com" in listed.stdout, listed.stderr


def site_packages(venv: Path) -> Path:
    (path,) = venv.glob("lib/python3*/site-packages")
    return path


def start_the_unit(root: Path, env: dict[str, str], mqtt: MqttConfig, instance_id: str) -> None:
    """What systemd does at ``enable --now``: ExecStart= with the unit's environment."""
    settings = unit_settings(root / UNIT)
    (exec_start,) = settings["ExecStart"]
    argv = [
        part.replace("/opt/", f"{root}/opt/").replace("/etc/", f"{root}/etc/")
        for part in shlex.split(exec_start)
    ]
    credentials = root / "run/credentials/grillstats-bridge.service"
    credentials.mkdir(parents=True)
    for spec in settings.get("LoadCredential", []):
        name, source = spec.split(":", 1)
        shutil.copy2(f"{root}{source}", credentials / name)
    (state,) = settings["WorkingDirectory"]
    (root / state.lstrip("/")).mkdir(parents=True)  # StateDirectory=
    unit_env = dict(
        pair.split("=", 1)
        for value in settings.get("Environment", [])
        for pair in shlex.split(value)
    )
    service_env = {
        **env,
        **unit_env,
        "CREDENTIALS_DIRECTORY": str(credentials),
        # The test's broker, a health port and instance id of its own (a shared machine).
        "GRILLSTATS_MQTT_HOST": mqtt.host,
        "GRILLSTATS_MQTT_PORT": str(mqtt.port),
        "GRILLSTATS_MQTT_INSTANCE_ID": instance_id,
        "GRILLSTATS_MQTT_BASE_TOPIC": mqtt.base_topic,
        "GRILLSTATS_MQTT_DISCOVERY_PREFIX": mqtt.discovery_prefix,
        "GRILLSTATS_HTTP_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        argv, cwd=root / state.lstrip("/"), env=service_env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "started: database" in line:
                break
        assert any("started: database" in line for line in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "Traceback" not in "".join(lines) + rest
