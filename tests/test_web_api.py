"""The REST API on both backends: each resource, 401 without a live token, JSON errors,
and user A refused (404, like a missing id) for user B's device, session and alert."""

from __future__ import annotations

import csv
import io

import pytest

from grillstats_bridge.store import tokens
from tests.fixtures.web import WebRig


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_resource_answers_for_its_owner(web: WebRig) -> None:
    client, me = web.client(), web.alice
    h = auth(me.token)
    devices = client.get("/api/v1/devices", headers=h).json()["devices"]
    assert [d["serial"] for d in devices] == ["SIG-1"]
    assert devices[0]["probes"][0] == {
        "channel": 1,
        "label": None,
        "unit": "F",
        "connected": True,
        "value": 70.0,
        "time": None,
    }
    assert client.get("/api/v1/devices/SIG-1", headers=h).json()["name"] == "ali grill"

    listed = client.get("/api/v1/sessions", headers=h).json()["sessions"]
    assert [s["id"] for s in listed] == [me.session_id]
    one = client.get(f"/api/v1/sessions/{me.session_id}", headers=h).json()
    assert one["status"] == "completed" and [p["probe"] for p in one["probes"]] == [1, 2]
    assert one["probes"][0]["target"] == 203  # the probe's target alert

    readings = client.get(f"/api/v1/sessions/{me.session_id}/readings?format=csv", headers=h)
    rows = list(csv.reader(io.StringIO(readings.text)))
    assert readings.headers["content-type"].startswith("text/csv")
    assert rows[0] == ["time", "probe", "value", "unit"] and len(rows) > 50
    as_json = client.get(f"/api/v1/sessions/{me.session_id}/readings", headers=h).json()
    assert len(as_json["readings"]) == len(rows) - 1

    alerts = client.get("/api/v1/alerts", headers=h).json()["alerts"]
    assert [(a["id"], a["condition"]) for a in alerts] == [(me.alert_id, "≥ 203 °F")]
    account = client.get("/api/v1/account", headers=h).json()
    assert account == {"linked": False}


def test_alerts_are_added_changed_and_deleted_with_the_cli_s_checks(web: WebRig) -> None:
    client, h = web.client(), auth(web.alice.token)
    made = client.post(
        "/api/v1/alerts",
        headers=h,
        json={"device": "SIG-1", "probe": 2, "type": "range", "min": 225, "max": 275},
    )
    assert made.status_code == 201, made.text
    alert_id = made.json()["id"]
    assert made.json()["condition"] == "225–275 °F"

    bad = client.post(
        "/api/v1/alerts",
        headers=h,
        json={"device": "SIG-1", "probe": 2, "type": "range", "min": 300, "max": 275},
    )
    assert bad.status_code == 400
    assert bad.json() == {"error": "range: min (300) must be below max (275)", "status": 400}
    wrong = client.post(
        "/api/v1/alerts", headers=h, json={"device": "SIG-1", "probe": 2, "type": "target"}
    )
    assert wrong.json()["error"] == "a target alert needs a target temperature"
    assert client.post("/api/v1/alerts", headers=h, content=b"[").json()["status"] == 400

    changed = client.patch(f"/api/v1/alerts/{alert_id}", headers=h, json={"max": 260})
    assert changed.status_code == 200 and changed.json()["condition"] == "225–260 °F"
    off = client.patch(f"/api/v1/alerts/{alert_id}", headers=h, json={"enabled": False})
    assert off.json()["enabled"] is False
    too_low = client.patch(f"/api/v1/alerts/{alert_id}", headers=h, json={"min": 270})
    assert too_low.status_code == 400
    assert client.delete(f"/api/v1/alerts/{alert_id}", headers=h).status_code == 204
    assert client.get(f"/api/v1/alerts/{alert_id}", headers=h).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/devices/{serial}",
        "/api/v1/sessions/{session_id}",
        "/api/v1/sessions/{session_id}/readings",
        "/api/v1/alerts/{alert_id}",
    ],
)
def test_another_user_s_rows_are_not_found(web: WebRig, path: str) -> None:
    client, bob = web.client(), web.bob
    url = path.format(serial=bob.serial, session_id=bob.session_id, alert_id=bob.alert_id)
    mine = client.get(url, headers=auth(bob.token))
    assert mine.status_code == 200
    theirs = client.get(url, headers=auth(web.alice.token))
    missing = client.get(
        path.format(serial="NOPE", session_id=9999, alert_id=9999), headers=auth(web.alice.token)
    )
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json() == {"error": "not found", "status": 404}


def test_another_user_s_alert_cannot_be_changed_or_deleted(web: WebRig) -> None:
    client, h, bob = web.client(), auth(web.alice.token), web.bob
    assert (
        client.patch(f"/api/v1/alerts/{bob.alert_id}", headers=h, json={"target": 150}).status_code
        == 404
    )
    assert client.delete(f"/api/v1/alerts/{bob.alert_id}", headers=h).status_code == 404
    on_their_device = client.post(
        "/api/v1/alerts",
        headers=h,
        json={"device": bob.serial, "probe": 1, "type": "target", "target": 150},
    )
    assert on_their_device.status_code == 404
    bobs = client.get(f"/api/v1/alerts/{bob.alert_id}", headers=auth(bob.token)).json()
    assert bobs["target"] == 203


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer gsb_not-a-token", "Basic abc"])
def test_no_valid_token_is_401(web: WebRig, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = web.client().get("/api/v1/devices", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"].startswith("a valid API token is required")


def test_a_revoked_token_is_refused_at_once(web: WebRig) -> None:
    client, h = web.client(), auth(web.alice.token)
    assert client.get("/api/v1/alerts", headers=h).status_code == 200
    with web.database.transaction() as db:
        (row,) = tokens.list_tokens(db, web.alice.user_id)
        assert row.last_used_at is not None  # the list shows when it was used
        tokens.revoke_token(db, row.id, web.alice.user_id)
    assert client.get("/api/v1/alerts", headers=h).status_code == 401


def test_the_openapi_document_names_every_route(web: WebRig) -> None:
    document = web.client().get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/devices",
        "/devices/{serial}",
        "/sessions",
        "/sessions/{id}",
        "/sessions/{id}/readings",
        "/alerts",
        "/alerts/{id}",
        "/account",
    }


def test_errors_are_json(web: WebRig) -> None:
    client = web.client()
    response = client.put("/api/v1/alerts", headers=auth(web.alice.token))
    assert response.status_code == 405 and response.json()["status"] == 405
    assert client.get("/api/v1/nothing").json() == {"error": "Not Found", "status": 404}
