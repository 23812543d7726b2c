"""Account linking, the account poller and device sync: simulator over HTTP, both databases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from grillstats_bridge.accounts import service
from grillstats_bridge.bridge.poller import AccountPoller
from grillstats_bridge.bridge.scheduler import retry_policy
from grillstats_bridge.config import Config, PollingConfig
from grillstats_bridge.domain import Device as CloudDevice
from grillstats_bridge.domain import utcnow
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import accounts, users
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.devices import rename_device, sync_devices, sync_poll
from grillstats_bridge.store.models import Device, ProbeRow, ThermoWorksCredentials
from grillstats_bridge.store.secrets import SecretBox
from grillstats_bridge.thermoworks.errors import (
    CredentialsNeedOwner,
    InvalidCredentials,
    RateLimited,
    RefreshTokenInvalid,
    Unavailable,
)
from tests.fixtures.cloud import (
    GATEWAY,
    MEAT_FLAT,
    MEAT_POINT,
    PITMASTER,
    PITMASTER_PASSWORD,
    SIGNALS,
    MakeCloud,
    assert_no_secret,
)

H = 3600.0
USER = "pat@example.com"

POLICY = retry_policy(PollingConfig())  # the daemon's own retry policy


def cloud_config(config: Config, cloud: CloudSimulator) -> Config:
    return config.replace("thermoworks", **cloud.urls(), timeout=5.0)


def add_user(database: Database, config: Config, email: str = USER) -> int:
    with database.transaction() as session:
        return users.add_user(session, email, "bridge-password-1", config.security).id


def link(
    database: Database,
    config: Config,
    cloud: CloudSimulator,
    *,
    email: str = USER,
    tw_email: str = PITMASTER,
    password: str = PITMASTER_PASSWORD,
    store_password: bool = False,
) -> int:
    user_id = add_user(database, config, email)
    service.link_account(
        database,
        cloud_config(config, cloud),
        email,
        password,
        tw_email=tw_email,
        store_password=store_password,
        clock=cloud.now,
    )
    return user_id


def poller_for(
    database: Database, config: Config, cloud: CloudSimulator, user_id: int
) -> AccountPoller:
    return AccountPoller(database, cloud_config(config, cloud), user_id, clock=cloud.now)


def raw_rows(database: Database, table: str) -> list[dict[str, Any]]:
    with database.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]


def credentials(database: Database, user_id: int) -> ThermoWorksCredentials:
    with database.transaction() as session:
        row = session.scalar(
            sa.select(ThermoWorksCredentials).where(ThermoWorksCredentials.user_id == user_id)
        )
        assert row is not None
        return row


# ------------------------------------------------------------------------- linking


def test_link_stores_tokens_and_password_encrypted(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud, store_password=True)
    (row,) = raw_rows(database, "thermoworks_credentials")
    text = " ".join(str(v) for v in row.values())
    assert_no_secret(text, cloud)  # neither a token nor the password, anywhere in the row
    assert row["provider"] == "thermoworks" and row["tw_email"] == PITMASTER
    assert row["uid"] == cloud.account_uid(PITMASTER) and row["state"] == "ok"
    box = SecretBox.from_config(config.security)
    assert box.decrypt(row["stored_password"]) == PITMASTER_PASSWORD
    assert box.decrypt(row["access_token"]) in cloud.issued_secrets()
    assert box.decrypt(row["refresh_token"]) in cloud.issued_secrets()
    info = accounts.account_info(database, USER)
    assert info is not None and info.user_id == user_id and info.password_stored
    assert_no_secret(repr(info), cloud)


def test_link_without_store_password_keeps_no_password(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    link(database, config, cloud)
    (row,) = raw_rows(database, "thermoworks_credentials")
    assert row["stored_password"] is None


def test_link_with_a_wrong_password_stores_nothing(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    with pytest.raises(InvalidCredentials):
        link(database, config, cloud, password="not-it")
    assert raw_rows(database, "thermoworks_credentials") == []
    assert cloud.counts["signIn"] == 1


def test_unlink_forgets_secrets_and_keeps_devices_inactive(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    sync_poll(database, poller_for(database, config, cloud, user_id).poll())
    assert accounts.unlink_account(database, USER)
    assert raw_rows(database, "thermoworks_credentials") == []
    devices = raw_rows(database, "devices")
    assert len(devices) == 4 and not any(d["is_active"] for d in devices)
    assert not accounts.unlink_account(database, USER)


# ------------------------------------------------------------------------- polling and sync


def test_poll_and_sync_every_device_and_probe(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    poller = poller_for(database, config, cloud, user_id)
    poll = poller.poll()
    assert poll.user_id == user_id and poll.malformed == 0
    assert len(poll.readings) == 12  # 13 channels, the Signals' channel 4 has no probe
    result = sync_poll(database, poll)
    assert sorted(result.added) == sorted([SIGNALS, GATEWAY, MEAT_FLAT, MEAT_POINT])
    with database.transaction() as session:
        devices = {d.device_id: d for d in session.scalars(sa.select(Device))}
        signals = devices[SIGNALS]
        assert signals.nickname == "Offset Smoker" and signals.status == "online"
        assert signals.model == "signals" and signals.signal_dbm == -61
        assert signals.raw is not None and signals.raw["wifi_stength"] == -61
        gateway_raw = devices[GATEWAY].raw
        assert gateway_raw is not None
        assert gateway_raw["coolNewFirmwareField"] == {"mode": "smart", "level": 3}
        assert devices[MEAT_POINT].signal_dbm == -71
        probes = {(p.device.device_id, p.channel): p for p in session.scalars(sa.select(ProbeRow))}
        assert len(probes) == 13
        pit = probes[(SIGNALS, 1)]
        expected = cloud.scenario.sample(SIGNALS, 1, cloud.now())
        assert pit.last_value == expected.value and pit.last_time == expected.time
        assert pit.connected and pit.alarm_high_value == 275 and pit.alarm_low_value == 200
        assert pit.raw is not None and pit.raw["number"] == "1"
        empty = probes[(SIGNALS, 4)]
        assert not empty.connected and empty.last_value is None
    poller.close()


def test_only_new_readings(database: Database, config: Config, cloud: CloudSimulator) -> None:
    user_id = link(database, config, cloud)
    poller = poller_for(database, config, cloud, user_id)
    first = poller.poll()
    assert len(first.readings) == 12
    assert poller.poll().readings == ()  # nothing pushed since
    cloud.advance(15)
    moved = poller.poll().readings
    assert moved and all(r.value is not None for r in moved)
    assert all(r.time > cloud.now() - timedelta(seconds=16) for r in moved)
    # A restart remembers what was stored: no reading is repeated.
    sync_poll(database, poller.poll())
    poller.close()
    again = poller_for(database, config, cloud, user_id)
    assert again.poll().readings == ()
    again.close()


def test_unplugged_probe_gives_one_valueless_reading(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    poller = poller_for(database, config, cloud, user_id)
    cloud.advance(H + 9 * 60)  # 6 h 9 m, one minute before the point probe is pulled
    poller.poll()
    cloud.advance(2 * 60)
    point = [r for r in poller.poll().readings if (r.serial, r.channel) == (SIGNALS, 3)]
    assert len(point) == 1 and point[0].value is None
    cloud.advance(60)
    assert not [r for r in poller.poll().readings if (r.serial, r.channel) == (SIGNALS, 3)]
    cloud.advance(15 * 60)  # plugged back in
    back = [r for r in poller.poll().readings if (r.serial, r.channel) == (SIGNALS, 3)]
    assert len(back) == 1 and back[0].value is not None
    poller.close()


def test_offline_device_status(database: Database, config: Config, cloud: CloudSimulator) -> None:
    user_id = link(database, config, cloud)
    poller = poller_for(database, config, cloud, user_id)
    cloud.advance(4 * H + 10 * 60)  # 9 h 10 m: one RFX probe out of range
    sync_poll(database, poller.poll())
    with database.transaction() as session:
        status = {k: v for k, v in session.execute(sa.select(Device.device_id, Device.status))}
    assert status[MEAT_POINT] == "offline" and status[MEAT_FLAT] == "online"
    poller.close()


def test_refreshed_tokens_are_persisted_and_restored(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    before = credentials(database, user_id)
    poller = poller_for(database, config, cloud, user_id)
    poller.poll()
    assert cloud.counts["signIn"] == 1  # the tokens from linking were used
    cloud.advance(H - 100)
    poller.poll()
    assert cloud.counts["refresh"] == 1
    after = credentials(database, user_id)
    assert after.access_token != before.access_token
    assert after.expires_at is not None and after.expires_at > cloud.now()
    client = poller.client
    assert client is not None and client.tokens is not None
    box = SecretBox.from_config(config.security)
    assert after.access_token is not None
    assert box.decrypt(after.access_token) == client.tokens.id_token
    poller.close()
    restored = poller_for(database, config, cloud, user_id)
    restored.poll()
    assert cloud.counts["signIn"] == 1 and cloud.counts["refresh"] == 1
    restored.close()


def test_revoked_without_stored_password_is_flagged_and_not_retried(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    poller = poller_for(database, config, cloud, user_id)
    sync_poll(database, poller.poll())
    cloud.revoke_refresh_tokens(PITMASTER)
    cloud.expire_tokens()
    with pytest.raises(RefreshTokenInvalid) as info:
        poller.poll()
    assert POLICY.wait(info.value, 1).seconds is None and poller.needs_owner
    assert accounts.link_states(database)[user_id].state == "needs_reauth"
    row = credentials(database, user_id)
    assert row.state == "needs_reauth" and row.state_reason and "refresh token" in row.state_reason
    assert row.state_changed_at == cloud.now()
    assert {d["status"] for d in raw_rows(database, "devices")} == {"error"}
    cloud.reset_counts()
    for _ in range(3):
        with pytest.raises(CredentialsNeedOwner):
            poller.poll()
    assert cloud.request_count() == 0  # a flagged account costs nothing
    # Linking again brings it back, without restarting the poller.
    service.link_account(
        database,
        cloud_config(config, cloud),
        USER,
        PITMASTER_PASSWORD,
        tw_email=PITMASTER,
        clock=cloud.now,
    )
    assert len(poller.poll().devices) == 4 and not poller.needs_owner
    assert accounts.link_states(database)[user_id].state == "ok"
    poller.close()


def test_revoked_with_stored_password_signs_in_again(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud, store_password=True)
    poller = poller_for(database, config, cloud, user_id)
    poller.poll()
    before = credentials(database, user_id).refresh_token
    cloud.revoke_refresh_tokens(PITMASTER)
    cloud.expire_tokens()
    assert len(poller.poll().devices) == 4
    assert cloud.counts["signIn"] == 2
    row = credentials(database, user_id)
    assert row.state == "ok" and row.refresh_token != before
    poller.close()


def test_password_changed_with_stale_stored_password_is_flagged(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud, store_password=True)
    poller = poller_for(database, config, cloud, user_id)
    poller.poll()
    cloud.change_password(PITMASTER, "a-whole-new-password")
    with pytest.raises(InvalidCredentials):
        poller.poll()
    assert credentials(database, user_id).state == "needs_reauth"
    assert cloud.counts["signIn"] == 2  # one try with the stored password, then stop
    poller.close()


def test_transient_errors_back_off_without_flagging(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    poller = poller_for(database, config, cloud, user_id)
    cloud.fail_next(429, endpoint="runQuery", retry_after=30)
    with pytest.raises(RateLimited) as info:
        poller.poll()
    assert POLICY.wait(info.value, 1).seconds == 30
    cloud.fail_next(503, endpoint="firestore", count=2)
    for _ in range(2):
        with pytest.raises(Unavailable):
            poller.poll()
    assert credentials(database, user_id).state == "ok"
    assert len(poller.poll().devices) == 4
    poller.close()


def test_malformed_device_document_does_not_deactivate(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    poller = poller_for(database, config, cloud, user_id)
    sync_poll(database, poller.poll())
    cloud.malform_next(endpoint="runQuery", kind="document")
    poll = poller.poll()
    assert poll.malformed == 1 and len(poll.devices) == 3
    assert sync_poll(database, poll).deactivated == []
    assert all(d["is_active"] for d in raw_rows(database, "devices"))
    poller.close()


def test_vanished_device_becomes_inactive_and_comes_back(
    database: Database, config: Config
) -> None:
    user_id = add_user(database, config)
    now = utcnow()
    a = CloudDevice(serial="A", label="One", last_seen=now)
    b = CloudDevice(serial="B", label="Two", last_seen=now - timedelta(hours=1))
    with database.transaction() as session:
        first = sync_devices(session, user_id, [a, b], now=now)
        assert sorted(first.added) == ["A", "B"]
    with database.transaction() as session:
        assert sync_devices(session, user_id, [a], now=now).deactivated == ["B"]
    with database.transaction() as session:
        rows = {d.device_id: d for d in session.scalars(sa.select(Device))}
        assert rows["B"].is_active is False and rows["A"].status == "online"
        sync_devices(session, user_id, [a, b], now=now)
    with database.transaction() as session:
        row = session.scalar(sa.select(Device).where(Device.device_id == "B"))
        assert row is not None and row.is_active and row.status == "offline"


def test_rename_survives_sync_and_can_be_undone(database: Database, config: Config) -> None:
    user_id = add_user(database, config)
    device = CloudDevice(serial="A", label="Cloud Name")
    with database.transaction() as session:
        sync_devices(session, user_id, [device], now=utcnow())
    rename_device(database, "A", "Mine")
    with database.transaction() as session:
        sync_devices(session, user_id, [device], now=utcnow())
    with database.transaction() as session:
        row = session.scalar(sa.select(Device))
        assert row is not None and row.nickname == "Mine" and row.cloud_label == "Cloud Name"
    rename_device(database, "A", "")
    with database.transaction() as session:
        row = session.scalar(sa.select(Device))
        assert row is not None and row.nickname == "Cloud Name" and not row.renamed_by_user


def test_a_serial_owned_by_another_user_is_not_taken(database: Database, config: Config) -> None:
    first = add_user(database, config, "one@example.com")
    second = add_user(database, config, "two@example.com")
    device = CloudDevice(serial="A", label="Shared")
    with database.transaction() as session:
        sync_devices(session, first, [device], now=utcnow())
    with database.transaction() as session:
        assert sync_devices(session, second, [device], now=utcnow()).conflicts == ["A"]
    assert [d["user_id"] for d in raw_rows(database, "devices")] == [first]


def test_two_accounts_polled_at_once(
    database: Database, config: Config, make_cloud: MakeCloud
) -> None:
    cloud = make_cloud(["brisket", "fridge_logger"])
    a = link(database, config, cloud)
    b = link(
        database,
        config,
        cloud,
        email="deli-owner@example.com",
        tw_email="deli@example.com",
        password="cold-chain-37",
    )
    pollers = [poller_for(database, config, cloud, uid) for uid in (a, b)]
    errors: list[BaseException] = []

    def run(poller: AccountPoller) -> Callable[[], None]:
        def go() -> None:
            try:
                for _ in range(3):
                    sync_poll(database, poller.poll())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        return go

    threads = [threading.Thread(target=run(p)) for p in pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    owners = {d["device_id"]: d["user_id"] for d in raw_rows(database, "devices")}
    assert owners == {SIGNALS: a, GATEWAY: a, MEAT_FLAT: a, MEAT_POINT: a, "10:06:1C:44:55:66": b}
    assert len(raw_rows(database, "probes")) == 15
    for p in pollers:
        p.close()


def test_no_secret_in_logs_or_database(
    database: Database,
    config: Config,
    cloud: CloudSimulator,
    secret_log: pytest.LogCaptureFixture,
) -> None:
    user_id = link(database, config, cloud, store_password=True)
    poller = poller_for(database, config, cloud, user_id)
    texts: list[str] = [repr(poller)]
    sync_poll(database, poller.poll())
    cloud.advance(H - 100)
    poller.poll()  # a refresh
    cloud.revoke_refresh_tokens(PITMASTER)
    cloud.expire_tokens()
    poller.poll()  # a sign-in with the stored password
    cloud.change_password(PITMASTER, "another-new-password")
    with pytest.raises(InvalidCredentials) as info:
        poller.poll()
    texts += [str(info.value), repr(info.value)]
    with pytest.raises(CredentialsNeedOwner) as stopped:
        poller.poll()
    texts += [str(stopped.value), repr(poller)]
    texts.append(secret_log.text)
    for table in ("thermoworks_credentials", "devices", "probes"):
        texts += [str(row) for row in raw_rows(database, table)]
    assert "stopped working" in secret_log.text
    assert_no_secret("\n".join(texts), cloud, "another-new-password")
    poller.close()


def test_under_the_daemon_a_poll_reads_the_link_only_when_it_moved(
    database: Database, config: Config, cloud: CloudSimulator
) -> None:
    user_id = link(database, config, cloud)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "thermoworks_credentials" in statement:
            statements.append(statement)

    sa.event.listen(database.engine, "before_cursor_execute", seen)
    try:
        alone = poller_for(database, config, cloud, user_id)
        alone.poll()
        statements.clear()
        alone.poll()
        assert statements, "without the daemon's look at the link, every poll reads it"
        alone.close()

        poller = poller_for(database, config, cloud, user_id)
        poller.note_link(accounts.link_states(database)[user_id])
        poller.poll()
        first = poller.client
        statements.clear()
        poller.poll()
        poller.poll()
        assert statements == []  # the link has not moved: no query
        assert poller.client is first

        # linked again (new tokens): the daemon's next look moves the link
        service.link_account(
            database,
            cloud_config(config, cloud),
            USER,
            PITMASTER_PASSWORD,
            tw_email=PITMASTER,
            clock=cloud.now,
        )
        poller.note_link(accounts.link_states(database)[user_id])
        poller.poll()
        assert statements, "a moved link is read again"
        assert poller.client is not first  # and the new tokens are used
        poller.close()
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", seen)
