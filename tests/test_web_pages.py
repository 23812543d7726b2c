"""The pages on both backends, through Starlette's test client: logging in and out, the
lockout, the cookie's flags and idle expiry, CSRF on every form, and user A refused
(404, like a missing id) for user B's pages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from grillstats_bridge.bridge.health import HealthServer, serve_http
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import users
from grillstats_bridge.store.secrets import LoginRefusal
from grillstats_bridge.web.app import create_app
from grillstats_bridge.web.server import WebServer
from tests.fixtures.cloud import PITMASTER, PITMASTER_PASSWORD
from tests.fixtures.web import ADMIN, ALICE, BOB, PASSWORD, WebRig, csrf_of, log_in


def test_log_in_and_out(web: WebRig) -> None:
    client = web.client()
    assert client.get("/devices").headers["location"] == "/login"
    csrf = log_in(client, ALICE)
    page = client.get("/devices")
    assert page.status_code == 200 and "SIG-1" in page.text and "SIG-2" not in page.text
    assert client.post("/logout", data={"csrf": csrf}).headers["location"] == "/login"
    assert client.get("/devices").headers["location"] == "/login"


def test_unknown_user_and_wrong_password_read_the_same(web: WebRig) -> None:
    client = web.client()
    answers = []
    for email, password in ((ALICE, "wrong password"), ("nobody@example.com", PASSWORD)):
        csrf = csrf_of(client.get("/login").text)
        response = client.post("/login", data={"email": email, "password": password, "csrf": csrf})
        assert response.status_code == 401
        answers.append(response.text.replace(email, "EMAIL"))
    assert answers[0] == answers[1] and LoginRefusal.INVALID.value in answers[0]


def test_five_wrong_passwords_lock_the_user_until_unlocked(web: WebRig) -> None:
    client = web.client()
    for _ in range(5):
        csrf = csrf_of(client.get("/login").text)
        client.post("/login", data={"email": BOB, "password": "nope", "csrf": csrf})
    csrf = csrf_of(client.get("/login").text)
    locked = client.post("/login", data={"email": BOB, "password": PASSWORD, "csrf": csrf})
    assert locked.status_code == 401 and LoginRefusal.LOCKED.value in locked.text

    admin = web.client()
    admin_csrf = log_in(admin, ADMIN)
    page = admin.get("/admin")
    assert "locked" in page.text and '"status": "ok"' in page.text  # users and the health
    unlock = admin.post(f"/admin/users/{web.bob.user_id}/unlock", data={"csrf": admin_csrf})
    assert unlock.status_code == 303
    log_in(client, BOB)


def test_the_admin_page_is_not_found_for_other_users(web: WebRig) -> None:
    client = web.client()
    csrf = log_in(client, ALICE)
    assert client.get("/admin").status_code == 404
    assert (
        client.post(f"/admin/users/{web.bob.user_id}/unlock", data={"csrf": csrf}).status_code
        == 404
    )


def test_the_cookie_is_http_only_strict_and_secure_behind_tls(web: WebRig) -> None:
    client = web.client()
    plain = client.get("/login").headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=strict" in plain and "Secure" not in plain
    proxied = client.get("/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "Secure" in proxied
    flagged = create_app(web.config.replace("http", secure_cookie=True), web.database)
    assert "Secure" in TestClient(flagged).get("/login").headers["set-cookie"]


def test_a_login_expires_after_its_idle_time(web: WebRig) -> None:
    client = web.client()
    log_in(client, ALICE)
    web.clock.advance(web.config.http.session_idle - 1)
    assert client.get("/devices").status_code == 200  # a request: the idle time starts again
    web.clock.advance(web.config.http.session_idle - 1)
    assert client.get("/devices").status_code == 200
    web.clock.advance(web.config.http.session_idle + 1)
    assert client.get("/devices").headers["location"] == "/login"


@pytest.mark.parametrize(
    "path",
    [
        "/alerts",
        "/alerts/{alert_id}/edit",
        "/alerts/{alert_id}/delete",
        "/alerts/{alert_id}/disable",
        "/tokens",
        "/account/unlink",
        "/logout",
    ],
)
def test_a_post_without_the_csrf_token_is_refused(web: WebRig, path: str) -> None:
    client = web.client()
    csrf = log_in(client, ALICE)
    url = path.format(alert_id=web.alice.alert_id)
    for fields in ({}, {"csrf": "forged"}):
        response = client.post(url, data=fields | {"target": "150", "name": "x"})
        assert response.status_code == 403, url
        assert "CSRF" in response.text
    assert client.get("/alerts").status_code == 200  # still logged in, alert untouched
    with web.database.transaction() as db:
        assert len(users.get_user(db, ALICE).alerts) == 1
    assert csrf  # the real token works: the other tests use it


def test_the_login_form_needs_its_csrf_token(web: WebRig) -> None:
    client = web.client()
    client.get("/login")
    response = client.post("/login", data={"email": ALICE, "password": PASSWORD})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/devices/{serial}",
        "/sessions/{session_id}",
        "/sessions/{session_id}/export.csv",
        "/sessions/{session_id}/export.json",
        "/alerts/{alert_id}/edit",
    ],
)
def test_another_user_s_pages_are_not_found(web: WebRig, path: str) -> None:
    bob, alice = web.client(), web.client()
    log_in(bob, BOB)
    log_in(alice, ALICE)
    b = web.bob
    url = path.format(serial=b.serial, session_id=b.session_id, alert_id=b.alert_id)
    assert bob.get(url).status_code == 200
    missing = path.format(serial="NOPE", session_id=9999, alert_id=9999)
    theirs, nothing = alice.get(url), alice.get(missing)
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.text == nothing.text


def test_another_user_s_alert_cannot_be_changed_through_the_forms(web: WebRig) -> None:
    client = web.client()
    csrf = log_in(client, ALICE)
    b = web.bob
    for action in ("delete", "disable"):
        assert client.post(f"/alerts/{b.alert_id}/{action}", data={"csrf": csrf}).status_code == 404
    edit = client.post(f"/alerts/{b.alert_id}/edit", data={"csrf": csrf, "target": "100"})
    assert edit.status_code == 404
    on_their_device = client.post(
        "/alerts",
        data={"csrf": csrf, "device": b.serial, "probe": "1", "type": "target", "target": "150"},
    )
    assert on_their_device.status_code == 400 and "no device with serial" in on_their_device.text
    with web.database.transaction() as db:
        (kept,) = users.get_user(db, BOB).alerts
        assert kept.is_active and kept.target_temperature == 203


def test_alerts_are_added_edited_and_deleted_with_the_cli_s_checks(web: WebRig) -> None:
    client = web.client()
    csrf = log_in(client, ALICE)
    form = {"csrf": csrf, "device": "SIG-1", "probe": "2", "type": "target", "name": "done"}
    refused = client.post("/alerts", data=form | {"target": "2000"})
    assert refused.status_code == 400 and "outside what a probe reads" in refused.text
    assert client.post("/alerts", data=form | {"target": "195"}).status_code == 303
    page = client.get("/alerts").text
    assert "≥ 195 °F" in page
    with web.database.transaction() as db:
        new = max(a.id for a in users.get_user(db, ALICE).alerts)
    wrong = client.post(f"/alerts/{new}/edit", data={"csrf": csrf, "target": "abc"})
    assert wrong.status_code == 400 and "target: not a number" in wrong.text
    client.post(f"/alerts/{new}/edit", data={"csrf": csrf, "target": "200", "unit": "F"})
    assert "≥ 200 °F" in client.get("/alerts").text
    client.post(f"/alerts/{new}/delete", data={"csrf": csrf})
    assert "≥ 200 °F" not in client.get("/alerts").text


def test_a_session_page_draws_its_chart_and_downloads(web: WebRig) -> None:
    client = web.client()
    log_in(client, ALICE)
    assert f'href="/sessions/{web.alice.session_id}"' in client.get("/sessions").text
    page = client.get(f"/sessions/{web.alice.session_id}").text
    assert page.count("<polyline") == 2 and 'class="target"' in page
    csv_text = client.get(f"/sessions/{web.alice.session_id}/export.csv")
    assert csv_text.headers["content-disposition"].endswith('.csv"')
    assert csv_text.text.startswith("time,probe,value,unit\n")
    as_json = json.loads(client.get(f"/sessions/{web.alice.session_id}/export.json").text)
    assert as_json["session"]["id"] == web.alice.session_id
    assert 'class="stall"' not in page and 'id="stall"' not in page  # none recorded


def test_a_session_page_shows_its_stall(web: WebRig) -> None:
    from grillstats_bridge.store.models import GrillingSession

    with web.database.transaction() as db:
        row = db.get(GrillingSession, web.alice.session_id)
        assert row is not None
        row.stall_start = row.start_time + timedelta(minutes=10)
        row.stall_end = row.start_time + timedelta(minutes=20)
        row.stall_seconds = 600
    client = web.client()
    log_in(client, ALICE)
    page = client.get(f"/sessions/{web.alice.session_id}").text
    assert page.count('class="stall"') == 1  # the band on the chart
    stall = page.split('id="stall">', 1)[1].split("</p>", 1)[0]
    assert "Stall: from" in stall and "(0 h 10 min)" in stall


def test_tokens_are_shown_once_and_revoked_from_the_account_page(web: WebRig) -> None:
    client = web.client()
    csrf = log_in(client, ALICE)
    page = client.post("/tokens", data={"csrf": csrf, "name": "script"}).text
    token = page.split('id="new-token">', 1)[1].split("<", 1)[0]
    assert token.startswith("gsb_")
    assert (
        client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    assert token not in client.get("/account").text  # shown once
    with web.database.transaction() as db:
        from grillstats_bridge.store.tokens import list_tokens

        token_id = max(t.id for t in list_tokens(db, web.alice.user_id))
    bobs = web.client()
    bob_csrf = log_in(bobs, BOB)
    assert bobs.post(f"/tokens/{token_id}/revoke", data={"csrf": bob_csrf}).status_code == 404
    client.post(f"/tokens/{token_id}/revoke", data={"csrf": csrf})
    assert (
        client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )


def test_health_is_the_standard_library_server_s_json_byte_for_byte(web: WebRig) -> None:
    body = {"status": "ok", "when": web.clock.now(), "accounts": [{"n": 1}]}
    app = create_app(web.config, web.database, report=lambda: (False, body))
    import urllib.error
    import urllib.request

    ours = TestClient(app).get("/health")
    server = HealthServer("127.0.0.1", 0, lambda: (False, body))
    server.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as old:
            urllib.request.urlopen(server.url, timeout=5)
        expected = old.value.read()
        old.value.close()
    finally:
        server.stop()
    assert ours.status_code == old.value.code == 503
    assert ours.content == expected
    assert ours.headers["content-type"] == "application/json"
    assert ours.headers["cache-control"] == "no-store"


def test_the_daemon_serves_health_and_the_app_on_one_address(web: WebRig) -> None:
    import urllib.error
    import urllib.request

    config = web.config.replace("http", port=0)
    report = lambda: (True, {"status": "ok"})  # noqa: E731
    server = serve_http(config, web.database, report, web.clock.now)
    server.start()
    try:
        with urllib.request.urlopen(server.url, timeout=5) as health:
            assert json.loads(health.read()) == {"status": "ok"}
        with urllib.request.urlopen(server.url.replace("/health", "/login"), timeout=5) as page:
            assert b'name="csrf"' in page.read()
    finally:
        server.stop()
    alone = serve_http(config.replace("http", web=False), web.database, report, web.clock.now)
    assert isinstance(alone, HealthServer)  # http.web: false, /health alone as before
    alone.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(alone.url.replace("/health", "/login"), timeout=5)
        assert refused.value.code == 404
        refused.value.close()
    finally:
        alone.stop()


def test_the_account_page_links_and_unlinks(web: WebRig, cloud: CloudSimulator) -> None:
    config = web.config.replace("thermoworks", **cloud.urls(), timeout=5.0)
    app = create_app(config, web.database, clock=cloud.now)
    client = TestClient(app, follow_redirects=False)
    csrf = log_in(client, ALICE)
    assert 'id="account">Not linked.' in client.get("/account").text
    form = {"csrf": csrf, "provider": "thermoworks", "tw_email": PITMASTER}
    wrong = client.post("/account/link", data=form | {"password": "not it"})
    assert wrong.status_code == 400 and 'class="error"' in wrong.text
    assert "not it" not in wrong.text
    linked = client.post("/account/link", data=form | {"password": PITMASTER_PASSWORD})
    assert linked.status_code == 303, linked.text
    page = client.get("/account").text
    assert PITMASTER in page and "<dd>ok</dd>" in page
    assert PITMASTER_PASSWORD not in page
    api = client.get("/api/v1/account", headers={"Authorization": f"Bearer {web.alice.token}"})
    assert api.json()["linked"] is True and api.json()["state"] == "ok"
    client.post("/account/unlink", data={"csrf": csrf})
    assert 'id="account">Not linked.' in client.get("/account").text


def test_pages_cannot_be_framed_or_run_foreign_scripts(web: WebRig) -> None:
    headers = web.client().get("/login").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"


def test_served_connections_send_without_waiting_for_acks(web: WebRig) -> None:
    """TCP_NODELAY on every accepted connection: without it a keep-alive request waited
    ~40 ms for the client's delayed ACK (measured: p50 44 ms, now 0.4 ms on loopback)."""
    import http.client
    import socket

    server = WebServer("127.0.0.1", 0, web.app)
    server.start()
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        conn.request("GET", "/health")
        assert conn.getresponse().read()  # the connection stays open (keep-alive)
        (served,) = server._server.server_state.connections
        sock = served.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()
        server.stop()


def test_an_active_session_shows_its_done_time_estimate(web: WebRig) -> None:
    from grillstats_bridge.cook.model import CookState, Estimate, Method
    from grillstats_bridge.domain import Unit
    from grillstats_bridge.store.models import GrillingSession

    now = web.clock.now()
    done = now + timedelta(hours=2)
    web.estimates[web.alice.serial] = {
        1: Estimate(
            serial=web.alice.serial,
            channel=1,
            at=now,
            target=203.0,
            unit=Unit.FAHRENHEIT,
            state=CookState.COOKING,
            value=150.0,
            progress=60.0,
            method=Method.NEWTON,
            done_at=done,
            low=done - timedelta(minutes=20),
            high=done + timedelta(minutes=30),
            rate=25.0,
            stalled=False,
        )
    }
    with web.database.transaction() as db:
        row = db.get(GrillingSession, web.alice.session_id)
        assert row is not None
        row.status, row.end_time = "active", None
    client = web.client()
    log_in(client, ALICE)
    page = client.get(f"/sessions/{web.alice.session_id}").text
    assert "<th>Done at (UTC)</th>" in page
    low, high = done - timedelta(minutes=20), done + timedelta(minutes=30)
    assert f"cooking · {done:%H:%M} ({low:%H:%M}–{high:%H:%M})" in page
    with web.database.transaction() as db:
        row = db.get(GrillingSession, web.alice.session_id)
        assert row is not None
        row.status, row.end_time = "completed", now
    assert "Done at" not in client.get(f"/sessions/{web.alice.session_id}").text  # ended
