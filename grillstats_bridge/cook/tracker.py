"""The cook tracker (pure): every probe's recent readings in, estimates and events out.

One entry, :meth:`CookTracker.step`, takes a :class:`CookBatch` (the readings of some
polls, every probe's target, each device's pit channel) and returns a :class:`CookStep`:
the estimate of every probe with a target on the devices the batch touched, the stall
and ready events, and each of those devices' state (its least advanced probe). The
tracker keeps only the last ``Rules.history`` of readings per probe, the cook's first
reading and peak, and the stall; the service rebuilds it from stored readings.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from grillstats_bridge.cook.detector import Stall, detect, level, slope
from grillstats_bridge.cook.model import (
    NO_CALIBRATION,
    Calibration,
    CookBatch,
    CookEvent,
    CookEventKind,
    CookState,
    CookStep,
    Estimate,
    Method,
    ProbeKey,
    Rules,
    Sample,
)
from grillstats_bridge.cook.pits import pit_key
from grillstats_bridge.cook.predictor import Prediction, predict
from grillstats_bridge.domain import Device, Measurement, Reading

# Readings closer together than this are averaged into one sample: a probe polled every
# 15 s gives the fits a quarter of the points (the cost is per point) and less noise.
SAMPLE_EVERY = 55.0
PACE_FROM = 50.0  # progress (%) from which the plain climb's estimates are kept...
PACE_EVERY = 300.0  # ...one per this many seconds...
SEAR_FROM = 50.0  # progress (%) from which a pit stepped up is a sear
PACE_MIN = 300.0  # ...of at least this many seconds left: at ready they say the cook's pace
_PIT_LABEL = re.compile(r"pit|grate|grid|ambient|air|smoker|chamber|oven|dome", re.IGNORECASE)


def pit_channel(
    serial: str, labels: Mapping[int, str | None], targets: Mapping[ProbeKey, Measurement]
) -> int | None:
    """The device's pit probe: a channel without a target labelled like one (pit, grate,
    ambient...), else None (the estimate then extrapolates the meat's own rate)."""
    for channel, label in sorted(labels.items()):
        if (serial, channel) not in targets and label and _PIT_LABEL.search(label):
            return channel
    return None


def device_pit(device: Device, targets: Mapping[ProbeKey, Measurement]) -> int | None:
    """:func:`pit_channel` of a device as the cloud reports it."""
    labels = {p.channel: p.label for p in device.probes if p.unit.is_temperature}
    return pit_channel(device.serial, labels, targets)


@dataclass
class _Probe:
    """What the tracker remembers of one probe."""

    samples: deque[Sample] = field(default_factory=deque)
    merged: int = 0  # readings averaged into the last sample...
    bucket: float = 0.0  # ...since this time
    last: float | None = None  # the time of the last reading taken
    first: float | None = None  # the cook's first temperature
    peak: float | None = None
    plugged: bool = True
    unplugged_at: float | None = None
    stall: Stall = field(default_factory=Stall)
    rate_before_stall: float | None = None  # degrees per second
    stall_ended: float | None = None  # when its last stall ended: the climb is fitted after it
    stall_end_value: float | None = None  # the temperature then
    plain: tuple[tuple[float, float], ...] = ()  # (when, seconds left) of the plain climb
    sear: tuple[float, float] | None = None  # (when, the meat then): the pit stepped up late
    ready_sent: bool = False
    estimated: bool = False  # an estimate was given: a dropped target must be cleared
    # the last fitted prediction: (what it was fitted on, when, the prediction)
    fitted: tuple[tuple[object, ...], float, Prediction] | None = None

    def copy(self) -> _Probe:
        """A copy to put back: its own samples, the rest shared (immutable values). What
        ``dataclasses.replace`` makes, without its per-field work (~8x faster)."""
        twin = object.__new__(_Probe)
        twin.__dict__.update(self.__dict__)
        twin.samples = deque(self.samples)
        return twin


def _counted_down(prediction: Prediction, elapsed: float) -> Prediction | None:
    """A prediction made ``elapsed`` seconds ago, as seen now (None: its time is up); one
    without a time (too few readings, a flat probe) stays as it was."""
    seconds = prediction.seconds
    if seconds is None:
        return prediction
    if seconds - elapsed <= 0 or elapsed < 0:
        return None

    def down(value: float | None) -> float | None:
        return None if value is None else max(value - elapsed, 0.0)

    return dataclasses.replace(
        prediction,
        seconds=seconds - elapsed,
        low=down(prediction.low),
        high=down(prediction.high),
        plain=down(prediction.plain),
    )


def _seconds(when: datetime) -> float:
    return when.timestamp()


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CookTracker:
    """Every probe's cook, advanced one batch at a time."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._probes: dict[ProbeKey, _Probe] = {}

    def probes(self) -> Iterable[ProbeKey]:
        return tuple(self._probes)

    def stall_of(self, key: ProbeKey) -> float | None:
        """When the probe's stall started (POSIX seconds), None if it is not stalled."""
        probe = self._probes.get(key)
        return None if probe is None else probe.stall.start

    def step(self, batch: CookBatch) -> CookStep:
        """Take a batch; return what it changed."""
        rules = self.rules
        now = _seconds(batch.now)
        touched: set[str] = set()
        for reading in sorted(batch.readings, key=lambda r: r.time):
            if reading.unit.is_temperature:
                self._add(reading)
                touched.add(reading.serial)
        targets = {
            key: target.to(rules.unit).value
            for key, target in batch.targets.items()
            if target.unit.is_temperature
        }
        estimates: list[Estimate] = []
        events: list[CookEvent] = []
        devices: dict[str, CookState] = {}
        for key in sorted(k for k in targets if k[0] in touched):
            probe = self._probes.get(key)
            if probe is None:
                continue
            pit_probe = pit_key(key[0], batch.pits.get(key[0]))
            pit = self._probes.get(pit_probe) if pit_probe is not None else None
            calibration = batch.calibrations.get(key, NO_CALIBRATION)
            estimate, new_events = self._estimate(
                key, probe, targets[key], now, pit, batch.now, calibration
            )
            estimates.append(estimate)
            if not batch.replay:
                events += new_events
            state = devices.get(key[0])
            if state is None or estimate.state.rank < state.rank:
                devices[key[0]] = estimate.state
        dropped = []
        for key, probe in self._probes.items():
            if probe.estimated and key not in targets:
                probe.estimated = False
                dropped.append(key)
        return CookStep(
            estimates=tuple(estimates),
            events=tuple(events),
            dropped=tuple(dropped),
            devices=devices,
        )

    def checkpoint(self, serials: Iterable[str]) -> dict[ProbeKey, _Probe | None]:
        """What :meth:`restore` needs to put these devices' probes back as they are now."""
        wanted = set(serials)
        saved: dict[ProbeKey, _Probe | None] = {
            key: probe.copy() for key, probe in self._probes.items() if key[0] in wanted
        }
        return saved

    def restore(self, saved: Mapping[ProbeKey, _Probe | None], serials: Iterable[str]) -> None:
        """Put these devices' probes back as :meth:`checkpoint` saw them."""
        wanted = set(serials)
        for key in [k for k in self._probes if k[0] in wanted and k not in saved]:
            del self._probes[key]
        for key, probe in saved.items():
            if probe is not None:
                self._probes[key] = probe

    def forget(self, serial: str) -> None:
        for key in [k for k in self._probes if k[0] == serial]:
            del self._probes[key]

    # ----------------------------------------------------------------- one probe

    def _add(self, reading: Reading) -> None:
        key = (reading.serial, reading.channel)
        probe = self._probes.setdefault(key, _Probe())
        when = _seconds(reading.time)
        if probe.last is not None and when <= probe.last:
            return  # already seen (a replay overlapping the live polls)
        probe.last = when
        measurement = reading.measurement
        if measurement is None:
            if probe.plugged:
                probe.plugged, probe.unplugged_at = False, when
            return
        value = measurement.to(self.rules.unit).value
        if not probe.plugged:
            probe.plugged = True
            if probe.ready_sent and value < (probe.peak or value) - self.rules.cold_rise:
                self._new_cook(probe)  # pulled after it was done, and a cold probe put in
        if probe.samples and when - probe.bucket < SAMPLE_EVERY:
            t, v = probe.samples[-1]  # the readings' mean time and mean value
            probe.merged += 1
            probe.samples[-1] = (t + (when - t) / probe.merged, v + (value - v) / probe.merged)
        else:
            probe.samples.append((when, value))
            probe.bucket, probe.merged = when, 1
        while probe.samples and probe.samples[0][0] < when - self.rules.history:
            probe.samples.popleft()
        if probe.first is None:
            probe.first = value
        probe.peak = value if probe.peak is None else max(probe.peak, value)

    @staticmethod
    def _new_cook(probe: _Probe) -> None:
        probe.samples.clear()
        probe.first = probe.peak = None
        probe.stall = Stall()
        probe.rate_before_stall = None
        probe.stall_ended = probe.stall_end_value = None
        probe.plain = ()
        probe.sear = None
        probe.ready_sent = False

    def _estimate(
        self,
        key: ProbeKey,
        probe: _Probe,
        target: float,
        now: float,
        pit: _Probe | None,
        at: datetime,
        calibration: Calibration,
    ) -> tuple[Estimate, list[CookEvent]]:
        rules = self.rules
        samples = list(probe.samples)
        events: list[CookEvent] = []
        value = level(samples, now) if probe.plugged else None
        near_done = probe.peak is not None and probe.peak >= target - rules.almost_ready
        before = probe.stall
        if not probe.plugged:
            if before.stalled and now - (probe.unplugged_at or now) > rules.stall_time:
                probe.stall = Stall()
        elif near_done:
            probe.stall = Stall()
        else:
            probe.stall = detect(samples, now, before, rules)
        if probe.stall.stalled and not before.stalled:
            start = probe.stall.start or now
            climb = [s for s in samples if start - rules.window <= s[0] <= start]
            probe.rate_before_stall = slope(climb)
            events.append(self._event(CookEventKind.STALL_STARTED, key, at, samples, start))
        elif before.stalled and not probe.stall.stalled:
            start = before.start or now
            probe.stall_ended, probe.stall_end_value = now, value
            events.append(
                self._event(CookEventKind.STALL_ENDED, key, at, samples, start, now - start)
            )
        early = _progress(probe.first, value, target, CookState.COOKING)
        if (early is None or early < PACE_FROM) and calibration.pace != 1.0:
            calibration = dataclasses.replace(calibration, pace=1.0)  # learned on the second half
        prediction = (
            self._predict(probe, samples, target, now, pit, value, calibration)
            if probe.plugged
            else Prediction(Method.NONE)
        )
        state = self._state(probe, value, target, now, pit)
        progress = _progress(probe.first, value, target, state)
        self._keep_plain(probe, prediction, progress, now)
        self._keep_sear(probe, prediction, target, samples)
        if state is CookState.READY and not probe.ready_sent:
            probe.ready_sent = True
            ready = self._event(CookEventKind.READY, key, at, samples, None)
            events.append(self._lesson(ready, probe, target, now))
        probe.estimated = True
        estimate = Estimate(
            serial=key[0],
            channel=key[1],
            at=at,
            target=target,
            unit=rules.unit,
            state=state,
            value=value,
            progress=progress,
            method=prediction.method,
            done_at=_after(at, prediction.seconds),
            low=_after(at, prediction.low),
            high=_after(at, prediction.high),
            rate=prediction.rate,
            stalled=probe.stall.stalled,
            stall_started=_time(probe.stall.start) if probe.stall.start is not None else None,
            past_cooks=calibration.past_cooks,
        )
        return estimate, events

    def _predict(
        self,
        probe: _Probe,
        samples: list[Sample],
        target: float,
        now: float,
        pit: _Probe | None,
        value: float | None,
        calibration: Calibration,
    ) -> Prediction:
        """The probe's prediction: fitted again once a new sample began (every
        ``SAMPLE_EVERY``: a fit costs ~200 µs, and readings 15 s apart only move the
        last sample's mean), else the last fit's, its times counted down to now."""
        rules = self.rules
        stall_ahead = (
            probe.stall_ended is None
            and target > rules.stall_high
            and value is not None
            and value < rules.stall_low
        )
        inputs = (  # the pit's new samples wait for the meat's: its level moves slowly
            probe.bucket,
            pit is None,
            probe.stall.start,
            probe.rate_before_stall,
            probe.stall_ended,
            stall_ahead,
            target,
            calibration,
        )
        fitted = probe.fitted
        if fitted is not None and fitted[0] == inputs and (value is None or value < target):
            carried = _counted_down(fitted[2], now - fitted[1])
            if carried is not None:
                return carried
        prediction = predict(
            samples,
            target,
            now,
            rules,
            pit=list(pit.samples) if pit is not None else (),
            stall_start=probe.stall.start,
            rate_before_stall=probe.rate_before_stall,
            since=probe.stall_ended,
            stall_ahead=stall_ahead,
            calibration=calibration,
        )
        done = prediction.method is Method.DONE  # checked again at every poll (it is cheap)
        probe.fitted = None if done else (inputs, now, prediction)
        return prediction

    @staticmethod
    def _keep_plain(
        probe: _Probe, prediction: Prediction, progress: float | None, now: float
    ) -> None:
        """Keep an estimate of the plain climb (its second half) to learn the cook's pace."""
        if prediction.plain is None or prediction.plain < PACE_MIN:
            return
        if progress is None or progress < PACE_FROM:
            return
        if probe.plain and now - probe.plain[-1][0] < PACE_EVERY:
            return
        probe.plain = (*probe.plain, (now, prediction.plain))

    @staticmethod
    def _keep_sear(
        probe: _Probe, prediction: Prediction, target: float, samples: list[Sample]
    ) -> None:
        """The pit stepped up past half-way of a cook without a stall: a sear (a reverse
        seared steak), which the person may do again."""
        step = prediction.pit_step
        if step is None or probe.sear is not None or not samples:
            return
        if probe.stall.stalled or probe.stall_ended is not None:
            return
        then = min(samples, key=lambda s: abs(s[0] - step))[1]
        state = CookState.COOKING
        at_step = _progress(probe.first, then, target, state)
        if at_step is not None and at_step >= SEAR_FROM:
            probe.sear = (step, then)

    def _lesson(self, ready: CookEvent, probe: _Probe, target: float, now: float) -> CookEvent:
        """The ready event with what this cook teaches the next ones: its pace (actual /
        predicted time left, the median over the kept estimates; after its sear only),
        its climb after the stall against before it, and its sear. Timed from its first
        sample at the target (the state follows a five-minute mean, a little later)."""
        now = next((t for t, v in probe.samples if v >= target), now)
        after = probe.sear[0] if probe.sear is not None else 0.0  # the sear explains those
        paces = [(now - when) / s for when, s in probe.plain if after <= when < now]
        pace = statistics.median(paces) if paces else None
        climb = None
        before = probe.rate_before_stall
        if (
            probe.stall_ended is not None
            and probe.stall_end_value is not None
            and before is not None
            and before > 0
            and now > probe.stall_ended
        ):
            after = (target - probe.stall_end_value) / (now - probe.stall_ended)
            climb = after / before if after > 0 else None
        sear_at = sear_seconds = None
        if probe.sear is not None and now > probe.sear[0]:
            sear_seconds, sear_at = now - probe.sear[0], probe.sear[1]
        return dataclasses.replace(
            ready,
            target=target,
            pace=pace,
            climb_pace=climb,
            sear_at=sear_at,
            sear_seconds=sear_seconds,
        )

    def _state(
        self, probe: _Probe, value: float | None, target: float, now: float, pit: _Probe | None
    ) -> CookState:
        rules = self.rules
        reached = probe.peak is not None and probe.peak >= target
        if value is None:
            near = probe.peak is not None and probe.peak >= target - rules.almost_ready
            return CookState.RESTING if near else CookState.IDLE
        latest = probe.samples[-1][1] if probe.samples else value
        falling = max(value, latest) <= (probe.peak or value) - rules.rest_drop
        if reached and falling:  # (a fast climb's mean lags its peak: not falling)
            return CookState.RESTING
        if value >= target:
            return CookState.READY
        if value >= target - rules.almost_ready:
            return CookState.ALMOST_READY
        if probe.stall.stalled:
            return CookState.STALLED
        if probe.first is not None and value - probe.first >= rules.cold_rise:
            return CookState.COOKING
        if pit is not None and pit.samples:
            recent = [s for s in pit.samples if s[0] >= now - rules.window]
            rate = slope(recent)
            pit_now = level(list(pit.samples), now)
            if rate is not None and rate * 3600.0 >= rules.preheat_rate:
                return CookState.PREHEATING
            if pit_now is not None and pit_now >= value + 5 * rules.cold_rise:
                return CookState.COOKING  # a hot, steady pit: the meat just went in
        return CookState.IDLE

    def _event(
        self,
        kind: CookEventKind,
        key: ProbeKey,
        at: datetime,
        samples: list[Sample],
        start: float | None,
        seconds: float | None = None,
    ) -> CookEvent:
        return CookEvent(
            kind=kind,
            serial=key[0],
            channel=key[1],
            at=at,
            value=samples[-1][1] if samples else 0.0,
            unit=self.rules.unit,
            stall_start=_time(start) if start is not None else None,
            stall_seconds=seconds,
        )


def _after(at: datetime, seconds: float | None) -> datetime | None:
    if seconds is None:
        return None
    return _time(_seconds(at) + seconds)


def _progress(
    first: float | None, value: float | None, target: float, state: CookState
) -> float | None:
    """Percent of the way from the cook's first temperature to the target."""
    if state in (CookState.READY, CookState.RESTING):
        return 100.0
    if first is None or value is None or target <= first:
        return None
    return round(min(max((value - first) / (target - first) * 100.0, 0.0), 100.0), 1)
