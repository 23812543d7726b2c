"""The simulator answers like the real services: checked with plain HTTP requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from grillstats_bridge.simulator.server import CloudSimulator, SimClock
from grillstats_bridge.thermoworks.providers import PROVIDERS

TW = PROVIDERS["thermoworks"]
EMAIL, PASSWORD = "pitmaster@example.com", "low-and-slow-225"
DOCS = "/v1/projects/thermoworks-cloud-production/databases/(default)/documents"


@pytest.fixture
def sim() -> Iterator[CloudSimulator]:
    with CloudSimulator("brisket", speed=0) as simulator:
        simulator.advance(3600)
        yield simulator


def sign_in(sim: CloudSimulator, email: str = EMAIL, password: str = PASSWORD) -> requests.Response:
    return requests.post(
        sim.urls()["identitytoolkit_url"] + "/v1/accounts:signInWithPassword",
        params={"key": TW.api_key},
        json={"email": email, "password": password, "returnSecureToken": True},
        headers={"Referer": TW.referer},
        timeout=5,
    )


def firestore(
    sim: CloudSimulator, token: str, method: str, path: str, body: Any = None
) -> requests.Response:
    return requests.request(
        method,
        sim.urls()["firestore_url"] + DOCS + path,
        params={"key": TW.api_key},
        json=body,
        headers={"Referer": TW.referer, "Authorization": f"Bearer {token}"},
        timeout=5,
    )


def error_of(response: requests.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_sign_in_answers_the_real_shape(sim: CloudSimulator) -> None:
    response = sign_in(sim)
    assert response.status_code == 200
    body = response.json()
    assert body["localId"] == sim.account_uid(EMAIL)
    assert body["expiresIn"] == "3600" and body["idToken"].count(".") == 2
    assert body["refreshToken"]


def test_sign_in_refusals(sim: CloudSimulator) -> None:
    assert error_of(sign_in(sim, password="wrong"))["message"] == "INVALID_LOGIN_CREDENTIALS"
    assert error_of(sign_in(sim, email="not-an-email"))["message"] == "INVALID_EMAIL"
    # Without the Referer the API key is refused, as Google's key restrictions do.
    response = requests.post(
        sim.urls()["identitytoolkit_url"] + "/v1/accounts:signInWithPassword",
        params={"key": TW.api_key},
        json={"email": EMAIL, "password": PASSWORD, "returnSecureToken": True},
        timeout=5,
    )
    assert response.status_code == 403
    assert error_of(response)["status"] == "PERMISSION_DENIED"


def test_repeated_bad_passwords_earn_too_many_attempts(sim: CloudSimulator) -> None:
    for _ in range(5):
        sign_in(sim, password="wrong")
    message = error_of(sign_in(sim))["message"]  # even the right password now
    assert message.startswith("TOO_MANY_ATTEMPTS_TRY_LATER")


def test_queries_must_be_limited_to_the_callers_account(sim: CloudSimulator) -> None:
    token = sign_in(sim).json()["idToken"]
    query: dict[str, Any] = {"structuredQuery": {"from": [{"collectionId": "devices"}]}}
    response = firestore(sim, token, "POST", ":runQuery", query)
    assert response.status_code == 403


def test_data_calls_need_a_valid_bearer(sim: CloudSimulator) -> None:
    token = sign_in(sim).json()["idToken"]
    uid = sim.account_uid(EMAIL)
    assert firestore(sim, token, "GET", f"/users/{uid}").status_code == 200
    assert firestore(sim, "forged", "GET", f"/users/{uid}").status_code == 401
    sim.advance(3601)  # the token's hour is over
    response = firestore(sim, token, "GET", f"/users/{uid}")
    assert response.status_code == 401
    assert error_of(response)["status"] == "UNAUTHENTICATED"


def test_batch_get_reports_missing_documents(sim: CloudSimulator) -> None:
    token = sign_in(sim).json()["idToken"]
    root = "projects/thermoworks-cloud-production/databases/(default)/documents"
    names = [f"{root}/devices/M100081209/channels/{n}" for n in (1, 4, 5)]
    response = firestore(sim, token, "POST", ":batchGet", {"documents": names})
    assert response.status_code == 200
    items = response.json()
    assert sorted(i["found"]["name"] for i in items if "found" in i) == names[:2]
    assert [i["missing"] for i in items if "missing" in i] == names[2:]


def test_scripted_errors_and_counts(sim: CloudSimulator) -> None:
    token = sign_in(sim).json()["idToken"]
    uid = sim.account_uid(EMAIL)
    sim.reset_counts()
    sim.fail_next(429, endpoint="get", retry_after=30)
    response = firestore(sim, token, "GET", f"/users/{uid}")
    assert response.status_code == 429 and response.headers["Retry-After"] == "30"
    assert error_of(response)["status"] == "RESOURCE_EXHAUSTED"
    sim.malform_next(endpoint="get")
    broken = firestore(sim, token, "GET", f"/users/{uid}")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert firestore(sim, token, "GET", f"/users/{uid}").status_code == 200
    assert sim.counts["get"] == 3 and sim.request_count() == 3


def test_clock_speed() -> None:
    ticks = iter([0.0, 10.0])
    clock = SimClock(
        CloudSimulator("kitchen_logger", speed=0).scenario.start, 60, lambda: next(ticks)
    )
    assert clock.offset() == 600.0
