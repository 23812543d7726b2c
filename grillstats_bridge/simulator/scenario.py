"""Simulated cooks: the scenario data format and the evaluation of every channel over time.

A scenario is a YAML file (shipped ones live in ``scenarios/``) with accounts,
devices, temperature curves and scripted events. This module is pure: it reads
the file and answers "what does the cloud show for this channel at this time?"
without any HTTP. The simulator serves those answers over the real protocol; the
session and alert engines can be tuned on :meth:`Scenario.series` directly.

The public API is small and stable: :func:`load_scenario`, :func:`list_scenarios`,
:func:`parse_scenario`, :func:`merge_scenarios` and the :class:`Scenario` methods
``sample``, ``value``, ``series``, ``all_series`` and ``channels``.

Time inside a scenario is an offset in seconds from ``start``. Every device
pushes on its own grid (``transmit_interval``, with a per-device phase); what the
cloud shows between pushes is the value at the last push. After ``duration`` the
curves hold their last value.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from grillstats_bridge.domain import Reading, Unit, ensure_utc
from grillstats_bridge.errors import UsageError


class ScenarioError(UsageError):
    """A scenario file is unreadable or wrong; the message names the file and the key."""


# ------------------------------------------------------------------------------ device kinds


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """Defaults of one ThermoWorks product as the cloud describes it."""

    type: str  # the cloud's ``type``
    model: str  # the cloud's ``device``
    max_channels: int
    transmit_interval: float
    heartbeat_interval: float


KINDS: Mapping[str, DeviceKind] = {
    "signals": DeviceKind("signals", "signals", 4, 15, 60),
    # The Smoke Gateway's cloud names are not documented; these follow the Signals'.
    "smoke_gateway": DeviceKind("smoke", "smoke gateway", 2, 15, 60),
    "rfx_gateway": DeviceKind("rfx", "rfx gateway", 1, 15, 60),
    "rfx_meat": DeviceKind("rfx", "rfx meat", 4, 15, 60),
    "node": DeviceKind("datalogger", "node", 2, 600, 3600),
}

# Serialisation quirks a device can be given (the simulator applies them).
QUIRKS = frozenset(
    {
        "integers_as_numbers",  # integerValue as a JSON number instead of a string
        "no_device_id",  # no ``deviceId`` field
        "nanosecond_timestamps",  # timestamps with 9 fraction digits
        "float32_noise",  # values as the float32 the device sent (225.10000610351562)
        "whole_values_as_integers",  # 225.0 sent as integerValue "225"
        "sparse",  # only serial, type, label and lastSeen: every other field missing
        "legacy_bbq_type",  # an older RFX meat probe: type "bbq"
    }
)


# ------------------------------------------------------------------------------ curves


@dataclass(frozen=True, slots=True)
class Dip:
    """A lid opening: the value falls by ``depth`` over ``drop`` s, recovers over ``recover`` s."""

    at: float
    depth: float
    drop: float
    recover: float

    def amount(self, t: float) -> float:
        if t < self.at:
            return 0.0
        if t < self.at + self.drop:
            return self.depth * (t - self.at) / self.drop
        s = (t - self.at - self.drop) / self.recover
        if s >= 1.0:
            return 0.0
        return self.depth * (1.0 - s) ** 2


@dataclass(frozen=True, slots=True)
class Curve:
    """A value over time: keyframes, interpolation, a slow wave, jitter and dips."""

    times: tuple[float, ...]
    values: tuple[float, ...]
    smooth: bool = True  # monotone cubic (no overshoot) rather than straight lines
    noise: float = 0.0  # jitter amplitude, in the channel's unit
    noise_period: float = 60.0
    wave_amplitude: float = 0.0
    wave_period: float = 1200.0
    dips: tuple[Dip, ...] = ()
    slopes: tuple[float, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.slopes:
            object.__setattr__(self, "slopes", _pchip_slopes(self.times, self.values))

    def base(self, t: float) -> float:
        times, values = self.times, self.values
        if t <= times[0]:
            return values[0]
        if t >= times[-1]:
            return values[-1]
        k = bisect.bisect_right(times, t) - 1
        h = times[k + 1] - times[k]
        u = (t - times[k]) / h
        if not self.smooth:
            return values[k] + (values[k + 1] - values[k]) * u
        # Cubic Hermite with the Fritsch-Carlson slopes.
        h00 = 2 * u**3 - 3 * u**2 + 1
        h10 = u**3 - 2 * u**2 + u
        h01 = -2 * u**3 + 3 * u**2
        h11 = u**3 - u**2
        return (
            h00 * values[k]
            + h10 * h * self.slopes[k]
            + h01 * values[k + 1]
            + h11 * h * self.slopes[k + 1]
        )

    def value(self, t: float, key: str) -> float:
        """The curve at offset ``t``; ``key`` makes the jitter differ between channels."""
        v = self.base(t)
        if self.wave_amplitude:
            phase = _unit_hash(f"{key}|phase", 0) * math.pi
            v += self.wave_amplitude * math.sin(2 * math.pi * t / self.wave_period + phase)
        if self.noise:
            v += self.noise * _value_noise(key, t / self.noise_period)
        for dip in self.dips:
            v -= dip.amount(t)
        return v


def _pchip_slopes(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, ...]:
    n = len(xs)
    if n < 2:
        return (0.0,) * n
    h = [xs[i + 1] - xs[i] for i in range(n - 1)]
    d = [(ys[i + 1] - ys[i]) / h[i] for i in range(n - 1)]
    m = [d[0], *([0.0] * (n - 2)), d[-1]]
    for k in range(1, n - 1):
        if d[k - 1] * d[k] <= 0:
            m[k] = 0.0
        else:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            m[k] = (w1 + w2) / (w1 / d[k - 1] + w2 / d[k])
    # Keep the end slopes from overshooting (the usual three-point end condition clipped).
    for end, nxt in ((0, 0), (n - 1, n - 2)):
        if m[end] * d[nxt] <= 0:
            m[end] = 0.0
    return tuple(m)


def _unit_hash(key: str, k: int) -> float:
    """A deterministic pseudo-random number in [-1, 1] for (key, k)."""
    digest = hashlib.blake2b(f"{key}|{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


def _value_noise(key: str, x: float) -> float:
    """Smooth deterministic noise in [-1, 1]: random values at integers, eased between."""
    k = math.floor(x)
    u = x - k
    u = u * u * (3 - 2 * u)
    return _unit_hash(key, k) * (1 - u) + _unit_hash(key, k + 1) * u


# ------------------------------------------------------------------------------ the model


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    enabled: bool
    value: float


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel of a simulated device."""

    number: int
    label: str
    unit: Unit
    curve: Curve
    offset: float = 0.0  # added to the curve (a sensor nearer the surface reads higher)
    lag: float = 0.0  # seconds the channel trails the curve
    type: str = "probe"  # the cloud's channel ``type``
    alarm_high: AlarmSpec | None = None
    alarm_low: AlarmSpec | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # raw fields served as they are


@dataclass(frozen=True, slots=True)
class FanSpec:
    """A Billows fan on an RFX gateway: it blows below ``set_temp`` and pulses near it."""

    set_temp: float
    channel: int = 1
    connection: str = "wired"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device and how the cloud describes it."""

    serial: str
    account: str  # the owning account's email
    kind: str
    type: str
    model: str
    label: str
    firmware: str
    battery: float
    battery_drain: float  # percent per hour
    wifi_rssi: int | None
    gateway_rssi: int | None
    gateway: str | None
    display_units: Unit
    transmit_interval: float
    recording_interval: float
    heartbeat_interval: float
    temperature_delta_trigger: float
    phase: float
    fan: FanSpec | None
    quirks: frozenset[str]
    extra: Mapping[str, Any]
    channels: tuple[ChannelSpec, ...]

    def channel(self, number: int) -> ChannelSpec:
        for spec in self.channels:
            if spec.number == number:
                return spec
        raise KeyError(f"{self.serial} has no channel {number}")


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A ThermoWorks cloud account of the scenario."""

    email: str
    password: str = field(repr=False)
    uid: str
    account_id: str
    provider: str = "thermoworks"
    preferred_units: Unit = Unit.FAHRENHEIT
    time_zone: str = "America/Chicago"
    display_name: str | None = None
    disabled: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


# Events the pure model evaluates itself; every other event type is for the simulator.
DATA_EVENTS = frozenset({"device_offline", "probe_unplugged"})
CLOUD_EVENTS = frozenset(
    {
        "token_expiry",  # every id token issued so far (of one account, or all) stops working
        "refresh_token_revoked",  # refresh tokens die; the password still signs in
        "password_changed",  # refresh tokens die and the old password stops working
        "account_disabled",  # USER_DISABLED on sign-in and refresh
        "too_many_attempts",  # sign-in answers TOO_MANY_ATTEMPTS_TRY_LATER
        "http_error",  # the next ``count`` matching requests answer ``status``
        "malformed",  # broken JSON (kind json) or one broken document (kind document)
        "slow",  # the next ``count`` matching requests wait ``delay`` real seconds
        "refuse",  # list or batchGet answer 403 (a cheaper call the rules do not allow)
    }
)
EVENT_TYPES = DATA_EVENTS | CLOUD_EVENTS
ENDPOINTS = frozenset(
    {"any", "signIn", "refresh", "lookup", "firestore", "get", "list", "runQuery", "batchGet"}
)


@dataclass(frozen=True, slots=True)
class Event:
    """A scripted event at ``at`` seconds into the scenario (``until``: when it ends)."""

    at: float
    type: str
    account: str | None = None
    device: str | None = None
    channel: int | None = None
    until: float | None = None
    endpoint: str = "any"
    count: int = 1
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    kind: str | None = None
    password: str | None = field(default=None, repr=False)

    def active(self, t: float) -> bool:
        # An event at 0 holds from before the start too (pushes can precede it).
        started = self.at <= t or self.at <= 0
        return started and (self.until is None or t < self.until)


@dataclass(frozen=True, slots=True)
class Sample:
    """What the cloud shows for one channel at one moment."""

    time: datetime  # when the value was pushed (the cloud's lastTelemetrySaved)
    value: float | None  # None: probe unplugged
    unit: Unit

    @property
    def connected(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class Scenario:
    """Accounts, devices, curves and events; evaluates what the cloud shows at any time."""

    name: str
    description: str
    start: datetime
    duration: float
    accounts: tuple[AccountSpec, ...]
    devices: tuple[DeviceSpec, ...]
    events: tuple[Event, ...] = ()
    token_lifetime: float = 3600.0
    source: str = "<dict>"
    seed: str = ""  # another seed: other jitter and wave phases on the same curves

    # -- look-ups

    def account(self, email: str) -> AccountSpec:
        key = email.strip().lower()
        for account in self.accounts:
            if account.email.lower() == key:
                return account
        raise KeyError(f"no account {email!r} in scenario {self.name}")

    def device(self, serial: str) -> DeviceSpec:
        for device in self.devices:
            if device.serial == serial:
                return device
        raise KeyError(f"no device {serial!r} in scenario {self.name}")

    def devices_of(self, email: str) -> tuple[DeviceSpec, ...]:
        key = email.strip().lower()
        return tuple(d for d in self.devices if d.account.lower() == key)

    def channels(self) -> list[tuple[str, int]]:
        """Every (serial, channel number) of the scenario."""
        return [(d.serial, c.number) for d in self.devices for c in d.channels]

    # -- time

    def offset(self, when: datetime | float) -> float:
        """Seconds since ``start`` (a number is taken to be an offset already)."""
        if isinstance(when, datetime):
            return (ensure_utc(when) - self.start).total_seconds()
        return float(when)

    def time(self, offset: float) -> datetime:
        return self.start + timedelta(seconds=offset)

    @property
    def end(self) -> datetime:
        return self.time(self.duration)

    # -- evaluation

    def last_push(self, serial: str, when: datetime | float) -> float:
        """The offset of the device's last push at ``when`` (offline windows skip pushes)."""
        device = self.device(serial)
        t = self.offset(when)
        for event in self._events_for(serial, "device_offline"):
            if event.active(t):
                t = event.at - 1e-6  # frozen at the last push before it went away
        interval = device.transmit_interval
        return device.phase + math.floor((t - device.phase) / interval) * interval

    def is_offline(self, serial: str, when: datetime | float) -> bool:
        t = self.offset(when)
        return any(e.active(t) for e in self._events_for(serial, "device_offline"))

    def is_unplugged(self, serial: str, channel: int, when: datetime | float) -> bool:
        t = self.offset(when)
        return any(
            e.active(t) and e.channel in (None, channel)
            for e in self._events_for(serial, "probe_unplugged")
        )

    def value(self, serial: str, channel: int, when: datetime | float) -> float | None:
        """The channel's true value at ``when`` (not only at pushes), to 0.1; None: unplugged."""
        t = self.offset(when)
        if self.is_unplugged(serial, channel, t):
            return None
        spec = self.device(serial).channel(channel)
        key = f"{serial}|{channel}" if not self.seed else f"{self.seed}|{serial}|{channel}"
        raw = spec.curve.value(t - spec.lag, key) + spec.offset
        if spec.unit is Unit.HUMIDITY:
            raw = min(100.0, max(0.0, raw))
        return round(raw, 1)

    def sample(self, serial: str, channel: int, when: datetime | float) -> Sample:
        """What the cloud shows for the channel at ``when``: the value of the last push."""
        pushed = self.last_push(serial, when)
        spec = self.device(serial).channel(channel)
        return Sample(self.time(pushed), self.value(serial, channel, pushed), spec.unit)

    def series(
        self,
        serial: str,
        channel: int,
        *,
        every: float = 15.0,
        start: datetime | float = 0.0,
        end: datetime | float | None = None,
    ) -> list[Reading]:
        """The readings a poller sampling every ``every`` seconds would get (new pushes only).

        Each reading's time is its push time; unplugged spans give ``value=None``.
        """
        if every <= 0:
            raise ValueError("every: must be positive")
        t = self.offset(start)
        stop = self.duration if end is None else self.offset(end)
        out: list[Reading] = []
        last: datetime | None = None
        while t <= stop + 1e-9:
            s = self.sample(serial, channel, t)
            if s.time != last:
                out.append(
                    Reading(serial=serial, channel=channel, time=s.time, value=s.value, unit=s.unit)
                )
                last = s.time
            t += every
        return out

    def all_series(
        self,
        *,
        every: float = 15.0,
        start: datetime | float = 0.0,
        end: datetime | float | None = None,
    ) -> dict[tuple[str, int], list[Reading]]:
        """:meth:`series` of every channel, keyed by (serial, channel number)."""
        return {
            (serial, number): self.series(serial, number, every=every, start=start, end=end)
            for serial, number in self.channels()
        }

    def battery(self, serial: str, when: datetime | float) -> int:
        device = self.device(serial)
        hours = max(0.0, self.last_push(serial, when)) / 3600
        return max(1, round(device.battery - device.battery_drain * hours))

    def cloud_events(self) -> Iterator[Event]:
        """The events for the simulator to apply, in time order."""
        return (e for e in self.events if e.type in CLOUD_EVENTS)

    def _events_for(self, serial: str, kind: str) -> Iterator[Event]:
        return (e for e in self.events if e.type == kind and e.device == serial)


# ------------------------------------------------------------------------------ loading


_SCENARIO_PACKAGE = "grillstats_bridge.simulator"
_DEFAULT_START = "2026-11-27T12:00:00Z"


def list_scenarios() -> list[str]:
    """The names of the shipped scenarios."""
    folder = resources.files(_SCENARIO_PACKAGE) / "scenarios"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``brisket``) or a scenario file by path."""
    text_name = str(name_or_path)
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or "/" in text_name:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
        source = str(path)
    else:
        resource = resources.files(_SCENARIO_PACKAGE) / "scenarios" / f"{text_name}.yaml"
        if not resource.is_file():
            known = ", ".join(list_scenarios())
            raise ScenarioError(f"no scenario named {text_name!r} (shipped: {known})")
        text = resource.read_text(encoding="utf-8")
        source = f"{text_name}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        raise ScenarioError(
            f"{source}:{where} {getattr(exc, 'problem', None) or 'bad YAML'}"
        ) from None
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: the top level must be a mapping")
    return parse_scenario(data, source=source, default_name=path.stem)


def merge_scenarios(*scenarios: Scenario) -> Scenario:
    """One scenario holding the accounts, devices and events of several (the first's clock)."""
    if not scenarios:
        raise ValueError("merge_scenarios: nothing to merge")
    first = scenarios[0]
    emails = [a.email.lower() for s in scenarios for a in s.accounts]
    serials = [d.serial for s in scenarios for d in s.devices]
    for kind, names in (("account", emails), ("device", serials)):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ScenarioError(f"merging scenarios: {kind} {dupes[0]!r} appears twice")
    return replace(
        first,
        name="+".join(s.name for s in scenarios),
        description="; ".join(s.description for s in scenarios if s.description),
        duration=max(s.duration for s in scenarios),
        accounts=tuple(a for s in scenarios for a in s.accounts),
        devices=tuple(d for s in scenarios for d in s.devices),
        events=tuple(sorted((e for s in scenarios for e in s.events), key=lambda e: e.at)),
        source=", ".join(s.source for s in scenarios),
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class _Reader:
    """Reads one mapping of the file, naming the key path in every error."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{source}: {path or 'top level'}: must be a mapping")
        self.source, self.path, self.data = source, path, data
        self.used: set[str] = set()

    def where(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | int, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {self.where(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        value = self.data.get(key)
        return default if value is None else value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if isinstance(value, (Mapping, list)):
            raise self.fail(key, "must be a single value")
        return str(value)

    def opt_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def number(self, key: str, default: float | None = None) -> float:
        value = self.raw(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                return float(str(value))
            except ValueError:
                raise self.fail(key, f"must be a number, got {value!r}") from None
        return float(value)

    def whole(self, key: str, default: int | None = None) -> int:
        value = self.number(key, default)
        if not value.is_integer():
            raise self.fail(key, f"must be a whole number, got {value:g}")
        return int(value)

    def duration(self, key: str, default: float | None = None) -> float:
        value = self.raw(key, default)
        if value is None:
            raise self.fail(key, "is required")
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def unit(self, key: str, default: Unit) -> Unit:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return Unit.parse(str(value))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a mapping")
        return value

    def items(self, key: str) -> list[_Reader]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.fail(key, "must be a list")
        return [_Reader(self.source, f"{self.where(key)}[{i}]", v) for i, v in enumerate(value)]

    def child(self, key: str) -> _Reader:
        return _Reader(self.source, self.where(key), self.raw(key))

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().replace(" ", "")
    negative = text.startswith("-")
    text = text.lstrip("+-")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    elif text and re.fullmatch(rf"(?:{_DURATION.pattern})+", text):
        seconds = sum(float(n) * _FACTORS[u] for n, u in _DURATION.findall(text))
    else:
        raise ValueError(f"must be a duration such as 90, 90s, 5m, 1h30m, got {value!r}")
    return -seconds if negative else seconds


def _firebase_id(prefix: str, seed: str, length: int) -> str:
    """A stable id shaped like Firebase's (letters and digits) derived from ``seed``."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = hashlib.sha256(f"{prefix}|{seed}".encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def parse_scenario(
    data: Mapping[str, Any], *, source: str = "<dict>", default_name: str = "scenario"
) -> Scenario:
    """Build and validate a :class:`Scenario` from its decoded YAML."""
    top = _Reader(source, "", data)
    name = top.text("name", default_name)
    start_raw = top.raw("start", _DEFAULT_START)
    try:
        start = ensure_utc(
            start_raw
            if isinstance(start_raw, datetime)
            else datetime.fromisoformat(str(start_raw).replace("Z", "+00:00"))
        )
    except ValueError:
        raise top.fail("start", f"must be an ISO 8601 time, got {start_raw!r}") from None
    duration = top.duration("duration")
    if duration <= 0:
        raise top.fail("duration", "must be positive")

    accounts = tuple(_parse_account(r) for r in top.items("accounts"))
    if not accounts:
        raise top.fail("accounts", "at least one account is needed")
    emails = {a.email.lower() for a in accounts}
    if len(emails) != len(accounts):
        raise top.fail("accounts", "an email appears twice")

    curves_reader = top.child("curves") if top.has("curves") else None
    named: dict[str, Curve] = {}
    if curves_reader is not None:
        for key in list(curves_reader.data):
            named[str(key)] = _parse_curve(curves_reader.child(str(key)))
            curves_reader.used.add(str(key))

    devices = tuple(_parse_device(r, emails, named) for r in top.items("devices"))
    serials = [d.serial for d in devices]
    for i, serial in enumerate(serials):
        if serials.index(serial) != i:
            raise top.fail("devices", f"serial {serial!r} appears twice")
    by_serial = {d.serial: d for d in devices}
    for i, device in enumerate(devices):
        if device.gateway is not None and device.gateway not in by_serial:
            raise top.fail(f"devices[{i}].gateway", f"no device {device.gateway!r}")

    events = tuple(
        sorted(
            (_parse_event(r, emails, by_serial) for r in top.items("events")),
            key=lambda e: e.at,
        )
    )
    token_lifetime = top.duration("token_lifetime", 3600.0)
    if token_lifetime <= 0:
        raise top.fail("token_lifetime", "must be positive")
    description = top.text("description", "")
    top.raw("seed")  # reserved, accepted
    top.check_unknown()
    return Scenario(
        name=name,
        description=description.strip(),
        start=start,
        duration=duration,
        accounts=accounts,
        devices=devices,
        events=events,
        token_lifetime=token_lifetime,
        source=source,
    )


def _parse_account(r: _Reader) -> AccountSpec:
    email = r.text("email").strip()
    if "@" not in email:
        raise r.fail("email", f"not an email address: {email!r}")
    provider = r.text("provider", "thermoworks")
    if provider not in ("thermoworks", "eti"):
        raise r.fail("provider", f"must be thermoworks or eti, got {provider!r}")
    account = AccountSpec(
        email=email,
        password=r.text("password"),
        uid=r.text("uid", _firebase_id("uid", email.lower(), 28)),
        account_id=r.text("account_id", _firebase_id("account", email.lower(), 20)),
        provider=provider,
        preferred_units=r.unit("preferred_units", Unit.FAHRENHEIT),
        time_zone=r.text("time_zone", "America/Chicago"),
        display_name=r.opt_text("display_name"),
        disabled=r.flag("disabled", False),
        extra=dict(r.mapping("extra")),
    )
    r.check_unknown()
    return account


def _parse_curve(r: _Reader) -> Curve:
    raw_points = r.raw("points")
    if not isinstance(raw_points, list) or not raw_points:
        raise r.fail("points", "must be a non-empty list of [time, value]")
    times: list[float] = []
    values: list[float] = []
    for i, point in enumerate(raw_points):
        where = f"points[{i}]"
        if not isinstance(point, list) or len(point) != 2:
            raise r.fail(where, "must be [time, value]")
        try:
            t = parse_duration(point[0])
        except ValueError as exc:
            raise r.fail(where, str(exc)) from None
        v = point[1]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise r.fail(where, f"value must be a number, got {v!r} (unplug with an event)")
        if times and t <= times[-1]:
            raise r.fail(where, "times must increase")
        times.append(t)
        values.append(float(v))
    interpolation = r.text("interpolation", "smooth")
    if interpolation not in ("smooth", "linear"):
        raise r.fail("interpolation", f"must be smooth or linear, got {interpolation!r}")
    wave = r.child("wave") if r.has("wave") else None
    dips = []
    for d in r.items("dips"):
        dip = Dip(
            at=d.duration("at"),
            depth=d.number("depth"),
            drop=d.duration("drop", 60.0),
            recover=d.duration("recover", 600.0),
        )
        if dip.drop <= 0 or dip.recover <= 0:
            raise d.fail("drop", "drop and recover must be positive")
        d.check_unknown()
        dips.append(dip)
    curve = Curve(
        times=tuple(times),
        values=tuple(values),
        smooth=interpolation == "smooth",
        noise=r.number("noise", 0.0),
        noise_period=r.duration("noise_period", 60.0),
        wave_amplitude=wave.number("amplitude") if wave else 0.0,
        wave_period=wave.duration("period", 1200.0) if wave else 1200.0,
        dips=tuple(dips),
    )
    if wave:
        wave.check_unknown()
    if curve.noise_period <= 0 or curve.wave_period <= 0:
        raise r.fail("noise_period", "periods must be positive")
    r.check_unknown()
    return curve


def _parse_alarm(r: _Reader, key: str) -> AlarmSpec | None:
    raw = r.raw(key)
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return AlarmSpec(True, float(raw))
    a = r.child(key)
    spec = AlarmSpec(a.flag("enabled", True), a.number("value"))
    a.check_unknown()
    return spec


def _parse_channel(r: _Reader, named: Mapping[str, Curve], device_unit: Unit) -> ChannelSpec:
    curve_raw = r.raw("curve")
    if isinstance(curve_raw, str):
        if curve_raw not in named:
            raise r.fail("curve", f"unknown curve {curve_raw!r}")
        curve = named[curve_raw]
    elif isinstance(curve_raw, Mapping):
        curve = _parse_curve(r.child("curve"))
    else:
        raise r.fail("curve", "must name a curve of 'curves' or be a curve mapping")
    number = r.whole("number")
    if not 1 <= number <= 9:
        raise r.fail("number", f"must be 1 to 9, got {number}")
    spec = ChannelSpec(
        number=number,
        label=r.text("label", f"Probe {number}"),
        unit=r.unit("units", device_unit),
        curve=curve,
        offset=r.number("offset", 0.0),
        lag=r.duration("lag", 0.0),
        type=r.text("type", "probe"),
        alarm_high=_parse_alarm(r, "alarm_high"),
        alarm_low=_parse_alarm(r, "alarm_low"),
        extra=dict(r.mapping("extra")),
    )
    r.check_unknown()
    return spec


def _parse_device(r: _Reader, emails: set[str], named: Mapping[str, Curve]) -> DeviceSpec:
    serial = r.text("serial").strip()
    # Up to 200: a cloud may send serials longer than the bridge stores (it refuses them).
    if not serial or len(serial) > 200:
        raise r.fail("serial", "must be 1 to 200 characters")
    account = r.text("account")
    if account.lower() not in emails:
        raise r.fail("account", f"no account {account!r} in 'accounts'")
    kind_name = r.text("kind")
    if kind_name not in KINDS:
        raise r.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind_name!r}")
    kind = KINDS[kind_name]
    display_units = r.unit("units", Unit.FAHRENHEIT)
    channels = tuple(_parse_channel(c, named, display_units) for c in r.items("channels"))
    numbers = [c.number for c in channels]
    if len(set(numbers)) != len(numbers):
        raise r.fail("channels", "a channel number appears twice")
    if len(channels) > kind.max_channels:
        raise r.fail("channels", f"a {kind_name} has at most {kind.max_channels} channels")
    quirks = r.raw("quirks", [])
    if not isinstance(quirks, list) or not all(isinstance(q, str) for q in quirks):
        raise r.fail("quirks", "must be a list of names")
    unknown = sorted(set(quirks) - QUIRKS)
    if unknown:
        raise r.fail("quirks", f"unknown quirk {unknown[0]!r} (known: {', '.join(sorted(QUIRKS))})")
    fan = None
    if r.has("fan"):
        if kind_name != "rfx_gateway":
            raise r.fail("fan", "only an rfx_gateway has a Billows fan")
        f = r.child("fan")
        fan = FanSpec(
            set_temp=f.number("set_temp"),
            channel=f.whole("channel", 1),
            connection=f.text("connection", "wired"),
        )
        f.check_unknown()
    gateway = r.opt_text("gateway")
    if gateway is not None and kind_name != "rfx_meat":
        raise r.fail("gateway", "only an rfx_meat probe has a gateway")
    transmit = r.duration("transmit_interval", kind.transmit_interval)
    if transmit <= 0:
        raise r.fail("transmit_interval", "must be positive")
    rssi = r.whole("wifi_rssi", -60) if kind_name != "rfx_meat" else None
    spec = DeviceSpec(
        serial=serial,
        account=account,
        kind=kind_name,
        type=r.text("type", "bbq" if "legacy_bbq_type" in quirks else kind.type),
        model=r.text("model", kind.model),
        label=r.text("label", f"{kind.model.title()} {serial[-4:]}"),
        firmware=r.text("firmware", "1.0.0"),
        battery=r.number("battery", 100.0),
        battery_drain=r.number("battery_drain", 0.0),
        wifi_rssi=rssi,
        gateway_rssi=r.whole("gateway_rssi", -55) if kind_name == "rfx_meat" else None,
        gateway=gateway,
        display_units=display_units,
        transmit_interval=transmit,
        recording_interval=r.duration("recording_interval", transmit),
        heartbeat_interval=r.duration("heartbeat_interval", kind.heartbeat_interval),
        temperature_delta_trigger=r.number("temperature_delta_trigger", 1.0),
        phase=r.duration("phase", round((_unit_hash(serial, 0) + 1) / 2 * transmit, 3) % transmit),
        fan=fan,
        quirks=frozenset(quirks),
        extra=dict(r.mapping("extra")),
        channels=channels,
    )
    r.check_unknown()
    return spec


def _parse_event(r: _Reader, emails: set[str], devices: Mapping[str, DeviceSpec]) -> Event:
    kind = r.text("type")
    if kind not in EVENT_TYPES:
        raise r.fail("type", f"unknown event {kind!r} (known: {', '.join(sorted(EVENT_TYPES))})")
    at = r.duration("at")
    until = None
    if r.has("until") and r.has("for"):
        raise r.fail("until", "give until or for, not both")
    if r.has("until"):
        until = r.duration("until")
    elif r.has("for"):
        until = at + r.duration("for")
    if until is not None and until <= at:
        raise r.fail("until", "must be after 'at'")
    account = r.opt_text("account")
    if account is not None and account.lower() not in emails:
        raise r.fail("account", f"no account {account!r}")
    device = r.opt_text("device")
    if device is not None and device not in devices:
        raise r.fail("device", f"no device {device!r}")
    if kind in DATA_EVENTS and device is None:
        raise r.fail("device", f"a {kind} event needs a device")
    channel = r.whole("channel") if r.has("channel") else None
    if channel is not None and device is not None:
        try:
            devices[device].channel(channel)
        except KeyError:
            raise r.fail("channel", f"{device} has no channel {channel}") from None
    endpoint = r.text("endpoint", "any")
    if endpoint not in ENDPOINTS:
        raise r.fail("endpoint", f"must be one of {', '.join(sorted(ENDPOINTS))}")
    status = r.whole("status") if r.has("status") else None
    if kind == "http_error" and status not in (400, 401, 403, 404, 429, 500, 502, 503, 504):
        raise r.fail(
            "status", "an http_error needs a status: 401, 403, 404, 429, 500, 502, 503, 504"
        )
    if kind == "password_changed" and not r.has("password"):
        raise r.fail("password", "a password_changed event needs the new password")
    if kind in ("password_changed", "account_disabled") and account is None:
        raise r.fail("account", f"a {kind} event needs an account")
    event_kind = r.opt_text("kind")
    if kind == "malformed" and event_kind not in (None, "json", "document"):
        raise r.fail("kind", "must be json or document")
    if kind == "refuse" and endpoint not in ("list", "batchGet"):
        raise r.fail("endpoint", "refuse applies to list or batchGet")
    event = Event(
        at=at,
        type=kind,
        account=account,
        device=device,
        channel=channel,
        until=until,
        endpoint=endpoint,
        count=r.whole("count", 1),
        status=status,
        retry_after=r.duration("retry_after") if r.has("retry_after") else None,
        delay=r.duration("delay", 5.0) if kind == "slow" else None,
        kind=event_kind or ("json" if kind == "malformed" else None),
        password=r.opt_text("password"),
    )
    r.check_unknown()
    return event
