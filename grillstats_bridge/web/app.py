"""The web app: the Starlette application, its shared state and the rules every page keeps.

One application serves ``/health`` (the daemon's report, byte for byte what the
standard-library server answered), the pages (:mod:`pages`), the REST API under
``/api/v1`` (:mod:`api`) and the static files. Page handlers that touch the database
are plain functions, which Starlette runs in its thread pool; those that read a form
await it and then hand the work to the pool (:func:`in_thread`).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import jinja2
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from grillstats_bridge import __version__
from grillstats_bridge.config import Config
from grillstats_bridge.cook.model import Estimate
from grillstats_bridge.domain import utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.sessions import service as sessions
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import User
from grillstats_bridge.web.auth import COOKIE, Login, Logins
from grillstats_bridge.web.data import NotFound

log = logging.getLogger(__name__)

Report = Callable[[], tuple[bool, dict[str, Any]]]
T = TypeVar("T")


@dataclass
class Web:
    """What every handler needs, kept on ``app.state.web``."""

    config: Config
    database: Database
    report: Report | None
    clock: Callable[[], datetime]
    logins: Logins
    templates: Jinja2Templates
    # a device's latest done-time estimates by channel (the daemon's cook service), if any
    estimates: Callable[[str], Mapping[int, Estimate]] | None = None

    def is_admin(self, user: User) -> bool:
        admins = {a.strip().lower() for a in self.config.http.admins.split(",") if a.strip()}
        return user.email.lower() in admins


class LoginRequired(Exception):
    """No live login: pages answer with a redirect to the login page."""


class CsrfRefused(Exception):
    """A form came without this session's CSRF token."""


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await run_in_threadpool(fn, *args)


# --------------------------------------------------------------------------- logins


def login_of(request: Request) -> Login | None:
    return web_of(request).logins.get(request.cookies.get(COOKIE))


def require_login(request: Request) -> Login:
    login = login_of(request)
    if login is None or login.user_id is None:
        raise LoginRequired
    return login


def current_user(db: Session, login: Login) -> User:
    """The logged-in user, still there and allowed in; otherwise the login ends."""
    user = db.get(User, login.user_id) if login.user_id is not None else None
    if user is None or user.is_active is False:
        raise LoginRequired
    return user


def form_post(
    handler: Callable[[Request, Login, dict[str, str]], Response],
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of a logged-in user's form: the login required, the CSRF token checked,
    then ``handler(request, login, fields)`` (which uses the database) in a worker thread."""

    async def endpoint(request: Request) -> Response:
        login = require_login(request)
        fields = await form_of(request, login)
        return await in_thread(handler, request, login, fields)

    endpoint.__name__ = handler.__name__.lstrip("_")
    return endpoint


async def form_of(request: Request, login: Login | None) -> dict[str, str]:
    """The form's fields (text only), once its CSRF token is this session's."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if login is None or not login.csrf_ok(fields.get("csrf")):
        raise CsrfRefused
    return fields


def secure(request: Request) -> bool:
    return (
        web_of(request).config.http.secure_cookie
        or request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto", "").lower() == "https"
    )


def with_cookie(response: Response, request: Request, login: Login) -> Response:
    response.set_cookie(
        COOKIE,
        login.sid,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/",
    )
    return response


def render(
    request: Request,
    template: str,
    login: Login,
    user: User | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    web = web_of(request)
    values = {
        "user": user,
        "csrf": login.csrf,
        "admin": user is not None and web.is_admin(user),
        "version": __version__,
    }
    response = web.templates.TemplateResponse(
        request, template, values | context, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return with_cookie(response, request, login)


def export_response(db: Any, session_id: int, fmt: str, now: Any) -> Response:
    """A session's readings as a CSV or JSON download (``session export``'s writer)."""
    if fmt not in ("csv", "json"):
        raise NotFound(f"no export format {fmt!r}")
    out = io.StringIO()
    sessions.export_session(db, session_id, "csv" if fmt == "csv" else "json", out, now)
    media = "text/csv" if fmt == "csv" else "application/json"
    return Response(
        out.getvalue(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="session-{session_id}.{fmt}"'},
    )


# --------------------------------------------------------------------------- errors


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_page(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return _json_error(status, message)
    web = web_of(request)
    response = web.templates.TemplateResponse(
        request,
        "error.html",
        {
            "status": status,
            "message": message,
            "user": None,
            "admin": False,
            "csrf": "",
            "version": __version__,
        },
        status_code=status,
    )
    return response


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error_page(request, exc.status_code, str(exc.detail))


async def _on_not_found(request: Request, exc: Exception) -> Response:
    return _error_page(request, 404, "not found")


async def _on_usage(request: Request, exc: Exception) -> Response:
    return _error_page(request, 400, str(exc))


async def _on_login_required(request: Request, exc: Exception) -> Response:
    if _is_api(request):
        return _json_error(401, "a valid API token is required")
    return RedirectResponse("/login", status_code=303)


async def _on_csrf(request: Request, exc: Exception) -> Response:
    return _error_page(request, 403, "the form's CSRF token is missing or wrong: reload the page")


# --------------------------------------------------------------------------- health


def health(request: Request) -> Response:
    """``GET /health``: the daemon's report, as the standard-library server rendered it."""
    report = web_of(request).report
    if report is None:
        return _health_response(200, {"status": "ok"})
    try:
        healthy, body = report()
    except Exception:  # a broken check must answer, not hang the client
        log.exception("health report failed")
        return _health_response(503, {"status": "error", "error": "health report failed"})
    return _health_response(200 if healthy else 503, body)


def _health_response(code: int, body: dict[str, Any]) -> Response:
    payload = json.dumps(body, default=str, indent=2).encode()
    return Response(
        payload,
        status_code=code,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# --------------------------------------------------------------------------- headers

# Nothing but the bridge's own files: no inline script, no frame around its pages (a
# page that cannot be framed cannot be clicked through by another site).
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


# --------------------------------------------------------------------------- the app


def create_app(
    config: Config,
    database: Database,
    *,
    report: Report | None = None,
    clock: Callable[[], datetime] = utcnow,
    estimates: Callable[[str], Mapping[int, Estimate]] | None = None,
) -> Starlette:
    from grillstats_bridge.web import api, pages

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grillstats_bridge.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    web = Web(
        config=config,
        database=database,
        report=report,
        clock=clock,
        logins=Logins(config.http.session_idle, clock),
        templates=Jinja2Templates(env=env),
        estimates=estimates,
    )
    routes = [
        Route("/health", health),
        Mount("/api/v1", routes=api.ROUTES),
        Mount("/static", StaticFiles(packages=[("grillstats_bridge.web", "static")])),
        *pages.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            HTTPException: _on_http,
            NotFound: _on_not_found,
            UsageError: _on_usage,
            LoginRequired: _on_login_required,
            CsrfRefused: _on_csrf,
            api.Unauthorized: api.unauthorized,
        },
    )
    app.state.web = web
    return app
