"""Configuration: file < environment, clear one-line errors, secrets from files, the example."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from grillstats_bridge import config as cfg
from grillstats_bridge.config import ConfigError, load_config
from grillstats_bridge.store.db import safe_url

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = load_config(environ={})
    assert c.source is None
    assert c.database.url == "sqlite:///grillstats.db"
    # The seed's pool defaults.
    d = c.database
    assert (d.pool_size, d.max_overflow, d.pool_recycle, d.pool_pre_ping, d.pool_timeout) == (
        10,
        20,
        3600,
        True,
        30,
    )
    assert d.statement_timeout_ms == 30000
    assert c.security.max_failed_logins == 5 and c.security.lockout_minutes == 15


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    local = write(tmp_path / "config.yaml", "database: {pool_size: 3}\n")
    other = write(tmp_path / "other.yaml", "database: {pool_size: 4}\n")
    explicit = write(tmp_path / "explicit.yaml", "database: {pool_size: 5}\n")
    assert load_config(environ={}).database.pool_size == 3
    assert load_config(environ={"GRILLSTATS_CONFIG": str(other)}).database.pool_size == 4
    got = load_config(explicit, environ={"GRILLSTATS_CONFIG": str(other)})
    assert got.database.pool_size == 5
    assert got.source == str(explicit)
    assert local.exists()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config: no such file"):
        load_config(tmp_path / "nope.yaml", environ={})
    with pytest.raises(ConfigError, match=r"GRILLSTATS_CONFIG: no such file"):
        load_config(environ={"GRILLSTATS_CONFIG": str(tmp_path / "nope.yaml")})


def test_environment_overrides_file_and_seed_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml", "database:\n  pool_size: 3\n  pool_timeout: 7\nmqtt:\n  port: 1884\n"
    )
    env = {
        "GRILLSTATS_DATABASE_POOL_SIZE": "11",
        "SQLALCHEMY_MAX_OVERFLOW": "2",
        "SQLALCHEMY_POOL_RECYCLE": "60",
        "SQLALCHEMY_POOL_PRE_PING": "false",
        "SQLALCHEMY_POOL_TIMEOUT": "9",
        "GRILLSTATS_MQTT_HOST": "broker.lan",
    }
    c = load_config(path, environ=env)
    assert c.database.pool_size == 11
    assert c.database.max_overflow == 2
    assert c.database.pool_recycle == 60
    assert c.database.pool_pre_ping is False
    assert c.database.pool_timeout == 9  # the seed's name beats the file
    assert c.mqtt.host == "broker.lan" and c.mqtt.port == 1884
    # Our own name wins over the seed's.
    both = {"GRILLSTATS_DATABASE_POOL_SIZE": "4", "SQLALCHEMY_POOL_SIZE": "8"}
    assert load_config(path, environ=both).database.pool_size == 4


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("databse: {}\n", {}, r"^databse: unknown section \(did you mean 'database'\?\)$"),
        (
            "database: {pool_sise: 3}\n",
            {},
            r"^database\.pool_sise: unknown key \(did you mean 'pool_size'\?\)$",
        ),
        (
            "database: {pool_size: many}\n",
            {},
            r"^database\.pool_size: must be a whole number, got 'many'$",
        ),
        ("database: {pool_size: 0}\n", {}, r"^database\.pool_size: must be at least 1, got 0$"),
        ("mqtt: {port: 70000}\n", {}, r"^mqtt\.port: must be at most 65535, got 70000$"),
        ("database: {pool_pre_ping: perhaps}\n", {}, r"must be true or false, got 'perhaps'"),
        (
            "logging: {level: LOUD}\n",
            {},
            r"^logging\.level: must be one of DEBUG, INFO, WARNING, ERROR",
        ),
        ("database: {url: 'mysql://x'}\n", {}, r"^database\.url: must start with sqlite://"),
        ("database: [1, 2]\n", {}, r"^database: must be a mapping"),
        ("- a\n", {}, r"top level must be a mapping"),
        ("database: {url: [\n", {}, r"line \d+"),
        (
            "",
            {"GRILLSTATS_DATABASE_POOL_SIZE": "x"},
            r"^GRILLSTATS_DATABASE_POOL_SIZE: must be a whole number",
        ),
        ("", {"SQLALCHEMY_POOL_TIMEOUT": "-3"}, r"^SQLALCHEMY_POOL_TIMEOUT: must be at least 1"),
        (
            "",
            {"GRILLSTATS_DATABASE_POOLSIZE": "3"},
            r"^GRILLSTATS_DATABASE_POOLSIZE: unknown setting",
        ),
        ("polling: {active_interval: soon}\n", {}, r"polling\.active_interval: must be a duration"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, environ=env)
    assert "\n" not in str(info.value)


def test_durations(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "polling: {active_interval: 30s, idle_interval: 10m}\n")
    c = load_config(path, environ={"GRILLSTATS_POLLING_MAX_BACKOFF": "2h"})
    assert c.polling.active_interval == 30.0
    assert c.polling.idle_interval == 600.0
    assert c.polling.max_backoff == 7200.0


def test_secret_from_file_and_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "mqtt-pass").write_text("s3cret\n")
    path = write(tmp_path / "c.yaml", f"mqtt: {{password_file: {tmp_path / 'mqtt-pass'}}}\n")
    assert load_config(path, environ={}).mqtt.password == "s3cret"

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db-url").write_text("postgresql+psycopg2://u:pw@db/grill\n")
    path = write(tmp_path / "c2.yaml", "database: {url_file: db-url}\n")
    c = load_config(path, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert c.database.url == "postgresql+psycopg2://u:pw@db/grill"

    env = {"GRILLSTATS_MQTT_PASSWORD_FILE": str(tmp_path / "mqtt-pass")}
    assert load_config(write(tmp_path / "e.yaml", ""), environ=env).mqtt.password == "s3cret"


def test_secret_given_twice_or_unreadable(tmp_path: Path) -> None:
    both = write(tmp_path / "c.yaml", "mqtt: {password: a, password_file: /x}\n")
    with pytest.raises(ConfigError, match=r"mqtt\.password: give either password or password_file"):
        load_config(both, environ={})
    missing = write(tmp_path / "d.yaml", f"mqtt: {{password_file: {tmp_path / 'none'}}}\n")
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: cannot read"):
        load_config(missing, environ={})


def test_redacted_hides_secrets() -> None:
    c = (
        cfg.Config()
        .replace("database", url="postgresql+psycopg2://grill:hunter22@db:5432/grill")
        .replace("mqtt", password="pa55word")
    )
    shown = yaml.safe_dump(cfg.redacted(c))
    assert "hunter22" not in shown and "pa55word" not in shown
    assert "grill:***@db" in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg2://grill:hunter22@db:5432/grill", "grill:***@db:5432/grill"),
        ("postgresql://grill:hun@ter22@db/grill", "postgresql://grill:***@db/grill"),
        ("postgresql://grill:hunter22@@db/grill", "postgresql://grill:***@db/grill"),
        ("postgresql://grill:hun/ter?22@db/grill", "postgresql://grill:***@db/grill"),
        ("postgresql://grill@db/grill?password=hunter22", "grill@db/grill?password=***"),
        ("postgresql://db/g?sslmode=require&PassWord=hunter22", "?sslmode=require&PassWord=***"),
        ("postgresql://db/g?sslpassword=hunter22", "postgresql://db/g?sslpassword=***"),
        ("postgresql://grill@db/grill?x=a@b", "postgresql://grill@db/grill?x=a@b"),
        ("sqlite:///data/grillstats.db", "sqlite:///data/grillstats.db"),
        ("not a URL: hunter22", "<unparseable URL>"),
    ],
)
def test_every_url_form_is_redacted(url: str, shown: str) -> None:
    """One function hides the password for config show, the start-up log and /health."""
    redacted = cfg.redacted(cfg.Config().replace("database", url=url))["database"]["url"]
    assert "hunter" not in redacted and "ter22" not in redacted and shown in redacted
    assert safe_url(url) == redacted
    if "://" in url and " " not in url:
        assert "hunter" not in safe_url(make_url(url))  # the URL object /health renders


def test_example_file_documents_every_key_with_its_default() -> None:
    committed = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    assert committed == cfg.example_yaml(), (
        "regenerate: grillstats-bridge config example > config.example.yaml"
    )
    parsed = yaml.safe_load(committed)
    defaults = cfg.redacted(cfg.Config())
    assert parsed == defaults
    # And it loads as a configuration of its own.
    assert load_config(REPO / "config.example.yaml", environ={}) == cfg.Config(
        source=str(REPO / "config.example.yaml")
    )
