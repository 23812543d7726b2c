"""``token create|list|revoke`` (both backends): shown once, stored hashed, refused once revoked."""

from __future__ import annotations

from grillstats_bridge.config import Config
from grillstats_bridge.store import tokens, users
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import ApiToken
from tests.fixtures.cli import Cli


def test_create_list_revoke(cli: Cli, database: Database, config: Config) -> None:
    with database.transaction() as db:
        users.add_user(db, "cook@example.com", "correct horse", config.security)
    code, out, _ = cli("token", "create", "cook@example.com", "--name", "grafana")
    assert code == 0
    token = out.splitlines()[1]
    assert token.startswith("gsb_") and len(token) > 40
    with database.transaction() as db:
        (row,) = db.query(ApiToken).all()
        assert row.token_hash == tokens.hash_token(token) and token not in row.token_hash
        user = tokens.user_for_token(db, token)
        assert user is not None and user.email == "cook@example.com"

    code, out, _ = cli("token", "list")
    assert code == 0 and "grafana" in out and token[:10] + "…" in out and token not in out
    assert "active" in out

    assert cli("token", "revoke", str(row.id))[0] == 0
    with database.transaction() as db:
        assert tokens.user_for_token(db, token) is None
    assert "revoked" in cli("token", "list", "cook@example.com")[1]


def test_mistakes_are_one_line(cli: Cli) -> None:
    code, _, err = cli("token", "create", "nobody@example.com")
    assert code == 2 and err.strip().splitlines() == [
        "grillstats-bridge: error: no user with email 'nobody@example.com'"
    ]
    code, _, err = cli("token", "revoke", "42")
    assert code == 2 and "no API token with id 42" in err and len(err.splitlines()) == 1
    code, out, _ = cli("token", "list")
    assert code == 0 and "no API tokens" in out


def test_last_use_is_written_at_most_once_a_minute(database: Database, config: Config) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 7, 4, 18, 0, tzinfo=UTC)
    with database.transaction() as db:
        user = users.add_user(db, "cook@example.com", "correct horse", config.security)
        row, token = tokens.create_token(db, user, "script", t0)
    for seconds, expected in ((0, 0), (30, 0), (59, 0), (60, 60), (90, 60), (125, 125)):
        with database.transaction() as db:
            assert tokens.user_for_token(db, token, t0 + timedelta(seconds=seconds)) is not None
        with database.transaction() as db:
            used = db.get(ApiToken, row.id)
            assert used is not None and used.last_used_at == t0 + timedelta(seconds=expected)
