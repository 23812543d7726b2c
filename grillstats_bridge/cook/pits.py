"""Whose pit probe a meat probe heats toward (pure): its own device's, or its RFX gateway's.

An RFX Meat probe is a device of its own (its four sensing points are all in the meat:
it has no ambient sensor); the pit is measured by the air probe of the RFX Gateway that
relays it. That gateway is the one the probe's document names (``gatewaySerial``), else
the user's only RFX Gateway; either way one of the same user's devices, never another's.
"""

from __future__ import annotations

from collections.abc import Mapping

from grillstats_bridge.cook.model import ProbeKey

RFX_MEAT_MODELS = frozenset({"rfx meat"})
RFX_MEAT_TYPES = frozenset({"bbq"})  # an older RFX Meat probe's ``type``
RFX_GATEWAY_MODELS = frozenset({"rfx gateway"})
GATEWAY_FIELD = "gatewaySerial"  # on an RFX Meat probe's device document


def is_rfx_meat(model: str | None, kind: str | None) -> bool:
    return (model or "").lower() in RFX_MEAT_MODELS or (kind or "").lower() in RFX_MEAT_TYPES


def gateway_of(named: str | None, siblings: Mapping[str, str | None]) -> str | None:
    """The RFX gateway of a meat probe among the same user's devices (serial -> model):
    the one it names if the user has it, else the user's only RFX gateway, else None."""
    if named:
        by_case = {serial.upper(): serial for serial in siblings}
        return by_case.get(named.strip().upper())
    gateways = sorted(
        s for s, model in siblings.items() if (model or "").lower() in RFX_GATEWAY_MODELS
    )
    return gateways[0] if len(gateways) == 1 else None


def pit_key(serial: str, pit: int | ProbeKey | None) -> ProbeKey | None:
    """A ``CookBatch.pits`` value as the probe it names: a channel of the device itself, or
    another device's probe (an RFX Meat probe's gateway)."""
    if pit is None:
        return None
    return (serial, pit) if isinstance(pit, int) else pit
