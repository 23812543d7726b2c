"""The pages: log in and out, devices with live values, sessions and their charts,
alerts, the linked ThermoWorks account, API tokens, and the admin page.

Every handler reaches rows through :mod:`data` (another user's id is a 404) and
changes them through the services the CLI uses; every POST checks the CSRF token.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from grillstats_bridge.accounts import service as account_service
from grillstats_bridge.alerts import rules as alert_rules
from grillstats_bridge.alerts.engine import AlertKind
from grillstats_bridge.errors import GrillstatsError, UsageError
from grillstats_bridge.store import accounts, tokens, users
from grillstats_bridge.store.models import User
from grillstats_bridge.web import data
from grillstats_bridge.web.app import (
    current_user,
    export_response,
    form_of,
    form_post,
    in_thread,
    login_of,
    render,
    require_login,
    web_of,
    with_cookie,
)
from grillstats_bridge.web.auth import COOKIE, Login
from grillstats_bridge.web.chart import session_svg

POLL_MS = 2000  # how often the devices page asks for fresh values


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def home(request: Request) -> Response:
    login = login_of(request)
    return _redirect("/devices" if login and login.user_id is not None else "/login")


# --------------------------------------------------------------------------- log in, out


def login_page(request: Request) -> Response:
    login = login_of(request) or web_of(request).logins.start(None)
    if login.user_id is not None:
        return _redirect("/devices")
    return render(request, "login.html", login, None, error=None, email="")


async def login_submit(request: Request) -> Response:
    web = web_of(request)
    login = login_of(request)
    fields = await form_of(request, login)
    assert login is not None
    email = fields.get("email", "")[:200]
    password = fields.get("password", "")[:1000]
    try:
        user = await in_thread(
            users.authenticate, web.database, email, password, web.config.security, web.clock()
        )
    except users.AuthenticationError as exc:
        return render(request, "login.html", login, None, 401, error=str(exc), email=email)
    web.logins.end(login.sid)
    fresh = web.logins.start(user.id)
    return with_cookie(_redirect("/devices"), request, fresh)


async def logout(request: Request) -> Response:
    login = login_of(request)
    await form_of(request, login)
    assert login is not None
    web_of(request).logins.end(login.sid)
    response = _redirect("/login")
    response.delete_cookie(COOKIE, path="/")
    return response


# --------------------------------------------------------------------------- devices


def devices_page(request: Request) -> Response:
    login = require_login(request)
    with web_of(request).database.transaction() as db:
        user = current_user(db, login)
        devices = [data.device_dict(d) for d in data.user_devices(db, user.id)]
        return render(request, "devices.html", login, user, devices=devices, poll_ms=POLL_MS)


def device_page(request: Request) -> Response:
    login = require_login(request)
    with web_of(request).database.transaction() as db:
        user = current_user(db, login)
        device = data.device_dict(data.owned_device(db, user.id, request.path_params["serial"]))
        return render(request, "devices.html", login, user, devices=[device], poll_ms=POLL_MS)


def devices_live(request: Request) -> Response:
    """The JSON the devices page polls: every device and probe of the user, now."""
    login = require_login(request)
    with web_of(request).database.transaction() as db:
        user = current_user(db, login)
        body = {"devices": [data.device_dict(d) for d in data.user_devices(db, user.id)]}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- sessions


def sessions_page(request: Request) -> Response:
    login = require_login(request)
    web = web_of(request)
    with web.database.transaction() as db:
        user = current_user(db, login)
        rows = data.user_sessions(db, user, web.clock())
        return render(request, "sessions.html", login, user, sessions=rows)


def session_page(request: Request) -> Response:
    login = require_login(request)
    web = web_of(request)
    now = web.clock()
    with web.database.transaction() as db:
        user = current_user(db, login)
        row = data.owned_session(db, user.id, request.path_params["id"])
        detail = data.session_detail(db, row, now)
        svg = session_svg(
            data.session_series(db, row, now),
            {p["probe"]: p["label"] for p in detail["probes"] if p["label"]},
            {p["probe"]: p["target"] for p in detail["probes"] if p["target"] is not None},
            detail["unit"] or "F",
            stall=(row.stall_start, row.stall_end) if row.stall_start is not None else None,
        )
        estimates = {}
        if row.status == "active" and web.estimates is not None:
            estimates = {
                channel: {
                    "state": e.state.value,
                    "done_at": e.done_at.isoformat() if e.done_at else None,
                    "low": e.low.isoformat() if e.low else None,
                    "high": e.high.isoformat() if e.high else None,
                }
                for channel, e in web.estimates(row.device_id).items()
            }
        return render(
            request, "session.html", login, user, session=detail, chart=svg, estimates=estimates
        )


def session_export(request: Request) -> Response:
    login = require_login(request)
    web = web_of(request)
    fmt = request.path_params["fmt"]
    with web.database.transaction() as db:
        user = current_user(db, login)
        row = data.owned_session(db, user.id, request.path_params["id"])
        return export_response(db, row.id, fmt, web.clock())


# --------------------------------------------------------------------------- alerts


def _alerts_view(request: Request, login: Login, db: Any, user: User, **extra: Any) -> Response:
    context: dict[str, Any] = {
        "alerts": [data.alert_dict(a) for a in data.user_alerts(db, user)],
        "devices": [data.device_dict(d) for d in data.user_devices(db, user.id)],
        "kinds": [k.value for k in AlertKind],
        "error": None,
        "form": {},
    }
    return render(
        request, "alerts.html", login, user, 400 if extra.get("error") else 200, **(context | extra)
    )


def alerts_page(request: Request) -> Response:
    login = require_login(request)
    with web_of(request).database.transaction() as db:
        return _alerts_view(request, login, db, current_user(db, login))


def _alert_add(request: Request, login: Login, fields: dict[str, str]) -> Response:
    database = web_of(request).database
    try:
        with database.transaction() as db:
            user = current_user(db, login)
            data.add_owned_alert(db, user, fields)
    except (UsageError, data.NotFound) as exc:
        with database.transaction() as db:
            user = current_user(db, login)
            return _alerts_view(request, login, db, user, error=str(exc), form=fields)
    return _redirect("/alerts")


def alert_edit_page(request: Request) -> Response:
    login = require_login(request)
    with web_of(request).database.transaction() as db:
        user = current_user(db, login)
        alert = data.alert_dict(data.owned_alert(db, user.id, request.path_params["id"]))
        return render(request, "alert_edit.html", login, user, alert=alert, error=None)


def _alert_edit(request: Request, login: Login, fields: dict[str, str]) -> Response:
    database = web_of(request).database
    alert_id = request.path_params["id"]
    try:
        with database.transaction() as db:
            user = current_user(db, login)
            data.owned_alert(db, user.id, alert_id)
            alert_rules.update_alert(db, alert_id, **data.alert_values(fields))
    except UsageError as exc:
        with database.transaction() as db:
            user = current_user(db, login)
            alert = data.alert_dict(data.owned_alert(db, user.id, alert_id))
            return render(request, "alert_edit.html", login, user, 400, alert=alert, error=str(exc))
    return _redirect("/alerts")


def _alert_action(request: Request, login: Login, fields: dict[str, str]) -> Response:
    alert_id, action = request.path_params["id"], request.path_params["action"]
    with web_of(request).database.transaction() as db:
        user = current_user(db, login)
        data.owned_alert(db, user.id, alert_id)
        if action == "delete":
            alert_rules.remove_alert(db, alert_id)
        elif action in ("enable", "disable"):
            alert_rules.set_alert_active(db, alert_id, action == "enable")
        else:
            raise data.NotFound(action)
    return _redirect("/alerts")


# --------------------------------------------------------------------------- account, tokens


def _account_view(request: Request, login: Login, status: int = 200, **extra: Any) -> Response:
    web = web_of(request)
    with web.database.transaction() as db:
        user = current_user(db, login)
        email = user.email
        own = [data.token_dict(t) for t in tokens.list_tokens(db, user.id)]
    info = accounts.account_info(web.database, email)
    context = {
        "account": info,
        "providers": account_service.PROVIDER_CHOICES,
        "tokens": own,
        "error": None,
        "new_token": None,
    }
    with web.database.transaction() as db:
        user = current_user(db, login)
        return render(request, "account.html", login, user, status, **(context | extra))


def account_page(request: Request) -> Response:
    return _account_view(request, require_login(request))


def _account_link(request: Request, login: Login, fields: dict[str, str]) -> Response:
    web = web_of(request)
    with web.database.transaction() as db:
        email = current_user(db, login).email
    try:
        account_service.link_account(
            web.database,
            web.config,
            email,
            fields.get("password", ""),
            provider=fields.get("provider") or None,
            tw_email=fields.get("tw_email", "").strip() or None,
            store_password=fields.get("store_password") == "on",
            clock=web.clock,
        )
    except GrillstatsError as exc:  # the cloud's errors and bad input, in one line
        return _account_view(request, login, 400, error=str(exc))
    return _redirect("/account")


def _account_unlink(request: Request, login: Login, fields: dict[str, str]) -> Response:
    web = web_of(request)
    with web.database.transaction() as db:
        email = current_user(db, login).email
    accounts.unlink_account(web.database, email)
    return _redirect("/account")


def _token_create(request: Request, login: Login, fields: dict[str, str]) -> Response:
    web = web_of(request)
    try:
        with web.database.transaction() as db:
            user = current_user(db, login)
            _, token = tokens.create_token(db, user, fields.get("name", "web"), web.clock())
    except UsageError as exc:
        return _account_view(request, login, 400, error=str(exc))
    return _account_view(request, login, new_token=token)


def _token_revoke(request: Request, login: Login, fields: dict[str, str]) -> Response:
    web = web_of(request)
    with web.database.transaction() as db:
        user = current_user(db, login)
        try:
            tokens.revoke_token(db, request.path_params["id"], user.id, web.clock())
        except UsageError:
            raise data.NotFound("no token") from None
    return _redirect("/account")


# --------------------------------------------------------------------------- admin


def _admin_user(request: Request, login: Login, db: Any) -> User:
    user = current_user(db, login)
    if not web_of(request).is_admin(user):
        raise data.NotFound("no admin page")  # not even its existence is told
    return user


def admin_page(request: Request) -> Response:
    login = require_login(request)
    web = web_of(request)
    health = None
    if web.report is not None:
        try:
            health = web.report()
        except Exception:
            health = (False, {"status": "error", "error": "health report failed"})
    with web.database.transaction() as db:
        user = _admin_user(request, login, db)
        everyone = list(users.list_users(db))
        return render(
            request,
            "admin.html",
            login,
            user,
            users=everyone,
            healthy=health[0] if health else None,
            health=health[1] if health else None,
        )


def _admin_unlock(request: Request, login: Login, fields: dict[str, str]) -> Response:
    with web_of(request).database.transaction() as db:
        _admin_user(request, login, db)
        target = db.get(User, request.path_params["id"])
        if target is None:
            raise data.NotFound("no user")
        users.unlock(db, target.email)
    return _redirect("/admin")


# The forms' endpoints: login, CSRF, then the handler in a worker thread.
alert_add = form_post(_alert_add)
alert_edit = form_post(_alert_edit)
alert_action = form_post(_alert_action)
account_link = form_post(_account_link)
account_unlink = form_post(_account_unlink)
token_create = form_post(_token_create)
token_revoke = form_post(_token_revoke)
admin_unlock = form_post(_admin_unlock)


ROUTES = [
    Route("/", home),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/devices", devices_page),
    Route("/devices/live.json", devices_live),
    Route("/devices/{serial}", device_page),
    Route("/sessions", sessions_page),
    Route("/sessions/{id:int}", session_page),
    Route("/sessions/{id:int}/export.{fmt}", session_export),
    Route("/alerts", alerts_page, methods=["GET"]),
    Route("/alerts", alert_add, methods=["POST"]),
    Route("/alerts/{id:int}/edit", alert_edit_page, methods=["GET"]),
    Route("/alerts/{id:int}/edit", alert_edit, methods=["POST"]),
    Route("/alerts/{id:int}/{action}", alert_action, methods=["POST"]),
    Route("/account", account_page),
    Route("/account/link", account_link, methods=["POST"]),
    Route("/account/unlink", account_unlink, methods=["POST"]),
    Route("/tokens", token_create, methods=["POST"]),
    Route("/tokens/{id:int}/revoke", token_revoke, methods=["POST"]),
    Route("/admin", admin_page),
    Route("/admin/users/{id:int}/unlock", admin_unlock, methods=["POST"]),
]
