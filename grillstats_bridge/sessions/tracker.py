"""Cooking sessions: readings and device observations in, session changes out.

Pure: no I/O library is imported, the clock is a parameter. The service in
``service.py`` persists what this module decides.

The rule, per device (every threshold is a ``sessions`` setting, in its
``temperature_unit``; README "Cooking sessions" says the same for users):

- Idle level: each temperature probe learns its idle (ambient) level, an
  exponential moving average (time constant ``idle_time_constant``) of its
  readings while nothing is cooking, never above ``idle_max``. Readings near a
  cook's temperatures never teach it anything.
- Hot: a probe is *hot* at or above its start threshold,
  ``max(idle + start_rise, start_min)``, and *warm* down to ``end_margin``
  below that. The device is hot (warm) while it is online and one of its
  plugged probes is hot (warm). Humidity channels never count.
- Start: a device that stays hot for ``start_hold`` (a reading, or the held
  value of an online device, at least that long after the first hot reading)
  starts an automatic session. It is dated from the moment the device left its
  idle level: the last time every plugged probe was within ``idle_band`` of its
  idle level, or the lowest point since then (a second fire-up on a grill still
  cooling from the first), at most ``start_lookback`` before it became hot. So
  a meat-only probe, which takes hours to reach the start threshold, still
  dates its cook from when the meat started to warm. The statistics cover the
  session from that moment too.
- End: once the device has been neither hot nor warm - every probe cold or
  unplugged, or the device offline - for ``end_after`` (``offline_end_after``
  while the device, or the bridge itself, is silent), the session ends, dated
  from the moment the device stopped being hot; its statistics stop there
  too. A lid-open dip, a stall or a steady smoke never get that far. A session
  shorter than ``min_duration`` is cancelled instead of completed.
- Manual sessions start and end when told; while one runs, automatic detection
  on that device is suspended. After a session is ended by hand while the
  device is still warm, detection waits for it to cool before it re-arms.
- Time only, never sample counts: the same cook gives the same session at any
  poll interval. An online device's last values hold until it reports new ones
  (a push-on-change probe is silent during a steady smoke).

Statistics, in the session's unit (that of its first temperature reading):
per probe the minimum, maximum and a time-weighted mean (trapezoids between
consecutive readings, never across an unplugged or offline gap; the mean of
the samples while there is no interval yet); for the session, the minimum and
maximum over every temperature probe and the time-weighted mean pooled over
them (each probe weighs as long as it was plugged in).

Work per reading is O(1): a dict look-up, a few float operations, counters of
hot and warm probes instead of scans.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from grillstats_bridge.domain import (
    Poll,
    Reading,
    Unit,
    convert_temperature,
)
from grillstats_bridge.sessions.model import (
    NAME_MAX,
    STATE_VERSION,
    Batch,
    ChangeKind,
    EndReason,
    Rules,
    SessionChange,
    SessionError,
    SessionSnapshot,
    SessionStatus,
    SessionType,
    Step,
    StoredSession,
)
from grillstats_bridge.sessions.names import session_name
from grillstats_bridge.sessions.state import _Device, _Mode, _Probe, _Session
from grillstats_bridge.sessions.stats import _Stats, _ts

# --------------------------------------------------------------------------- the tracker


class SessionTracker:
    """Every device's cook detection and running statistics (one instance per bridge)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._devices: dict[str, _Device] = {}

    # ----------------------------------------------------------------- the one entry

    def wanted(self, serials: Sequence[str], stored: Mapping[str, StoredSession]) -> list[int]:
        """The stored sessions whose full rows a batch over ``serials`` needs: those the
        tracker does not run yet (to take over) and those it runs that the database no
        longer has active (ended elsewhere: to report how)."""
        ids: list[int] = []
        for serial in serials:
            live = self.running(serial)
            row = stored.get(serial)
            if live is not None and (row is None or row.session_id != live[0]):
                if live[0] is not None:
                    ids.append(live[0])
                live = None
            if row is not None and live is None:
                ids.append(row.session_id)
        return ids

    def step(self, batch: Batch) -> Step:
        """Everything of one batch, in order; see :class:`Batch`."""
        now = batch.now
        known = self._reconcile(batch)
        changes: list[SessionChange] = []
        if batch.start is not None:
            serial, name = batch.start
            live = self.running(serial)
            if live is not None and live[1] is SessionType.MANUAL:
                raise SessionError(
                    f"device {serial} already has an active manual session ({live[0]})"
                )
            changes.append(self.start_manual(serial, now, name))
        if batch.end is not None:
            serial, session_id, cancel = batch.end
            live = self.running(serial)
            if live is None or live[0] != session_id:  # ended meanwhile (a race)
                raise SessionError(f"session {session_id} is no longer active")
            changes.append(self.end(serial, now, cancel=cancel))
        for poll in batch.polls:
            changes += self.observe_poll(poll, batch.poll_time)
        by_serial: dict[str, list[Reading]] = {}
        for reading in batch.readings:
            by_serial.setdefault(reading.serial, []).append(reading)
        for serial, readings in by_serial.items():
            changes += self.observe(serial, readings, now)
        if batch.tick:
            changes += self.tick(now)
        return Step(known, changes)

    def _reconcile(self, batch: Batch) -> list[SessionChange]:
        """Agree with the database on which sessions are active (the CLI, another process
        or a restart may have changed them); the changes it reports are already stored."""
        now, known = batch.now, []
        for serial in batch.serials:
            live = self.running(serial)
            row = batch.stored.get(serial)
            if live is not None and (row is None or row.session_id != live[0]):
                if live[0] is not None and live[0] in batch.snapshots:
                    ended, _ = batch.snapshots[live[0]]
                    cancelled = ended.status is SessionStatus.CANCELLED
                    kind = ChangeKind.CANCELLED if cancelled else ChangeKind.ENDED
                    known.append(SessionChange(kind=kind, session=ended, at=now))
                self.release(serial, now)
                live = None
            if row is None:
                continue
            if live is None:
                if row.session_id in batch.snapshots:
                    snapshot, seen = batch.snapshots[row.session_id]
                    self.adopt(snapshot, seen=seen)
                    known.append(SessionChange(kind=ChangeKind.STARTED, session=snapshot, at=now))
            elif live[1] is SessionType.AUTO and row.session_type == SessionType.MANUAL:
                # Made manual elsewhere (the CLI): the tracker follows.
                name = None if row.auto_named else row.name
                known.append(self.start_manual(serial, now, name))
        return known

    # ----------------------------------------------------------------- inputs

    def observe_poll(self, poll: Poll, now: datetime | None = None) -> list[SessionChange]:
        """One account's poll: its new readings and each device's online state at ``now``
        (the poll's time by default)."""
        by_serial: dict[str, list[Reading]] = {}
        for reading in poll.readings:
            by_serial.setdefault(reading.serial, []).append(reading)
        changes: list[SessionChange] = []
        now = poll.polled_at if now is None else now
        for device in poll.devices:
            changes += self.observe(
                device.serial,
                by_serial.pop(device.serial, ()),
                now,
                online=device.is_online(now),
                seen=device.last_seen or device.last_telemetry_saved,
                labels={p.channel: p.label for p in device.probes if p.label},
            )
        for serial, readings in by_serial.items():  # readings of a device the poll did not list
            changes += self.observe(serial, readings, now)
        return changes

    def observe(
        self,
        serial: str,
        readings: Iterable[Reading],
        now: datetime,
        *,
        online: bool = True,
        seen: datetime | None = None,
        labels: Mapping[int, str] | None = None,
    ) -> list[SessionChange]:
        """New readings of one device (any order) and whether it is online at ``now``.

        ``seen`` is when the device last reported (its ``lastSeen``); it dates
        the start of an offline period. Readings older than what the tracker has
        already seen of their probe are ignored, so replays are harmless.
        """
        now_s = now.timestamp()
        dev = self._device(serial)
        changes: list[SessionChange] = []
        if labels:
            for channel, label in labels.items():
                self._probe(dev, channel).label = label
        batch = [r for r in readings if r.unit.is_temperature]
        if batch:
            if any(batch[i].time > batch[i + 1].time for i in range(len(batch) - 1)):
                batch.sort(key=lambda r: r.time)
            group_time = batch[0].time
            group: list[Reading] = []
            for reading in batch:
                if reading.time != group_time:
                    self._apply_group(dev, group, group_time.timestamp(), changes)
                    group, group_time = [], reading.time
                group.append(reading)
            self._apply_group(dev, group, group_time.timestamp(), changes)
        if online:
            if not dev.online:
                dev.online = True
            self._evaluate(dev, now_s, changes)
        elif dev.online:
            last = max((p.time for p in dev.probes.values() if p.time is not None), default=None)
            candidates = [t for t in (last, seen.timestamp() if seen else None) if t is not None]
            self._go_offline(dev, min(max(candidates, default=now_s), now_s), changes)
        self._advance(dev, now_s, changes)
        dev.updated = now_s if dev.updated is None else max(dev.updated, now_s)
        self._flush_update(dev, now_s, changes)
        return changes

    def tick(self, now: datetime) -> list[SessionChange]:
        """Time passing with no poll: end what has timed out; a device not heard of for
        ``offline_end_after`` counts as offline from the last time it was."""
        now_s = now.timestamp()
        changes: list[SessionChange] = []
        for dev in self._devices.values():
            if (
                dev.online
                and dev.updated is not None
                and now_s - dev.updated >= self.rules.config.offline_end_after
                and dev.mode in (_Mode.PENDING, _Mode.ACTIVE)
            ):
                self._go_offline(dev, dev.updated, changes)
            self._advance(dev, now_s, changes)
            self._flush_update(dev, now_s, changes)
        return changes

    # ----------------------------------------------------------------- manual sessions

    def start_manual(self, serial: str, now: datetime, name: str | None = None) -> SessionChange:
        """Start a manual session now; an automatic one already running becomes manual."""
        now_s = now.timestamp()
        dev = self._device(serial)
        if dev.mode is _Mode.MANUAL:
            raise SessionError(f"device {serial} already has an active manual session")
        name = _clean_name(name)
        if dev.mode is _Mode.ACTIVE and dev.session is not None:
            session = dev.session
            session.type = SessionType.MANUAL
            if name:
                session.name, session.auto_named = name, False
            session.cool_since = session.cool_stats = session.quiet_since = None
            dev.mode = _Mode.MANUAL
            return self._change(dev, ChangeKind.UPDATED, now_s)
        dev.onset = None
        dev.drop_preroll()
        session = _Session(
            SessionType.MANUAL,
            now_s,
            name or session_name(SessionType.MANUAL, _ts(now_s), self.rules.timezone),
            self._seed(dev, now_s),
        )
        session.auto_named = not name
        dev.session, dev.mode = session, _Mode.MANUAL
        return self._change(dev, ChangeKind.STARTED, now_s)

    def end(self, serial: str, now: datetime, *, cancel: bool = False) -> SessionChange:
        """End (or cancel) the device's active session now, automatic or manual."""
        now_s = now.timestamp()
        dev = self._devices.get(serial)
        if dev is None or dev.session is None:
            raise SessionError(f"device {serial} has no active session")
        session = dev.session
        end = max(now_s, session.start)
        status = SessionStatus.CANCELLED if cancel else SessionStatus.COMPLETED
        return self._close(dev, end, session.stats, status, EndReason.MANUAL, now_s)

    # ----------------------------------------------------------------- the service's hooks

    def active(self, serial: str, *, probes: bool = True) -> SessionSnapshot | None:
        """The device's running session, if any; without ``probes``, with no probe
        summaries (its totals only: cheaper)."""
        dev = self._devices.get(serial)
        if dev is None or dev.session is None:
            return None
        stats = dev.session.stats
        return self._snapshot(dev, SessionStatus.ACTIVE, None, stats, None, probes=probes)

    def running(self, serial: str) -> tuple[int | None, SessionType] | None:
        """The database id and type of the device's running session (cheap: no snapshot)."""
        dev = self._devices.get(serial)
        if dev is None or dev.session is None:
            return None
        return dev.session.session_id, dev.session.type

    def active_sessions(self, *, probes: bool = True) -> list[SessionSnapshot]:
        """Every running session; see :meth:`active` for ``probes``."""
        return [
            s for serial in self._devices if (s := self.active(serial, probes=probes)) is not None
        ]

    def active_serials(self) -> list[str]:
        """The devices with a running session (cheap: no snapshot)."""
        return [serial for serial, dev in self._devices.items() if dev.session is not None]

    def bind(self, serial: str, session_id: int) -> None:
        """Remember the database id of the device's running session."""
        dev = self._devices.get(serial)
        if dev is None or dev.session is None:
            raise SessionError(f"device {serial} has no active session to bind")
        dev.session.session_id = session_id

    def adopt(self, snapshot: SessionSnapshot, *, seen: datetime | None = None) -> None:
        """Take over a session that runs in the database (started elsewhere, or restored).

        For a device the tracker knows nothing of, ``seen`` is the last time the
        session was known to run: the offline rule counts from there.
        """
        unknown = snapshot.serial not in self._devices
        dev = self._device(snapshot.serial)
        session = _Session(
            snapshot.session_type,
            snapshot.start.timestamp(),
            snapshot.name,
            _Stats.from_summaries(snapshot.unit, snapshot.probes),
        )
        session.session_id = snapshot.session_id
        session.auto_named = snapshot.auto_named
        for p in snapshot.probes:
            if p.label and not self._probe(dev, p.channel).label:
                dev.probes[p.channel].label = p.label
        dev.onset = None
        dev.drop_preroll()
        dev.session = session
        dev.mode = _Mode.MANUAL if snapshot.session_type is SessionType.MANUAL else _Mode.ACTIVE
        if unknown:
            last = (seen or snapshot.start).timestamp()
            dev.updated = last
            self._go_offline(dev, last, [])
        elif dev.mode is _Mode.ACTIVE:
            self._evaluate(dev, dev.updated or snapshot.start.timestamp(), [])

    def release(self, serial: str, now: datetime) -> None:
        """Forget the device's session: it was ended elsewhere (by the CLI), as by hand."""
        dev = self._devices.get(serial)
        if dev is None or dev.session is None:
            return
        self._disarm(dev, now.timestamp())

    def serials(self) -> list[str]:
        return list(self._devices)

    def forget(self, serial: str) -> None:
        self._devices.pop(serial, None)

    # ----------------------------------------------------------------- state

    def checkpoint_key(self, serial: str) -> tuple[Any, ...]:
        """What must be saved at once when it changes: the device's discrete state.

        The rest (idle levels, held values, running statistics) may be saved less
        often; a running session's statistics live in its database rows anyway.
        """
        dev = self._device(serial)
        session = dev.session
        return (
            dev.mode,
            dev.armed,
            dev.rearm_since,
            dev.online,
            dev.onset,
            dev.preroll_since,
            None if session is None else session.session_id,
            None if session is None else (session.type, session.name, session.start),
            None if session is None else (session.cool_since, session.quiet_since),
        )

    def export_state(self, serial: str, *, session_stats: bool = True) -> dict[str, Any]:
        """Everything the tracker knows of a device, as JSON-compatible values.

        Without ``session_stats`` the running session's statistics are left out: the
        caller keeps them elsewhere and gives them back with :meth:`restore_stats`.
        """
        dev = self._device(serial)
        session = dev.session
        return {
            "v": STATE_VERSION,
            "mode": dev.mode.value,
            "armed": dev.armed,
            "rearm_since": dev.rearm_since,
            "online": dev.online,
            "updated": dev.updated,
            "onset": dev.onset,
            "preroll": dev.preroll.to_dict() if dev.preroll is not None else None,
            "preroll_since": dev.preroll_since,
            "preroll_low": dev.preroll_low,
            "probes": {
                str(ch): [p.value, p.raw, p.unit.value, p.time, p.idle, p.label]
                for ch, p in dev.probes.items()
            },
            "session": None
            if session is None
            else {
                "id": session.session_id,
                "type": session.type.value,
                "name": session.name,
                "auto_named": session.auto_named,
                "start": session.start,
                "stats": session.stats.to_dict() if session_stats else None,
                "cool_since": session.cool_since,
                "cool_stats": session.cool_stats.to_dict() if session.cool_stats else None,
                "quiet_since": session.quiet_since,
                "quiet_reason": session.quiet_reason.value,
            },
        }

    def restore_state(
        self,
        serial: str,
        state: Mapping[str, Any],
        *,
        after_restart: bool = True,
        seen: datetime | None = None,
    ) -> None:
        """Load what ``export_state`` gave.

        After a restart the time since the device was last seen (the state's own
        time, or ``seen`` when the caller knows better) is unknown, so it counts as
        the device being offline from then: a cook resumes if its readings come back
        in time and ends by the offline rule otherwise (``tick`` or the next poll
        decides). ``after_restart=False`` restores the state exactly (an undo).
        """
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported session tracker state version {state.get('v')!r}")
        dev = _Device(serial)
        dev.mode = _Mode(state["mode"])
        dev.armed = bool(state["armed"])
        dev.rearm_since = state["rearm_since"]
        dev.online = bool(state["online"])
        dev.updated = state["updated"]
        dev.onset = state["onset"]
        dev.preroll = _Stats.from_dict(state["preroll"]) if state["preroll"] else None
        dev.preroll_since = state["preroll_since"]
        dev.preroll_low = float(state["preroll_low"])
        for ch, (value, raw, unit, t, idle, label) in state["probes"].items():
            probe = _Probe()
            probe.value, probe.raw, probe.unit, probe.time = value, raw, Unit(unit), t
            probe.idle, probe.label = idle, label
            dev.probes[int(ch)] = probe
            self._classify(dev, probe)
        data = state["session"]
        if data is not None:
            session = _Session(
                SessionType(data["type"]),
                data["start"],
                data["name"],
                _Stats.from_dict(data["stats"]) if data["stats"] else _Stats(),
            )
            session.session_id = data["id"]
            session.auto_named = bool(data["auto_named"])
            session.cool_since = data["cool_since"]
            session.cool_stats = (
                _Stats.from_dict(data["cool_stats"]) if data["cool_stats"] else None
            )
            session.quiet_since = data["quiet_since"]
            session.quiet_reason = EndReason(data["quiet_reason"])
            dev.session = session
        self._devices[serial] = dev
        if seen is not None:
            seen_s = seen.timestamp()
            dev.updated = seen_s if dev.updated is None else max(dev.updated, seen_s)
        if after_restart and dev.online and dev.updated is not None:
            self._go_offline(dev, dev.updated, [])

    def restore_stats(self, snapshot: SessionSnapshot) -> bool:
        """Give a restored session back its statistics (from its stored summaries);
        False when the device's running session is not that one."""
        dev = self._devices.get(snapshot.serial)
        session = dev.session if dev is not None else None
        if session is None or session.session_id != snapshot.session_id:
            return False
        session.stats = _Stats.from_summaries(snapshot.unit, snapshot.probes)
        return True

    # ----------------------------------------------------------------- the rule

    def _device(self, serial: str) -> _Device:
        dev = self._devices.get(serial)
        if dev is None:
            dev = self._devices[serial] = _Device(serial)
        return dev

    @staticmethod
    def _probe(dev: _Device, channel: int) -> _Probe:
        probe = dev.probes.get(channel)
        if probe is None:
            probe = dev.probes[channel] = _Probe()
        return probe

    def _classify(self, dev: _Device, probe: _Probe) -> None:
        """Recompute a probe's hot and warm flags and the device's counters."""
        hot = warm = raised = False
        if probe.value is not None and probe.idle is not None:
            threshold = max(probe.idle + self.rules.config.start_rise, self.rules.config.start_min)
            hot = probe.value >= threshold
            warm = probe.value >= threshold - self.rules.config.end_margin
            raised = probe.value > probe.idle + self.rules.config.idle_band
        dev.n_hot += hot - probe.hot
        dev.n_warm += warm - probe.warm
        dev.n_raised += raised - probe.raised
        probe.hot, probe.warm, probe.raised = hot, warm, raised

    def _apply_group(
        self, dev: _Device, group: Sequence[Reading], t: float, changes: list[SessionChange]
    ) -> None:
        """Readings that share one time: the timeline up to ``t`` first, then the new values."""
        self._advance(dev, t, changes)
        if not dev.online:
            dev.online = True  # a reading proves it; gaps were cut when it went offline
        rules = self.rules
        collector = dev.collector()
        for reading in group:
            probe = self._probe(dev, reading.channel)
            value = reading.value
            unplugged = value is None or math.isnan(value)
            if probe.time is not None and (
                t < probe.time
                # Same time: a replay, unless it unplugs (the cloud may keep the old time).
                or (t == probe.time and unplugged == (probe.value is None))
            ):
                continue
            previous = probe.time
            probe.time = t
            if value is None or unplugged:
                probe.value = probe.raw = None
                if collector is not None:
                    collector.cut(reading.channel)
                self._classify(dev, probe)
                continue
            v = (
                value
                if reading.unit is rules.unit
                else convert_temperature(value, reading.unit, rules.unit)
            )
            if probe.idle is None:
                probe.idle = min(v, rules.config.idle_max)
            probe.value, probe.raw, probe.unit = v, value, reading.unit
            self._classify(dev, probe)
            if not probe.warm and dev.mode is _Mode.IDLE and previous is not None:
                # Learn the idle level only while nothing cooks and the probe is not warm,
                # as fast as time passes (never per sample).
                alpha = 1.0 - math.exp(-(t - previous) / rules.config.idle_time_constant)
                probe.idle += alpha * (min(v, rules.config.idle_max) - probe.idle)
                self._classify(dev, probe)
            if (
                collector is not None
                and collector.add(reading.channel, t, value, reading.unit)
                and dev.session is not None
            ):
                dev.session.dirty = True
        self._preroll(dev, t)
        self._evaluate(dev, t, changes)
        if dev.updated is None or t > dev.updated:
            dev.updated = t

    def _evaluate(self, dev: _Device, t: float, changes: list[SessionChange]) -> None:
        """The state machine, given what the device reads at ``t``."""
        mode = dev.mode
        if mode is _Mode.IDLE:
            if not dev.armed and not self._rearm(dev, t):
                return
            if self.rules.config.auto_detect and dev.hot:
                if dev.preroll is None:  # hot straight from rest (or held values): from now
                    self._start_preroll(dev, t)
                dev.mode, dev.onset = _Mode.PENDING, t
                if self.rules.config.start_hold <= 0:
                    self._confirm(dev, t, changes)
        elif mode is _Mode.PENDING:
            assert dev.onset is not None
            if not dev.hot:
                dev.mode, dev.onset = _Mode.IDLE, None  # the preroll goes on
            elif t - dev.onset >= self.rules.config.start_hold:
                self._confirm(dev, t, changes)
        elif mode is _Mode.ACTIVE:
            session = dev.session
            assert session is not None
            if dev.hot:
                session.cool_since = session.cool_stats = session.quiet_since = None
                return
            if session.cool_since is None:
                session.cool_since, session.cool_stats = t, session.stats.copy()
            if dev.warm:
                session.quiet_since = None
            elif session.quiet_since is None:
                session.quiet_since = t
                session.quiet_reason = (
                    EndReason.OFFLINE
                    if not dev.online
                    else EndReason.COOLED
                    if any(p.value is not None for p in dev.probes.values())
                    else EndReason.UNPLUGGED
                )

    def _advance(self, dev: _Device, t: float, changes: list[SessionChange]) -> None:
        """Time reaches ``t`` with nothing new read: end a session that has been quiet enough."""
        if not dev.armed and dev.mode is _Mode.IDLE:
            self._rearm(dev, t)
        session = dev.session
        if dev.mode is not _Mode.ACTIVE or session is None or session.quiet_since is None:
            return
        if t - session.quiet_since < self._quiet_limit(dev):
            return
        end = session.cool_since if session.cool_since is not None else session.quiet_since
        stats = session.cool_stats or session.stats
        if end - session.start < self.rules.config.min_duration:
            status, reason = SessionStatus.CANCELLED, EndReason.TOO_SHORT
        else:
            status, reason = SessionStatus.COMPLETED, session.quiet_reason
        changes.append(self._close(dev, end, stats, status, reason, t))

    def _quiet_limit(self, dev: _Device) -> float:
        return self.rules.config.end_after if dev.online else self.rules.config.offline_end_after

    def _rearm(self, dev: _Device, t: float) -> bool:
        """After a hand-ended session: detect again once the device was quiet long enough."""
        if dev.warm:
            dev.rearm_since = None
            return False
        if dev.rearm_since is None:
            dev.rearm_since = t
        if t - dev.rearm_since < self._quiet_limit(dev):
            return False
        dev.armed, dev.rearm_since = True, None
        return True

    def _disarm(self, dev: _Device, t: float) -> None:
        dev.session = None
        dev.mode = _Mode.IDLE
        dev.armed = False
        dev.rearm_since = None if dev.warm else t

    def _go_offline(self, dev: _Device, t: float, changes: list[SessionChange]) -> None:
        dev.online = False
        collector = dev.collector()
        if collector is not None:
            collector.cut()
        self._evaluate(dev, t, changes)

    def _preroll(self, dev: _Device, t: float) -> None:
        """Keep the statistics since the device left its idle level (idle and armed only)."""
        if dev.mode is not _Mode.IDLE or not dev.armed:
            return
        if not dev.n_raised:
            dev.drop_preroll()  # at rest
            return
        rise = dev.rise()
        if (
            dev.preroll is None
            or dev.preroll_since is None
            or rise <= dev.preroll_low  # lower than ever since: the rise starts here
            or t - dev.preroll_since > self.rules.config.start_lookback
        ):
            self._start_preroll(dev, t, rise)

    def _start_preroll(self, dev: _Device, t: float, rise: float | None = None) -> None:
        dev.preroll, dev.preroll_since = self._seed(dev, t), t
        dev.preroll_low = dev.rise() if rise is None else rise

    def _seed(self, dev: _Device, t: float) -> _Stats:
        """Fresh statistics from ``t``, starting from the held values of an online device."""
        stats = _Stats()
        if dev.online:
            for ch, probe in dev.probes.items():
                if probe.raw is not None:
                    stats.add(ch, t, probe.raw, probe.unit)
        return stats

    def _confirm(self, dev: _Device, t: float, changes: list[SessionChange]) -> None:
        assert dev.onset is not None and dev.preroll is not None
        start = dev.onset if dev.preroll_since is None else min(dev.preroll_since, dev.onset)
        dev.session = _Session(
            SessionType.AUTO,
            start,
            session_name(SessionType.AUTO, _ts(start), self.rules.timezone),
            dev.preroll,
        )
        dev.mode, dev.onset = _Mode.ACTIVE, None
        dev.drop_preroll()
        changes.append(self._change(dev, ChangeKind.STARTED, t))

    def _close(
        self,
        dev: _Device,
        end: float,
        stats: _Stats,
        status: SessionStatus,
        reason: EndReason,
        at: float,
    ) -> SessionChange:
        session = dev.session
        assert session is not None
        snapshot = self._snapshot(dev, status, end, stats, reason)
        kind = ChangeKind.CANCELLED if status is SessionStatus.CANCELLED else ChangeKind.ENDED
        if reason is EndReason.MANUAL:
            self._disarm(dev, at)
        else:  # the rule ended it: the device has been quiet for long enough already
            dev.session, dev.mode, dev.armed = None, _Mode.IDLE, True
        return SessionChange(kind=kind, session=snapshot, at=_ts(at))

    def _flush_update(self, dev: _Device, now: float, changes: list[SessionChange]) -> None:
        if dev.session is not None and dev.session.dirty:
            changes.append(self._change(dev, ChangeKind.UPDATED, now))

    def _change(self, dev: _Device, kind: ChangeKind, at: float) -> SessionChange:
        session = dev.session
        assert session is not None
        session.dirty = False
        snapshot = self._snapshot(dev, SessionStatus.ACTIVE, None, session.stats, None)
        return SessionChange(kind=kind, session=snapshot, at=_ts(at))

    def _snapshot(
        self,
        dev: _Device,
        status: SessionStatus,
        end: float | None,
        stats: _Stats,
        reason: EndReason | None,
        *,
        probes: bool = True,
    ) -> SessionSnapshot:
        session = dev.session
        assert session is not None
        summaries = stats.summaries(dev.labels()) if probes else ()
        minimum, maximum, average = stats.totals()
        start = _ts(session.start)
        end_dt = _ts(end) if end is not None else None
        name = session.name
        if end_dt is not None and session.auto_named:
            name = session_name(
                session.type, start, self.rules.timezone, end=end_dt, probes=summaries
            )
        return SessionSnapshot(
            serial=dev.serial,
            session_id=session.session_id,
            session_type=session.type,
            status=status,
            name=name,
            auto_named=session.auto_named,
            start=start,
            end=end_dt,
            unit=stats.unit,
            minimum=minimum,
            maximum=maximum,
            average=average,
            probes=summaries,
            end_reason=reason,
        )


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = " ".join(name.split())
    if len(name) > NAME_MAX:
        raise SessionError(f"session name: at most {NAME_MAX} characters, got {len(name)}")
    return name or None
