"""Users, passwords and the lockout rule, on both backends."""

from __future__ import annotations

import threading
from datetime import timedelta

import bcrypt
import pytest

from grillstats_bridge.config import Config
from grillstats_bridge.domain import utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store import secrets, users
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import User
from grillstats_bridge.store.secrets import LoginRefusal, PasswordPolicyError
from grillstats_bridge.store.users import AuthenticationError

PASSWORD = "correct horse"


@pytest.fixture
def alice(database: Database, config: Config) -> User:
    with database.transaction() as session:
        return users.add_user(
            session, "Alice@Example.COM ", PASSWORD, config.security, name="Alice"
        )


def refusal(database: Database, config: Config, password: str, **kw: object) -> LoginRefusal:
    with pytest.raises(AuthenticationError) as info:
        users.authenticate(database, "alice@example.com", password, config.security, **kw)  # type: ignore[arg-type]
    assert str(info.value) == info.value.reason.value
    return info.value.reason


def stored(database: Database) -> User:
    with database.session() as session:
        user = users.get_user(session, "alice@example.com")
        session.expunge(user)
        return user


def test_add_normalises_and_hashes(database: Database, config: Config, alice: User) -> None:
    assert alice.email == "alice@example.com"
    assert alice.password_hash.startswith("$2b$") and PASSWORD not in alice.password_hash
    assert bcrypt.checkpw(PASSWORD.encode(), alice.password_hash.encode())
    with database.transaction() as session, pytest.raises(UsageError, match="already exists"):
        users.add_user(session, "ALICE@example.com", PASSWORD, config.security)


@pytest.mark.parametrize("bad", ["alice", "a@b", "a b@c.de", "@x.io", ""])
def test_bad_emails_are_refused(database: Database, config: Config, bad: str) -> None:
    with database.transaction() as session, pytest.raises(UsageError, match="not a valid email"):
        users.add_user(session, bad, PASSWORD, config.security)


def test_password_policy() -> None:
    with pytest.raises(PasswordPolicyError, match="at least 8"):
        secrets.hash_password("short", 4)
    with pytest.raises(PasswordPolicyError, match="at most 72 bytes"):
        secrets.hash_password("é" * 40, 4)
    assert not secrets.verify_password("x" * 100, secrets.hash_password("x" * 8, 4))
    assert not secrets.verify_password("whatever", "not-a-hash")


def test_login_and_case_insensitive_email(database: Database, config: Config, alice: User) -> None:
    user = users.authenticate(database, "ALICE@example.com", PASSWORD, config.security)
    assert user.id == alice.id


def test_lockout_after_max_failures_then_expiry(
    database: Database, config: Config, alice: User
) -> None:
    now = utcnow()
    for attempt in range(1, 5):
        assert refusal(database, config, "wrong", now=now) is LoginRefusal.INVALID
        assert stored(database).failed_login_attempts == attempt
        assert not stored(database).is_locked
    assert refusal(database, config, "wrong", now=now) is LoginRefusal.INVALID
    locked = stored(database)
    assert locked.is_locked and locked.failed_login_attempts == 5
    assert locked.last_failed_login == now

    # Locked: even the right password is refused, and the lock does not extend.
    later = now + timedelta(minutes=10)
    assert refusal(database, config, PASSWORD, now=later) is LoginRefusal.LOCKED
    assert refusal(database, config, "wrong", now=later) is LoginRefusal.LOCKED
    assert stored(database).last_failed_login == now

    # After lockout_minutes (15) from the failure that locked it, the lock lapses.
    user = users.authenticate(
        database, "alice@example.com", PASSWORD, config.security, now=now + timedelta(minutes=15)
    )
    assert user.failed_login_attempts == 0 and not user.is_locked


def test_success_resets_the_count(database: Database, config: Config, alice: User) -> None:
    for _ in range(3):
        refusal(database, config, "wrong")
    users.authenticate(database, "alice@example.com", PASSWORD, config.security)
    assert stored(database).failed_login_attempts == 0
    for _ in range(4):
        refusal(database, config, "wrong")
    assert not stored(database).is_locked


def test_unlock(database: Database, config: Config, alice: User) -> None:
    for _ in range(5):
        refusal(database, config, "wrong")
    assert stored(database).is_locked
    with database.transaction() as session:
        users.unlock(session, "alice@example.com")
    users.authenticate(database, "alice@example.com", PASSWORD, config.security)


def test_disabled_user_is_refused(database: Database, config: Config, alice: User) -> None:
    with database.transaction() as session:
        users.set_active(session, "alice@example.com", False)
    assert refusal(database, config, PASSWORD) is LoginRefusal.DISABLED
    with database.transaction() as session:
        users.set_active(session, "alice@example.com", True)
    users.authenticate(database, "alice@example.com", PASSWORD, config.security)


def test_unknown_email_spends_bcrypt_time(
    database: Database, config: Config, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths do exactly one bcrypt check, so timing does not tell whether an email exists."""
    checks: list[int] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        checks.append(int(hashed.split(b"$")[2]))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    with pytest.raises(AuthenticationError) as unknown:
        users.authenticate(database, "nobody@example.com", "wrong", config.security)
    with pytest.raises(AuthenticationError) as known:
        users.authenticate(database, "alice@example.com", "wrong", config.security)
    assert str(unknown.value) == str(known.value) == "invalid email or password"
    assert checks == [config.security.bcrypt_rounds, config.security.bcrypt_rounds]


def test_secret_box_round_trip_and_key_file(tmp_path: object, config: Config) -> None:
    from pathlib import Path

    key_file = Path(str(tmp_path)) / "k" / "grillstats.key"
    key_file.parent.mkdir()
    box = secrets.SecretBox.from_config(config.security.__class__(key_file=str(key_file)))
    assert key_file.stat().st_mode & 0o777 == 0o600
    token = box.encrypt("refresh-token-value")
    assert "refresh-token-value" not in token
    assert box.decrypt(token) == "refresh-token-value"
    # The same file gives the same key; another key cannot read it, with a clear error.
    again = secrets.SecretBox.from_config(config.security.__class__(key_file=str(key_file)))
    assert again.decrypt(token) == "refresh-token-value"
    other = secrets.SecretBox([secrets.generate_key().encode()])
    with pytest.raises(secrets.SecretError, match="cannot be decrypted") as info:
        other.decrypt(token)
    assert "refresh-token-value" not in str(info.value)
    # Rotation: a new key first, the old one still decrypts.
    old = key_file.read_text().strip()
    rotated = secrets.SecretBox.from_config(
        config.security.__class__(encryption_key=f"{secrets.generate_key()},{old}")
    )
    assert rotated.decrypt(token) == "refresh-token-value"
    with pytest.raises(secrets.SecretError, match="not a valid key"):
        secrets.SecretBox.from_config(config.security.__class__(encryption_key="short"))


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_parallel_wrong_passwords_lock_after_exactly_the_limit(
    database: Database, config: Config, alice: User
) -> None:
    attempts = 40
    start = threading.Barrier(attempts)
    reasons: list[LoginRefusal] = []
    guard = threading.Lock()

    def attempt() -> None:
        start.wait()
        with pytest.raises(AuthenticationError) as info:
            users.authenticate(database, "alice@example.com", "wrong", config.security)
        with guard:
            reasons.append(info.value.reason)

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reasons) == attempts
    limit = config.security.max_failed_logins
    # each attempt read the count the one before it wrote: exactly `limit` wrong, the rest locked
    assert reasons.count(LoginRefusal.INVALID) == limit
    assert reasons.count(LoginRefusal.LOCKED) == attempts - limit
    user = stored(database)
    assert user.is_locked and user.failed_login_attempts == attempts  # every check counted
