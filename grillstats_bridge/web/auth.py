"""Web logins and CSRF: server-side sessions kept in memory, keyed by a random cookie.

The cookie holds only a random id (32 bytes); the user, the CSRF token and the last
request's time stay on the server, so logging out, an idle expiry or a restart ends
a login for certain. A visitor gets an anonymous session (no user) on the login page,
so that the login form carries a CSRF token too; logging in replaces the id (no
session fixation). The store is bounded: beyond ``MAX_SESSIONS`` the idlest go.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

COOKIE = "gsb_session"
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Login:
    """One browser's session: ``user_id`` is None until it logs in."""

    sid: str
    user_id: int | None
    csrf: str
    last_seen: datetime

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Logins:
    """The sessions of every browser, with an idle expiry read from ``clock``."""

    def __init__(self, idle_seconds: float, clock: Callable[[], datetime]) -> None:
        self._idle = timedelta(seconds=idle_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Login] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, sid: str | None) -> Login | None:
        """The live session of this cookie (its idle time starts again), or None."""
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            login = self._by_id.get(sid)
            if login is None:
                return None
            if now - login.last_seen > self._idle:
                del self._by_id[sid]
                return None
            login.last_seen = now
            return login

    def start(self, user_id: int | None) -> Login:
        """A new session with a new id and a new CSRF token."""
        login = Login(
            sid=secrets.token_urlsafe(32),
            user_id=user_id,
            csrf=secrets.token_urlsafe(32),
            last_seen=self._clock(),
        )
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                self._evict()
            self._by_id[login.sid] = login
        return login

    def end(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def end_user(self, user_id: int) -> None:
        """Log a user out everywhere (disabled, locked)."""
        with self._lock:
            for sid in [s for s, login in self._by_id.items() if login.user_id == user_id]:
                del self._by_id[sid]

    def _evict(self) -> None:
        now = self._clock()
        expired = [s for s, login in self._by_id.items() if now - login.last_seen > self._idle]
        for sid in expired:
            del self._by_id[sid]
        if len(self._by_id) >= MAX_SESSIONS:  # still full: the idlest tenth goes
            idlest = sorted(self._by_id.values(), key=lambda login: login.last_seen)
            for login in idlest[: max(1, MAX_SESSIONS // 10)]:
                del self._by_id[login.sid]
