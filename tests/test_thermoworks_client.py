"""The cloud client against the simulator over real HTTP: data, request budget, every error path."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from grillstats_bridge.accounts.service import endpoints_for
from grillstats_bridge.bridge.scheduler import retry_policy
from grillstats_bridge.config import ConfigError, PollingConfig, ThermoworksConfig
from grillstats_bridge.domain import FanState, Tokens, Unit
from grillstats_bridge.simulator.scenario import Event
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.thermoworks.client import (
    Endpoints,
    ThermoworksClient,
    parse_retry_after,
)
from grillstats_bridge.thermoworks.errors import (
    AccountDisabled,
    Action,
    CloudError,
    CloudTimeout,
    EndpointError,
    InvalidCredentials,
    MalformedResponse,
    RateLimited,
    RefreshTokenInvalid,
    TokenExpired,
    TooManyAttempts,
    Unavailable,
    Wait,
    action_for,
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

# the daemon's own policy, with the default polling bounds
POLICY = retry_policy(PollingConfig())


def make_client(
    cloud: CloudSimulator, email: str = PITMASTER, **kwargs: object
) -> ThermoworksClient:
    timeout = float(kwargs.pop("timeout", 5.0))  # type: ignore[arg-type]
    return ThermoworksClient(
        cloud.endpoints(),
        timeout=timeout,
        email=email,
        clock=cloud.now,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(cloud: CloudSimulator) -> Iterator[ThermoworksClient]:
    c = make_client(cloud)
    c.sign_in(PITMASTER_PASSWORD)
    yield c
    c.close()


# ------------------------------------------------------------------------- data


def test_poll_returns_every_device_of_the_account(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    snapshot = client.poll()
    assert snapshot.malformed == 0
    devices = {d.serial: d for d in snapshot.devices}
    assert set(devices) == {SIGNALS, GATEWAY, MEAT_FLAT, MEAT_POINT}
    assert snapshot.profile.preferred_units is Unit.FAHRENHEIT

    signals = devices[SIGNALS]
    assert signals.model == "signals" and signals.label == "Offset Smoker"
    assert signals.wifi_rssi == -61 and signals.is_online(cloud.now())
    assert [p.channel for p in signals.probes] == [1, 2, 3, 4]
    assert signals.probes[3].value is None and not signals.probes[3].connected  # no probe
    pit = signals.probes[0]
    expected = cloud.scenario.sample(SIGNALS, 1, cloud.now())
    assert pit.value == expected.value  # float32 noise gone
    assert pit.last_telemetry_saved == expected.time
    assert pit.alarm_high is not None and pit.alarm_high.value == 275 and pit.alarm_high.enabled

    gateway = devices[GATEWAY]
    assert gateway.model == "rfx gateway" and gateway.fan is not None
    assert gateway.fan.set_temperature == 250 and gateway.fan.state in set(FanState)
    assert gateway.extra["coolNewFirmwareField"] == {"mode": "smart", "level": 3}

    flat, point = devices[MEAT_FLAT], devices[MEAT_POINT]
    assert flat.model == "rfx meat" and flat.gateway_rssi == -55
    assert point.type == "bbq" and point.gateway_rssi == -71  # legacy type, numbers as numbers
    assert len(flat.probes) == 4
    tip = min(p.value for p in flat.probes if p.value is not None)
    assert tip == flat.probes[0].value  # the tip reads lowest


def test_request_budget_per_poll(cloud: CloudSimulator, client: ThermoworksClient) -> None:
    """Signals + RFX gateway + 2 RFX meat: 2 requests per poll once channels are known."""
    first = client.poll()
    # project lookup, user document, runQuery, one channel list per device
    assert first.requests == 1 + 1 + 1 + 4
    for _ in range(5):
        cloud.advance(15)
        cloud.reset_counts()
        snapshot = client.poll()
        assert snapshot.requests == 2
        assert cloud.request_count() == 2
        assert cloud.counts == {"runQuery": 1, "batchGet": 1}


def test_batch_get_refused_falls_back_to_listing(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    client.poll()
    cloud.refuse("batchGet")
    cloud.reset_counts()
    snapshot = client.poll()
    assert len(snapshot.devices) == 4 and all(d.probes for d in snapshot.devices)
    assert cloud.counts == {"runQuery": 1, "batchGet": 1, "list": 4}
    cloud.reset_counts()
    client.poll()  # batchGet is not asked again for a while
    assert cloud.counts == {"runQuery": 1, "list": 4}
    assert cloud.request_count() == 5


def test_per_channel_fallback_costs_what_the_public_clients_pay(
    cloud: CloudSimulator,
) -> None:
    """With list and batchGet both refused: channel by channel, stopping at the first 404."""
    cloud.refuse("batchGet")
    cloud.refuse("list")
    client = make_client(cloud)
    client.sign_in(PITMASTER_PASSWORD)
    cloud.reset_counts()
    first = client.poll()
    assert sum(len(d.probes) for d in first.devices) == 13
    # user doc + runQuery + 4 lists refused + 13 channels + one 404 per device but the RFX meat
    # probes, which have 4 channels and a fifth 404 (the Signals also: 4 channels + a 404).
    assert cloud.counts["get"] == 1 + 13 + 4
    cloud.advance(15)
    second = client.poll()  # batchGet is tried once the channels are known, and refused
    assert second.requests == 1 + 1 + 13
    cloud.advance(15)
    steady = client.poll()
    assert steady.requests == 1 + 13  # runQuery + the 13 known channels
    client.close()


def test_user_document_read_once_per_login_and_project_looked_up_once(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    for _ in range(3):
        client.poll()
        cloud.advance(15)
    assert cloud.counts["lookup"] == 1
    assert sum(1 for r in cloud.records if r.endpoint == "get") == 1
    client.sign_in(PITMASTER_PASSWORD)  # a new login reads it again
    client.poll()
    assert sum(1 for r in cloud.records if r.endpoint == "get") == 2
    assert cloud.counts["lookup"] == 1


def test_unplugged_probe_and_offline_device(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    cloud.advance(H + 15 * 60)  # 6 h 15 m: the point probe is out
    devices = {d.serial: d for d in client.poll().devices}
    point = devices[SIGNALS].probes[2]
    assert point.value is None and not point.connected and point.status == "NO PROBE"
    cloud.advance(3 * H - 15 * 60 + 10 * 60)  # 9 h 10 m: one RFX probe out of range
    devices = {d.serial: d for d in client.poll().devices}
    assert not devices[MEAT_POINT].is_online(cloud.now())
    assert devices[MEAT_FLAT].is_online(cloud.now())


def test_every_device_type_and_quirk(make_cloud: MakeCloud) -> None:
    cloud = make_cloud(["hot_and_fast", "kitchen_logger", "fridge_logger"], at=H)
    seen: dict[str, object] = {}
    for email, password in (
        ("grillmaster@example.com", "hot-fast-350!"),
        ("home@example.com", "kitchen-node-68"),
        ("deli@example.com", "cold-chain-37"),
    ):
        client = make_client(cloud, email)
        client.sign_in(password)
        for device in client.poll().devices:
            seen[device.model or "?"] = device
        client.close()
    smoke, node_kitchen = seen["smoke gateway"], seen["node"]
    assert smoke and node_kitchen
    fridge = make_client(cloud, "deli@example.com")
    fridge.sign_in("cold-chain-37")
    (node,) = fridge.poll().devices
    humidity = node.probes[1]
    assert humidity.unit is Unit.HUMIDITY and 0 <= (humidity.value or -1) <= 100
    assert humidity.alarm_high is not None and humidity.alarm_high.unit is Unit.HUMIDITY
    assert node.last_seen is not None and node.transmit_interval_s == 300
    fridge.close()


def test_eti_account_in_celsius(make_cloud: MakeCloud) -> None:
    cloud = make_cloud("celsius_roast", at=H)
    wrong = make_client(cloud, "cook@example.co.uk")
    with pytest.raises(InvalidCredentials, match="eti"):
        wrong.sign_in("roast-lamb-180C")  # a UK account on the US cloud
    client = ThermoworksClient(cloud.endpoints("eti"), email="cook@example.co.uk", clock=cloud.now)
    client.sign_in("roast-lamb-180C")
    snapshot = client.poll()
    assert snapshot.profile.preferred_units is Unit.CELSIUS
    (oven,) = snapshot.devices
    assert oven.display_units is Unit.CELSIUS
    assert all(p.unit is Unit.CELSIUS for p in oven.probes)
    assert 150 < (oven.probes[0].value or 0) < 200
    client.close()


def test_two_accounts_at_once(make_cloud: MakeCloud) -> None:
    cloud = make_cloud(["brisket", "fridge_logger"])
    a = make_client(cloud, PITMASTER)
    b = make_client(cloud, "deli@example.com")
    a.sign_in(PITMASTER_PASSWORD)
    b.sign_in("cold-chain-37")
    results: dict[str, set[str]] = {}
    errors: list[BaseException] = []

    def run(name: str, client: ThermoworksClient) -> None:
        try:
            for _ in range(5):
                results[name] = {d.serial for d in client.poll().devices}
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=x) for x in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert results == {"a": {SIGNALS, GATEWAY, MEAT_FLAT, MEAT_POINT}, "b": {"10:06:1C:44:55:66"}}
    a.close()
    b.close()


# ------------------------------------------------------------------------- authentication


def test_bad_credentials_are_never_retried(cloud: CloudSimulator) -> None:
    client = make_client(cloud)
    with pytest.raises(InvalidCredentials) as info:
        client.sign_in("not-the-password")
    assert info.value.action is Action.NEEDS_USER
    assert POLICY.wait(info.value, 1).seconds is None
    assert cloud.counts["signIn"] == 1
    assert "INVALID_LOGIN_CREDENTIALS" in str(info.value)


def test_disabled_account(cloud: CloudSimulator) -> None:
    cloud.disable_account(PITMASTER)
    with pytest.raises(AccountDisabled) as info:
        make_client(cloud).sign_in(PITMASTER_PASSWORD)
    assert info.value.action is Action.NEEDS_USER


def test_too_many_attempts_backs_off_long(cloud: CloudSimulator) -> None:
    client = make_client(cloud)
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            client.sign_in("wrong")
    with pytest.raises(TooManyAttempts) as info:
        client.sign_in(PITMASTER_PASSWORD)
    assert info.value.action is Action.LONG_BACKOFF
    assert POLICY.wait(info.value, 1).seconds == 1800  # polling.long_backoff


def test_token_refreshed_ahead_of_expiry(cloud: CloudSimulator, client: ThermoworksClient) -> None:
    client.poll()
    first = client.tokens
    assert first is not None
    cloud.advance(H - 200)  # inside the refresh margin, still valid at the server
    cloud.reset_counts()
    client.poll()
    assert cloud.counts["refresh"] == 1
    assert all(r.status == 200 for r in cloud.records)  # no 401 was needed
    assert client.tokens is not None and client.tokens.id_token != first.id_token
    assert client.tokens.refresh_token == first.refresh_token


def test_token_expiring_in_the_middle_of_a_poll(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    client.poll()
    cloud.reset_counts()
    cloud.fail_next(401, endpoint="batchGet")  # the token dies between runQuery and batchGet
    snapshot = client.poll()
    assert len(snapshot.devices) == 4
    assert cloud.counts == {"runQuery": 1, "batchGet": 2, "refresh": 1}


def test_server_side_expiry_refreshes_once_and_retries(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    client.poll()
    cloud.expire_tokens()  # the client still believes its token good
    cloud.reset_counts()
    client.poll()
    assert [(r.endpoint, r.status) for r in cloud.records] == [
        ("runQuery", 401),
        ("refresh", 200),
        ("runQuery", 200),
        ("batchGet", 200),
    ]


def test_401_after_refresh_is_not_a_loop(cloud: CloudSimulator, client: ThermoworksClient) -> None:
    client.poll()
    cloud.reset_counts()
    cloud.fail_next(401, endpoint="runQuery", count=10)
    with pytest.raises(TokenExpired) as info:
        client.poll()
    assert cloud.counts == {"runQuery": 2, "refresh": 1}
    delay = POLICY.wait(info.value, 1).seconds
    assert delay is not None and delay == 5  # the first retry: within seconds (min_interval)


def test_single_refresh_when_threads_share_an_account(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    account = client.user_profile().account_id
    cloud.advance(H - 100)  # every thread will find the token about to expire
    cloud.reset_counts()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(5)
            client.device_documents(account)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert cloud.counts == {"refresh": 1, "runQuery": 8}

    cloud.expire_tokens()  # and after a 401 seen by every thread at once: still one refresh
    cloud.reset_counts()
    barrier.reset()
    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert cloud.counts["refresh"] == 1


def test_revoked_refresh_token_without_password_needs_the_owner(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    client.poll()
    cloud.revoke_refresh_tokens(PITMASTER)
    cloud.expire_tokens()
    with pytest.raises(RefreshTokenInvalid) as info:
        client.poll()
    assert info.value.action is Action.REAUTHENTICATE
    assert POLICY.wait(info.value, 1).seconds is None
    assert cloud.counts["signIn"] == 1  # only the first sign-in


def test_revoked_refresh_token_with_stored_password_signs_in_again(cloud: CloudSimulator) -> None:
    saved: list[Tokens] = []
    client = make_client(cloud, password=lambda: PITMASTER_PASSWORD, on_tokens=saved.append)
    client.sign_in(PITMASTER_PASSWORD)
    client.poll()
    cloud.revoke_refresh_tokens(PITMASTER)
    cloud.expire_tokens()
    snapshot = client.poll()
    assert len(snapshot.devices) == 4
    assert cloud.counts["signIn"] == 2 and cloud.counts["refresh"] == 1
    assert len(saved) == 2 and saved[-1].refresh_token != saved[0].refresh_token
    client.close()


def test_changed_password_with_stale_stored_password_needs_the_owner(
    cloud: CloudSimulator,
) -> None:
    client = make_client(cloud, password=lambda: PITMASTER_PASSWORD)
    client.sign_in(PITMASTER_PASSWORD)
    client.poll()
    cloud.change_password(PITMASTER, "a-brand-new-password")
    with pytest.raises(InvalidCredentials) as info:
        client.poll()
    assert info.value.action is Action.NEEDS_USER
    assert cloud.counts["signIn"] == 2  # one attempt with the stored password, no loop
    client.close()


def test_restored_tokens_work_without_a_sign_in(cloud: CloudSimulator) -> None:
    first = make_client(cloud)
    tokens = first.sign_in(PITMASTER_PASSWORD)
    first.close()
    cloud.reset_counts()
    restored = make_client(cloud, tokens=tokens)
    assert len(restored.poll().devices) == 4
    assert "signIn" not in cloud.counts
    restored.close()


# ------------------------------------------------------------------------- transport faults


def test_rate_limited_honours_retry_after(cloud: CloudSimulator, client: ThermoworksClient) -> None:
    cloud.fail_next(429, endpoint="runQuery", retry_after=30)
    with pytest.raises(RateLimited) as info:
        client.poll()
    assert info.value.retry_after == 30
    assert info.value.action is Action.RETRY_AFTER
    assert POLICY.wait(info.value, 3) == Wait(30)
    assert len(client.poll().devices) == 4


@pytest.mark.parametrize("status", [500, 502, 503])
def test_unavailable_backs_off_with_jitter(
    cloud: CloudSimulator, client: ThermoworksClient, status: int
) -> None:
    cloud.fail_next(status, endpoint="firestore")
    with pytest.raises(Unavailable) as info:
        client.poll()
    assert info.value.status == status and info.value.action is Action.BACKOFF
    delays = {POLICY.wait(info.value, 4, lambda: 0.0), POLICY.wait(info.value, 4, lambda: 1.0)}
    assert delays == {Wait(12.0), Wait(24.0)}  # 3 s doubled three times, half of it jittered


def test_slow_answer_times_out(cloud: CloudSimulator) -> None:
    client = make_client(cloud, timeout=0.3)
    client.sign_in(PITMASTER_PASSWORD)
    cloud.slow_next(3.0, endpoint="runQuery")
    with pytest.raises(CloudTimeout) as info:
        client.poll()
    assert info.value.action is Action.BACKOFF
    assert "0.3 s" in str(info.value)
    client.close()


def test_unreachable_cloud(cloud: CloudSimulator) -> None:
    endpoints = Endpoints.resolve("thermoworks", identitytoolkit_url="http://127.0.0.1:9")
    client = ThermoworksClient(endpoints, timeout=2, email=PITMASTER)
    with pytest.raises(Unavailable, match=r"cannot reach 127\.0\.0\.1:9"):
        client.sign_in(PITMASTER_PASSWORD)
    client.close()


def test_malformed_json_answer(cloud: CloudSimulator, client: ThermoworksClient) -> None:
    cloud.malform_next(endpoint="runQuery", kind="json")
    with pytest.raises(MalformedResponse) as info:
        client.poll()
    assert info.value.action is Action.BACKOFF
    assert len(client.poll().devices) == 4  # the next poll is fine


def test_malformed_documents_are_skipped_and_counted(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    client.poll()
    cloud.malform_next(endpoint="batchGet", kind="document")
    snapshot = client.poll()
    assert snapshot.malformed == 1
    assert sum(len(d.probes) for d in snapshot.devices) == 12  # 13 channels, one skipped
    cloud.malform_next(endpoint="runQuery", kind="document")
    snapshot = client.poll()
    assert snapshot.malformed == 1 and len(snapshot.devices) == 3


def test_retry_after_as_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Sat, 28 Nov 2026 12:01:00 GMT", now) == 60
    assert parse_retry_after("120") == 120
    assert parse_retry_after("soon") is None


def test_the_one_retry_policy() -> None:
    """The daemon's policy (built from the polling defaults), not a copy of it."""
    assert action_for(ValueError("x")) is Action.BACKOFF
    assert POLICY.wait(ValueError("a bug"), 1, lambda: 0.0) == Wait(5.0)  # min_interval
    assert POLICY.wait(CloudError("x"), 5, lambda: 0.0) == Wait(24.0)
    assert POLICY.wait(CloudError("x"), 30, lambda: 1.0) == Wait(300.0)  # max_backoff
    assert POLICY.wait(RateLimited("x", retry_after=86400), 1) == Wait(3600.0, 86400.0)
    assert POLICY.wait(RateLimited("x", retry_after=1), 1) == Wait(5.0)  # min_interval
    assert POLICY.wait(RateLimited("x"), 4, lambda: 1.0) == Wait(24.0)  # none given: back-off
    assert POLICY.wait(TooManyAttempts("x"), 1) == Wait(1800.0)
    capped = retry_policy(PollingConfig(max_backoff=600, max_retry_after=900))
    assert capped.wait(CloudError("x"), 30, lambda: 1.0) == Wait(600.0)
    assert capped.wait(RateLimited("x", retry_after=1200), 1) == Wait(900.0, 1200.0)


def test_custom_provider_must_be_complete() -> None:
    with pytest.raises(EndpointError, match="custom provider needs"):
        Endpoints.resolve("custom")
    with pytest.raises(ConfigError, match=r"^thermoworks: the custom provider needs"):
        endpoints_for(ThermoworksConfig(provider="custom"))
    endpoints = endpoints_for(
        ThermoworksConfig(
            provider="custom", api_key="key-zz-99", referer="https://x/", project_id="p"
        )
    )
    assert endpoints.project_id == "p" and "key-zz-99" not in repr(endpoints)


# ------------------------------------------------------------------------- secrets


def test_no_secret_in_logs_errors_or_reprs(
    cloud: CloudSimulator, secret_log: pytest.LogCaptureFixture
) -> None:
    texts: list[str] = []
    client = make_client(cloud, password=lambda: PITMASTER_PASSWORD)
    tokens = client.sign_in(PITMASTER_PASSWORD)
    texts += [repr(client), repr(tokens), str(tokens)]
    client.poll()
    triggers: tuple[Callable[[], object], ...] = (
        lambda: cloud.fail_next(401, endpoint="runQuery", count=5),
        lambda: cloud.fail_next(429, retry_after=5),
        lambda: cloud.fail_next(503),
        lambda: cloud.malform_next(endpoint="runQuery"),
        lambda: cloud.inject(Event(at=0, type="refresh_token_revoked")),
        cloud.expire_tokens,
        lambda: cloud.change_password(PITMASTER, "changed-password-xyz"),
    )
    for trigger in triggers:
        trigger()
        try:
            client.poll()
        except CloudError as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    wrong = make_client(cloud)
    with pytest.raises(CloudError) as info:
        wrong.sign_in("a-wrong-password-123")
    texts += [str(info.value), repr(info.value)]
    texts += [r.getMessage() for r in secret_log.records]
    texts.append(secret_log.text)
    assert any("refresh" in t for t in texts)  # the logs did say what happened
    assert_no_secret(
        "\n".join(texts), cloud, "changed-password-xyz", "a-wrong-password-123", tokens.id_token
    )
    client.close()
    wrong.close()


def test_token_lifetime_follows_the_answer(
    cloud: CloudSimulator, client: ThermoworksClient
) -> None:
    tokens = client.tokens
    assert tokens is not None
    assert tokens.expires_at == cloud.now() + timedelta(seconds=3600)
