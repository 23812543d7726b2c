"""The dependencies: floors above releases with known vulnerabilities, and a lock file
of the versions the suite passed with, which .ci/run installs before the project."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
LOCK = REPO / "requirements.lock"

# The last release with a known vulnerability that each floor must leave out.
VULNERABLE = {
    "requests": "2.32.3",  # CVE-2024-47081
    "urllib3": "2.4.0",  # CVE-2025-50181, CVE-2025-50182
    "cryptography": "44.0.0",  # CVE-2024-12797
    "setuptools": "78.1.0",  # CVE-2025-47273
}


def key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> dict[str, Requirement]:
    given = [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["test"]]
    return {key(r.name): r for r in map(Requirement, given)}


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[key(name)] = Version(version)
    return pins


@pytest.mark.parametrize("name", sorted(VULNERABLE))
def test_floors_leave_out_known_vulnerable_releases(name: str) -> None:
    requirement = requirements()[name]
    assert not requirement.specifier.contains(VULNERABLE[name]), str(requirement)
    assert requirement.specifier.contains(str(locked()[name]), prereleases=True)


def test_the_lock_pins_every_dependency_within_its_range_and_not_the_project() -> None:
    pins = locked()
    assert "grillstats-bridge" not in pins
    # every dependency of the project and its test extras, direct or not, is pinned ...
    wanted: list[tuple[str, frozenset[str]]] = [("grillstats-bridge", frozenset({"test"}))]
    seen: set[str] = set()
    while wanted:
        name, extras = wanted.pop()
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({"extra": e}) for e in ("", *extras)):
                continue
            dep = key(requirement.name)
            assert dep in pins, f"requirements.lock does not pin {requirement.name}"
            assert requirement.specifier.contains(pins[dep], prereleases=True), text
            if dep not in seen or requirement.extras:
                seen.add(dep)
                wanted.append((requirement.name, frozenset(requirement.extras)))
    # ... and the lock is what this environment (the suite's) has
    for dep in seen:
        assert Version(importlib.metadata.version(dep)) == pins[dep], dep


def test_ci_installs_the_lock_before_the_project() -> None:
    script = (REPO / ".ci" / "run").read_text()
    lock = script.index("pip install --quiet -r requirements.lock")
    assert lock < script.index("pip install --quiet -e '.[test]'")
