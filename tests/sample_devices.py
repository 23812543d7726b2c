"""Test devices built from ``domain`` types: one of each kind the bridge meets.

A Signals with four probes (one unplugged, one alarming), an RFX gateway with its
Billows fan, an RFX meat probe, a Node with a humidity channel, and a °C Signals
that has gone offline. Used by the tests, the Home Assistant check and the benchmark.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from grillstats_bridge.domain import (
    NO_PROBE_STATUS,
    AlarmSetting,
    Device,
    Fan,
    FanState,
    Probe,
    Unit,
)

SIGNALS = "10:06:1C:6F:47:70"
GATEWAY = "2C:F4:32:11:22:33"
MEAT = "M100081209"
NODE = "B0:B2:1C:00:00:01"
CELSIUS = "10:06:1C:AA:BB:CC"
F, C, H = Unit.FAHRENHEIT, Unit.CELSIUS, Unit.HUMIDITY


def alarm(value: float, *, alarming: bool = False, unit: Unit = F) -> AlarmSetting:
    return AlarmSetting(enabled=True, alarming=alarming, value=value, unit=unit)


def sample_devices(now: datetime, *, step: int = 0) -> tuple[Device, ...]:
    """The five devices as the cloud reported them at ``now`` (``step`` moves the values)."""
    seen = now - timedelta(seconds=20)

    def probe(
        serial: str, channel: int, value: float | None, unit: Unit = F, **kw: object
    ) -> Probe:
        return Probe(
            serial=serial,
            channel=channel,
            value=None if value is None else value + step * 0.5,
            unit=unit,
            status=NO_PROBE_STATUS if value is None else "NORMAL",
            last_seen=seen,
            last_telemetry_saved=seen,
            **kw,  # type: ignore[arg-type]
        )

    return (
        Device(
            serial=SIGNALS,
            label="Backyard Signals",
            type="signals",
            model="signals",
            firmware="1.4.2",
            battery=87,
            wifi_rssi=-52,
            display_units=F,
            transmit_interval_s=15,
            last_seen=seen,
            last_telemetry_saved=seen,
            probes=(
                probe(SIGNALS, 1, 165.3, label="Brisket", alarm_high=alarm(203)),
                probe(
                    SIGNALS,
                    2,
                    182.10000610351562,  # float32 noise, as the cloud sends it
                    label="Pork butt",
                    alarm_high=alarm(180, alarming=True),
                ),
                probe(SIGNALS, 3, None),  # unplugged: unknown in HA, never 0
                probe(
                    SIGNALS,
                    4,
                    225.0,
                    label="Ambient",
                    alarm_high=alarm(275),
                    alarm_low=alarm(200),
                ),
            ),
        ),
        Device(
            serial=GATEWAY,
            type="rfx",
            model="rfx gateway",
            firmware="2.0.7",
            wifi_rssi=-61,
            display_units=F,
            transmit_interval_s=30,
            last_seen=seen,
            fan=Fan(connected=True, set_temperature=250.0, channel=1, state=FanState.BLOWING),
            probes=(probe(GATEWAY, 1, 249.5, label="Grid"),),
        ),
        Device(
            serial=MEAT,
            label="Turkey probe",
            type="rfx",
            model="rfx meat",
            battery=76,
            gateway_rssi=-55,
            display_units=F,
            transmit_interval_s=30,
            last_seen=seen,
            probes=(probe(MEAT, 1, 140.5, label="Meat"),),
        ),
        Device(
            serial=NODE,
            label="Walk-in cooler",
            type="datalogger",
            model="node",
            firmware="0.9.1",
            battery=100,
            wifi_rssi=-70,
            display_units=F,
            heartbeat_interval_s=7200,
            last_seen=seen,
            probes=(
                probe(NODE, 1, 38.1, label="Cooler"),
                # a humidity channel whose alarm claims °F: the threshold is a percentage
                probe(NODE, 2, 45.0, H, label="Humidity", alarm_high=alarm(80, unit=F)),
            ),
        ),
        Device(
            serial=CELSIUS,
            label="Küche",
            type="signals",
            model="signals",
            firmware="1.4.2",
            battery=12,
            wifi_rssi=-80,
            display_units=C,
            transmit_interval_s=15,
            last_seen=now - timedelta(hours=1),  # offline
            probes=(
                probe(CELSIUS, 1, 74.2, C, label="Roast", alarm_high=alarm(63, unit=C)),
                probe(CELSIUS, 2, 21.5, C),
            ),
        ),
    )
