"""``mqtt``: remove everything this bridge instance published to the broker; print a
Mosquitto ACL for the bridge's users."""

from __future__ import annotations

import argparse
import re
import uuid
from typing import Any

import sqlalchemy as sa

from grillstats_bridge.cli.common import Context, add_command, add_group
from grillstats_bridge.config import MqttConfig
from grillstats_bridge.errors import GrillstatsError, UsageError
from grillstats_bridge.ha.acl import mosquitto_acl
from grillstats_bridge.ha.publisher import naming_for
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.retained import RetainedScan, read_retained
from grillstats_bridge.store.models import User
from grillstats_bridge.store.publications import PublicationStore

TIMEOUT = 15.0


def register(sub: Any) -> None:
    mqtt = add_group(sub, "mqtt", "MQTT broker maintenance")
    p = add_command(
        mqtt,
        "cleanup",
        _cleanup,
        "remove every retained message this instance published (discovery, states, status)",
        description="Clear every retained topic this instance (mqtt.instance_id) ever "
        "published: what the database remembers, plus whatever the broker holds under the "
        "instance's own topics. Home Assistant then forgets its devices and entities. Stop "
        "the bridge first, or it publishes everything again.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be cleared, clear nothing"
    )
    p.add_argument("--force", action="store_true", help="clear even though the bridge looks online")
    p.add_argument(
        "--broker-only",
        action="store_true",
        help="do not use the database (e.g. it is gone); clear what the broker holds",
    )
    add_command(
        mqtt,
        "acl",
        _acl,
        "print a Mosquitto ACL file: each user's login gets only their own devices",
        description="Print an ACL file for Mosquitto (acl_file) that gives the bridge's "
        "login (mqtt.username) its topics and discovery, and each enabled user's login "
        "(mqtt.acl_login) only their own devices' states and commands. Needs "
        "mqtt.per_user_topics: true. Generate it again after adding users.",
    )


def _acl(args: argparse.Namespace, ctx: Context) -> int:
    config = ctx.config.mqtt
    if not config.per_user_topics:
        raise UsageError(
            "mqtt acl: set mqtt.per_user_topics: true first (without it every user's "
            "devices share one topic tree, which no ACL can split)"
        )
    if not config.username:
        raise UsageError("mqtt acl: set mqtt.username, the bridge's own login on the broker")
    with ctx.database().session() as db:
        rows = db.execute(
            sa.select(User.id, User.email).where(User.is_active.is_not(False)).order_by(User.id)
        ).all()
    users = [(user_id, email) for user_id, email in rows]
    print(
        mosquitto_acl(
            naming_for(config),
            bridge_login=config.username,
            users=users,
            login_pattern=config.acl_login,
        ),
        end="",
    )
    return 0


# A broker may send only part of a large retained list at once (see read_retained);
# clearing and scanning again converges. This bounds the passes.
MAX_PASSES = 50


def _cleanup(args: argparse.Namespace, ctx: Context) -> int:
    config = ctx.config.mqtt
    naming = naming_for(config)
    store = None if args.broker_only else PublicationStore(ctx.database(), config.instance_id)
    remembered = {topic: kind for topic, _, kind in store.load()} if store is not None else {}
    helper_id = f"{config.effective_client_id}-cleanup"
    scan = _scan(config, helper_id)
    held = scan.messages
    online = held.get(naming.status_topic) == b"online"
    if online and not args.force and not args.dry_run:
        raise UsageError(
            f"the bridge instance {config.instance_id!r} looks online ({naming.status_topic} "
            "says online): stop it first, or use --force"
        )
    topics = sorted(set(remembered) | set(held))
    configs = sum(1 for t in topics if t.startswith(config.discovery_prefix + "/"))
    source = "the broker" if store is None else "the database and the broker"
    at_least = "" if scan.complete else "at least "
    print(
        f"instance {config.instance_id}: {at_least}{len(topics)} retained topics in {source} "
        f"({configs} discovery configs, {len(topics) - configs} states)"
    )
    if args.dry_run:
        if online:
            print(
                f"note: the bridge looks online; stop it before cleaning up ({naming.status_topic})"
            )
        if not scan.complete:
            print(
                "note: the broker sent only part of what it holds (too much at once); "
                "the cleanup itself scans again until nothing is left"
            )
        for topic in topics:
            where = ("db " if topic in remembered else "   ") + ("broker" if topic in held else "")
            print(f"  {where:<9} {topic}")
        print("dry run: nothing cleared")
        return 0
    cleared = _clear_all(config, topics, scan, helper_id)
    forgotten = store.forget_all() if store is not None else 0
    print(f"cleared {len(cleared)} retained topics; forgot {forgotten} database rows")
    return 0


def clear_instance(config: MqttConfig, store: PublicationStore) -> int:
    """Clear every retained topic of the instance, as ``mqtt cleanup`` does; returns the count."""
    helper_id = f"{config.effective_client_id}-cleanup"
    scan = _scan(config, helper_id)
    topics = sorted({topic for topic, _, _ in store.load()} | set(scan.messages))
    cleared = _clear_all(config, topics, scan, helper_id)
    store.forget_all()
    return len(cleared)


def _clear_all(
    config: MqttConfig, topics: list[str], scan: RetainedScan, helper_id: str
) -> set[str]:
    """Clear ``topics``, then scan again and clear what is left until nothing is."""
    cleared = set(topics)
    if topics:
        _clear(config, topics, helper_id)
    for _ in range(MAX_PASSES):
        if scan.complete and not set(scan.messages) - set(topics):
            return cleared
        scan = _scan(config, helper_id)
        left = sorted(set(scan.messages))
        if not left and scan.complete:
            return cleared
        _clear(config, left, helper_id)
        cleared.update(left)
        topics = left
    raise GrillstatsError(
        f"the broker still holds retained topics of instance {config.instance_id!r} "
        f"after {MAX_PASSES} passes"
    )


def _scan(config: MqttConfig, client_id: str) -> RetainedScan:
    """What the broker holds under this instance's own topics."""
    naming = naming_for(config)
    prefix = config.discovery_prefix
    # Per-user discovery configs have node ids <instance>_u<user id>: no filter names
    # them all, so every config is read and this instance's are kept.
    node = "+" if config.per_user_topics else config.instance_id
    scan = read_retained(
        config,
        [f"{naming.root}/#", f"{prefix}/+/{node}/+/config"],
        marker_topic=f"{naming.root}/cleanup-marker/{uuid.uuid4().hex}",
        client_id=client_id,
        timeout=TIMEOUT,
    )
    if not config.per_user_topics:
        return scan
    ours = re.compile(rf"{re.escape(prefix)}/[^/]+/{re.escape(config.instance_id)}(_u[0-9]+)?/")
    kept = {
        topic: payload
        for topic, payload in scan.messages.items()
        if topic.startswith(f"{naming.root}/") or ours.match(topic)
    }
    return RetainedScan(kept, scan.complete)


def _clear(config: MqttConfig, topics: list[str], client_id: str) -> None:
    client = MqttClient(config, status_topic=None, client_id=client_id)
    client.start()
    try:
        if not client.wait_ready(TIMEOUT):
            raise GrillstatsError(
                f"MQTT broker {client.broker}: {client.health().last_error or 'no connection'}"
            )
        for topic in topics:
            client.clear(topic)
        if not client.flush(TIMEOUT):
            raise GrillstatsError(f"MQTT broker {client.broker}: clearing did not finish in time")
    finally:
        client.stop()
