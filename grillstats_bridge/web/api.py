"""The REST API, ``/api/v1``: the user's devices, sessions, alerts and account, as JSON.

Every request but the OpenAPI document carries ``Authorization: Bearer <token>``
(a token from ``token create`` or the account page); without a live one the answer
is 401. Errors are ``{"error": message, "status": code}``. Rows are reached through
:mod:`data`, so another user's id is a 404 exactly like a missing one.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from grillstats_bridge import __version__
from grillstats_bridge.alerts import rules as alert_rules
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store import accounts, tokens
from grillstats_bridge.store.models import User
from grillstats_bridge.web import data
from grillstats_bridge.web.app import export_response, in_thread, web_of

MAX_BODY = 16 * 1024


class Unauthorized(Exception):
    """No live API token on the request."""


def _user(request: Request, db: Session) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized
    user = tokens.user_for_token(db, token.strip(), web_of(request).clock())
    if user is None:
        raise Unauthorized
    return user


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise UsageError(f"the request body is over {MAX_BODY} bytes")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise UsageError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    return body


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- resources


def devices(request: Request) -> Response:
    with web_of(request).database.transaction() as db:
        user = _user(request, db)
        return _json({"devices": [data.device_dict(d) for d in data.user_devices(db, user.id)]})


def device(request: Request) -> Response:
    with web_of(request).database.transaction() as db:
        user = _user(request, db)
        row = data.owned_device(db, user.id, request.path_params["serial"])
        return _json(data.device_dict(row))


def sessions_list(request: Request) -> Response:
    web = web_of(request)
    with web.database.transaction() as db:
        user = _user(request, db)
        return _json({"sessions": data.user_sessions(db, user, web.clock())})


def session(request: Request) -> Response:
    web = web_of(request)
    with web.database.transaction() as db:
        user = _user(request, db)
        row = data.owned_session(db, user.id, request.path_params["id"])
        return _json(data.session_detail(db, row, web.clock()))


def session_readings(request: Request) -> Response:
    web = web_of(request)
    fmt = request.query_params.get("format", "json")
    with web.database.transaction() as db:
        user = _user(request, db)
        row = data.owned_session(db, user.id, request.path_params["id"])
        if fmt not in ("csv", "json"):
            raise UsageError(f"format: csv or json, not {fmt[:20]!r}")
        return export_response(db, row.id, fmt, web.clock())


def alerts_list(request: Request) -> Response:
    with web_of(request).database.transaction() as db:
        user = _user(request, db)
        return _json({"alerts": [data.alert_dict(a) for a in data.user_alerts(db, user)]})


async def alert_create(request: Request) -> Response:
    body = await _body(request)
    return await in_thread(_alert_create, request, body)


def _alert_create(request: Request, body: dict[str, Any]) -> Response:
    with web_of(request).database.transaction() as db:
        user = _user(request, db)
        fields = {k: _text(v) for k, v in body.items()}
        return _json(data.alert_dict(data.add_owned_alert(db, user, fields)), 201)


def alert(request: Request) -> Response:
    with web_of(request).database.transaction() as db:
        user = _user(request, db)
        return _json(data.alert_dict(data.owned_alert(db, user.id, request.path_params["id"])))


async def alert_change(request: Request) -> Response:
    body = await _body(request) if request.method == "PATCH" else {}
    return await in_thread(_alert_change, request, body)


def _alert_change(request: Request, body: dict[str, Any]) -> Response:
    alert_id = request.path_params["id"]
    with web_of(request).database.transaction() as db:
        user = _user(request, db)
        row = data.owned_alert(db, user.id, alert_id)
        if request.method == "DELETE":
            alert_rules.remove_alert(db, alert_id)
            return Response(status_code=204)
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise UsageError("enabled: true or false")
            alert_rules.set_alert_active(db, alert_id, body["enabled"])
        values = {k: v for k, v in body.items() if k != "enabled"}
        if values:
            current = data.alert_dict(row)
            merged = {
                k: _text(values.get(k, current[k]))
                for k in ("target", "min", "max", "threshold", "unit", "name")
            }
            alert_rules.update_alert(db, alert_id, **data.alert_values(merged))
        return _json(data.alert_dict(row))


def account(request: Request) -> Response:
    web = web_of(request)
    with web.database.transaction() as db:
        email = _user(request, db).email
    info = accounts.account_info(web.database, email)
    if info is None:
        return _json({"linked": False})
    return _json(
        {
            "linked": True,
            "provider": info.provider,
            "tw_email": info.tw_email,
            "state": info.state,
            "state_reason": info.state_reason,
            "password_stored": info.password_stored,
            "devices": info.devices,
            "active_devices": info.active_devices,
        }
    )


def openapi(request: Request) -> Response:
    return _json(OPENAPI)


async def unauthorized(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"error": "a valid API token is required (Authorization: Bearer TOKEN)", "status": 401},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


ROUTES = [
    Route("/openapi.json", openapi),
    Route("/devices", devices),
    Route("/devices/{serial}", device),
    Route("/sessions", sessions_list),
    Route("/sessions/{id:int}", session),
    Route("/sessions/{id:int}/readings", session_readings),
    Route("/alerts", alerts_list, methods=["GET"]),
    Route("/alerts", alert_create, methods=["POST"]),
    Route("/alerts/{id:int}", alert, methods=["GET"]),
    Route("/alerts/{id:int}", alert_change, methods=["PATCH", "DELETE"]),
    Route("/account", account),
]


# --------------------------------------------------------------------------- OpenAPI


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str, schema: dict[str, Any] | None, *, body: str | None = None, **more: Any
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "401": {
            "description": "no valid API token",
            "content": {"application/json": {"schema": _ref("Error")}},
        },
        "404": {
            "description": "no such resource (or another user's)",
            "content": {"application/json": {"schema": _ref("Error")}},
        },
    }
    ok = {"description": "OK"}
    if schema is not None:
        ok["content"] = {"application/json": {"schema": schema}}  # type: ignore[assignment]
    responses[more.pop("code", "200")] = ok
    if body:
        responses["400"] = {
            "description": "invalid values",
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    operation: dict[str, Any] = {"summary": summary, "responses": responses} | more
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _path_param(name: str, kind: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": kind}}]


_NUMBER = {"type": ["number", "null"]}
# an alert's probe and kind (fixed once it exists) and its values (what an update changes)
_ALERT_WHERE: dict[str, Any] = {
    "device": {"type": "string"},
    "probe": {"type": "integer"},
    "type": {"enum": ["target", "range", "rising", "falling"]},
}
_ALERT_VALUES: dict[str, Any] = {
    "target": _NUMBER,
    "min": _NUMBER,
    "max": _NUMBER,
    "threshold": _NUMBER,
    "unit": {"enum": ["F", "C"]},
}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Grill Stats Bridge API", "version": __version__},
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                "required": ["error", "status"],
            },
            "Device": {
                "type": "object",
                "properties": {
                    "serial": {"type": "string"},
                    "name": {"type": "string"},
                    "online": {"type": "boolean"},
                    "battery": {"type": ["integer", "null"]},
                    "signal_dbm": {"type": ["integer", "null"]},
                    "probes": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Session": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "device": {"type": "string"},
                    "name": {"type": ["string", "null"]},
                    "status": {"type": "string"},
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "Alert": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    **_ALERT_WHERE,
                    **_ALERT_VALUES,
                    "name": {"type": ["string", "null"]},
                    "enabled": {"type": "boolean"},
                },
            },
            "NewAlert": {
                "type": "object",
                "required": ["device", "probe", "type"],
                "properties": {**_ALERT_WHERE, **_ALERT_VALUES, "name": {"type": "string"}},
            },
            "AlertChange": {
                "type": "object",
                "properties": {
                    **_ALERT_VALUES,
                    "name": {"type": "string"},
                    "enabled": {"type": "boolean"},
                },
            },
        },
    },
    "paths": {
        "/devices": {
            "get": _op(
                "the user's devices and probes, with their last values",
                {
                    "type": "object",
                    "properties": {"devices": {"type": "array", "items": _ref("Device")}},
                },
            )
        },
        "/devices/{serial}": {
            "get": _op("one device", _ref("Device"), parameters=_path_param("serial", "string"))
        },
        "/sessions": {
            "get": _op(
                "the user's sessions, newest first",
                {
                    "type": "object",
                    "properties": {"sessions": {"type": "array", "items": _ref("Session")}},
                },
            )
        },
        "/sessions/{id}": {
            "get": _op(
                "one session with per-probe statistics and the alerts fired",
                _ref("Session"),
                parameters=_path_param("id", "integer"),
            )
        },
        "/sessions/{id}/readings": {
            "get": _op(
                "a session's readings (format=json or csv, as 'session export')",
                None,
                parameters=[
                    *_path_param("id", "integer"),
                    {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}},
                ],
            )
        },
        "/alerts": {
            "get": _op(
                "the user's alerts",
                {
                    "type": "object",
                    "properties": {"alerts": {"type": "array", "items": _ref("Alert")}},
                },
            ),
            "post": _op(
                "add an alert (validated as 'alert add')",
                _ref("Alert"),
                body="NewAlert",
                code="201",
            ),
        },
        "/alerts/{id}": {
            "get": _op("one alert", _ref("Alert"), parameters=_path_param("id", "integer")),
            "patch": _op(
                "change an alert's values, name or enabled state",
                _ref("Alert"),
                body="AlertChange",
                parameters=_path_param("id", "integer"),
            ),
            "delete": _op(
                "delete an alert (its history stays)",
                None,
                code="204",
                parameters=_path_param("id", "integer"),
            ),
        },
        "/account": {
            "get": _op(
                "the linked ThermoWorks account's status (never a secret)", {"type": "object"}
            )
        },
    },
}
