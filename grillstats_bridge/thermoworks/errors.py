"""The cloud client's errors and, in one place, what the bridge does about each.

Every failure of a cloud call becomes one of the :class:`CloudError` classes
below; :func:`action_for` says what to do about it and :class:`RetryPolicy` how
long to wait (the daemon's scheduler uses this one policy, bounded by the
``polling`` settings). The client applies ``REFRESH_AND_RETRY`` and
``REAUTHENTICATE`` itself (once); everything else reaches the caller, who
applies the rest.
Messages are one line and never hold a password or a token.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from grillstats_bridge.errors import GrillstatsError, UsageError


class Action(StrEnum):
    """What to do after a failed cloud call."""

    RETRY_AFTER = "retry after the server's delay"
    BACKOFF = "back off with jitter, then retry"
    LONG_BACKOFF = "back off for long, then retry"
    REFRESH_AND_RETRY = "refresh the token, then retry once"
    REAUTHENTICATE = "sign in again with the stored password, else needs the user"
    NEEDS_USER = "never retried: the account needs its owner"
    SKIP = "skip the document, count it, keep the rest"


class EndpointError(UsageError):
    """The cloud's endpoints cannot be built: an unknown provider, or a custom one half given.

    ``key`` names the setting at fault (``provider``), or is None when several are.
    """

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


class CloudError(GrillstatsError):
    """A ThermoWorks cloud call failed.

    ``status`` is the HTTP status (None: no answer), ``code`` the cloud's error
    code (``INVALID_PASSWORD``...), ``retry_after`` the server's delay in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def action(self) -> Action:
        return action_for(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, status={self.status}, code={self.code})"


class InvalidCredentials(CloudError):
    """Unknown email, wrong password or badly formed email: only the owner can fix it."""


class AccountDisabled(CloudError):
    """The ThermoWorks account is disabled."""


class TooManyAttempts(CloudError):
    """The cloud refuses sign-ins for a while (TOO_MANY_ATTEMPTS_TRY_LATER)."""


class TokenExpired(CloudError):
    """The id token was refused (401 UNAUTHENTICATED)."""


class RefreshTokenInvalid(CloudError):
    """The refresh token is dead (password changed, account disabled): sign in again."""


class CredentialsNeedOwner(CloudError):
    """The account's credentials stopped working earlier; nothing is tried until it is relinked."""


class PermissionDenied(CloudError):
    """The cloud's rules refused a read (403), or the API key or Referer is refused."""


class NotFound(CloudError):
    """A document does not exist (404)."""


class RateLimited(CloudError):
    """429 RESOURCE_EXHAUSTED; ``retry_after`` when the server said how long to wait."""


class Unavailable(CloudError):
    """503, another 5xx, or no answer at all (connection refused or reset)."""


class CloudTimeout(Unavailable):
    """No answer within the configured timeout."""


class DeadlineExceeded(CloudTimeout):
    """A request did not finish within its total deadline (a server that sends slowly)."""


class RedirectRefused(CloudError):
    """The cloud answered with a redirect: none is followed (it could re-send a password)."""


class ResponseTooLarge(CloudError):
    """An answer passed the size cap; it was refused before being read to its end."""


class SignInBusy(CloudError):
    """Another thread's sign-in or refresh of the account did not finish in time."""


class MalformedResponse(CloudError):
    """A whole answer could not be read (not JSON, or not the expected shape)."""


class MalformedDocument(CloudError):
    """One document could not be parsed; it is skipped and counted."""


class RequestRefused(CloudError):
    """Any other 4xx: the request itself is wrong (a bad API key, a bad configuration)."""


# The one table from error to behaviour; the most specific class wins.
_ACTIONS: dict[type[CloudError], Action] = {
    InvalidCredentials: Action.NEEDS_USER,
    AccountDisabled: Action.NEEDS_USER,
    CredentialsNeedOwner: Action.NEEDS_USER,
    TooManyAttempts: Action.LONG_BACKOFF,
    TokenExpired: Action.REFRESH_AND_RETRY,
    RefreshTokenInvalid: Action.REAUTHENTICATE,
    PermissionDenied: Action.LONG_BACKOFF,
    NotFound: Action.BACKOFF,
    RateLimited: Action.RETRY_AFTER,
    CloudTimeout: Action.BACKOFF,
    DeadlineExceeded: Action.BACKOFF,
    RedirectRefused: Action.BACKOFF,
    ResponseTooLarge: Action.BACKOFF,
    SignInBusy: Action.BACKOFF,
    Unavailable: Action.BACKOFF,
    MalformedResponse: Action.BACKOFF,
    MalformedDocument: Action.SKIP,
    RequestRefused: Action.LONG_BACKOFF,
    CloudError: Action.BACKOFF,
}


def action_for(error: BaseException) -> Action:
    """What to do about ``error`` (anything that is not a CloudError: back off)."""
    for cls in type(error).__mro__:
        action = _ACTIONS.get(cls)
        if action is not None:
            return action
    return Action.BACKOFF


def needs_owner(error: BaseException) -> bool:
    """True when retrying cannot help: only the account's owner can (bad or dead credentials)."""
    return action_for(error) in (Action.NEEDS_USER, Action.REAUTHENTICATE)


class Wait(NamedTuple):
    """The policy's answer: seconds until the next try (None: until the owner acts), and the
    server's Retry-After when the cap cut it down (None otherwise), so the caller can say so."""

    seconds: float | None
    capped_from: float | None = None


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """The one retry policy: how long an account waits after a failed cloud call.

    ``failures`` counts the consecutive failures, this one included. Back-off
    doubles from ``base`` up to ``maximum``, with "equal jitter" (at least half
    the step, so that it always grows, and many accounts failing together do
    not retry together): a blip costs seconds of readings, not minutes. A long
    back-off (too many sign-in attempts, a refused request) waits ``long``; a
    429 waits what its Retry-After asked, at most ``retry_after_cap``; nothing
    waits less than ``floor``. A token problem that reaches the caller has
    already been retried once by the client; a dead refresh token with no
    stored password, or bad credentials, wait for the owner.
    """

    base: float = 3.0
    maximum: float = 300.0
    long: float = 1800.0
    floor: float = 5.0
    retry_after_cap: float = 3600.0

    def wait(
        self, error: BaseException, failures: int, rand: Callable[[], float] = random.random
    ) -> Wait:
        action = action_for(error)
        if needs_owner(error):
            return Wait(None)
        if action is Action.RETRY_AFTER:
            given = getattr(error, "retry_after", None)
            if given is not None:
                seconds = min(self.retry_after_cap, max(self.floor, float(given)))
                return Wait(seconds, float(given) if given > self.retry_after_cap else None)
        if action is Action.LONG_BACKOFF:
            return Wait(max(self.floor, self.long))
        ceiling = min(self.maximum, self.base * 2.0 ** min(max(0, failures - 1), 30))
        jittered = ceiling / 2 + rand() * ceiling / 2
        return Wait(max(self.floor, jittered))
