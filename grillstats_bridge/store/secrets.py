"""Passwords (bcrypt), the lockout rule, and encryption of secrets at rest (Fernet)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import bcrypt
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.exc import SQLAlchemyError

from grillstats_bridge.config import SecurityConfig
from grillstats_bridge.errors import GrillstatsError, UsageError
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import ThermoWorksCredentials

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72  # bcrypt ignores (bcrypt 5 refuses) anything longer


class PasswordPolicyError(UsageError):
    """A new password is not acceptable."""


class SecretError(GrillstatsError):
    """An encrypted value cannot be read (wrong or lost key) or the key is unusable."""


# ----------------------------------------------------------------------------- passwords


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise PasswordPolicyError(f"password: must be at most {MAX_PASSWORD_BYTES} bytes")


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash (60 characters, fits the seed's String(128))."""
    check_password_policy(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches; never raises for a malformed hash or long password."""
    raw = password.encode("utf-8")
    if len(raw) > MAX_PASSWORD_BYTES:
        # No such password can have been set; still spend the bcrypt time, so that
        # the length does not show in the timing.
        spend_bcrypt_time(_rounds_of(password_hash))
        return False
    try:
        return bcrypt.checkpw(raw, password_hash.encode("ascii"))
    except ValueError:
        return False


def spend_bcrypt_time(rounds: int) -> None:
    """Do the work of one password check against nothing (the unknown-email path)."""
    bcrypt.checkpw(b"not-a-password", _dummy_hash(rounds))


def _rounds_of(password_hash: str) -> int:
    parts = password_hash.split("$")
    return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 12


_dummy_hashes: dict[int, bytes] = {}


def _dummy_hash(rounds: int) -> bytes:
    """A valid hash of an unguessable password, made once per cost factor."""
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds))
    return _dummy_hashes[rounds]


# ----------------------------------------------------------------------------- lockout


class LoginRefusal(StrEnum):
    INVALID = "invalid email or password"
    LOCKED = "account locked after too many failed logins"
    DISABLED = "account disabled"


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failed: int
    lockout: timedelta

    @classmethod
    def from_config(cls, config: SecurityConfig) -> LockoutPolicy:
        return cls(config.max_failed_logins, timedelta(minutes=config.lockout_minutes))

    def lock_expired(self, locked: bool, last_failed: datetime | None, now: datetime) -> bool:
        """A lock lapses ``lockout`` after the failed login that set it."""
        return locked and (last_failed is None or now - last_failed >= self.lockout)


# ----------------------------------------------------------------------------- secrets at rest


class SecretBox:
    """Encrypts and decrypts short secrets (tokens, passwords) with Fernet.

    The key comes from ``security.encryption_key`` (one key, or several separated by
    commas: the first encrypts, all decrypt, for rotation; ``encryption_key_file``
    reads it from a file, a systemd credential for one) or else from
    ``security.key_file``, created with mode 0600 on first use. A relative
    ``key_file`` is looked up in systemd's ``$CREDENTIALS_DIRECTORY`` first.
    """

    def __init__(self, keys: list[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError):
            raise SecretError(
                "security.encryption_key: not a valid key (44 characters of urlsafe base64; "
                "make one with 'grillstats-bridge config genkey')"
            ) from None

    @classmethod
    def from_config(
        cls,
        config: SecurityConfig,
        *,
        create: bool = True,
        database: Database | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> SecretBox:
        """The box of the configured key. A missing key file is created only when
        ``database`` (if given) holds no secret yet: a new key could not read them."""
        if config.encryption_key.strip():
            return cls([k.strip().encode() for k in config.encryption_key.split(",") if k.strip()])
        path = key_path(config, os.environ if environ is None else environ)
        if create and database is not None and not path.exists():
            stored = stored_secrets(database)
            if stored:
                raise SecretError(
                    f"security.key_file: {path} does not exist, but {stored} linked "
                    "account(s) hold secrets encrypted with a key: restore that key file "
                    "(or set security.encryption_key); a new key could not read them"
                )
        return cls([load_key_file(path, create=create)])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretError(
                "a stored secret cannot be decrypted with the configured key "
                "(was the key file lost or changed?); link the account again"
            ) from None


def key_path(config: SecurityConfig, environ: Mapping[str, str]) -> Path:
    """``security.key_file``; a relative one in ``$CREDENTIALS_DIRECTORY`` when it is there."""
    path = Path(config.key_file).expanduser()
    creds = environ.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and creds and (Path(creds) / path).is_file():
        return Path(creds) / path
    return path


def stored_secrets(database: Database) -> int:
    """How many linked accounts hold an encrypted secret (0 when it cannot be told)."""
    c = ThermoWorksCredentials
    held = sa.or_(
        c.access_token.is_not(None), c.refresh_token.is_not(None), c.stored_password.is_not(None)
    )
    try:
        with database.session() as db:
            return int(db.scalar(sa.select(sa.func.count(c.id)).where(held)) or 0)
    except SQLAlchemyError:  # no schema yet (a new database), or unreachable: nothing known
        log.debug("stored secrets not counted", exc_info=True)
        return 0


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_key_file(path: Path, *, create: bool = True) -> bytes:
    """Read the key file, creating it (0600, never overwriting) when it does not exist."""
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise SecretError(f"security.key_file: {path} does not exist") from None
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # created by another process meanwhile: use theirs
            return path.read_bytes().strip()
        except OSError as exc:
            raise SecretError(f"security.key_file: cannot create {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
        log.warning(
            "created a new encryption key in %s: back it up; without it stored "
            "ThermoWorks tokens cannot be read",
            path,
        )
        return key
    except OSError as exc:
        raise SecretError(f"security.key_file: cannot read {path}: {exc.strerror}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("security.key_file: %s is readable by others (mode %o); use 0600", path, mode)
    return key
