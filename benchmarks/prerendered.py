"""Cloud answers rendered before a benchmark, served to the real client without the simulator.

The pipeline benchmark measures the bridge, not the cloud: with the simulator
answering over HTTP, its per-request work (rendering every device and channel
document, the JSON, the HTTP server) competes with the bridge for the CPU.
Here the simulator renders each account's ``runQuery`` and ``batchGet``
answers once, every ``slot`` simulated seconds, into a file; the bridge's
``requests`` session gets a transport adapter that answers those two calls
with the stored bytes of the current slot (one ``pread``: the answers do not
count in the bridge's memory). The client still decodes real Firestore JSON.
Everything else (sign-in, token refresh, the user document, listing the
channels of a new device) goes to the simulator over HTTP as usual.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from grillstats_bridge.thermoworks.client import channel_names, devices_query
from grillstats_bridge.thermoworks.transport import CloudSession

if TYPE_CHECKING:  # the bridge's process only serves answers: no simulator in its memory
    from grillstats_bridge.simulator.scenario import Scenario
    from grillstats_bridge.simulator.server import CloudSimulator

ENDPOINTS = ("runQuery", "batchGet")
FORMAT = 2  # bump when what is rendered changes (cached files are keyed on it)


@dataclass(frozen=True)
class Layout:
    """What a rendered file holds: accounts (by email) x slots x the two endpoints."""

    emails: tuple[str, ...]
    start: float  # simulated offset of slot 0
    slot: float  # simulated seconds per slot
    slots: int

    def key(self, scenario_digest: str) -> str:
        text = json.dumps([FORMAT, scenario_digest, self.emails, self.start, self.slot, self.slots])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def query_bodies(sim: CloudSimulator, email: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runQuery and batchGet requests the client makes for an account once it knows it."""
    scenario = sim.scenario
    account = scenario.account(email)
    root = sim.firestore_root(email)
    devices = sorted(scenario.devices_of(email), key=lambda d: d.serial)
    pairs = [(d.serial, [c.number for c in d.channels]) for d in devices]
    return devices_query(account.account_id), {"documents": channel_names(root, pairs)}


def _render_accounts(
    scenario: Scenario, layout: Layout, emails: Sequence[str], path: str
) -> list[list[int]]:
    """Render ``emails``' answers into ``path``; returns each account's answer lengths."""
    from grillstats_bridge.simulator.server import CloudSimulator

    sim = CloudSimulator(scenario, speed=0, seed=1)  # never started: no server
    lengths: list[list[int]] = []
    with open(path, "wb") as out:
        for email in emails:
            bodies = query_bodies(sim, email)
            sizes: list[int] = []
            for k in range(layout.slots):
                t = layout.start + k * layout.slot
                for endpoint, body in zip(ENDPOINTS, bodies, strict=True):
                    data = sim.render_query(email, endpoint, body, t)
                    out.write(data)
                    sizes.append(len(data))
            lengths.append(sizes)
    return lengths


def render(
    scenario: Scenario,
    layout: Layout,
    directory: Path,
    *,
    processes: int = 1,
    digest: str = "",
) -> Path:
    """Render every answer of ``layout`` into ``directory`` (reused when already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / f"answers-{layout.key(digest)}"
    data, index = base.with_suffix(".bin"), base.with_suffix(".idx")
    if data.exists() and index.exists():
        return base
    groups = [list(layout.emails[w::processes]) for w in range(processes)]
    parts = [str(base) + f".part{w}" for w in range(processes)]
    if processes > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes) as pool:
            jobs = [(scenario, layout, g, p) for g, p in zip(groups, parts, strict=True)]
            results = pool.starmap(_render_accounts, jobs)
    else:
        results = [_render_accounts(scenario, layout, groups[0], parts[0])]
    # One file, accounts in layout order; the index holds each answer's start (and the end).
    by_email: dict[str, tuple[int, int, list[int]]] = {}
    for w, (group, lengths) in enumerate(zip(groups, results, strict=True)):
        position = 0
        for email, sizes in zip(group, lengths, strict=True):
            by_email[email] = (w, position, sizes)
            position += sum(sizes)
    offsets = array("q", [0])
    tmp = data.with_suffix(".tmp")
    with tmp.open("wb") as out:
        handles = [open(p, "rb") for p in parts]  # noqa: SIM115
        try:
            for email in layout.emails:
                w, position, sizes = by_email[email]
                handles[w].seek(position)
                for size in sizes:
                    out.write(handles[w].read(size))
                    offsets.append(offsets[-1] + size)
        finally:
            for handle in handles:
                handle.close()
            for p in parts:
                Path(p).unlink(missing_ok=True)
    with index.open("wb") as f:
        offsets.tofile(f)
    tmp.rename(data)
    return base


class Answers:
    """A rendered file, read an answer at a time."""

    def __init__(self, base: Path, layout: Layout, account_ids: Mapping[str, str]) -> None:
        self.layout = layout
        self._fd = os.open(base.with_suffix(".bin"), os.O_RDONLY)
        self._offsets = array("q")
        with base.with_suffix(".idx").open("rb") as f:
            self._offsets.frombytes(f.read())
        expected = len(layout.emails) * layout.slots * len(ENDPOINTS) + 1
        if len(self._offsets) != expected:
            raise ValueError(f"{base}: {len(self._offsets)} offsets, expected {expected}")
        position = {email: n for n, email in enumerate(layout.emails)}
        # account id -> account number; serial -> account number (batchGet names a device)
        self._by_account = {aid: position[email] for email, aid in account_ids.items()}
        self.served = 0

    def close(self) -> None:
        os.close(self._fd)

    def slot_of(self, offset: float) -> int:
        """The slot in force at a simulated offset (the last one once past the end)."""
        k = int((offset - self.layout.start) // self.layout.slot)
        return min(max(k, 0), self.layout.slots - 1)

    def answer(self, account_id: str, endpoint: str, offset: float) -> bytes | None:
        account = self._by_account.get(account_id)
        if account is None:
            return None
        n = (account * self.layout.slots + self.slot_of(offset)) * len(ENDPOINTS)
        n += ENDPOINTS.index(endpoint)
        start, end = self._offsets[n], self._offsets[n + 1]
        self.served += 1
        return os.pread(self._fd, end - start, start)


class PrerenderedAdapter(HTTPAdapter):
    """Answers runQuery and batchGet from :class:`Answers`; any other request goes out as usual.

    The account comes from the request itself (runQuery's accountId filter,
    batchGet's first device name), the slot from ``offset`` (simulated seconds).
    """

    def __init__(
        self, answers: Answers, offset: Callable[[], float], serials: Mapping[str, str]
    ) -> None:
        super().__init__()
        self.answers = answers
        self.offset = offset
        self.serials = serials  # serial -> account id

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        path = urlsplit(request.url or "").path
        endpoint = next((e for e in ENDPOINTS if path.endswith(":" + e)), None)
        if request.method == "POST" and endpoint is not None:
            account_id = self._account_of(endpoint, request.body)
            if account_id is not None:
                data = self.answers.answer(account_id, endpoint, self.offset())
                if data is not None:
                    return self._response(request, data)
        return super().send(request, *args, **kwargs)

    def _account_of(self, endpoint: str, body: Any) -> str | None:
        try:
            query = orjson.loads(body or b"{}")  # fast: counted in the bridge's CPU
            if endpoint == "runQuery":
                value = query["structuredQuery"]["where"]["fieldFilter"]["value"]
                return str(value["stringValue"])
            serial = str(query["documents"][0]).split("/devices/", 1)[1].split("/", 1)[0]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
        return self.serials.get(serial)

    def _response(self, request: requests.PreparedRequest, data: bytes) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.reason = "OK"
        response.headers = CaseInsensitiveDict(
            {"Content-Type": "application/json; charset=UTF-8", "Content-Length": str(len(data))}
        )
        response._content = data
        response._content_consumed = True  # type: ignore[attr-defined]  # read whole already
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response


def prerendered_session(
    answers: Answers, offset: Callable[[], float], firestore_url: str, serials: Mapping[str, str]
) -> requests.Session:
    """A session whose Firestore queries are answered from ``answers``."""
    session = CloudSession()  # what the client makes for itself
    session.mount(firestore_url.rstrip("/") + "/", PrerenderedAdapter(answers, offset, serials))
    return session


def serial_accounts(scenario: Scenario) -> dict[str, str]:
    """serial -> the account id of its owner."""
    return {d.serial: scenario.account(d.account).account_id for d in scenario.devices}


def account_ids(scenario: Scenario, emails: Sequence[str]) -> dict[str, str]:
    return {email: scenario.account(email).account_id for email in emails}
