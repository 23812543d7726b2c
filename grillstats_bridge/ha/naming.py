"""Where each subject's entities live: object ids, topics, unique ids, the HA device and
availability (:class:`Naming`, :class:`Target`). Pure.

Ids and topics derive from stable ids only: the instance id, the serial (as
``ha.ids.device_id`` writes it: ``[A-Za-z0-9_-]``, never the same for two serials),
the channel number, the account's user id — never a display name, so renaming a
probe renames the entity instead of making a new one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from grillstats_bridge.ha.entities import (
    MANUFACTURER,
    AccountStatus,
    BridgeStatus,
    Component,
    DeviceView,
    JsonValue,
    ProbeView,
    model_name,
)
from grillstats_bridge.ha.ids import device_id, sanitize


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where one subject's entities live: their ids, topics, HA device and availability."""

    object_id: str  # unique within the instance; entity ids are <instance>_<object_id>_<key>
    state_topic: str
    device: Mapping[str, JsonValue]
    availability: tuple[str, ...]  # every one must say "online" (availability_mode all)
    bridge_availability: tuple[str, ...]  # for entities that must stay visible when offline

    @property
    def event_topic(self) -> str:
        return f"{self.state_topic}/event"

    def command_topic(self, key: str) -> str:
        return f"{self.state_topic}/{key}/set"


@dataclass(frozen=True, kw_only=True)
class Naming:
    """The topic tree and ids of one bridge instance.

    ``<base>/<instance>/status`` online/offline; ``.../bridge`` and
    ``.../account/<user id>`` the bridge's states; ``.../device/<serial>`` a device's
    state, ``.../availability``, ``.../session`` and ``.../probe/<channel>`` under it.

    With ``per_user_topics`` a user's devices live under ``.../user/<user id>/device/...``
    and their discovery configs under the node id ``<instance>_u<user id>``, so a broker
    ACL can give each user's login their own topics (``ha.acl``); ``for_user`` gives
    the naming of one user's devices. Unique ids and object ids are the same either way.
    """

    instance_id: str
    base_topic: str = "grillstats"
    discovery_prefix: str = "homeassistant"
    per_user_topics: bool = False
    user_id: int | None = None  # whose devices this naming places (per_user_topics)
    configuration_url: str | None = None  # the web app, linked from the bridge device
    # Several processes: the status topic (will) of the process that publishes these
    # devices, so that a device is available only while the process holding it lives.
    holder_topic: str | None = None

    def __post_init__(self) -> None:
        if sanitize(self.instance_id) != self.instance_id:
            raise ValueError(f"instance id {self.instance_id!r}: letters, digits, _ and - only")

    @property
    def root(self) -> str:
        return f"{self.base_topic}/{self.instance_id}"

    def for_user(self, user_id: int | None) -> Naming:
        """The naming of one user's devices (itself, unless ``per_user_topics``)."""
        if not self.per_user_topics or user_id == self.user_id:
            return self
        return replace(self, user_id=user_id)

    @property
    def devices_root(self) -> str:
        """Where the devices' topics start: the root, or the user's part of it."""
        if self.per_user_topics and self.user_id is not None:
            return f"{self.root}/user/{self.user_id}"
        return self.root

    @property
    def node_id(self) -> str:
        """The discovery node id: the instance, or the user's part of it."""
        if self.per_user_topics and self.user_id is not None:
            return f"{self.instance_id}_u{self.user_id}"
        return self.instance_id

    def command_filter(self, suffix: str) -> str:
        """A subscription to one command of every device (of every user): ``suffix`` after
        the device id, e.g. ``session/start/set``."""
        users = "user/+/" if self.per_user_topics else ""
        return f"{self.root}/{users}device/+/{suffix}"

    def command_root(self, topic: str) -> tuple[int | None, str]:
        """Whose device a command topic names (None: no per-user topics), and the root
        that ``ha.commands.parse_topic`` reads it under. ValueError: not a user's topic."""
        if not self.per_user_topics:
            return None, self.root
        prefix = f"{self.root}/user/"
        user = topic[len(prefix) :].split("/", 1)[0] if topic.startswith(prefix) else ""
        if not _USER_ID.fullmatch(user):
            raise ValueError(f"not a user's command topic: {topic[:80]!r}")
        return int(user), f"{prefix}{user}"

    @property
    def status_topic(self) -> str:
        return f"{self.root}/status"

    @property
    def ha_status_topic(self) -> str:
        """Where HA announces itself (its birth and will)."""
        return f"{self.discovery_prefix}/status"

    @property
    def bridge_identifier(self) -> str:
        return f"{self.instance_id}_bridge"

    def device_root(self, serial: str) -> str:
        return f"{self.devices_root}/device/{device_id(serial)}"

    def availability_topic(self, serial: str) -> str:
        return f"{self.device_root(serial)}/availability"

    def probe_topic(self, serial: str, channel: int) -> str:
        return f"{self.device_root(serial)}/probe/{channel}"

    def device_event_topic(self, serial: str) -> str:
        """Where a device's events go (what its event entities and device triggers read)."""
        return f"{self.device_root(serial)}/event"

    def session_topic(self, serial: str) -> str:
        """A device's cooking session: its state, ``/event``, ``/start/set``, ``/end/set``."""
        return f"{self.device_root(serial)}/session"

    def session_event_topic(self, serial: str) -> str:
        return f"{self.session_topic(serial)}/event"

    def probe_event_topic(self, serial: str, channel: int) -> str:
        """Where a probe's events go (alert firings)."""
        return f"{self.probe_topic(serial, channel)}/event"

    def config_topic(self, component: Component | str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"

    def unique_id(self, object_id: str) -> str:
        return f"{self.instance_id}_{object_id}"

    def bridge_device(self, version: str) -> dict[str, JsonValue]:
        default = self.instance_id == "grillstats"
        return {
            "identifiers": [self.bridge_identifier],
            "name": "Grill Stats Bridge" if default else f"Grill Stats Bridge {self.instance_id}",
            "manufacturer": "Grill Stats Bridge",
            "model": "ThermoWorks cloud bridge",
            "sw_version": version,
        } | ({"configuration_url": self.configuration_url} if self.configuration_url else {})

    def bridge_target(self, bridge: BridgeStatus) -> Target:
        own = (self.status_topic,)
        return Target(
            object_id="bridge",
            state_topic=f"{self.root}/bridge",
            device=self.bridge_device(bridge.version),
            availability=own,
            bridge_availability=own,
        )

    def account_target(self, account: AccountStatus, bridge_version: str) -> Target:
        own = (self.status_topic,)
        return Target(
            object_id=f"account_{account.user_id}",
            state_topic=f"{self.root}/account/{account.user_id}",
            device=self.bridge_device(bridge_version),
            availability=own,
            bridge_availability=own,
        )

    def device_target(self, view: DeviceView) -> Target:
        d = view.device
        device: dict[str, JsonValue] = {
            "identifiers": [f"{self.instance_id}_{view.sid}"],
            "name": view.name,
            "manufacturer": MANUFACTURER,
            "model": model_name(d),
            "serial_number": d.serial,
            "via_device": self.bridge_identifier,
        }
        if d.firmware:
            device["sw_version"] = d.firmware
        return Target(
            object_id=view.sid,
            state_topic=self.device_root(d.serial),
            device=device,
            availability=(*self._holders, self.availability_topic(d.serial)),
            bridge_availability=self._holders,
        )

    @property
    def _holders(self) -> tuple[str, ...]:
        """The bridge's status, and that of the process holding the devices (if several)."""
        if self.holder_topic is None:
            return (self.status_topic,)
        return (self.status_topic, self.holder_topic)

    def session_target(self, view: DeviceView, device_target: Target) -> Target:
        return Target(
            object_id=f"{view.sid}_session",
            state_topic=self.session_topic(view.device.serial),
            device=device_target.device,
            availability=device_target.availability,
            bridge_availability=device_target.bridge_availability,
        )

    def probe_target(self, view: ProbeView, device_target: Target) -> Target:
        return Target(
            object_id=f"{view.device.sid}_p{view.probe.channel}",
            state_topic=self.probe_topic(view.device.device.serial, view.probe.channel),
            device=device_target.device,
            availability=device_target.availability,
            bridge_availability=device_target.bridge_availability,
        )


_USER_ID = re.compile(r"[1-9][0-9]{0,9}")
