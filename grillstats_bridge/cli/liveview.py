"""The demo's live terminal view: devices, probes, sessions and fired alerts (pure rendering)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from grillstats_bridge.domain import Device, Probe

CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True, kw_only=True)
class ViewState:
    now: datetime
    status: str  # one line: broker, database, accounts
    devices: Sequence[Device] = ()
    sessions: Mapping[str, str] = field(default_factory=dict)  # serial -> "active: Brisket, 3h12m"
    alerts: Sequence[str] = ()  # newest last
    footer: str = "Ctrl-C stops the bridge cleanly."


def _probe_text(probe: Probe) -> str:
    name = probe.label or f"Probe {probe.channel}"
    if not probe.connected or probe.value is None:
        return f"{name}: --"
    return f"{name}: {probe.value:.1f} {probe.unit.symbol}"


def render(state: ViewState, *, width: int = 100) -> str:
    """The whole screen as text (the caller prefixes CLEAR when it draws on a terminal)."""
    rule = "-" * min(width, 100)
    lines = [
        f"Grill Stats Bridge demo  {state.now:%Y-%m-%d %H:%M:%S} UTC (simulated)",
        state.status,
        rule,
    ]
    if not state.devices:
        lines.append("waiting for the first poll...")
    for device in state.devices:
        online = "online" if device.is_online(state.now) else "OFFLINE"
        extras = []
        if device.battery is not None:
            extras.append(f"battery {device.battery}%")
        if device.signal_dbm is not None:
            extras.append(f"{device.signal_dbm} dBm")
        if device.fan is not None and device.fan.state is not None:
            extras.append(f"fan {device.fan.state}")
        lines.append(
            f"{device.name}  [{device.model or device.type or '?'}, {online}] " + ", ".join(extras)
        )
        for probe in device.probes:
            lines.append(f"    {_probe_text(probe)}")
        session = state.sessions.get(device.serial)
        if session:
            lines.append(f"    session: {session}")
    lines.append(rule)
    lines.append("Alerts fired:" if state.alerts else "Alerts fired: none yet")
    lines.extend(f"    {text}" for text in list(state.alerts)[-8:])
    lines.append(rule)
    lines.append(state.footer)
    return "\n".join(line[:width] for line in lines) + "\n"
