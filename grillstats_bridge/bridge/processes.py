"""What differs between the processes of one bridge (``run --processes N``).

One process (the default) is what it always was: the configured client id, the
will on ``<root>/status``, the configured health port, one journal file, a claim
without a bridge key; everything it publishes is byte for byte the same.

With several processes, each has

* its own MQTT client id, ``<client_id>-<host>-<index>``: the broker drops a client
  whose id another one connects with, so two processes must never share one; the
  host makes two machines with the same configuration differ, the index (not the
  run id) keeps the id stable across restarts;
* its own will: ``offline`` on ``<root>/bridge/process/<host>-<index>/status``. The
  bridge's status ``<root>/status`` (the availability of every entity) is kept by a
  second, small connection per process (``<client_id>-<host>-<index>-status``, see
  :mod:`grillstats_bridge.mqtt.presence`): its will and its clean stop say ``offline``
  there, and every live process answers ``offline`` with ``online``, so the bridge's
  status is ``offline`` once no process lives, however they stopped (killed, the
  machine lost power, ``systemctl stop`` of each ``grillstats-bridge@`` instance), with
  or without the supervisor;
* its own health port, ``http.port + index``, and its own outage journal;
* a bridge key in its instance claim (a digest of the instance id and the database
  URL without its password): processes with the same key are one bridge and let
  each other in; any other bridge on the instance id is refused as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from grillstats_bridge.bridge.identity import ProcessIdentity
from grillstats_bridge.config import Config, redact_url
from grillstats_bridge.ha.ids import sanitize
from grillstats_bridge.ha.publisher import naming_for
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.messages import OFFLINE, ONLINE, MqttError
from grillstats_bridge.mqtt.presence import SharedStatus
from grillstats_bridge.mqtt.retained import read_retained
from grillstats_bridge.store.journal import Journal, JournalError, journal_path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttIdentity:
    """How one process appears on the broker."""

    client_id: str
    status_topic: str  # the client's will, its online on connect and offline on stop
    bridge_key: str  # in the instance claim: "" for a bridge of one process


def slot(identity: ProcessIdentity) -> str:
    """``<host>-<index>``: a process's place in the bridge, the same after a restart."""
    return sanitize(f"{identity.host}-{identity.index}")


def process_topic(config: Config, identity: ProcessIdentity) -> str:
    return f"{naming_for(config.mqtt).root}/bridge/process/{slot(identity)}/status"


def mqtt_identity(config: Config, identity: ProcessIdentity) -> MqttIdentity:
    mqtt = config.mqtt
    if not identity.several:
        return MqttIdentity(mqtt.effective_client_id, naming_for(mqtt).status_topic, "")
    return MqttIdentity(
        f"{mqtt.effective_client_id}-{slot(identity)}",
        process_topic(config, identity),
        bridge_key(config),
    )


def shared_status(config: Config, identity: ProcessIdentity) -> SharedStatus | None:
    """Several processes: the connection that keeps ``<root>/status`` (None for one)."""
    if not identity.several:
        return None
    return SharedStatus(
        config.mqtt,
        topic=naming_for(config.mqtt).status_topic,
        client_id=f"{config.mqtt.effective_client_id}-{slot(identity)}-status",
    )


def bridge_key(config: Config) -> str:
    """The same for every process of one bridge: its instance id and its database."""
    text = f"{config.mqtt.instance_id}\0{redact_url(config.database.url)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def process_config(config: Config, identity: ProcessIdentity) -> Config:
    """The configuration as this process uses it: its own health port (``http.port + index``)."""
    if not identity.several or not config.http.port:
        return config  # port 0: each process asks the kernel for a free one anyway
    return config.replace("http", port=config.http.port + identity.index)


def journal_file(config: Config, identity: ProcessIdentity) -> Path:
    """The outage journal: one per process, as two processes must not replace each other's."""
    path = journal_path(config.security)
    if not identity.several:
        return path
    return path.with_name(f"{path.stem}.{identity.index}{path.suffix}")


def adopt_orphaned_journals(
    config: Config, identity: ProcessIdentity, journal: Journal | None
) -> int:
    """Process 0 takes in the outage journals no process of this bridge writes any more.

    Each process keeps its own journal (``journal_file``); after ``--processes 3`` is
    run as ``--processes 2``, or several processes as one, the journals of the indexes
    no longer run would never be replayed. Process 0 adds their readings to its own
    journal, before its replay, and removes them (a crash between the two replays them
    twice: readings are stored once, at least once for what follows them). Returns the
    readings taken in; a journal it cannot read or write is left where it is, one line.
    """
    if identity.index != 0 or journal is None:
        return 0
    own = journal_path(config.security)
    named = re.compile(rf"{re.escape(own.stem)}(\.\d+)?{re.escape(own.suffix)}")
    current = {
        journal_file(config, dataclasses.replace(identity, index=i)) for i in range(identity.count)
    }
    orphans = sorted(
        path
        for path in own.parent.glob(f"{own.stem}*{own.suffix}")
        if named.fullmatch(path.name) and path not in current
    )
    if not orphans:
        return 0
    try:
        readings = journal.load()
        adopted = [item for path in orphans for item in Journal(path).load()]
        journal.save([*readings, *adopted])
        for path in orphans:
            Journal(path).clear()
    except JournalError as exc:
        log.error("journal: %s; the journals of processes no longer run wait", exc)
        return 0
    log.info(
        "journal: %d readings from %s taken in (no process of this bridge writes them now)",
        len(adopted),
        ", ".join(path.name for path in orphans),
    )
    return len(adopted)


def bridge_offline(config: Config, identity: ProcessIdentity) -> bool:
    """Say ``offline`` on the bridge's status when no process of it is online any more.

    The supervisor calls this once its own processes have stopped: a process of the
    bridge on another machine may still be online (its status topic says so), and
    then the bridge's status stays ``online``. False when it was left as it is.
    """
    naming = naming_for(config.mqtt)
    helper = f"{config.mqtt.effective_client_id}-{slot(identity)}-supervisor"
    try:
        scan = read_retained(
            config.mqtt,
            [f"{naming.root}/bridge/process/+/status"],
            marker_topic=f"{naming.root}/bridge/process-check/{uuid.uuid4().hex}",
            client_id=helper,
            timeout=5.0,
        )
    except (MqttError, OSError) as exc:
        log.warning("the bridge's status not set offline: %s", exc)
        return False
    online = sorted(t for t, payload in scan.messages.items() if payload == ONLINE.encode())
    if online:
        log.info("the bridge's status stays online: %d other process(es) online", len(online))
        return False
    client = MqttClient(config.mqtt, status_topic=None, client_id=helper)
    client.start()
    try:
        client.publish_state(naming.status_topic, OFFLINE, qos=1, retain=True)
        done = client.wait_ready(5.0) and client.flush(5.0)
    finally:
        client.stop()
    if not done:
        log.warning("the bridge's status not set offline: the broker did not take it in time")
    return done
